"""Quick training-pipeline throughput: decode + transforms, one process, clips/s per backend.

    python bench/data_quick.py [--clips 30] [--video path.mp4]

Without ``--video`` it writes a 10 s, 340x256, 30 fps H.264 clip (x264 defaults: crf 23, keyframe every 250,
B-frames; moving textured content) to a temp dir. Every row reads random 32 x 2 windows of the same file and
applies the paper's training transforms (short side in [256, 320], crop 224, flip, normalize), with one torch
thread as in a DataLoader worker:

  * ``videonorm/<backend>``: ``videonorm.video.read_clip`` + ``videonorm.transforms.train_transform``;
  * ``pytorchvideo/pyav``: ``EncodedVideo.from_path(p, decoder="pyav").get_clip(start, end)`` (float
    (C, T, H, W)) + the equivalent of pytorchvideo's usual chain with torchvision v2 (pytorchvideo's own
    transforms do not import with current torchvision): subsample 32 frames, /255, normalize, short-side
    scale, random crop, flip, on float as that chain does.

``videonorm bench data`` is the full benchmark; this script is the small reference for the data issue.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torchvision.transforms import v2

from videonorm.sampling import train_clip_indices
from videonorm.transforms import KINETICS_MEAN, KINETICS_STD, train_transform
from videonorm.video import read_clip

NUM_FRAMES, SAMPLING_RATE = 32, 2


def write_bench_video(path: Path, seconds: int = 10, width: int = 340, height: int = 256, fps: int = 30) -> Path:
    """A textured scene panning over time plus a moving bright disk, encoded with x264's defaults."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height * 2, width * 2, 3)).astype(np.float32)
    for _ in range(3):  # cheap blur: natural-looking blobs instead of white noise
        texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1) + np.roll(texture, (1, 1), (0, 1))) / 4
    texture = ((texture - texture.min()) / np.ptp(texture) * 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            dy, dx = int(20 * math.sin(i / 40)) + height // 2, (i * 2) % width
            frame = texture[dy : dy + height, dx : dx + width].copy()
            cy, cx = height / 2 + 60 * math.sin(i / 15), width / 2 + 100 * math.cos(i / 20)
            frame[(yy - cy) ** 2 + (xx - cx) ** 2 < 30**2] = (250, 200, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ours(path: Path, backend: str):
    transform = train_transform()

    def clip():
        t0 = time.perf_counter()
        frames, _ = read_clip(path, lambda n: train_clip_indices(n, NUM_FRAMES, SAMPLING_RATE), backend)
        t1 = time.perf_counter()
        out = transform(frames)
        return out, t1 - t0, time.perf_counter() - t1

    return clip


def pytorchvideo_pyav(path: Path):
    from pytorchvideo.data.encoded_video import EncodedVideo

    transform = v2.Compose([
        v2.Normalize(mean=list(KINETICS_MEAN), std=list(KINETICS_STD)),
        v2.RandomResize(256, 321, antialias=True),
        v2.RandomCrop(224),
        v2.RandomHorizontalFlip(),
    ])  # fmt: skip

    def clip():
        t0 = time.perf_counter()
        video = EncodedVideo.from_path(str(path), decode_audio=False, decoder="pyav")
        window = NUM_FRAMES * SAMPLING_RATE / 30  # seconds; the file is 30 fps
        start = float(torch.rand(())) * max(float(video.duration) - window, 0)
        frames = video.get_clip(start, start + window)["video"]  # (C, T, H, W) float 0..255
        video.close()
        t1 = time.perf_counter()
        keep = torch.linspace(0, frames.shape[1] - 1, NUM_FRAMES).long()  # UniformTemporalSubsample
        x = frames[:, keep].permute(1, 0, 2, 3) / 255.0  # (T, C, H, W)
        out = transform(x).permute(1, 0, 2, 3).contiguous()  # (C, T, 224, 224)
        return out, t1 - t0, time.perf_counter() - t1

    return clip


def measure(pipelines: dict, n: int) -> dict[str, tuple[float, float, float]]:
    """clips/s, decode ms/clip and transform ms/clip per pipeline, clips interleaved round-robin so that
    load from other processes on the machine hits every pipeline alike."""
    spent = {name: [0.0, 0.0, 0.0] for name in pipelines}  # total, decode, transform
    for clip in pipelines.values():
        out, _, _ = clip()  # warm-up (and shape check)
        assert out.shape == (3, NUM_FRAMES, 224, 224), out.shape
    for _ in range(n):
        for name, clip in pipelines.items():
            start = time.perf_counter()
            _, decode, transform = clip()
            spent[name][0] += time.perf_counter() - start
            spent[name][1] += decode
            spent[name][2] += transform
    return {name: (n / total, 1000 * dec / n, 1000 * tra / n) for name, (total, dec, tra) in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=30, help="clips per row")
    parser.add_argument("--video", type=Path, help="video to read (default: write a 10 s 340x256 30 fps clip)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or write_bench_video(Path(tmp) / "bench_340x256_30fps_10s.mp4")
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            print(f"{path.name}: {s.width}x{s.height}, {s.frames} frames, {float(s.average_rate):.2f} fps, "
                  f"{path.stat().st_size / 1e6:.2f} MB; {NUM_FRAMES}x{SAMPLING_RATE} random windows, "
                  f"{args.clips} clips per row, 1 thread")  # fmt: skip
        pipelines = {"videonorm/decord": ours(path, "decord"), "videonorm/pyav": ours(path, "pyav"),
                     "pytorchvideo/pyav": pytorchvideo_pyav(path)}  # fmt: skip
        print(f"| {'pipeline':<18} | clips/s | decode ms/clip | transform ms/clip |")
        print(f"|{'-' * 20}|---------|----------------|-------------------|")
        for name, (rate, decode, transform) in measure(pipelines, args.clips).items():
            print(f"| {name:<18} | {rate:7.2f} | {decode:14.1f} | {transform:17.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
