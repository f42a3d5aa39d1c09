"""``videonorm bench data``: how fast the training data pipeline turns video files into clips, and why.

    videonorm bench data [--videos DIR_OR_MANIFEST] [--clips 20] [--rounds 3] [--backends pyav,torchcodec,decord]
                         [--threads 1,2] [--workers 0,1,2] [--repeat 2,4] [--out bench_out]

The access pattern is training's: one random 32 x 2 window (32 frames at stride 2) per clip, the file opened
anew for each clip as a DataLoader worker does, decoded and transformed to the uint8 ``(3, 32, 224, 224)`` clip a
worker hands over (short side random in [256, 320], random crop 224, flip; float conversion and normalization
happen on the training device, a batch at a time). Without
``--videos`` it makes its own Kinetics-like files (:mod:`videonorm.bench.videos`: 10 s, 340x256, 30 fps
H.264, one set with libx264's default long GOP and one with ``kinetics-prep``'s GOP of 16), cached.

Tables (printed as Markdown, saved in ``--out`` as ``data_<table>.csv`` and all together in ``data.json``):

  * ``clips``: one process, torch at 1 thread (as in a DataLoader worker), the same planned windows for every
    row, rows interleaved clip by clip so that load from elsewhere on the machine hits all rows alike:

      - ``raw``: the decoder library alone, called directly (decord ``VideoReader.get_batch``; torchcodec
        ``VideoDecoder(seek_mode="exact").get_frames_at``; PyAV seek to the key frame before the window, decode
        forward, RGB arrays with swscale on one thread): uint8 frames, no transforms;
      - ``videonorm-decode``: :func:`videonorm.data.video.read_clip` (our decoding layer over the same library);
      - ``videonorm``: our training pipeline, what :class:`videonorm.data.dataset.VideoDataset` does for a train item:
        ``read_clip`` with ``train_clip_indices`` + ``train_transform``;
      - ``pytorchvideo``: the reference peer, ``EncodedVideo.from_path(p, decoder="pyav").get_clip(start,
        end)`` + the usual pytorchvideo Kinetics chain written with torchvision v2 (pytorchvideo's own
        transforms do not import with torchvision >= 0.17): uniform temporal subsample to 32 frames, /255,
        normalize, random short-side scale in [256, 320] (bilinear, no antialias, as pytorchvideo's
        ``short_side_scale``), random crop 224, flip, all on float;
      - ``videonorm-repeat-window`` (k clips from one decoded window, k random crops/flips: what
        ``data.repeat_aug=k`` does) and
        ``videonorm-repeat-video`` (k random windows of one video, decoded in one open): repeated
        augmentation, counted as k clips per call.

    Columns: clips/s (wall), CPU ms per clip (this process, all threads) and its split into decode and
    transforms; medians over ``--rounds``, with the rounds' spread of clips/s.
  * ``full_decode``: every frame of the files, in order (the ceiling for any sampler): frames/s, CPU ms per
    frame, and frames/s divided by the window length (a clip rate no seeking reader can beat).
  * ``loader``: a real ``DataLoader`` over ``VideoDataset`` (train mode), per backend, decoder threads and
    ``num_workers``: clips/s and CPU ms per clip (main process + the exited workers' CPU time).
  * ``stages``: where a training clip's CPU time goes with PyAV, stage by stage on the same planned clips: open +
    demux (the exact pts table), decode (seek to the key frame, decode forward), convert (the wanted frames to RGB),
    transforms (scale, crop, flip on uint8) and the hand-off to the main process (the collate into shared memory a
    DataLoader worker does; uint8 as videonorm hands over, and float32 as the float hand-off would).
  * ``cores``: how many CPU cores of this machine keep a GPU fed that consumes ``--gpu-clips-per-s`` clips/s, from
    the DataLoader's measured CPU ms per clip (1 worker, fastest backend) and from the stage sum.
  * ``ratios``: the numbers the data issue targets: ours vs the fastest raw decoder and vs pytorchvideo, short
    vs long GOP, repeated augmentation.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from videonorm.bench.common import Row, cpu_seconds, machine_info, median, report
from videonorm.bench.videos import key_frame_interval, make_bench_videos
from videonorm.data.decoders.pyav import rgb_converter
from videonorm.data.manifest import STRIDE2_LAYOUT
from videonorm.data.sampling import train_clip_indices
from videonorm.data.transforms import KINETICS_MEAN, KINETICS_STD, train_transform
from videonorm.data.video import (
    BACKENDS,
    DecoderUnavailableError,
    available_backends,
    read_clip,
    require_backend,
    video_info,
)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")

CLIP_COLUMNS = [
    "videos", "pipeline", "backend", "threads", "repeat", "clips", "clips_per_s", "spread_pct", "cpu_ms_per_clip",
    "decode_cpu_ms", "transform_cpu_ms",
]  # fmt: skip
FULL_DECODE_COLUMNS = ["videos", "backend", "threads", "frames", "frames_per_s", "cpu_ms_per_frame",
                       "window_clips_per_s"]
LOADER_COLUMNS = ["videos", "backend", "threads", "workers", "batch", "clips", "clips_per_s", "spread_pct",
                  "cpu_ms_per_clip"]
RATIO_COLUMNS = ["videos", "ratio", "value", "cpu_value", "target", "met"]
FILE_COLUMNS = ["videos", "files", "width", "height", "frames", "fps", "key_interval", "mb_per_file"]


# ---- what to read -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    """One planned training clip: the file, its frame rate, the window's frame indices and the seed of the
    clip's augmentation."""

    path: str
    fps: float
    indices: torch.Tensor  # (T,) int64
    seed: int


