"""Benchmark: ``trim`` throughput, and how much faster random clips read from short-GOP files.

Run: ``python bench/prep_gop.py [--sources 20] [--clips 200] [--jobs 1,2] [--size 340x256]``

1. ``synth`` writes ``--sources`` full-length sources (``--size``, 30 fps, 12 s, H.264 with libx264's
   default GOP, keyint 250) with one 10 s segment each, like Kinetics.
2. ``trim`` cuts them at short side 256 with ``--gop 16`` (our default) and with ``--gop 0`` (libx264's
   default, keyint 250, scene cuts on: a 10 s clip is one or two GOPs), for each ``--jobs``: files/s.
3. Random 32x2 clips (32 frames at stride 2, a 64-frame window at a random start, as the paper's recipe
   samples) are read from both sets, one open per clip as a data loader does, with PyAV (seek to the key
   frame before the window, decode forward, RGB arrays) and decord (``get_batch``): clips/s, side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from data_prep.encode import EncodeSettings
from data_prep.synth import make_dataset
from data_prep.trim import trim
from videonorm.bench.common import cpu_name

CLIP_FRAMES, STRIDE = 32, 2


def read_clip_pyav(path: Path, indices: list[int]) -> np.ndarray:
    """Frames ``indices`` (sorted, constant frame rate) as (T, H, W, 3) uint8: one seek, then decode forward."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        step = 1 / (stream.average_rate * stream.time_base)  # pts per frame
        start_pts = int(round(indices[0] * step)) + (stream.start_time or 0)
        container.seek(start_pts, stream=stream, backward=True)
        wanted, out = set(indices), []
        for frame in container.decode(stream):
            index = int(round((frame.pts - (stream.start_time or 0)) / step))
            if index in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if index >= indices[-1]:
                break
    return np.stack(out)


def read_clip_decord(path: Path, indices: list[int]) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    return reader.get_batch(indices).asnumpy()


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return c.streams.video[0].frames


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker pools): robust on a busy machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def clips_per_second(files: list[Path], reader, clips: int, seed: int) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second) for `clips` random 32x2 clips."""
    rng = random.Random(seed)
    counts = {f: frame_count(f) for f in files}
    plan = []
    for _ in range(clips):
        f = rng.choice(files)
        start = rng.randrange(0, counts[f] - CLIP_FRAMES * STRIDE + 1)
        plan.append((f, list(range(start, start + CLIP_FRAMES * STRIDE, STRIDE))))
    reader(*plan[0])  # warm-up (imports, caches)
    begin, cpu = time.perf_counter(), cpu_seconds()
    for f, indices in plan:
        clip = reader(f, indices)
        assert clip.shape[0] == CLIP_FRAMES, (f, indices[0], clip.shape)
    return clips / (time.perf_counter() - begin), clips / (cpu_seconds() - cpu)


def key_interval(path: Path) -> float:
    with av.open(str(path)) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    return len(keys) / max(1, sum(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--clips", type=int, default=200, help="random clips per reader and encoding")
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values for trim")
    parser.add_argument("--size", default="340x256", help="source WxH")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temporary folder)")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prep_gop_"))
    try:
        print(f"machine: {os.cpu_count()} cores, {cpu_name()}; PyAV {av.__version__}")
        t0 = time.perf_counter()
        data = make_dataset(work / "synth", num_classes=1, per_class=args.sources, seed=0, val_fraction=0,
                            sizes=((width, height),), fps_choices=(30,), source_seconds=(12.0, 12.0),
                            segment_seconds=(10,), jobs=max(int(j) for j in args.jobs.split(",")))
        print(f"sources: {args.sources} x {width}x{height} @ 30 fps, 12 s, libx264 ultrafast keyint 250 "
              f"({time.perf_counter() - t0:.1f} s to render)")
        sets = {}
        for gop in (16, 0):
            for jobs in (int(j) for j in args.jobs.split(",")):
                out = work / f"gop{gop}_jobs{jobs}"
                settings = EncodeSettings(short_side=256, gop=gop, threads=1 if jobs > 1 else 0)
                t0, cpu = time.perf_counter(), cpu_seconds()
                summary = trim(data.csvs["train"], data.raw_dir, out, settings, jobs=jobs)
                seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu
                files = sorted(out.glob("*.mp4"))
                assert summary.count("done") == len(files) == len(summary.outcomes), summary.line()
                size = sum(f.stat().st_size for f in files) / len(files) / 1e6
                print(f"trim --gop {gop or '0 (x264 default)'} --jobs {jobs}: {len(files)} files of 10 s in "
                      f"{seconds:.1f} s = {len(files) / seconds:.2f} files/s, {cpu / len(files):.2f} CPU-s/file "
                      f"({size:.2f} MB/file, "
                      f"one key frame per {key_interval(files[0]):.0f} frames)")
                sets[gop] = files
        readers = {"pyav": read_clip_pyav}
        try:
            import decord  # noqa: F401

            readers["decord"] = read_clip_decord
        except ImportError:
            print("decord not installed: PyAV only")
        sources = sorted(data.raw_dir.glob("*.mp4"))
        print(f"\nrandom {CLIP_FRAMES}x{STRIDE} clips (open + seek + decode to RGB, {args.clips} clips, one process), "
              "clips per wall second / per CPU second:")
        print("| reader | trimmed, gop 16 | trimmed, x264 default GOP | speedup (wall / CPU) "
              "| raw source (12 s, ultrafast, keyint 250) |")
        print("|---|---|---|---|---|")
        for name, reader in readers.items():
            short, long, raw = (clips_per_second(files, reader, args.clips, seed=1)
                                for files in (sets[16], sets[0], sources))
            print(f"| {name} | {short[0]:.1f} / {short[1]:.1f} | {long[0]:.1f} / {long[1]:.1f} "
                  f"| {short[0] / long[0]:.2f}x / {short[1] / long[1]:.2f}x | {raw[0]:.1f} / {raw[1]:.1f} |")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
