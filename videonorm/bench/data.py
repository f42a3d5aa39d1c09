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
from collections.abc import Sequence
from pathlib import Path

import torch

from videonorm.bench.common import Row, machine_info, median, report
from videonorm.bench.data_measure import Entry, full_decode, measure_interleaved, measure_loader, spread
from videonorm.bench.data_pipelines import (
    RAW,
    find_videos,
    plan_clips,
    pytorchvideo_reference,
    videonorm_decode,
    videonorm_repeat_video,
    videonorm_repeat_window,
    videonorm_train,
)
from videonorm.bench.data_stages import CORE_COLUMNS, STAGE_COLUMNS, cores_needed, stage_breakdown
from videonorm.bench.videos import key_frame_interval, make_bench_videos
from videonorm.data.dataset import ClipSpec
from videonorm.data.video import BACKENDS, DecoderUnavailableError, available_backends, require_backend, video_info

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


def _entries(args, backends, threads_list, repeats, spec) -> list[Entry]:
    entries = []
    for threads in threads_list:
        for backend in backends:
            label = {"backend": backend, "threads": threads, "repeat": 1}
            entries.append(Entry({"pipeline": "raw", **label}, RAW[backend](threads)))
            entries.append(Entry({"pipeline": "videonorm-decode", **label}, videonorm_decode(backend, threads)))
            entries.append(Entry({"pipeline": "videonorm", **label}, videonorm_train(backend, threads, spec)))
    if not args.no_reference:
        row = {"pipeline": "pytorchvideo", "backend": "pyav", "threads": "default", "repeat": 1}
        entries.append(Entry(row, pytorchvideo_reference(spec)))
    for k in repeats:
        for backend in backends:
            label = {"backend": backend, "threads": threads_list[0], "repeat": k}
            entries.append(Entry({"pipeline": "videonorm-repeat-window", **label},
                                  videonorm_repeat_window(backend, threads_list[0], spec, k)))
            entries.append(Entry({"pipeline": "videonorm-repeat-video", **label},
                                  videonorm_repeat_video(backend, threads_list[0], spec, k)))  # fmt: skip
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
    spec = ClipSpec(num_frames=args.num_frames, sampling_rate=args.sampling_rate, train_min_scale=args.min_scale,
                    train_max_scale=args.max_scale, crop_size=args.crop, window_align=args.window_align)
    torch.set_num_threads(1)  # as in a DataLoader worker (torch sets 1 thread there)
    sets = _file_sets(args)
    meta = {"machine": machine_info(), "args": vars(args), "files": {k: [str(f) for f in v] for k, v in sets.items()}}
    print(f"[bench data] {meta['machine']['cpu']}, {meta['machine']['cores']} cores, load "
          f"{meta['machine']['load_average_1min']}; {spec.num_frames}x{spec.sampling_rate} clips, "
          f"{args.clips} per row x {args.rounds} rounds", flush=True)  # fmt: skip
    file_rows, clip_rows, full_rows, loader_rows, stage_rows = [], [], [], [], []
    window = spec.num_frames * spec.sampling_rate
    for name, files in sets.items():
        file_rows.append(_describe(name, files))
        clips = plan_clips(files, args.clips, spec, args.seed)
        entries = _entries(args, backends, threads_list, repeats, spec)
        print(f"[bench data] {name}: {len(entries)} pipelines x {args.clips} clips x {args.rounds} rounds", flush=True)
        clip_rows += [{"videos": name, **row} for row in measure_interleaved(entries, clips, args.rounds)]
        if "pyav" in backends:
            stage_rows += [{"videos": name, **row} for row in stage_breakdown(clips, spec, args.batch)]
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
                    runs = [measure_loader(files, backend, threads, workers, args.batch, args.loader_clips, spec,
                                           args.seed + r) for r in range(args.rounds)]  # fmt: skip
                    rates = [args.loader_clips / w for w, _ in runs]
                    loader_rows.append({
                        "videos": name, "backend": backend, "threads": threads, "workers": workers,
                        "batch": args.batch, "clips": args.loader_clips, "clips_per_s": median(rates),
                        "spread_pct": spread(rates),
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
