"""videonorm.data.video on real files of every kind real data has: every backend returns exactly the frames of a
full sequential decode (display matrix applied), or hands the file to PyAV; broken files raise; a missing
optional decoder is one clear line."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.videos import EncoderUnavailable, frame_index, frame_indices, make_dataset, write_video
from videonorm.data import decoders, video
from videonorm.data.video import (
    BACKENDS,
    DecoderUnavailableError,
    VideoDecodeError,
    read_clip,
    read_frames,
    require_backend,
    video_info,
)

ROOT = Path(__file__).resolve().parents[1]
_VFR = [sum(1 / 25 if (k // 10) % 2 == 0 else 1 / 12.5 for k in range(i)) for i in range(32)]  # 25 / 12.5 fps

# name -> (file name, write_video arguments, display transform of (N, H, W, 3) pictures). 32 frames, key frame
# every 8 (12 for MPEG-2), B-frames: the kinds of files real datasets hold.
FILE_KINDS = {
    "h264_mp4": ("h264.mp4", {}, None),
    "h264_mkv": ("h264.mkv", {}, None),
    "vfr_mp4": ("vfr.mp4", {"timestamps": _VFR}, None),
    "mpeg2_ps": ("mpeg2.mpg", {"codec": "mpeg2video", "format": "mpeg", "gop": 12, "width": 160, "height": 90}, None),
    "h264_ts": ("h264.ts", {}, None),
    "mpeg4_avi": ("mpeg4.avi", {"codec": "mpeg4"}, None),
    "hevc_mp4": ("hevc.mp4", {"codec": "libx265"}, None),
    "h264_10bit_mp4": ("h264_10bit.mp4", {"pix_fmt": "yuv420p10le"}, None),
    "hevc_10bit_mkv": ("hevc_10bit.mkv", {"codec": "libx265", "pix_fmt": "yuv420p10le"}, None),
    "vp9_webm": ("vp9.webm", {"codec": "libvpx-vp9"}, None),
    "vp9_10bit_webm": ("vp9_10bit.webm", {"codec": "libvpx-vp9", "pix_fmt": "yuv420p10le"}, None),
    "av1_mkv": ("av1.mkv", {"codec": "libsvtav1"}, None),
    # display matrices as phones write them; shown turned counter-clockwise (then mirrored), as players show them
    "rotate90_mp4": ("rotate90.mp4", {"rotation": 90}, lambda x: np.rot90(x, 1, axes=(1, 2))),
    "rotate180_mp4": ("rotate180.mp4", {"rotation": 180}, lambda x: np.rot90(x, 2, axes=(1, 2))),
    "rotate270_mp4": ("rotate270.mp4", {"rotation": 270}, lambda x: np.rot90(x, 3, axes=(1, 2))),
    "rotate90_mirror_mp4": ("rotate90_mirror.mp4", {"rotation": 90, "hflip": True},
                            lambda x: np.rot90(x, 1, axes=(1, 2))[:, :, ::-1]),
}
# What each backend decodes itself (the rest it declines, and PyAV decodes them): its whitelist, pinned here so
# a whitelist that grows without a test fails the exactness test, and one that shrinks fails this.
SERVED = {
    "pyav": set(FILE_KINDS),
    "torchcodec": {"h264_mp4", "h264_mkv", "vfr_mp4", "hevc_mp4", "vp9_webm", "av1_mkv"},
    "decord": {"h264_mp4", "h264_mkv", "vfr_mp4", "vp9_webm"},
}


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """``kind -> path`` (written on first use; skips a kind nothing here can encode)."""
    root, made = tmp_path_factory.mktemp("kinds"), {}

    def get(kind: str):
        if kind not in made:
            name, options, _ = FILE_KINDS[kind]
            options = {"gop": 8, "pattern": "noise", **options}
            try:
                made[kind] = write_video(root / name, 32, **options)
            except EncoderUnavailable as error:
                made[kind] = error
        if isinstance(made[kind], Exception):
            pytest.skip(str(made[kind]))
        return made[kind]

    return get


def usable(backend: str) -> str:
    try:
        require_backend(backend)
    except DecoderUnavailableError as error:
        pytest.skip(str(error))
    return backend


def sequential_decode(path) -> np.ndarray:
    """Every frame, in presentation order, decoded by PyAV from the start, as coded: (N, H, W, 3) uint8."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_every_backend_returns_exact_frames(kinds, kind, backend, caplog, monkeypatch):
    path, backend = kinds(kind), usable(backend)
    coded = sequential_decode(path)
    n = len(coded)
    assert n == 32 and frame_indices(coded) == list(range(n))  # the reference spells the right indices
    shown = FILE_KINDS[kind][2]
    reference = torch.from_numpy(np.ascontiguousarray(shown(coded) if shown else coded)).permute(0, 3, 1, 2)
    requests = [
        [0],
        [n - 1],
        [n - 1, 0, 5, 5, 17, 3],  # unsorted, repeated
        list(range(9, n, 2)),  # a strided window past several keyframes
        torch.randint(0, n, (12,), generator=torch.Generator().manual_seed(0)).tolist(),
    ]
    monkeypatch.setattr(video, "_declined", set())  # declines are logged once per process
    caplog.set_level(logging.DEBUG, logger="videonorm.data.video")
    assert video_info(path, backend)[0] == n
    for indices in requests:
        frames = read_frames(path, indices, backend=backend)
        assert frames.dtype == torch.uint8 and frames.shape == (len(indices), *reference.shape[1:])
        assert torch.equal(frames, reference[indices]), (kind, backend, indices)
    messages = [r.getMessage() for r in caplog.records if r.name == "videonorm.data.video"]
    if kind in SERVED[backend]:
        assert not messages  # served by the backend itself: no decline, no fallback
    else:
        assert messages and all(f"{backend} is not used for files with" in m for m in messages)


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg program not found (apt-get install ffmpeg): no ffmpeg display to compare with")
@pytest.mark.parametrize("kind", [k for k, (_, _, shown) in FILE_KINDS.items() if shown])
def test_display_matrix_applied_as_ffmpeg_shows_it(kinds, kind):
    # the ffmpeg program rotates and mirrors by the display matrix (autorotate), as players do
    path = kinds(kind)
    frames = read_frames(path, list(range(32))).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    shown = np.frombuffer(raw, dtype=np.uint8).reshape(frames.shape)  # raises if ffmpeg shows another size
    assert np.abs(shown.astype(int) - frames.astype(int)).mean() < 1


