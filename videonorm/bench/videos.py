"""Kinetics-like benchmark videos, made with the project's own data preparation code.

Each video is a ``data_prep.synth`` scene (textured shapes moving over a grainy background; a different
motion class per video) rendered as a "raw source", then re-encoded by ``data_prep.encode.transcode`` exactly
as ``kinetics-prep trim`` encodes (libx264 preset fast, crf 23, yuv420p, B-frames) in two versions:

  * ``long_gop``: libx264's default GOP (keyint 250, scene-cut key frames), like most files on the web and
    in the usual Kinetics mirrors: a 10 s clip is one or two GOPs;
  * ``short_gop``: a key frame every 16 frames and every odd frame a non-reference B frame, ``kinetics-prep``'s
    default (stride-2 layout).

At 340x256, 30 fps, 10 s a file is about 0.5 MB (long GOP) and 1 MB (short GOP), in the range of the
Kinetics files people train on. Files are cached: a rerun with the same settings reuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

GOPS = {"long_gop": 0, "short_gop": 16}  # data_prep's EncodeSettings.gop: 0 = libx264 default


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/videonorm/bench`` (``~/.cache/videonorm/bench``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "videonorm" / "bench"


def make_bench_videos(
    out_dir: str | os.PathLike | None = None,
    count: int = 4,
    seconds: float = 10.0,
    width: int = 340,
    height: int = 256,
    fps: int = 30,
) -> dict[str, list[Path]]:
    """Write (or reuse) ``count`` videos in each GOP setting.

    Args:
        out_dir: Cache folder (default :func:`default_cache_dir`); files go to a subfolder named after the
            settings.
        count: Videos per GOP setting (different content each).
        seconds: Length of each video.
        width: Frame width (even).
        height: Frame height (even).
        fps: Frame rate.

    Returns:
        ``{"long_gop": [paths], "short_gop": [paths]}``, the same content in both lists, in the same order.
    """
    from data_prep.encode import transcode
    from data_prep.synth import CLASS_NAMES, render, write_video
    from data_prep.writer import EncodeSettings

    # v2: the short-GOP files have kinetics-prep's stride-2 layout (odd frames non-reference), as it now encodes
    folder = Path(out_dir or default_cache_dir()) / f"{width}x{height}_{fps}fps_{seconds:g}s_v2"
    folder.mkdir(parents=True, exist_ok=True)
    num_frames = round(seconds * fps)
    files: dict[str, list[Path]] = {name: [] for name in GOPS}
    for i in range(count):
        name = CLASS_NAMES[i % len(CLASS_NAMES)]
        source = folder / "source" / f"{i:03d}_{name}.mp4"
        outputs = {kind: folder / kind / source.name for kind in GOPS}
        if not all(path.is_file() for path in outputs.values()):
            source.parent.mkdir(exist_ok=True)
            if not source.is_file():  # write_video and transcode write to a temp name, then rename
                write_video(source, render(name, num_frames, fps, width, height, seed=i), fps)
            for kind, path in outputs.items():
                path.parent.mkdir(exist_ok=True)
                if not path.is_file():
                    # short side unchanged: the source already has the wanted size
                    transcode(source, path, EncodeSettings(short_side=min(width, height), gop=GOPS[kind], threads=1))
        for kind, path in outputs.items():
            files[kind].append(path)
    return files


def key_frame_interval(path: str | os.PathLike) -> float:
    """Mean frames per key frame of the first video stream (from the packets; nothing is decoded).

    Args:
        path: Video file.
    """
    import av

    with av.open(os.fspath(path)) as container:
        keys = [packet.is_keyframe for packet in container.demux(container.streams.video[0]) if packet.size]
    return len(keys) / max(1, sum(keys))
