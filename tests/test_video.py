"""videonorm.data.video on real H.264 files: exact frames per backend against a full sequential decode."""

from __future__ import annotations

import logging
import pickle
import sys

import av
import numpy as np
import pytest
import torch

from tests.videos import frame_index, frame_indices
from videonorm.data.video import BACKENDS, VideoDecodeError, read_clip, read_frames, video_info


def sequential_decode(path) -> torch.Tensor:
    """Every frame, in presentation order, decoded by PyAV from the start: (N, 3, H, W) uint8."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["a25", "b30", "vfr"])
def test_exact_frames_match_sequential_decode(video_files, name, backend, caplog):
    path = video_files[name]
    reference = sequential_decode(path)
    assert frame_indices(reference) == list(range(len(reference)))  # the test videos spell their indices
    n = len(reference)
    generator = torch.Generator().manual_seed(0)
    requests = [
        [0],
        [n - 1],
        [n - 1, 0, 5, 5, 17, 3],  # unsorted, repeated
        list(range(9, n, 2)),  # a strided window past several keyframes
        torch.randint(0, n, (12,), generator=generator).tolist(),
    ]
    caplog.set_level(logging.DEBUG, logger="videonorm.data.video")
    for indices in requests:
        frames = read_frames(path, indices, backend=backend)
        assert frames.dtype == torch.uint8
        assert frames.shape == (len(indices), *reference.shape[1:])
        assert torch.equal(frames, reference[indices]), (backend, indices)
        assert frame_indices(frames) == indices
    # the fast paths served every request: no fallback to the other backend or to a decode from the start
    assert not [r.getMessage() for r in caplog.records if r.name == "videonorm.data.video"]


def test_backends_agree_bit_for_bit(video_files):
    indices = list(range(0, 60, 3))
    frames = {backend: read_frames(video_files["b30"], indices, backend=backend) for backend in BACKENDS}
    assert torch.equal(frames["decord"], frames["pyav"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_do_not_change_frames(video_files, backend):
    indices = [40, 2, 2, 33]
    one = read_frames(video_files["a25"], indices, backend=backend, threads=1)
    two = read_frames(video_files["a25"], indices, backend=backend, threads=2)
    assert torch.equal(one, two)


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_info(video_files, backend):
    assert video_info(video_files["a25"], backend) == (50, 25.0)
    assert video_info(video_files["b30"], backend) == (60, 30.0)
    assert video_info(video_files["short"], backend) == (6, 25.0)


def test_read_clip_chooses_from_frame_count(video_files):
    seen = []

    def choose(num_frames):
        seen.append(num_frames)
        return [num_frames - 1, 0]

    frames, indices = read_clip(video_files["b30"], choose, backend="pyav")
    assert seen == [60]
    assert indices.tolist() == [59, 0]
    assert frame_indices(frames) == [59, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_index_raises(video_files, backend):
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        read_frames(video_files["short"], [0, 6], backend=backend)
    with pytest.raises(IndexError):
        read_frames(video_files["short"], [-1], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["not_a_video", "truncated"])
def test_broken_files_raise_decode_error(video_files, name, backend):
    path = video_files[name]
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, list(range(0, 40, 4)), backend=backend)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert "pyav:" in info.value.reason  # the last backend tried says why
    if backend == "decord":
        assert "decord:" in info.value.reason  # both reasons when the fallback also failed


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_file_is_rejected_not_padded(video_files, backend):
    # the header announces 60 frames, the data holds about 30: both backends refuse the file, even for frames
    # before the cut, so a cut download is skipped as a whole (and nothing hangs on the lying header)
    path = video_files["truncated_late"]
    with pytest.raises(VideoDecodeError, match="truncated: header announces 60 frames"):
        video_info(path, backend)
    with pytest.raises(VideoDecodeError):
        read_frames(path, [2, 58], backend=backend)
    with pytest.raises(VideoDecodeError):
        read_frames(path, [1, 2], backend=backend)


def test_without_decord_falls_back_to_pyav(video_files, monkeypatch, caplog):
    # decord has no wheels for some platforms: the default backend must still work there
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` raises ImportError
    with caplog.at_level(logging.DEBUG, logger="videonorm.data.video"):
        frames = read_frames(video_files["a25"], [1, 2, 20, 2], backend="decord")
        assert video_info(video_files["a25"], backend="decord") == (50, 25.0)
    assert frame_indices(frames) == [1, 2, 20, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert any("decord: ModuleNotFoundError" in m and "trying pyav" in m for m in messages)


def test_missing_file_and_unknown_backend(tmp_path, video_files):
    with pytest.raises(VideoDecodeError, match="no such file"):
        read_frames(tmp_path / "nope.mp4", [0])
    with pytest.raises(VideoDecodeError, match="no such file"):
        video_info(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="unknown video backend"):
        read_frames(video_files["a25"], [0], backend="opencv")


def test_decode_error_pickles():
    # DataLoader workers send exceptions to the main process by pickling them
    error = pickle.loads(pickle.dumps(VideoDecodeError("/x/y.mp4", "bad")))
    assert (error.path, error.reason, str(error)) == ("/x/y.mp4", "bad", "cannot decode /x/y.mp4: bad")


def test_frames_are_channel_first(video_files):
    frames = read_frames(video_files["b30"], [7])
    assert frames.shape == (1, 3, 64, 80)
    assert frame_index(frames[0]) == 7
