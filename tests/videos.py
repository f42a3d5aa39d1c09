"""Real small test videos, written with PyAV (H.264 by default; other codecs, containers, pixel formats and display
matrices on request), whose frames encode their own index.

Every frame is a 4 x 4 grid of cells; cell ``k`` (row-major) is bright when bit ``k`` of the frame index is set
and dark otherwise. The cells are large (a quarter of the width and height) and the encoder runs at high
quality, so :func:`frame_index` recovers the index exactly after lossy coding. That lets a test check
that a decoder returned *exactly* the frames it was asked for. 16 bits: up to 65535 frames.

Public API (other test modules import these; keep it small and stable)::

    write_video(path, num_frames=30, width=64, height=48, fps=25, gop=None, pattern="index", color=None,
                faststart=False, bframes=2, timestamps=None, codec="libx264", pix_fmt="yuv420p", format=None,
                rotation=None, hflip=False) -> Path   # raises EncoderUnavailable for what nothing here encodes
    EncoderUnavailable                   # a RuntimeError: tests skip on it
    write_truncated_video(path, num_frames=40, keep_fraction=0.5, **write_video_kwargs) -> Path
    write_not_a_video(path) -> Path
    write_cut_video(path, num_frames=40, cut=13, **write_video_kwargs) -> Path   # mp4 cut as `ffmpeg -ss -c copy` cuts
    write_concatenated_ts(path, segments=((8, 64, 48), (8, 64, 48)), fps=25, gop=None) -> Path   # `cat a.ts b.ts`
    frame_index(frame) -> int            # one decoded frame, (3, H, W) or (H, W, 3), uint8
    frame_indices(frames) -> list[int]   # (T, 3, H, W) or (T, H, W, 3)
    make_dataset(root, num_classes=2, per_class=3, ...) -> dict   # videos + manifests + classes.txt
    write_annotations(path, rows) -> Path   # a Kinetics annotation CSV (label, youtube_id, time_start, ...)
    index_frame(index, width, height, color=None) -> np.ndarray   # the RGB frame that spells ``index``
    CLASS_COLORS                         # bright-cell colour of class c (make_dataset uses CLASS_COLORS[c])

Sizes must be even (yuv420p). Keep them tiny in tests (64x48, 20-60 frames): each file takes milliseconds.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

GRID = 4  # cells per side: GRID * GRID bits of frame index
DARK = 16  # video-range black
# Bright cell colours per class: every channel >= 128 so a cell's channel mean is far from DARK after coding.
CLASS_COLORS = [
    (235, 235, 235),
    (235, 128, 128),
    (128, 235, 128),
    (128, 128, 235),
    (235, 235, 128),
    (235, 128, 235),
    (128, 235, 235),
    (200, 170, 140),
]
THRESHOLD = 72  # channel mean between DARK and the dimmest bright colour (~164)


def index_frame(index: int, width: int, height: int, color: Sequence[int] | None = None) -> np.ndarray:
    """The RGB frame (H, W, 3) uint8 whose cells spell ``index`` in binary.

    Args:
        index: Frame index, 0 <= index < 2**16.
        width: Frame width (even).
        height: Frame height (even).
        color: RGB of the bright cells (default white).
    """
    if not 0 <= index < 2 ** (GRID * GRID):
        raise ValueError(f"frame index {index} does not fit in {GRID * GRID} bits")
    bright = np.array(color or CLASS_COLORS[0], dtype=np.uint8)
    frame = np.full((height, width, 3), DARK, dtype=np.uint8)
    for k in range(GRID * GRID):
        if index >> k & 1:
            r, c = divmod(k, GRID)
            frame[_cell(r, height), _cell(c, width)] = bright
    return frame


def _cell(i: int, extent: int) -> slice:
    return slice(i * extent // GRID, (i + 1) * extent // GRID)


def frame_index(frame: torch.Tensor | np.ndarray) -> int:
    """Read back the index spelled by a decoded frame.

    Only the central half of each cell is read, so codec ringing at cell edges does not matter.

    Args:
        frame: One frame, uint8, channel-first (3, H, W) or channel-last (H, W, 3).
    """
    f = torch.as_tensor(np.asarray(frame))
    if f.ndim != 3:
        raise ValueError(f"expected one frame (3, H, W) or (H, W, 3), got shape {tuple(f.shape)}")
    if f.shape[0] == 3 and f.shape[-1] != 3:
        f = f.permute(1, 2, 0)
    f = f.float().mean(dim=2)  # (H, W)
    height, width = f.shape
    index = 0
    for k in range(GRID * GRID):
        r, c = divmod(k, GRID)
        rows, cols = _cell(r, height), _cell(c, width)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        centre = f[rows.start + h // 4 : rows.stop - h // 4, cols.start + w // 4 : cols.stop - w // 4]
        if centre.mean() > THRESHOLD:
            index |= 1 << k
    return index


def frame_indices(frames: torch.Tensor | np.ndarray) -> list[int]:
    """:func:`frame_index` of each frame of a clip (T, 3, H, W) or (T, H, W, 3)."""
    return [frame_index(f) for f in frames]


class EncoderUnavailable(RuntimeError):
    """Neither PyAV nor an ``ffmpeg`` program on PATH can write the asked kind of file here."""


def _encoder_options(codec: str, pattern: str, gop: int | None, bframes: int) -> dict[str, str]:
    """High-quality settings per encoder, so that :func:`frame_index` reads every frame back."""
    if codec in ("libx264", "libx265"):
        options = {"crf": "12", "preset": "ultrafast" if pattern == "index" else "veryfast", "bf": str(bframes)}
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
    elif codec in ("libvpx", "libvpx-vp9", "libaom-av1"):
        options = {"crf": "12", "b": "0"} | ({"cpu-used": "8"} if codec == "libaom-av1" else {})
    elif codec == "libsvtav1":
        options = {"preset": "10", "crf": "20", "svtav1-params": "log-level=0"}
    else:  # mpeg2video, mpeg4: constant quantizer
        options = {"qscale": "2", "bf": str(bframes)}
    if gop is not None:
        options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
    return options


def write_video(
    path: str | Path,
    num_frames: int = 30,
    width: int = 64,
    height: int = 48,
    fps: int | float | Fraction = 25,
    gop: int | None = None,
    pattern: str = "index",
    color: Sequence[int] | None = None,
    faststart: bool = False,
    bframes: int = 2,
    timestamps: Sequence[float] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    format: str | None = None,
    rotation: int | None = None,
    hflip: bool = False,
) -> Path:
    """Write a video whose frame ``i`` spells ``i`` (see module docstring), H.264 mp4 by default.

    Written with PyAV; where PyAV's FFmpeg lacks the encoder or pixel format (its libvpx has no 10-bit VP9),
    with the ``ffmpeg`` program, if there is one and no timestamps or display matrix are asked for.

    Args:
        path: Output file (parent folders are created); its suffix picks the container unless ``format``.
        num_frames: Number of frames.
        width: Width in pixels (even).
        height: Height in pixels (even).
        fps: Frame rate (constant).
        gop: Keyframe interval in frames (default: the encoder's), small values make seeking matter.
        pattern: ``"index"`` (frames spell their index) or ``"noise"`` (index cells plus seeded noise in
            the dark cells: a harder, more realistic stream for timing; indices still readable).
        color: RGB of the bright cells (e.g. ``CLASS_COLORS[label]``), default white.
        faststart: Put the index (moov atom) before the data, as streaming-ready files do.
        bframes: Max consecutive B-frames (reordering makes pts != decode order, as in real files).
        timestamps: Presentation time of each frame in seconds (variable frame rate); default ``i / fps``.
        codec: FFmpeg encoder, e.g. ``libx264``, ``libx265``, ``libvpx-vp9``, ``libsvtav1``, ``mpeg2video``.
        pix_fmt: Pixel format, e.g. ``yuv420p10le`` for 10-bit.
        format: Container format (e.g. ``"mpeg"`` for an MPEG-2 program stream), default from the suffix.
        rotation: Display matrix: counter-clockwise rotation in degrees (needs PyAV >= 18), as phones write it.
        hflip: Display matrix: mirror after the rotation.

    Returns:
        ``path`` as a Path.

    Raises:
        EncoderUnavailable: Nothing here can write this kind of file.
    """
    if pattern not in ("index", "noise"):
        raise ValueError(f"unknown pattern {pattern!r}: use 'index' or 'noise'")
    if timestamps is not None and len(timestamps) != num_frames:
        raise ValueError(f"{len(timestamps)} timestamps for {num_frames} frames")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(num_frames)
    pictures = []
    for i in range(num_frames):
        frame = index_frame(i, width, height, color)
        if pattern == "noise":
            dark = frame.max(axis=2, keepdims=True) <= DARK
            noise = rng.integers(0, 40, size=frame.shape, dtype=np.uint8)
            frame = np.where(dark, noise, frame).astype(np.uint8)
        pictures.append(frame)
    options = _encoder_options(codec, pattern, gop, bframes)
    try:
        _write_pyav(path, pictures, fps, codec, pix_fmt, format, options, faststart, timestamps, rotation, hflip)
    except (av.error.FFmpegError, ValueError, AttributeError) as error:  # unknown encoder or format, old PyAV
        path.unlink(missing_ok=True)
        if timestamps is not None or rotation is not None or hflip:
            raise EncoderUnavailable(f"cannot write {codec} {pix_fmt} here: {error}") from None
        if shutil.which("ffmpeg") is None:
            raise EncoderUnavailable(f"cannot write {codec} {pix_fmt} with PyAV ({error}) and the ffmpeg program is "
                                     "not found (apt-get install ffmpeg)") from None
        _write_ffmpeg(path, pictures, fps, codec, pix_fmt, format, options, faststart)
    return path


def _write_pyav(path, pictures, fps, codec, pix_fmt, format, options, faststart, timestamps, rotation, hflip):
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=format, options=container_options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = pictures[0].shape[1], pictures[0].shape[0], pix_fmt
        stream.options = options
        if rotation is not None or hflip:
            stream.set_display_rotation(rotation or 0, hflip=hflip)  # PyAV >= 18; AttributeError before
        if timestamps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)  # millisecond pts, any spacing
        for i, frame in enumerate(pictures):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if timestamps is not None:
                picture.pts, picture.time_base = round(timestamps[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_ffmpeg(path, pictures, fps, codec, pix_fmt, format, options, faststart):
    height, width = pictures[0].shape[:2]
    args = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", str(Fraction(fps).limit_denominator(1001)), "-i", "-", "-c:v", codec, "-pix_fmt", pix_fmt]
    for key, value in options.items():
        args += [f"-{'b:v' if key == 'b' else key}", value]
    args += (["-movflags", "+faststart"] if faststart else []) + (["-f", format] if format else []) + [str(path)]
    result = subprocess.run(args, input=b"".join(p.tobytes() for p in pictures), capture_output=True)
    if result.returncode:
        path.unlink(missing_ok=True)
        raise EncoderUnavailable(f"ffmpeg cannot write {codec} {pix_fmt}: {result.stderr.decode()[-300:]}")


def write_truncated_video(
    path: str | Path, num_frames: int = 40, keep_fraction: float = 0.5, **kwargs
) -> Path:
    """Write a video, then cut its file mid-stream: the header still announces ``num_frames`` frames.

    The index is written first (faststart), so the file opens and its header lies about its length, which
    is the hard case for a decoder (a cut file without its index does not even open).

    Args:
        path: Output file.
        num_frames: Frames announced by the header.
        keep_fraction: Fraction of the file's bytes kept.
        **kwargs: Passed to :func:`write_video` (width, height, fps, gop, ...).
    """
    path = write_video(path, num_frames, faststart=True, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def write_not_a_video(path: str | Path) -> Path:
    """Write a file with a video's name whose bytes are not a video (text and random bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junk = np.random.default_rng(0).integers(0, 256, size=2048, dtype=np.uint8).tobytes()
    path.write_bytes(b"this is not a video\n" + junk)
    return path


def write_cut_video(path: str | Path, num_frames: int = 40, cut: int = 13, **kwargs) -> Path:
    """Write an mp4 that starts at frame ``cut`` of a source, the way ``ffmpeg -ss T -i src.mp4 -c copy`` cuts it.

    The source's packets are copied with their timestamps moved back by ``cut`` frames: the mp4 muxer then writes
    an edit list that starts the presentation at source frame ``cut``, and the packets before it (from the key
    frame the shown frames need) stay in the file. Players show frames ``cut .. num_frames - 1``; the container
    still counts ``num_frames`` samples.

    Args:
        path: Output mp4.
        num_frames: Frames of the source (frame ``i`` spells ``i``).
        cut: First shown source frame (choose one that is not a key frame, as a cut at a time usually is not).
        **kwargs: Passed to :func:`write_video` for the source (gop, bframes, fps, ...).
    """
    path = Path(path)
    source = write_video(path.with_name(path.stem + ".source.mp4"), num_frames, **kwargs)
    with av.open(str(source)) as src, av.open(str(path), mode="w") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        shift = round(cut / (stream.average_rate * stream.time_base))  # ``cut`` frames in stream time units
        for packet in src.demux(stream):
            if packet.dts is None:  # the demuxer's end-of-stream packet
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            out.mux(packet)
    source.unlink()
    return path


def write_concatenated_ts(
    path: str | Path, segments: Sequence[tuple[int, int, int]] = ((8, 64, 48), (8, 64, 48)), fps: int = 25,
    gop: int | None = None,
) -> Path:
    """Write MPEG-TS recordings one after the other into one file, as ``cat a.ts b.ts > path`` does.

    Each recording's timestamps start again from the same value (a capture tool restarted, segments of a stream
    joined); frames spell their index in the whole file, so segment ``s`` continues where ``s - 1`` ended.

    Args:
        path: Output file (.ts).
        segments: ``(frames, width, height)`` per recording; different sizes give a frame size change mid-stream.
        fps: Frame rate of every recording.
        gop: Key frame interval (default: the encoder's, so one key frame per short recording); B frames too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data, first = b"", 0
    for number, (frames, width, height) in enumerate(segments):
        part = path.with_name(f"{path.stem}.part{number}.ts")
        with av.open(str(part), mode="w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = _encoder_options("libx264", "index", gop, 2)
            for i in range(first, first + frames):
                for packet in stream.encode(av.VideoFrame.from_ndarray(index_frame(i, width, height), "rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        data += part.read_bytes()
        part.unlink()
        first += frames
    path.write_bytes(data)
    return path


ANNOTATION_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]


def write_annotations(path: str | Path, rows: list[list[object]]) -> Path:
    """A Kinetics annotation CSV (the official columns) with ``rows``."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ANNOTATION_HEADER)
        writer.writerows(rows)
    return path

def make_dataset(
    root: str | Path,
    num_classes: int = 2,
    per_class: int = 3,
    num_frames: int = 24,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    splits: Sequence[str] = ("train", "val", "test"),
    broken: Sequence[str] = (),
    missing: int = 0,
) -> dict:
    """Write a tiny Kinetics-like dataset: ``videos/<split>/<class>/*.mp4``, ``<split>.txt``, ``classes.txt``.

    Class ``c``'s videos use bright colour ``CLASS_COLORS[c]``, so a model can learn the labels.

    Args:
        root: Dataset root (created).
        num_classes: Number of classes (<= len(CLASS_COLORS)).
        per_class: Videos per class and split.
        num_frames: Frames per video.
        width: Frame width.
        height: Frame height.
        fps: Frame rate.
        splits: Manifests to write, e.g. ``("train", "val", "test")``.
        broken: Extra broken entries appended to every split's manifest (label 0): any of ``"truncated"``,
            ``"not_a_video"``.
        missing: Number of manifest entries (label 0) whose files do not exist.

    Returns:
        ``{"root": Path, "classes": [...], "manifests": {split: Path}, "videos": {split: [(relpath, label)]}}``.
    """
    if num_classes > len(CLASS_COLORS):
        raise ValueError(f"at most {len(CLASS_COLORS)} classes")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    classes = [f"class_{c}" for c in range(num_classes)]
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    manifests, videos = {}, {}
    for split in splits:
        entries = []
        for c in range(num_classes):
            for k in range(per_class):
                rel = f"videos/{split}/{classes[c]}/{k:03d}.mp4"
                write_video(root / rel, num_frames, width, height, fps, color=CLASS_COLORS[c])
                entries.append((rel, c))
        for kind in broken:
            rel = f"videos/{split}/broken_{kind}.mp4"
            if kind == "truncated":
                write_truncated_video(root / rel, num_frames, width=width, height=height, fps=fps)
            elif kind == "not_a_video":
                write_not_a_video(root / rel)
            else:
                raise ValueError(f"unknown broken kind {kind!r}")
            entries.append((rel, 0))
        entries += [(f"videos/{split}/missing_{k}.mp4", 0) for k in range(missing)]
        manifests[split] = root / f"{split}.txt"
        manifests[split].write_text("".join(f"{rel} {label}\n" for rel, label in entries))
        videos[split] = entries
    return {"root": root, "classes": classes, "manifests": manifests, "videos": videos}