@dataclass
class Settings:
    """Clip shape and augmentation ranges (the paper's recipe by default)."""

    num_frames: int = 32
    sampling_rate: int = 2
    min_scale: int = 256
    max_scale: int = 320
    crop: int = 224
    window_align: int = 2  # windows start on even frames: kinetics-prep's stride-2 files then skip the odd ones


def find_videos(spec: str | os.PathLike, limit: int) -> list[Path]:
    """Video files from a folder (recursively) or a manifest (``relative/path label`` lines; paths relative to
    the manifest's folder, the dataset root).

    Args:
        spec: Folder or manifest file.
        limit: Keep at most this many (evenly spread over the sorted list).

    Raises:
        FileNotFoundError: No such folder/file, or no video in it.
    """
    from videonorm.data.manifest import read_manifest

    spec = Path(spec)
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    elif spec.is_file():
        files = [spec.parent / entry.path for entry in read_manifest(spec)]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{spec}: {len(missing)} listed files do not exist, e.g. {missing[0]}")
    else:
        raise FileNotFoundError(f"--videos {spec}: no such folder or manifest")
    if not files:
        raise FileNotFoundError(f"--videos {spec}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    if len(files) > limit:
        files = [files[round(i * (len(files) - 1) / max(limit - 1, 1))] for i in range(limit)]
    return files


def plan_clips(files: Sequence[Path], count: int, settings: Settings, seed: int) -> list[Clip]:
    """``count`` random training windows over ``files`` (cycling through the files), drawn with
    :func:`videonorm.data.sampling.train_clip_indices` from seeded generators, so every pipeline reads the same
    clips."""
    info = {str(f): video_info(f) for f in files}
    clips = []
    for i in range(count):
        path = str(files[i % len(files)])
        num_video_frames, fps = info[path]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        indices = train_clip_indices(num_video_frames, settings.num_frames, settings.sampling_rate, generator,
                                     settings.window_align)
        clips.append(Clip(path, fps, indices, seed * 1_000_003 + i))
    return clips


# ---- the pipelines: each reads one planned clip and returns (clips produced, decode CPU seconds) --------------
Pipeline = Callable[[Clip], tuple[int, float]]


def raw_decord(threads: int) -> Pipeline:
    """decord alone: ``VideoReader(path).get_batch(indices)`` as a numpy array."""
    import decord

    def run(clip: Clip) -> tuple[int, float]:
        reader = decord.VideoReader(clip.path, ctx=decord.cpu(0), num_threads=threads)
        frames = reader.get_batch(clip.indices.tolist()).asnumpy()  # (T, H, W, 3)
        _check(frames, clip)
        return 1, float("nan")

    return run


def raw_pyav(threads: int) -> Pipeline:
    """PyAV alone: seek to the key frame before the window (frame pts from the average rate: constant frame
    rate assumed), decode forward to the last wanted frame, RGB arrays (swscale on one thread)."""
    import av

    to_rgb = rgb_converter()

    def run(clip: Clip) -> tuple[int, float]:
        wanted = clip.indices.tolist()
        with av.open(clip.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO" if threads > 1 else "SLICE"
            stream.codec_context.thread_count = threads
            step = 1 / (stream.average_rate * stream.time_base)  # pts per frame
            origin = stream.start_time or 0
            container.seek(int(origin + round(wanted[0] * step)), stream=stream, backward=True)
            want, frames = set(wanted), {}
            for frame in container.decode(stream):
                index = round((frame.pts - origin) / step)
                if index in want:
                    frames[index] = to_rgb(frame)
                if index >= wanted[-1]:
                    break
        _check(np.stack([frames[i] for i in wanted if i in frames]), clip)
        return 1, float("nan")

    return run


def raw_torchcodec(threads: int) -> Pipeline:
    """torchcodec alone: ``VideoDecoder(path, seek_mode="exact").get_frames_at(indices)``, (T, H, W, 3)."""
    from torchcodec.decoders import VideoDecoder

    def run(clip: Clip) -> tuple[int, float]:
        decoder = VideoDecoder(clip.path, seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NHWC")
        _check(decoder.get_frames_at(clip.indices.tolist()).data, clip)
        return 1, float("nan")

    return run


RAW = {"pyav": raw_pyav, "torchcodec": raw_torchcodec, "decord": raw_decord}


def _check(frames: np.ndarray | torch.Tensor, clip: Clip) -> None:
    if frames.shape[0] != len(clip.indices):
        raise RuntimeError(f"{clip.path}: {frames.shape[0]} frames decoded for {len(clip.indices)} indices")


def videonorm_decode(backend: str, threads: int) -> Pipeline:
    """:func:`videonorm.data.video.read_clip` only: uint8 (T, 3, H, W)."""

    def run(clip: Clip) -> tuple[int, float]:
        frames, _ = read_clip(clip.path, lambda n: clip.indices, backend, threads)
        _check(frames, clip)
        return 1, float("nan")

    return run


def _train_indices(clip: Clip, settings: Settings) -> Callable[[int], torch.Tensor]:
    # the dataset draws the window from the frame count of the open file; a seeded generator gives the same
    # window as the plan (and as every other pipeline)
    def choose(num_video_frames: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(clip.seed)
        return train_clip_indices(num_video_frames, settings.num_frames, settings.sampling_rate, generator,
                                  settings.window_align)

    return choose


def videonorm_train(backend: str, threads: int, settings: Settings) -> Pipeline:
    """Our training pipeline, as ``VideoDataset`` runs it for a train item: read_clip + train_transform."""
    transform = train_transform(settings.min_scale, settings.max_scale, settings.crop)

    def run(clip: Clip) -> tuple[int, float]:
        torch.manual_seed(clip.seed)
        start = time.process_time()
        frames, _ = read_clip(clip.path, _train_indices(clip, settings), backend, threads)
        decode = time.process_time() - start
        out = transform(frames)  # (3, T, crop, crop) uint8
        _check_output(out, settings)
        return 1, decode

    return run


def videonorm_repeat_window(backend: str, threads: int, settings: Settings, k: int) -> Pipeline:
    """Repeated augmentation, k clips from one decoded window (k random crops/scales/flips)."""
    transform = train_transform(settings.min_scale, settings.max_scale, settings.crop)

    def run(clip: Clip) -> tuple[int, float]:
        torch.manual_seed(clip.seed)
        start = time.process_time()
        frames, _ = read_clip(clip.path, _train_indices(clip, settings), backend, threads)
        decode = time.process_time() - start
        for _ in range(k):
            _check_output(transform(frames), settings)
        return k, decode

    return run


def videonorm_repeat_video(backend: str, threads: int, settings: Settings, k: int) -> Pipeline:
    """Repeated augmentation, k random windows of one video decoded in one open, each augmented."""
    transform = train_transform(settings.min_scale, settings.max_scale, settings.crop)
    t = settings.num_frames

    def choose(clip: Clip) -> Callable[[int], torch.Tensor]:
        def indices(num_video_frames: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(clip.seed)
            draws = [train_clip_indices(num_video_frames, t, settings.sampling_rate, generator, settings.window_align)
                     for _ in range(k)]
            return torch.cat(draws)  # (k * T,); read_clip decodes each distinct frame once, in order

        return indices

    def run(clip: Clip) -> tuple[int, float]:
        torch.manual_seed(clip.seed)
        start = time.process_time()
        frames, _ = read_clip(clip.path, choose(clip), backend, threads)  # (k * T, 3, H, W)
        decode = time.process_time() - start
        for j in range(k):
            _check_output(transform(frames[j * t : (j + 1) * t]), settings)
        return k, decode

    return run


def pytorchvideo_reference(settings: Settings) -> Pipeline:
    """pytorchvideo's ``EncodedVideo`` (PyAV) ``get_clip`` + its usual Kinetics training chain in v2."""
    from pytorchvideo.data.encoded_video import EncodedVideo
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.Normalize(mean=list(KINETICS_MEAN), std=list(KINETICS_STD)),
        # pytorchvideo's RandomShortSideScale draws the size in [min, max] inclusive and interpolates
        # bilinearly without antialiasing
        v2.RandomResize(settings.min_scale, settings.max_scale + 1, antialias=False),
        v2.RandomCrop(settings.crop),
        v2.RandomHorizontalFlip(),
    ])  # fmt: skip
    window = settings.num_frames * settings.sampling_rate

    def run(clip: Clip) -> tuple[int, float]:
        torch.manual_seed(clip.seed)
        start = time.process_time()
        video = EncodedVideo.from_path(clip.path, decode_audio=False, decoder="pyav")
        start_sec = int(clip.indices[0]) / clip.fps
        frames = video.get_clip(start_sec, start_sec + window / clip.fps)["video"]  # (C, T', H, W) float 0..255
        video.close()
        decode = time.process_time() - start
        if frames is None:
            raise RuntimeError(f"{clip.path}: pytorchvideo returned no frames at {start_sec:.2f} s")
        keep = torch.linspace(0, frames.shape[1] - 1, settings.num_frames).round().long()  # UniformTemporalSubsample
        x = frames[:, keep].permute(1, 0, 2, 3) / 255.0  # (T, C, H, W)
        out = transform(x).permute(1, 0, 2, 3).contiguous()  # (C, T, crop, crop)
        _check_output(out, settings, torch.float32)
        return 1, decode

    return run


def _check_output(out: torch.Tensor, settings: Settings, dtype: torch.dtype = torch.uint8) -> None:
    """Our pipelines end in the uint8 clip a worker hands over (normalized on the device); pytorchvideo's in float."""
    expected = (3, settings.num_frames, settings.crop, settings.crop)
    if tuple(out.shape) != expected or out.dtype != dtype:
        raise RuntimeError(f"pipeline produced {tuple(out.shape)} {out.dtype}, expected {expected} {dtype}")


# ---- measuring ----------------------------------------------------------------------------------------------
@dataclass
class _Totals:
    clips: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    decode_cpu: float = 0.0


@dataclass
class _Entry:
    row: Row
    run: Pipeline
    rounds: list[_Totals] = field(default_factory=list)


def _spread(rates: list[float]) -> float:
    if len(rates) < 2:
        return float("nan")
    return 100 * (max(rates) - min(rates)) / median(rates)


def measure_interleaved(entries: list[_Entry], clips: list[Clip], rounds: int) -> list[Row]:
    """Run every entry on every planned clip, ``rounds`` times, clip by clip round-robin over the entries.

    Returns:
        One row per entry: the entry's labels plus medians over rounds.
    """
    for entry in entries:  # warm-up: imports, first-open costs, allocator
        entry.run(clips[0])
    for _ in range(rounds):
        totals = [_Totals() for _ in entries]
        for clip in clips:
            for entry, total in zip(entries, totals):
                wall, cpu = time.perf_counter(), time.process_time()
                produced, decode = entry.run(clip)
                total.wall += time.perf_counter() - wall
                total.cpu += time.process_time() - cpu
                total.decode_cpu += decode
                total.clips += produced
        for entry, total in zip(entries, totals):
            entry.rounds.append(total)
    rows = []
    for entry in entries:
        rates = [t.clips / t.wall for t in entry.rounds]
        cpu_ms = median(1000 * t.cpu / t.clips for t in entry.rounds)
        decode_ms = median(1000 * t.decode_cpu / t.clips for t in entry.rounds)
        rows.append({
            **entry.row,
            "clips": entry.rounds[0].clips,
            "clips_per_s": median(rates),
            "spread_pct": _spread(rates),
            "cpu_ms_per_clip": cpu_ms,
            "decode_cpu_ms": decode_ms if not math.isnan(decode_ms) else cpu_ms if entry.row["repeat"] == 1 else None,
            "transform_cpu_ms": cpu_ms - decode_ms if not math.isnan(decode_ms) else None,
        })  # fmt: skip
    return rows


STAGE_COLUMNS = ["videos", "hand_off", "clips", "demux_ms", "decode_ms", "convert_ms", "transforms_ms",
                 "hand_off_ms", "total_ms", "hand_off_mb_per_clip"]
CORE_COLUMNS = ["videos", "gpu_clips_per_s", "from", "cpu_ms_per_clip", "cores"]


def stage_breakdown(clips: list[Clip], settings: Settings, batch: int) -> list[Row]:
    """CPU ms per clip of each stage of a PyAV training item (see the module docstring), medians over the clips.

    The decode loop is the reader's (:class:`videonorm.data.decoders.pyav.Reader`: seek to the key frame at or before
    the first wanted frame, decode to the last one, skipping the odd frames of a stride-2 file when only even ones
    are wanted); conversion is timed apart inside it.
    """
    import av

    from videonorm.data.decoders.pyav import Reader

    transform = train_transform(settings.min_scale, settings.max_scale, settings.crop)
    to_rgb = rgb_converter()
    times: dict[str, list[float]] = {"demux": [], "decode": [], "convert": [], "transforms": []}
    outputs = []
    for clip in clips:
        start = time.process_time()
        Reader(clip.path, 1).close()
        times["demux"].append(time.process_time() - start)
        wanted = sorted(set(clip.indices.tolist()))
        convert, frames = 0.0, {}
        start = time.process_time()
        with av.open(clip.path) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.codec_context.thread_count = "SLICE", 1
            if container.metadata.get("comment") == STRIDE2_LAYOUT and all(i % 2 == 0 for i in wanted):
                stream.codec_context.skip_frame = "NONREF"  # as the reader does (videonorm.data.decoders.pyav)
            step = 1 / (stream.average_rate * stream.time_base)
            origin = stream.start_time or 0
            container.seek(int(origin + round(wanted[0] * step)), stream=stream, backward=True)
            for frame in container.decode(stream):
                index = round((frame.pts - origin) / step)
                if index in wanted:
                    c = time.process_time()
                    frames[index] = to_rgb(frame)
                    convert += time.process_time() - c
                if index >= wanted[-1]:
                    break
        times["decode"].append(time.process_time() - start - convert)
        times["convert"].append(convert)
        video = torch.from_numpy(np.stack([frames[i] for i in clip.indices.tolist()])).permute(0, 3, 1, 2)
        torch.manual_seed(clip.seed)
        start = time.process_time()
        outputs.append(transform(video))
        times["transforms"].append(time.process_time() - start)
    rows = []
    for dtype in (torch.uint8, torch.float32):
        items = [o.to(dtype) for o in outputs]
        hand_off = []
        for first in range(0, len(items) - batch + 1, batch):
            group = items[first:first + batch]
            start = time.process_time()
            # what default_collate does in a DataLoader worker: one batch tensor in shared memory
            out = torch.empty((len(group), *group[0].shape), dtype=dtype).share_memory_()
            torch.stack(group, out=out)
            hand_off.append((time.process_time() - start) / len(group))
        stages = {name: 1000 * median(values) for name, values in times.items()}
        stages["hand_off"] = 1000 * median(hand_off)
        rows.append({"hand_off": str(dtype).replace("torch.", ""), "clips": len(clips),
                     **{f"{name}_ms": value for name, value in stages.items()}, "total_ms": sum(stages.values()),
                     "hand_off_mb_per_clip": items[0].numel() * items[0].element_size() / 1e6})
    return rows


def cores_needed(stage_rows: list[Row], loader_rows: list[Row], videos: str, gpu_rates: Sequence[float]) -> list[Row]:
    """Cores that feed a GPU consuming ``gpu_rates`` clips/s: clips/s x CPU ms per clip / 1000."""
    sources = []
    loaders = [r for r in loader_rows if r["videos"] == videos and r["workers"] == 1 and r["threads"] == 1]
    if loaders:
        best = min(loaders, key=lambda r: r["cpu_ms_per_clip"])
        sources.append((f"DataLoader, 1 worker ({best['backend']})", best["cpu_ms_per_clip"]))
    uint8 = [r for r in stage_rows if r["videos"] == videos and r["hand_off"] == "uint8"]
    if uint8:
        sources.append(("stage sum (pyav, uint8 hand-off)", uint8[0]["total_ms"]))
    return [{"videos": videos, "gpu_clips_per_s": rate, "from": name, "cpu_ms_per_clip": ms, "cores": rate * ms / 1000}
            for rate in gpu_rates for name, ms in sources]


def full_decode(files: Sequence[Path], backend: str, threads: int, chunk: int) -> tuple[int, float, float]:
    """Decode every frame of ``files`` in order to RGB arrays.

    Returns:
        ``(frames, wall seconds, CPU seconds)``.
    """
    wall, cpu, frames = time.perf_counter(), time.process_time(), 0
    for path in files:
        if backend == "decord":
            import decord

            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
            for first in range(0, len(reader), chunk):
                frames += len(reader.get_batch(list(range(first, min(first + chunk, len(reader))))).asnumpy())
            del reader
        elif backend == "torchcodec":
            from torchcodec.decoders import VideoDecoder

            decoder = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NHWC")
            for first in range(0, len(decoder), chunk):
                frames += len(decoder.get_frames_in_range(first, min(first + chunk, len(decoder))).data)
            del decoder
        else:
            import av

            to_rgb = rgb_converter()
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO" if threads > 1 else "SLICE"
                stream.codec_context.thread_count = threads
                for frame in container.decode(stream):
                    to_rgb(frame)
                    frames += 1
    return frames, time.perf_counter() - wall, time.process_time() - cpu


def measure_loader(
    files: Sequence[Path], backend: str, threads: int, workers: int, batch: int, clips: int, settings: Settings,
    seed: int,
) -> tuple[float, float]:
    """One pass of a real DataLoader over ``VideoDataset`` (train mode) drawing ``clips`` random items.

    Returns:
        ``(wall seconds, CPU seconds of this process and the loader's worker processes)``.
    """
    from torch.utils.data import DataLoader, RandomSampler

    from videonorm.data.dataset import ClipSpec, VideoDataset

    clip = ClipSpec(num_frames=settings.num_frames, sampling_rate=settings.sampling_rate,
                    train_min_scale=settings.min_scale, train_max_scale=settings.max_scale, crop_size=settings.crop,
                    window_align=settings.window_align)
    dataset = VideoDataset("", [(str(f), 0) for f in files], "train", clip, decoder=backend, decoder_threads=threads)
    sampler = RandomSampler(dataset, replacement=True, num_samples=clips, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers)
    wall, cpu, seen = time.perf_counter(), cpu_seconds(), 0
    for items in loader:  # workers exit (and are waited for) when the pass ends: their CPU time is counted
        seen += len(items["video"])
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    if seen != clips:
        raise RuntimeError(f"loader gave {seen} clips, expected {clips}")
    return wall, cpu


# ---- the benchmark ------------------------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"error: unknown {what} {', '.join(unknown)}; available: {', '.join(allowed)}")
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench data`` options to ``parser``."""
    parser.add_argument("--videos", help="folder of videos or a manifest (default: make Kinetics-like test videos)")
    parser.add_argument("--max-videos", type=int, default=64, help="use at most this many of --videos")
    parser.add_argument("--num-videos", type=int, default=4, help="videos to make per GOP setting")
    parser.add_argument("--video-size", default="340x256", help="WxH of the made videos")
    parser.add_argument("--video-seconds", type=float, default=10.0, help="length of the made videos")
    parser.add_argument("--video-fps", type=int, default=30, help="frame rate of the made videos")
    parser.add_argument("--cache", help="folder for the made videos (default ~/.cache/videonorm/bench)")
    parser.add_argument("--clips", type=int, default=20, help="clips per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; tables give medians")
    parser.add_argument("--backends", help="decoder backends (default: every one that can run here)")
    parser.add_argument("--threads", default="1,2", help="decoder threads per read")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader num_workers values ('' skips the table)")
    parser.add_argument("--batch", type=int, default=4, help="DataLoader batch size")
    parser.add_argument("--loader-clips", type=int, default=32, help="clips per DataLoader pass")
    parser.add_argument("--repeat", default="2,4", help="repeated augmentation: clips per decode ('' skips)")
    parser.add_argument("--no-reference", action="store_true", help="skip the pytorchvideo reference")
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--sampling-rate", type=int, default=2)
    parser.add_argument("--min-scale", type=int, default=256)
    parser.add_argument("--max-scale", type=int, default=320)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--window-align", type=int, default=2,
                        help="clip windows start on multiples of this (data.window_align; 2: even frames only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-clips-per-s", default="550,1100",
                        help="clips/s a GPU consumes (the cores table): an H100 at 10-20%% of its bf16 peak on the "
                             "paper's I3D R50 32x224 (~180 GFLOP per training clip)")
    parser.add_argument("--out", default="bench_out", help="folder for data_*.csv and data.json")


def _file_sets(args: argparse.Namespace) -> dict[str, list[Path]]:
    if args.videos:
        return {Path(args.videos).stem or "videos": find_videos(args.videos, args.max_videos)}
    width, height = (int(x) for x in args.video_size.lower().split("x"))
    print(f"[bench data] making {args.num_videos} x 2 videos ({width}x{height}, {args.video_fps} fps, "
          f"{args.video_seconds:g} s, long and short GOP) or reusing them ...", flush=True)  # fmt: skip
    return make_bench_videos(args.cache, args.num_videos, args.video_seconds, width, height, args.video_fps)


def _describe(name: str, files: Sequence[Path]) -> Row:
    import av

    with av.open(str(files[0])) as container:
        stream = container.streams.video[0]
        width, height = stream.width, stream.height
    counts = [video_info(f) for f in files]
    return {
        "videos": name, "files": len(files), "width": width, "height": height,
        "frames": round(sum(n for n, _ in counts) / len(counts)), "fps": round(counts[0][1], 2),
        "key_interval": round(sum(key_frame_interval(f) for f in files) / len(files), 1),
        "mb_per_file": round(sum(f.stat().st_size for f in files) / len(files) / 1e6, 2),
    }  # fmt: skip


def _entries(args, backends, threads_list, repeats, settings) -> list[_Entry]:
    entries = []
    for threads in threads_list:
        for backend in backends:
            label = {"backend": backend, "threads": threads, "repeat": 1}
            entries.append(_Entry({"pipeline": "raw", **label}, RAW[backend](threads)))
            entries.append(_Entry({"pipeline": "videonorm-decode", **label}, videonorm_decode(backend, threads)))
            entries.append(_Entry({"pipeline": "videonorm", **label}, videonorm_train(backend, threads, settings)))
    if not args.no_reference:
        row = {"pipeline": "pytorchvideo", "backend": "pyav", "threads": "default", "repeat": 1}
        entries.append(_Entry(row, pytorchvideo_reference(settings)))
    for k in repeats:
        for backend in backends:
            label = {"backend": backend, "threads": threads_list[0], "repeat": k}
            entries.append(_Entry({"pipeline": "videonorm-repeat-window", **label},
                                  videonorm_repeat_window(backend, threads_list[0], settings, k)))
            entries.append(_Entry({"pipeline": "videonorm-repeat-video", **label},
                                  videonorm_repeat_video(backend, threads_list[0], settings, k)))  # fmt: skip
    return entries


def ratios(clip_rows: list[Row], loader_rows: list[Row]) -> list[Row]:
    """The ratios the data issue targets, from the ``clips`` and ``loader`` tables (single thread rows).

    ``value`` compares clips/s; ``cpu_value`` compares CPU time per clip (inverse), which other load on the
    machine disturbs less.
    """

    def pick(videos: str, pipeline: str, backend: str | None = None, repeat: int = 1) -> list[Row]:
        return [
            r for r in clip_rows
            if r["videos"] == videos and r["pipeline"] == pipeline and r["repeat"] == repeat
            and r["threads"] in (1, "default") and (backend is None or r["backend"] == backend)
        ]  # fmt: skip

    def best(rows: list[Row]) -> Row | None:
        return max(rows, key=lambda r: r["clips_per_s"]) if rows else None

    def ratio(name, a: Row | None, b: Row | None, target: float | None = None, videos: str = "") -> Row | None:
        if a is None or b is None:
            return None
        value = a["clips_per_s"] / b["clips_per_s"]
        cpu_value = b["cpu_ms_per_clip"] / a["cpu_ms_per_clip"]
        met = None if target is None else "yes" if value >= target else "no"
        shown = None if target is None else f">= {target:g}"
        return {"videos": videos, "ratio": name, "value": value, "cpu_value": cpu_value, "target": shown, "met": met}

    out: list[Row | None] = []
    sets = list(dict.fromkeys(r["videos"] for r in clip_rows))
    for videos in sets:
        ours, raw, peer = best(pick(videos, "videonorm")), best(pick(videos, "raw")), best(pick(videos, "pytorchvideo"))
        if ours and raw:
            # the data-path issue's target: the training item within 5% of the fastest raw decode of the same window
            out.append(ratio(f"videonorm ({ours['backend']}) / fastest raw decoder ({raw['backend']})", ours, raw,
                             0.95, videos))  # fmt: skip
        if ours and peer:
            out.append(ratio(f"videonorm ({ours['backend']}) / pytorchvideo EncodedVideo", ours, peer, 2.0, videos))
        repeats = sorted({r["repeat"] for r in clip_rows if r["pipeline"].startswith("videonorm-repeat")})
        for backend in dict.fromkeys(r["backend"] for r in pick(videos, "videonorm")):
            one = best(pick(videos, "videonorm", backend))
            for k in repeats:
                for pipeline in ("videonorm-repeat-window", "videonorm-repeat-video"):
                    rows = [r for r in clip_rows if r["videos"] == videos and r["pipeline"] == pipeline
                            and r["backend"] == backend and r["repeat"] == k]  # fmt: skip
                    if rows:
                        out.append(ratio(f"{pipeline} k={k} / videonorm ({backend})", rows[0], one, None, videos))
    if {"short_gop", "long_gop"} <= set(sets):
        for pipeline in ("videonorm", "raw"):
            for backend in dict.fromkeys(r["backend"] for r in pick("short_gop", pipeline)):
                short, long = best(pick("short_gop", pipeline, backend)), best(pick("long_gop", pipeline, backend))
                out.append(ratio(f"{pipeline} ({backend}): short GOP / long GOP", short, long, 1.0, "short/long"))
    for videos in dict.fromkeys(r["videos"] for r in loader_rows):
        for backend in dict.fromkeys(r["backend"] for r in loader_rows):
            rows = {r["workers"]: r for r in loader_rows
                    if r["videos"] == videos and r["backend"] == backend and r["threads"] == 1}  # fmt: skip
            if 1 in rows and 2 in rows:
                out.append(ratio(f"loader ({backend}): 2 workers / 1 worker", rows[2], rows[1], None, videos))
    return [r for r in out if r is not None]


def run(args: argparse.Namespace) -> int:
    """Run ``bench data`` with parsed ``args``; returns the exit status."""
    backends = _names(args.backends, BACKENDS, "backend") if args.backends else available_backends()
    for backend in backends:
        try:
            require_backend(backend)
        except DecoderUnavailableError as error:
            raise SystemExit(f"error: --backends {backend}: {error}") from None
    threads_list, workers_list, repeats = _ints(args.threads), _ints(args.workers), _ints(args.repeat)
    if not threads_list:
        raise SystemExit("error: --threads needs at least one value")
    settings = Settings(args.num_frames, args.sampling_rate, args.min_scale, args.max_scale, args.crop,
                        args.window_align)
    torch.set_num_threads(1)  # as in a DataLoader worker (torch sets 1 thread there)
    sets = _file_sets(args)
    meta = {"machine": machine_info(), "args": vars(args), "files": {k: [str(f) for f in v] for k, v in sets.items()}}
    print(f"[bench data] {meta['machine']['cpu']}, {meta['machine']['cores']} cores, load "
          f"{meta['machine']['load_average_1min']}; {settings.num_frames}x{settings.sampling_rate} clips, "
          f"{args.clips} per row x {args.rounds} rounds", flush=True)  # fmt: skip
    file_rows, clip_rows, full_rows, loader_rows, stage_rows = [], [], [], [], []
    window = settings.num_frames * settings.sampling_rate
    for name, files in sets.items():
        file_rows.append(_describe(name, files))
        clips = plan_clips(files, args.clips, settings, args.seed)
        entries = _entries(args, backends, threads_list, repeats, settings)
        print(f"[bench data] {name}: {len(entries)} pipelines x {args.clips} clips x {args.rounds} rounds", flush=True)
        clip_rows += [{"videos": name, **row} for row in measure_interleaved(entries, clips, args.rounds)]
        if "pyav" in backends:
            stage_rows += [{"videos": name, **row} for row in stage_breakdown(clips, settings, args.batch)]
        for threads in threads_list:
            for backend in backends:
                runs = [full_decode(files[:4], backend, threads, window) for _ in range(args.rounds)]
                frames = runs[0][0]
                rate = median(f / w for f, w, _ in runs)
                full_rows.append({
                    "videos": name, "backend": backend, "threads": threads, "frames": frames, "frames_per_s": rate,
                    "cpu_ms_per_frame": median(1000 * c / f for f, _, c in runs), "window_clips_per_s": rate / window,
                })  # fmt: skip
        if workers_list:
            print(f"[bench data] {name}: DataLoader, workers {workers_list}", flush=True)
        for threads in threads_list:
            for backend in backends:
                for workers in workers_list:
                    runs = [measure_loader(files, backend, threads, workers, args.batch, args.loader_clips, settings,
                                           args.seed + r) for r in range(args.rounds)]  # fmt: skip
                    rates = [args.loader_clips / w for w, _ in runs]
                    loader_rows.append({
                        "videos": name, "backend": backend, "threads": threads, "workers": workers,
                        "batch": args.batch, "clips": args.loader_clips, "clips_per_s": median(rates),
                        "spread_pct": _spread(rates),
                        "cpu_ms_per_clip": median(1000 * c / args.loader_clips for _, c in runs),
                    })  # fmt: skip
    meta["load_average_1min_end"] = machine_info()["load_average_1min"]
    gpu_rates = [float(x) for x in args.gpu_clips_per_s.split(",") if x.strip()]
    core_rows = [row for videos in sets for row in cores_needed(stage_rows, loader_rows, videos, gpu_rates)]
    tables = {
        "files": (file_rows, FILE_COLUMNS),
        "clips": (clip_rows, CLIP_COLUMNS),
        "full_decode": (full_rows, FULL_DECODE_COLUMNS),
        "loader": (loader_rows, LOADER_COLUMNS),
        "stages": (stage_rows, STAGE_COLUMNS),
        "cores": (core_rows, CORE_COLUMNS),
        "ratios": (ratios(clip_rows, loader_rows), RATIO_COLUMNS),
    }
    report(args.out, "data", tables, {
        "files": "videos",
        "clips": "clips: one process, torch 1 thread (medians over rounds; CPU ms = all threads of the process)",
        "full_decode": "full sequential decode (ceiling)",
        "loader": "DataLoader over VideoDataset (train)",
        "stages": "CPU ms per training clip, stage by stage (pyav, 1 thread; medians over the planned clips)",
        "cores": "CPU cores of this machine that feed one GPU consuming N clips/s",
        "ratios": "ratios (value: clips/s; cpu_value: inverse CPU ms per clip)",
    }, meta)  # fmt: skip
    return 0
