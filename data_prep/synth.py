"""A small synthetic Kinetics: official annotation CSVs plus full-length raw source videos.

Usage::

    kinetics-prep synth OUT_DIR --classes 4 --per-class 8 [--seed 0] [--val-fraction 0.25] [--test-fraction 0]
        [--jobs N]

Writes, in exactly the layout of an official release plus a download::

    OUT_DIR/annotations/train.csv      label,youtube_id,time_start,time_end,split
    OUT_DIR/annotations/validate.csv
    OUT_DIR/annotations/test.csv       with --test-fraction > 0 (labelled, like Kinetics-400's test split)
    OUT_DIR/raw/{youtube_id}.mp4       full sources, longer than their segments

Each class is a *motion* of a layer of random shapes over a random static, smooth, grainy background:
``move_left``/``right``/``up``/``down``, ``rotate_cw``/``ccw`` (about the frame centre), ``zoom_in``/``out``,
and ``*_fast`` variants at twice the speed (speeds jitter +-15%, so slow and fast never overlap even per
frame across 24/25/30 fps). Opposite motions are exact time reverses of each other (same seed: the
frames of ``move_left`` reversed are the frames of ``move_right``) and zoom runs symmetrically around
scale 1, so every single frame of every class comes from the same appearance distribution: a 3D ConvNet
can learn the classes, a single frame cannot. Sources vary in fps (24/25/30), size
(96x72 .. 160x120 by default) and length (4-5 s), with a 2-3 s segment inside (whole seconds, like
Kinetics). YouTube ids are fake 11-character base64url strings. The same seed gives the same dataset;
reruns skip existing sources.

Python API: :func:`make_dataset` (used by the demo and tests), :func:`render` (frames in memory),
:func:`write_video` (encode frames to a file, e.g. odd test sources: webm, rotated, with audio).
"""

from __future__ import annotations

import argparse
import base64
import functools
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data_prep.errors import InputError
from data_prep.outputs import check_output_folder
from data_prep.parallel import parallel_map
from data_prep.report import SKIPPED, Outcome, Summary, attempt
from data_prep.runner import run_step
from videonorm.commands import float_in, int_in
from videonorm.files import atomic_path, csv_text, remove_stale_partials, write_text_atomic


@dataclass(frozen=True)
class Motion:
    """A class's motion: ``kind`` in translate/rotate/zoom; (dx, dy) direction or sign; speed."""

    kind: str
    dx: float
    dy: float
    speed: float


_SLOW = {"translate": 0.6, "rotate": 45.0, "zoom": 0.2}  # units/s (unit = half the short side), deg/s, log-scale/s
_BASE = {
    "move_left": ("translate", -1, 0), "move_right": ("translate", 1, 0),
    "move_up": ("translate", 0, -1), "move_down": ("translate", 0, 1),
    "rotate_cw": ("rotate", 1, 0), "rotate_ccw": ("rotate", -1, 0),
    "zoom_in": ("zoom", 1, 0), "zoom_out": ("zoom", -1, 0),
}
MOTIONS: dict[str, Motion] = {
    **{name: Motion(k, dx, dy, _SLOW[k]) for name, (k, dx, dy) in _BASE.items()},
    **{f"{name}_fast": Motion(k, dx, dy, 2 * _SLOW[k]) for name, (k, dx, dy) in _BASE.items()},
}
CLASS_NAMES: tuple[str, ...] = tuple(MOTIONS)  # first K are used for K classes
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((96, 72), (128, 96), (160, 120), (128, 72), (160, 90))
_PERIOD = 4.0  # the shape layer repeats every 4 units (2 short sides), so motion never runs out of shapes
_OVERSAMPLE = 2  # layer pixels per frame pixel at scale 1: zooming in stays sharp enough
_JITTER = 0.15
_CHUNK = 32  # frames rendered at once (bounds memory for big frames)


