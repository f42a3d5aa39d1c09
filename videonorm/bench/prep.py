"""``videonorm bench prep``: ``kinetics-prep trim`` throughput, and how much faster random clips read from its
short-GOP files than from libx264's default GOP.

    videonorm bench prep [--sources 20] [--clips 200] [--jobs 1,2] [--size 340x256] [--short-side 256]
                         [--workdir DIR] [--out DIR]

1. ``synth`` writes ``--sources`` full-length sources (``--size``, 30 fps, 12 s, libx264 ultrafast with its
   default GOP, keyint 250) with one 10 s segment each, like Kinetics.
2. ``trim`` cuts them at ``--short-side`` (256) with ``--gop 16`` (our default) and with ``--gop 0`` (libx264's default,
   keyint 250, scene cuts on: a 10 s clip is one or two GOPs), for each ``--jobs``: files/s and CPU s per file.
3. Random 32x2 clips (32 frames at stride 2, a 64-frame window at a random start, as the paper's recipe samples;
   planned by ``bench data``'s ``plan_clips``) are read from both sets and from the raw sources, one open per clip
   as a data loader does, by ``bench data``'s raw readers on one decoder thread: PyAV (seek to the key frame before
   the window, decode forward, RGB arrays) and, when installed, torchcodec (exact seek) and decord
   (``get_batch``): clips per wall second and per CPU second, the same planned clips for every reader.

Tables ``trim``, ``clips`` and ``ratios`` (``short_gop_vs_default``: the GOP claim) are printed and saved in
``--out`` as ``prep_<table>.csv`` and ``prep.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from videonorm.bench.common import Row, cpu_seconds, machine_info, report
from videonorm.bench.data_pipelines import RAW, Pipeline, plan_clips
from videonorm.bench.videos import key_frame_interval
from videonorm.data.dataset import ClipSpec
from videonorm.data.video import available_backends


def clips_per_second(files: list[Path], reader: Pipeline, clips: int, seed: int) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second) for ``clips`` random 32x2 windows planned by ``bench data``'s
    :func:`~videonorm.bench.data_pipelines.plan_clips`, read by one of its raw readers (which check the frame count)."""
    plan = plan_clips(files, clips, ClipSpec(window_align=2), seed)  # bench data's default clips: 32 x 2, even starts
    reader(plan[0])  # warm-up (imports, caches)
    begin, cpu = time.perf_counter(), cpu_seconds()
    for clip in plan:
        reader(clip)
    return clips / (time.perf_counter() - begin), clips / (cpu_seconds() - cpu)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``bench prep``'s arguments."""
    parser.add_argument("--sources", type=int, default=20, help="synthetic 12 s sources (one 10 s segment each)")
    parser.add_argument("--clips", type=int, default=200, help="random clips per reader and file set")
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values for trim")
    parser.add_argument("--size", default="340x256", help="source WxH")
    parser.add_argument("--short-side", type=int, default=256, help="trim's output short side")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("bench_out"), help="where the tables are saved")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark (see the module docstring)."""
    from data_prep.synth import make_dataset
    from data_prep.trim import trim
    from data_prep.writer import EncodeSettings

    width, height = (int(x) for x in args.size.split("x"))
    jobs_list = [int(j) for j in args.jobs.split(",") if j.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_prep_"))
    try:
        data = make_dataset(work / "synth", num_classes=1, per_class=args.sources, seed=0, val_fraction=0,
                            sizes=((width, height),), fps_choices=(30,), source_seconds=(12.0, 12.0),
                            segment_seconds=(10,), jobs=max(jobs_list))
        trims: list[Row] = []
        sets: dict[int, list[Path]] = {}
        for gop in (16, 0):
            for jobs in jobs_list:
                out = work / f"gop{gop}_jobs{jobs}"
                settings = EncodeSettings(short_side=args.short_side, gop=gop, threads=1 if jobs > 1 else 0)
                start, cpu = time.perf_counter(), cpu_seconds()
                summary = trim(data.csvs["train"], data.raw_dir, out, settings, jobs=jobs)
                seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
                files = sorted(out.glob("*.mp4"))
                if not summary.count("done") == len(files) == len(summary.outcomes):
                    raise RuntimeError(f"trim did not encode every source: {summary.line()}")
                trims.append({"gop": gop or "x264 default", "jobs": jobs, "files": len(files),
                              "files_per_s": len(files) / seconds, "cpu_s_per_file": cpu / len(files),
                              "mb_per_file": sum(f.stat().st_size for f in files) / len(files) / 1e6,
                              "frames_per_key": key_frame_interval(files[0])})
                sets[gop] = files
        readers = {name: RAW[name](1) for name in available_backends() if name in RAW}  # one decoder thread
        sources = sorted(data.raw_dir.glob("*.mp4"))
        clips: list[Row] = []
        ratios: list[Row] = []
        for name, reader in readers.items():
            short, long, raw = (clips_per_second(files, reader, args.clips, seed=1)
                                for files in (sets[16], sets[0], sources))
            clips.append({"reader": name, "short_gop_clips_s": short[0], "short_gop_cpu_clips_s": short[1],
                          "default_gop_clips_s": long[0], "default_gop_cpu_clips_s": long[1],
                          "raw_source_clips_s": raw[0], "raw_source_cpu_clips_s": raw[1]})
            ratios.append({"reader": name, "short_gop_vs_default": short[0] / long[0],
                           "short_gop_vs_default_cpu": short[1] / long[1]})
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    tables = {
        "trim": (trims, ["gop", "jobs", "files", "files_per_s", "cpu_s_per_file", "mb_per_file", "frames_per_key"]),
        "clips": (clips, list(clips[0])),
        "ratios": (ratios, list(ratios[0])),
    }
    titles = {
        "trim": f"trim: {args.sources} sources of 12 s at {width}x{height}, 30 fps, to short side {args.short_side}",
        "clips": f"random 32x2 clips (open + seek + decode to RGB), {args.clips} per set, one process",
        "ratios": "short GOP (kinetics-prep's 16) vs libx264's default GOP, random clips/s",
    }
    meta = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    report(args.out, "prep", tables, titles, meta)
    return 0
