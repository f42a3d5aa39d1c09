"""Memory growth of many decodes of one clip, per video backend: does a decoder leak?

    python scripts/decode_memory.py [--video FILE] [--decodes 2000] [--backends pyav,torchcodec,decord]

Each backend runs in a fresh process: 50 warm-up decodes (imports, codec and allocator pools), the resident set
size (RSS; on Linux from /proc, elsewhere the peak), then ``--decodes`` decodes of the same 32 x 2 window through
:func:`videonorm.data.video.read_clip` (the file opened anew each time, as a DataLoader worker does), RSS again.
Without ``--video`` it uses the first short-GOP video of ``videonorm bench data`` (340x256, 30 fps, 10 s; made
and cached on first use).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

WARM_UP = 50


def rss_mb() -> float:
    """Resident set size now (Linux); elsewhere the peak so far, which a leak raises as well."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KB on other Unixes
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def child(backend: str, video: str, decodes: int) -> dict:
    import torch

    from videonorm.data.video import read_clip

    torch.set_num_threads(1)  # as in a DataLoader worker
    window = torch.arange(100, 164, 2)
    for _ in range(WARM_UP):
        read_clip(video, lambda n: window, backend)
    gc.collect()
    before, start = rss_mb(), time.perf_counter()
    for _ in range(decodes):
        frames, _ = read_clip(video, lambda n: window, backend)
        del frames
    seconds = time.perf_counter() - start
    gc.collect()
    after = rss_mb()
    return {"backend": backend, "decodes": decodes, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "growth_mb": round(after - before, 1), "kb_per_1000": round(1024 * (after - before) / decodes * 1000, 1),
            "clips_per_s": round(decodes / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="video file (default: a videonorm bench data video)")
    parser.add_argument("--decodes", type=int, default=2000)
    parser.add_argument("--backends", help="comma-separated (default: every backend that can run here)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.video, args.decodes)))
        return 0
    from videonorm.data.video import available_backends, require_backend

    video = args.video
    if video is None:
        from videonorm.bench.videos import make_bench_videos

        video = str(make_bench_videos()["short_gop"][0])
    backends = args.backends.split(",") if args.backends else available_backends()
    print(f"{args.decodes} decodes of frames 100..162 step 2 of {video}")
    print("| backend | decodes | RSS before (MB) | RSS after (MB) | growth (MB) | KB per 1000 decodes | clips/s |")
    print("|---|---|---|---|---|---|---|")
    for backend in backends:
        require_backend(backend)
        out = subprocess.run([sys.executable, __file__, "--child", backend, "--video", video, "--decodes",
                              str(args.decodes)], capture_output=True, text=True, env=os.environ)
        if out.returncode:
            raise SystemExit(f"error: {backend}: {out.stderr.strip().splitlines()[-1]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