def test_rotation_by_other_angles_is_a_clear_error(tmp_path):
    try:
        path = write_video(tmp_path / "tilted.mp4", 8, rotation=45)
    except EncoderUnavailable as error:
        pytest.skip(str(error))
    with pytest.raises(VideoDecodeError, match="rotates by -?45.0 degrees") as info:
        read_frames(path, [0])
    assert info.value.kind == "unsupported"


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_do_not_change_frames(video_files, backend):
    backend = usable(backend)
    indices = [40, 2, 2, 33]
    one = read_frames(video_files["a25"], indices, backend=backend, threads=1)
    two = read_frames(video_files["a25"], indices, backend=backend, threads=2)
    assert torch.equal(one, two)


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_info(video_files, backend):
    backend = usable(backend)
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
    backend = usable(backend)
    with pytest.raises(IndexError, match=r"\[0, 6\)"):
        read_frames(video_files["short"], [0, 6], backend=backend)
    with pytest.raises(IndexError):
        read_frames(video_files["short"], [-1], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, kind", [("not_a_video", "unreadable"), ("truncated", "truncated")])
def test_broken_files_raise_decode_error(video_files, name, kind, backend):
    backend = usable(backend)
    path = video_files[name]
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, list(range(0, 40, 4)), backend=backend)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert "pyav:" in info.value.reason  # the reference, tried last, says why
    assert info.value.kind == kind


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_file_is_rejected_not_padded(video_files, backend):
    # the header announces 60 frames, the data holds about 30: every backend refuses the file, even for frames
    # before the cut, so a cut download is skipped as a whole (and nothing hangs on the lying header)
    backend = usable(backend)
    path = video_files["truncated_late"]
    with pytest.raises(VideoDecodeError, match="truncated: header announces 60 frames"):
        video_info(path, backend)
    for indices in ([2, 58], [1, 2]):
        with pytest.raises(VideoDecodeError) as info:
            read_frames(path, indices, backend=backend)
        assert info.value.kind == "truncated"