def _shape_layer(rng: np.random.Generator, size: int, px_per_unit: float) -> np.ndarray:
    """A periodic (toroidal) RGBA layer of random grainy ellipses and rectangles; (size, size, 4) uint8."""
    layer = np.zeros((size, size, 4), np.uint8)
    grain = rng.integers(-24, 25, (size, size, 3))
    # 28-40 shapes per period: every crop shows several moving shapes. With 8-14, some 64 px demo crops held
    # none, and no width-8 I3D got above chance on left/right within 12 epochs; with 28-40 all did.
    for _ in range(int(rng.integers(28, 40))):
        cx, cy = rng.uniform(0, size, 2)
        a, b = rng.uniform(0.15, 0.4, 2) * px_per_unit
        phi = rng.uniform(0, np.pi)
        r = int(np.ceil(max(a, b) * 1.5)) + 1  # bounding box; indices wrap around the period
        ys, xs = np.arange(int(cy) - r, int(cy) + r + 1), np.arange(int(cx) - r, int(cx) + r + 1)
        dy, dx = (ys - cy)[:, None], (xs - cx)[None, :]
        u = dx * np.cos(phi) + dy * np.sin(phi)
        v = -dx * np.sin(phi) + dy * np.cos(phi)
        inside = (u / a) ** 2 + (v / b) ** 2 < 1 if rng.random() < 0.5 else (np.abs(u) < a) & (np.abs(v) < b)
        box = np.ix_(ys % size, xs % size)
        patch = layer[box]
        patch[inside, :3] = np.clip(rng.integers(0, 256, 3) + grain[box][inside], 0, 255)
        patch[inside, 3] = 255
        layer[box] = patch
    return layer


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Static textured background: smooth colour noise around a random tint plus fine grain; (H, W, 3) uint8.

    Lower contrast than the shapes, so the moving layer is what stands out.
    """
    coarse = rng.uniform(-48, 48, (height // 12 + 2, width // 12 + 2, 3)) + rng.uniform(64, 192, 3)
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    smooth = ((1 - wy) * ((1 - wx) * coarse[y0][:, x0] + wx * coarse[y0][:, x0 + 1])
              + wy * ((1 - wx) * coarse[y0 + 1][:, x0] + wx * coarse[y0 + 1][:, x0 + 1]))  # bilinear upsampling
    return np.clip(smooth + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(np.uint8)


def _affine(motion: Motion, tc: np.ndarray, speed: float) -> tuple[np.ndarray, ...]:
    """Coefficients (a, b, c, d, e, f), each (T, 1, 1), mapping frame (u, v) to layer coordinates.

    U = a u + b v + c, V = d u + e v + f (units), at times ``tc`` relative to the clip's middle. The layer
    is drawn at the mapped place, so content moves by the inverse map: translate by +velocity, rotate
    clockwise on screen, zoom in when the scale grows. Flipping the sign of the motion equals flipping the
    sign of ``tc``: opposite classes are exact time reverses of each other.
    """
    tc = tc[:, None, None]
    one, zero = np.ones_like(tc), np.zeros_like(tc)
    if motion.kind == "translate":
        return one, zero, -motion.dx * speed * tc, zero, one, -motion.dy * speed * tc
    if motion.kind == "rotate":
        theta = np.deg2rad(motion.dx * speed * tc)  # y points down: positive angle turns clockwise on screen
        c, s = np.cos(theta), np.sin(theta)
        return c, s, zero, -s, c, zero
    scale = np.exp(motion.dx * speed * tc)  # symmetric around 1 at the middle frame
    return 1 / scale, zero, zero, zero, 1 / scale, zero


def render(class_name: str, num_frames: int, fps: float, width: int, height: int, seed: int,
           speed_factor: float = 1.0) -> Iterator[np.ndarray]:
    """Frames of one synthetic video, in chunks of up to 32: each ``(T, H, W, 3)`` uint8 RGB.

    Args:
        class_name: one of :data:`CLASS_NAMES`.
        num_frames: frames to render.
        fps: frame rate (motion speeds are per second).
        width: frame width.
        height: frame height.
        seed: content seed (background, shapes, layer offset).
        speed_factor: multiplies the class's speed (the dataset jitters it by +-15%).
    """
    motion = MOTIONS[class_name]
    rng = np.random.default_rng(seed)
    unit = min(width, height) / 2  # pixels per unit
    px = unit * _OVERSAMPLE  # layer pixels per unit
    size = int(round(_PERIOD * px))
    layer = _shape_layer(rng, size, px).reshape(-1, 4)  # flat: one gather per pixel
    background = _background(rng, width, height)
    # whole periods added to the random offset change nothing on screen but keep layer coordinates positive,
    # so truncation to int is a floor
    offset = (rng.uniform(0, _PERIOD, 2) + 64 * _PERIOD).astype(np.float32)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (u + 0.5 - width / 2) / unit, (v + 0.5 - height / 2) / unit  # frame coords in units, centred
    for first in range(0, num_frames, _CHUNK):
        # seconds from the middle frame; (i - (n-1)/2) is exact, so frame i and frame n-1-i get t and -t exactly
        tc = (np.arange(first, min(first + _CHUNK, num_frames)) - (num_frames - 1) / 2) / fps
        a, b, c, d, e, f = (x.astype(np.float32) for x in _affine(motion, tc, motion.speed * speed_factor))
        ix = ((a * u + b * v + (c + offset[0])) * np.float32(px)).astype(np.int32) % size  # (T, H, W)
        iy = ((d * u + e * v + (f + offset[1])) * np.float32(px)).astype(np.int32) % size
        rgba = layer[iy * size + ix]  # (T, H, W, 4)
        yield np.where(rgba[..., 3:] > 0, rgba[..., :3], background)


def write_video(path: Path | str, frames: Iterable[np.ndarray], fps: float | Fraction, *, codec: str = "libx264",
                options: dict[str, str] | None = None, rotation: int = 0, audio_rate: int | None = None,
                container_format: str | None = None) -> int:
    """Encode RGB frames to a video file (written atomically), e.g. a test source.

    Args:
        path: output file; the container follows its extension unless ``container_format`` is given.
        frames: ``(H, W, 3)`` uint8 arrays, or ``(T, H, W, 3)`` chunks as :func:`render` yields.
        fps: frame rate.
        codec: video encoder (``libx264``, ``libvpx-vp9``, ...); pixel format yuv420p.
        options: encoder options (default for libx264: ``preset=ultrafast``, ``crf=18``).
        rotation: display rotation in degrees counter-clockwise stored as metadata (phone videos).
        audio_rate: also write this many seconds' worth of a 440 Hz tone as AAC (mono) if given.
        container_format: FFmpeg muxer name (default: from the extension).

    Returns:
        Number of frames written.
    """
    path = Path(path)
    if options is None:
        options = {"preset": "ultrafast", "crf": "18"} if codec == "libx264" else {}
    with atomic_path(path) as tmp:
        fmt = container_format or path.suffix.lstrip(".").replace("mkv", "matroska")
        with av.open(str(tmp), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
            if rotation:
                stream.set_display_rotation(rotation)
            audio = out.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
            count = 0
            for chunk in frames:
                for rgb in (chunk if chunk.ndim == 4 else chunk[None]):
                    if count == 0:
                        stream.height, stream.width = rgb.shape[:2]
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    frame.pts = count
                    count += 1
                    out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
            if audio is not None:
                samples = round(count / float(fps) * audio_rate)
                tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(samples) / audio_rate)).astype(np.float32)
                for start in range(0, samples, 1024):
                    frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
                    frame.sample_rate, frame.pts = audio_rate, start
                    out.mux(audio.encode(frame))
                out.mux(audio.encode(None))
    return count


def _encode_source(path: Path, class_name: str, num_frames: int, fps: int, width: int, height: int,
                   seed: int, speed_factor: float) -> None:
    """Render and encode one raw source like a YouTube file: H.264, long GOP (libx264's default)."""
    write_video(path, render(class_name, num_frames, fps, width, height, seed, speed_factor), fps)


@dataclass(frozen=True)
class _Source:
    youtube_id: str
    label: str
    split: str
    fps: int
    width: int
    height: int
    num_frames: int
    time_start: int
    time_end: int
    seed: int
    speed_factor: float


def _make_source(raw_dir: Path, src: _Source) -> Outcome:
    work = functools.partial(_encode_source, raw_dir / f"{src.youtube_id}.mp4", src.label, src.num_frames,
                             src.fps, src.width, src.height, src.seed, src.speed_factor)
    return attempt(src.youtube_id, {}, work)


def _youtube_id(rng: np.random.Generator) -> str:
    return base64.urlsafe_b64encode(rng.bytes(9)).decode()[:11]


def _split_sizes(per_class: int, fractions: Sequence[float]) -> list[int]:
    """Videos per class in each held-out split: at least one where the fraction is > 0, and one left to train."""
    sizes = []
    for fraction in fractions:
        n = round(per_class * fraction)
        if fraction > 0:
            n = max(n, 1)
        sizes.append(min(n, per_class - 1 - sum(sizes)) if per_class >= 2 else 0)
    return sizes


def _plan(num_classes: int, per_class: int, seed: int, val_fraction: float, sizes: Sequence[tuple[int, int]],
          fps_choices: Sequence[int], source_seconds: tuple[float, float],
          segment_seconds: Sequence[int], speed: float = 1.0, test_fraction: float = 0.0) -> list[_Source]:
    rng = np.random.default_rng(seed)
    n_val, n_test = _split_sizes(per_class, (val_fraction, test_fraction))
    ids: set[str] = set()
    plan = []
    for label in CLASS_NAMES[:num_classes]:
        for i in range(per_class):
            youtube_id = _youtube_id(rng)
            while youtube_id in ids:
                youtube_id = _youtube_id(rng)
            ids.add(youtube_id)
            fps = int(rng.choice(fps_choices))
            width, height = sizes[int(rng.integers(len(sizes)))]
            seg = int(rng.choice(segment_seconds))
            length = max(float(rng.uniform(*source_seconds)), seg)
            start = int(rng.integers(0, math.floor(length - seg) + 1))
            split = "validate" if i < n_val else "test" if i < n_val + n_test else "train"
            plan.append(_Source(youtube_id, label, split, fps, width, height,
                                round(length * fps), start, start + seg, int(rng.integers(2**62)),
                                speed * float(rng.uniform(1 - _JITTER, 1 + _JITTER))))
    return plan


@dataclass(frozen=True)
class SynthDataset:
    """What :func:`make_dataset` wrote.

    Args:
        root: the output folder.
        annotations_dir: folder with ``train.csv``, ``validate.csv`` (and ``test.csv``).
        raw_dir: folder with the raw sources.
        classes: class names used (sorted, as ``classes.txt`` will list them).
        csvs: split -> annotation CSV.
        summary: what was rendered / skipped / failed.
    """

    root: Path
    annotations_dir: Path
    raw_dir: Path
    classes: list[str]
    csvs: dict[str, Path]
    summary: Summary


def make_dataset(out_dir: Path | str, num_classes: int = 4, per_class: int = 8, seed: int = 0, *,
                 val_fraction: float = 0.25, test_fraction: float = 0.0,
                 sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
                 fps_choices: Sequence[int] = (24, 25, 30), source_seconds: tuple[float, float] = (4.0, 5.0),
                 segment_seconds: Sequence[int] = (2, 3), speed: float = 1.0, jobs: int = 1) -> SynthDataset:
    """Write a synthetic dataset in the official Kinetics layout (see the module docstring).

    Args:
        out_dir: output folder (``annotations/`` and ``raw/`` inside).
        num_classes: number of motion classes (at most ``len(CLASS_NAMES)``).
        per_class: videos per class, over all splits.
        seed: seed of everything (same seed, same dataset).
        val_fraction: share of each class's videos in ``validate`` (at least one if > 0 and per_class >= 2).
        test_fraction: share of each class's videos in ``test`` (the same rule; 0: no test split).
        sizes: (width, height) choices of the sources (even numbers).
        fps_choices: frame-rate choices.
        source_seconds: range of source lengths.
        segment_seconds: choices of segment lengths (whole seconds, <= the shortest source).
        speed: multiplies every class's speed (the demo's short, low-resolution clips want faster motion).
        jobs: worker processes.

    Returns:
        Paths, classes and the render summary.
    """
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise InputError(f"--classes must be 1..{len(CLASS_NAMES)}, got {num_classes}")
    if per_class < 1:
        raise InputError(f"--per-class must be >= 1, got {per_class}")
    if any(w % 2 or h % 2 for w, h in sizes):
        raise InputError(f"sizes must be even (yuv420p): {list(sizes)}")
    root = Path(out_dir)
    check_output_folder(root, "output folder")
    annotations_dir, raw_dir = root / "annotations", root / "raw"
    if speed <= 0:
        raise InputError(f"--speed must be > 0, got {speed}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} must be in [0, 1) and "
                         "leave videos to train on")
    plan = _plan(num_classes, per_class, seed, val_fraction, sizes, fps_choices, source_seconds, segment_seconds,
                 speed, test_fraction)
    csvs = {}
    for split in ("train", "validate", "test") if test_fraction > 0 else ("train", "validate"):
        rows = sorted(((s.label, s.youtube_id, s.time_start, s.time_end, s.split) for s in plan if s.split == split))
        csvs[split] = annotations_dir / f"{split}.csv"
        write_text_atomic(csvs[split], csv_text(("label", "youtube_id", "time_start", "time_end", "split"), rows))
    raw_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(raw_dir)
    summary = Summary("synth", None, ("youtube_id",))
    todo = []
    for src in plan:
        if (raw_dir / f"{src.youtube_id}.mp4").exists():
            summary.add(Outcome(src.youtube_id, SKIPPED))
        else:
            todo.append(src)
    for outcome in parallel_map(functools.partial(_make_source, raw_dir), todo, jobs=jobs, desc="synth"):
        summary.add(outcome)
    return SynthDataset(root, annotations_dir, raw_dir, sorted(CLASS_NAMES[:num_classes]), csvs, summary)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``synth``'s arguments to ``parser``."""
    parser.add_argument("out", type=Path, help="output folder (annotations/ and raw/ are written inside)")
    parser.add_argument("--classes", type=int_in(1, len(CLASS_NAMES)), default=4,
                        help=f"number of motion classes (1..{len(CLASS_NAMES)})")
    parser.add_argument("--per-class", type=int_in(1), default=8, help="videos per class (train + validate + test)")
    parser.add_argument("--seed", type=int_in(0), default=0, help="random seed (numpy's generators take >= 0)")
    fraction = float_in(0, 1, include_high=False)
    parser.add_argument("--val-fraction", "--split-fraction", dest="val_fraction", type=fraction, default=0.25,
                        help="share of each class in the validate split")
    parser.add_argument("--test-fraction", type=fraction, default=0.0,
                        help="share of each class in a test split (0: none; like Kinetics-400's labelled test split)")
    parser.add_argument("--speed", type=float_in(0, include_low=False), default=1.0,
                        help="multiply every class's motion speed")
    parser.add_argument("--jobs", type=int_in(1), default=1, help="parallel worker processes")


def run(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments; prints the summary line."""
    data = make_dataset(args.out, args.classes, args.per_class, args.seed, val_fraction=args.val_fraction,
                        test_fraction=args.test_fraction, speed=args.speed, jobs=args.jobs)
    print(data.summary.line() + f" -> {data.raw_dir}; annotations in {data.annotations_dir}")
    return 0


if __name__ == "__main__":  # python -m data_prep.synth: the same as kinetics-prep synth
    sys.exit(run_step(sys.modules[__name__]))
