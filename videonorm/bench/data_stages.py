"""``videonorm bench data``'s ``stages`` and ``cores`` tables: where a training clip's CPU time goes with PyAV, stage by
stage, and how many cores of this machine keep a GPU fed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from videonorm.bench.common import Row, median
from videonorm.bench.data_pipelines import Clip
from videonorm.data.dataset import ClipSpec
from videonorm.data.decoders.pyav import rgb_converter
from videonorm.data.manifest import STRIDE2_LAYOUT

STAGE_COLUMNS = ["videos", "hand_off", "clips", "demux_ms", "decode_ms", "convert_ms", "transforms_ms",
                 "hand_off_ms", "total_ms", "hand_off_mb_per_clip"]
CORE_COLUMNS = ["videos", "gpu_clips_per_s", "from", "cpu_ms_per_clip", "cores"]


def stage_breakdown(clips: list[Clip], spec: ClipSpec, batch: int) -> list[Row]:
    """CPU ms per clip of each stage of a PyAV training item (see the module docstring), medians over the clips.

    The decode loop is the reader's (:class:`videonorm.data.decoders.pyav.Reader`: seek to the key frame at or before
    the first wanted frame, decode to the last one, skipping the odd frames of a stride-2 file when only even ones
    are wanted); conversion is timed apart inside it.
    """
    import av

    from videonorm.data.decoders.pyav import Reader

    transform = spec.transforms("train")[0]
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

