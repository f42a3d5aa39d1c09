"""What "frame k" means on files whose timestamps do not simply count frames, for every backend: mp4 cut with an
edit list (``ffmpeg -ss T -c copy``), MPEG-TS recordings joined end to end (timestamps restart), and a frame size
that changes mid-stream. Frame k is one frame whether it is read alone or with others, and frame counts agree."""

from __future__ import annotations

import logging
import shutil
import subprocess

import av
import pytest
import torch

from tests.test_video import sequential_decode, usable
from tests.videos import frame_indices, write_concatenated_ts, write_cut_video, write_video
from videonorm.data import video
from videonorm.data.dataset import ClipSpec, VideoDataset
from videonorm.data.video import BACKENDS, VideoDecodeError, read_frames, video_info

GOP = 8  # key frames of the source: 0, 8, 16, ...


@pytest.fixture(scope="module", params=[("remux", 13), ("remux", 8), ("ffmpeg", 13)], ids=lambda p: f"{p[0]}{p[1]}")
def cut_mp4(request, tmp_path_factory):
    """``(path, cut)``: a 40-frame source (key frame every 8) cut at frame ``cut`` without re-encoding, by moving
    timestamps (as the issue's repro) or by the ``ffmpeg`` program itself (``-ss 0.52 -c copy``: 13 frames at 25
    fps). A cut at 13 keeps the packets of frames 8..12 (decoded for 13.., never shown); a cut at a key frame (8)
    keeps none, and the header still counts the dropped samples."""
    route, cut = request.param
    root = tmp_path_factory.mktemp("cut")
    if route == "remux":
        return write_cut_video(root / "cut.mp4", 40, cut, gop=GOP, bframes=3), cut
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg program not found (apt-get install ffmpeg): the ffmpeg -ss -c copy cut is not tested")
    source = write_video(root / "source.mp4", 40, gop=GOP, bframes=3)
    path = root / "cut_ffmpeg.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{cut / 25}", "-i", str(source), "-c", "copy", str(path)],
                   check=True)
    return path, cut


def test_the_cut_file_keeps_the_packets_before_the_cut(cut_mp4):
    # the premise: FFmpeg applies the edit list (shows source frames cut..39) and flags the packets it decodes
    # only for the frames after them
    path, cut = cut_mp4
    with av.open(str(path)) as container:
        assert sum(packet.is_discard for packet in container.demux(video=0)) == cut % GOP
    assert frame_indices(sequential_decode(path)) == list(range(cut, 40))


def test_frame_k_of_a_cut_mp4_is_the_kth_frame_shown(cut_mp4):
    path, cut = cut_mp4
    n = 40 - cut
    assert video_info(path) == (n, 25.0)
    assert frame_indices(read_frames(path, list(range(n)))) == list(range(cut, 40))
    assert frame_indices(read_frames(path, list(range(15)))) == list(range(cut, cut + 15))
    assert [frame_indices(read_frames(path, [k]))[0] for k in range(n)] == list(range(cut, 40))  # each alone
    assert frame_indices(read_frames(path, [0, 20])) == [cut, cut + 20]  # with frame 0 as alone
    assert frame_indices(read_frames(path, [n - 1, 3, 3, 20])) == [39, cut + 3, cut + 3, cut + 20]
    with pytest.raises(IndexError, match=rf"\[0, {n}\)"):
        read_frames(path, [0, n])


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_shows_the_cut_file_as_players_do(cut_mp4, backend, caplog, monkeypatch):
    # the same frames as PyAV's full decode, or the file is declined (PyAV decodes it): never the coded frames
    # before the cut, never a count that includes them
    (path, cut), backend = cut_mp4, usable(backend)
    shown = torch.from_numpy(sequential_decode(path)).permute(0, 3, 1, 2)
    n = len(shown)
    monkeypatch.setattr(video, "_declined", set())
    caplog.set_level(logging.INFO, logger="videonorm.data.video")
    assert video_info(path, backend)[0] == n
    for indices in ([0], [n - 1], [20], [0, 20], list(range(0, n, 2)), [n - 1, 0, 5, 5, 17, 3]):
        assert torch.equal(read_frames(path, indices, backend=backend), shown[indices]), (backend, indices)
    declined = [r.getMessage() for r in caplog.records if "is not used for files with" in r.getMessage()]
    # torchcodec declines every cut file (its count cannot tell an edit list from a cut download), decord those
    # with hidden frames (it counts them); decord serves a cut at a key frame, exactly
    if backend == "torchcodec" or (backend == "decord" and cut % GOP):
        assert declined and all("edit list" in m for m in declined), declined
    else:
        assert not declined


@pytest.fixture(scope="module")
def joined_ts(tmp_path_factory):
    """Two 8-frame MPEG-TS recordings joined as ``cat a.ts b.ts`` joins them: timestamps restart at frame 8."""
    return write_concatenated_ts(tmp_path_factory.mktemp("joined") / "joined.ts", ((8, 64, 48), (8, 64, 48)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_timestamps_that_restart_are_read_in_stream_order(joined_ts, backend):
    # frame k is the k-th frame of the stream (presentation order within each recording), alone or with others
    backend = usable(backend)
    with av.open(str(joined_ts)) as container:  # the premise: the second recording's timestamps start again
        pts = [frame.pts for frame in container.decode(video=0)]
    assert pts[8:] == pts[:8]
    assert frame_indices(sequential_decode(joined_ts)) == list(range(16))
    assert video_info(joined_ts, backend) == (16, 25.0)
    assert frame_indices(read_frames(joined_ts, list(range(16)), backend)) == list(range(16))
    assert [frame_indices(read_frames(joined_ts, [k], backend))[0] for k in range(16)] == list(range(16))
    assert frame_indices(read_frames(joined_ts, [15, 0, 9, 9, 4], backend)) == [15, 0, 9, 9, 4]


def test_a_frame_size_change_is_named_with_the_frame_where_it_happens(tmp_path):
    # recordings of two sizes joined end to end: a clip across the change cannot be one tensor; the reason says
    # why (it was numpy's "all input arrays must have the same shape"), in read_frames, verify and training alike
    path = write_concatenated_ts(tmp_path / "resized.ts", ((8, 64, 48), (8, 96, 72)))
    assert read_frames(path, list(range(8))).shape == (8, 3, 48, 64)  # each side of the change reads
    assert read_frames(path, list(range(8, 16))).shape == (8, 3, 72, 96)
    for indices in (list(range(16)), [0, 12], [7, 8]):
        with pytest.raises(VideoDecodeError) as info:
            read_frames(path, indices)
        assert info.value.reason == "pyav: frame size changes from 64x48 to 96x72 at frame 8"
        assert info.value.kind == "unsupported"
    # training: the center clip of 4x2 frames spans frames 4..11; the video is skipped with that reason
    dataset = VideoDataset(tmp_path, [(path.name, 0)], "val", clip=ClipSpec(num_frames=4, sampling_rate=2,
                           crop_size=40, test_scale=48), max_skip_fraction=1.0)
    with pytest.raises(RuntimeError, match="only video"):
        dataset[0]
    assert dataset.broken == {str(path): "pyav: frame size changes from 64x48 to 96x72 at frame 8"}
