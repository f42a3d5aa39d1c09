"""``videonorm bench data``: what is measured. The planned clips (the same training windows for every pipeline) and
the pipelines that read them: each decoder library alone, our decoding layer, our training item, repeated
augmentation, and pytorchvideo's reference chain (see :mod:`videonorm.bench.data` for what each row means).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videonorm.data.dataset import ClipSpec
from videonorm.data.decoders.pyav import rgb_converter
from videonorm.data.sampling import train_clip_indices
from videonorm.data.transforms import KINETICS_MEAN, KINETICS_STD
from videonorm.data.video import read_clip, video_info

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")


@dataclass(frozen=True)
class Clip:
    """One planned training clip: the file, its frame rate, the window's frame indices and the seed of the
    clip's augmentation."""

    path: str
    fps: float
    indices: torch.Tensor  # (T,) int64
    seed: int


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


def plan_clips(files: Sequence[Path], count: int, spec: ClipSpec, seed: int) -> list[Clip]:
    """``count`` random training windows over ``files`` (cycling through the files), drawn with
    :func:`videonorm.data.sampling.train_clip_indices` from seeded generators, so every pipeline reads the same
    clips."""
    info = {str(f): video_info(f) for f in files}
    clips = []
    for i in range(count):
        path = str(files[i % len(files)])
        num_video_frames, fps = info[path]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        indices = train_clip_indices(num_video_frames, spec.num_frames, spec.sampling_rate, generator,
                                     spec.window_align)
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


def _train_indices(clip: Clip, spec: ClipSpec) -> Callable[[int], torch.Tensor]:
    # the dataset draws the window from the frame count of the open file; a seeded generator gives the same
    # window as the plan (and as every other pipeline)
    def choose(num_video_frames: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(clip.seed)
        return train_clip_indices(num_video_frames, spec.num_frames, spec.sampling_rate, generator,
                                  spec.window_align)

    return choose


def videonorm_train(backend: str, threads: int, spec: ClipSpec) -> Pipeline:
    """Our training pipeline, as ``VideoDataset`` runs it for a train item: read_clip + train_transform (one
    augmentation of one decoded window)."""
    return videonorm_repeat_window(backend, threads, spec, 1)


def videonorm_repeat_window(backend: str, threads: int, spec: ClipSpec, k: int) -> Pipeline:
    """Repeated augmentation, k clips from one decoded window (k random crops/scales/flips); k = 1 is the training
    item."""
    transform = spec.transforms("train")[0]

    def run(clip: Clip) -> tuple[int, float]:
        torch.manual_seed(clip.seed)
        start = time.process_time()
        frames, _ = read_clip(clip.path, _train_indices(clip, spec), backend, threads)
        decode = time.process_time() - start
        for _ in range(k):
            _check_output(transform(frames), spec)  # (3, T, crop, crop) uint8
        return k, decode

    return run


def videonorm_repeat_video(backend: str, threads: int, spec: ClipSpec, k: int) -> Pipeline:
    """Repeated augmentation, k random windows of one video decoded in one open, each augmented."""
    transform = spec.transforms("train")[0]
    t = spec.num_frames

    def choose(clip: Clip) -> Callable[[int], torch.Tensor]:
        def indices(num_video_frames: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(clip.seed)
            draws = [train_clip_indices(num_video_frames, t, spec.sampling_rate, generator, spec.window_align)
                     for _ in range(k)]
            return torch.cat(draws)  # (k * T,); read_clip decodes each distinct frame once, in order

        return indices

    def run(clip: Clip) -> tuple[int, float]:
        torch.manual_seed(clip.seed)
        start = time.process_time()
        frames, _ = read_clip(clip.path, choose(clip), backend, threads)  # (k * T, 3, H, W)
        decode = time.process_time() - start
        for j in range(k):
            _check_output(transform(frames[j * t : (j + 1) * t]), spec)
        return k, decode

    return run


def pytorchvideo_reference(spec: ClipSpec) -> Pipeline:
    """pytorchvideo's ``EncodedVideo`` (PyAV) ``get_clip`` + its usual Kinetics training chain in v2."""
    from pytorchvideo.data.encoded_video import EncodedVideo
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.Normalize(mean=list(KINETICS_MEAN), std=list(KINETICS_STD)),
        # pytorchvideo's RandomShortSideScale draws the size in [min, max] inclusive and interpolates
        # bilinearly without antialiasing
        v2.RandomResize(spec.train_min_scale, spec.train_max_scale + 1, antialias=False),
        v2.RandomCrop(spec.crop_size),
        v2.RandomHorizontalFlip(),
    ])  # fmt: skip
    window = spec.num_frames * spec.sampling_rate

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
        keep = torch.linspace(0, frames.shape[1] - 1, spec.num_frames).round().long()  # UniformTemporalSubsample
        x = frames[:, keep].permute(1, 0, 2, 3) / 255.0  # (T, C, H, W)
        out = transform(x).permute(1, 0, 2, 3).contiguous()  # (C, T, crop, crop)
        _check_output(out, spec, torch.float32)
        return 1, decode

    return run


def _check_output(out: torch.Tensor, spec: ClipSpec, dtype: torch.dtype = torch.uint8) -> None:
    """Our pipelines end in the uint8 clip a worker hands over (normalized on the device); pytorchvideo's in float."""
    expected = (3, spec.num_frames, spec.crop_size, spec.crop_size)
    if tuple(out.shape) != expected or out.dtype != dtype:
        raise RuntimeError(f"pipeline produced {tuple(out.shape)} {out.dtype}, expected {expected} {dtype}")

