"""``videonorm bench data``: how it measures. Pipelines interleaved clip by clip (medians over rounds), a full
sequential decode (the ceiling for any sampler), and a real DataLoader over ``VideoDataset`` with its workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from videonorm.bench.common import Row, cpu_seconds, median
from videonorm.bench.data_pipelines import Clip, Pipeline
from videonorm.data.dataset import ClipSpec, VideoDataset
from videonorm.data.decoders.pyav import rgb_converter


@dataclass
class _Totals:
    clips: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    decode_cpu: float = 0.0


@dataclass
class Entry:
    row: Row
    run: Pipeline
    rounds: list[_Totals] = field(default_factory=list)


def spread(rates: list[float]) -> float:
    if len(rates) < 2:
        return float("nan")
    return 100 * (max(rates) - min(rates)) / median(rates)


def measure_interleaved(entries: list[Entry], clips: list[Clip], rounds: int) -> list[Row]:
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
            "spread_pct": spread(rates),
            "cpu_ms_per_clip": cpu_ms,
            "decode_cpu_ms": decode_ms if not math.isnan(decode_ms) else cpu_ms if entry.row["repeat"] == 1 else None,
            "transform_cpu_ms": cpu_ms - decode_ms if not math.isnan(decode_ms) else None,
        })  # fmt: skip
    return rows


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
    files: Sequence[Path], backend: str, threads: int, workers: int, batch: int, clips: int, spec: ClipSpec,
    seed: int,
) -> tuple[float, float]:
    """One pass of a real DataLoader over ``VideoDataset`` (train mode) drawing ``clips`` random items.

    Returns:
        ``(wall seconds, CPU seconds of this process and the loader's worker processes)``.
    """
    dataset = VideoDataset("", [(str(f), 0) for f in files], "train", spec, decoder=backend, decoder_threads=threads)
    sampler = RandomSampler(dataset, replacement=True, num_samples=clips, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers)
    wall, cpu, seen = time.perf_counter(), cpu_seconds(), 0
    for items in loader:  # workers exit (and are waited for) when the pass ends: their CPU time is counted
        seen += len(items["video"])
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    if seen != clips:
        raise RuntimeError(f"loader gave {seen} clips, expected {clips}")
    return wall, cpu