@pytest.mark.parametrize("backend, library, install", [
    ("decord", "decord", "pip install 'videonorm[decord]'"),
    ("torchcodec", "torchcodec", "pip install 'videonorm[torchcodec]'"),
])  # fmt: skip
def test_missing_optional_decoder_is_one_clear_line(video_files, monkeypatch, backend, library, install):
    monkeypatch.setitem(sys.modules, library, None)  # `import <library>` raises ImportError, as when not installed
    monkeypatch.setattr(decoders, "_load", decoders._load.__wrapped__)  # no cached module
    for call in (lambda: require_backend(backend), lambda: read_frames(video_files["a25"], [0], backend=backend),
                 lambda: video_info(video_files["a25"], backend)):
        with pytest.raises(DecoderUnavailableError) as info:
            call()
        assert install in str(info.value) and "\n" not in str(info.value)
    assert backend not in decoders.available_backends()


def test_missing_decoder_stops_videonorm_fit_in_one_line(tmp_path):
    # the datamodule checks data.decoder before any worker starts; the CLI prints the line, no traceback
    make_dataset(tmp_path / "data", per_class=1)
    code = ("import sys; sys.modules['decord'] = None; from videonorm.cli import main; sys.exit("
            f"main(['fit', '--config', {str(ROOT / 'videonorm/configs/demo/b4_8x2.yaml')!r}, '--data.root', "
            f"{str(tmp_path / 'data')!r}, '--data.decoder', 'decord', '--trainer.max_epochs', '1']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: decord is not installed") and "pip install 'videonorm[decord]'" in last
    assert "Traceback" not in result.stderr


def test_torchcodec_without_ffmpeg_libraries_is_one_clear_line(monkeypatch):
    try:
        import torchcodec
    except ImportError:
        pytest.skip("torchcodec is not installed (pip install 'videonorm[torchcodec]')")
    # torchcodec imports without FFmpeg's shared libraries and leaves ffmpeg_major_version None. A test cannot
    # remove the system's libraries, so on machines that have them this sets what torchcodec sets without them.
    monkeypatch.setattr(torchcodec, "ffmpeg_major_version", None, raising=False)
    monkeypatch.setattr(decoders, "_load", decoders._load.__wrapped__)
    with pytest.raises(DecoderUnavailableError, match="install FFmpeg") as info:
        require_backend("torchcodec")
    assert "apt install ffmpeg" in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_unknown_backend(tmp_path, video_files):
    with pytest.raises(VideoDecodeError, match="no such file") as info:
        read_frames(tmp_path / "nope.mp4", [0])
    assert info.value.kind == "missing"
    with pytest.raises(VideoDecodeError, match="no such file"):
        video_info(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="unknown video backend 'opencv'; available: pyav, torchcodec, decord"):
        read_frames(video_files["a25"], [0], backend="opencv")


def test_decode_error_pickles():
    # DataLoader workers send exceptions to the main process by pickling them
    error = pickle.loads(pickle.dumps(VideoDecodeError("/x/y.mp4", "bad", "truncated")))
    assert (error.path, error.reason, error.kind, str(error)) == ("/x/y.mp4", "bad", "truncated",
                                                                   "cannot decode /x/y.mp4: bad")


def test_frames_are_channel_first(video_files):
    frames = read_frames(video_files["b30"], [7])
    assert frames.shape == (1, 3, 64, 80)
    assert frame_index(frames[0]) == 7


class _CountingContainer:
    """A PyAV container that counts the frames it decodes (everything else passes through)."""

    def __init__(self, container):
        self.container, self.decoded = container, 0

    def __getattr__(self, name):
        return getattr(self.container, name)

    def decode(self, *args, **kwargs):
        for frame in self.container.decode(*args, **kwargs):
            self.decoded += 1
            yield frame


def test_pyav_seeks_again_across_long_gaps_instead_of_decoding_them(tmp_path):
    """Frames far apart (kinetics-prep verify's start/middle/end, test clips spread over a video) are each decoded
    from their own key frame, not by decoding every frame in between; a clip's window is still one run."""
    from videonorm.data.decoders import pyav

    path = write_video(tmp_path / "long.mp4", 200, 64, 48, 25, gop=10)  # B frames too
    reader = pyav.Reader(str(path), 1)
    reader._container = counting = _CountingContainer(reader._container)
    frames = reader.get([0, 100, 199])
    assert [frame_index(f) for f in frames] == [0, 100, 199]
    assert counting.decoded <= 3 * (10 + 4)  # from three key frames (plus the B frames' reorder), not all 200
    counting.decoded = 0
    window = list(range(40, 104, 2))  # a 32x2 clip across six key frames: decoded in one pass
    assert [frame_index(f) for f in reader.get(window)] == window
    assert counting.decoded <= 64 + 10 + 4
    reader.close()
