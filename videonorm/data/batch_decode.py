"""Decoding on the GPU, a batch at a time, in the training process (``data.decoder: torchcodec_cuda``).

Video training is bound by CPU decoding; a GPU's video decoder (NVDEC) can take that work. CUDA cannot be used
from DataLoader worker processes, so with a batch decoder the workers do only the cheap part of an item: the
frame count of the file (a demux pass, no decoding), the frame indices (the same sampling as the CPU path:
``videonorm.data.sampling``) and the broken-file policy. Their items carry ``path``, ``frames`` (the indices),
``mode`` and ``crop`` instead of ``video``. In the training process, :class:`BatchDecoder` (called by the
datamodule's ``on_before_batch_transfer``) decodes each item's exact frames with torchcodec on the GPU, applies the
same torchvision v2 transforms there, and stacks the uint8 batch ``video`` ``(N, 3, T, H, W)``, which the model
then normalizes as any other batch.

Exactness: the frame *indices* are the CPU path's. Files torchcodec is not tested exact on (see
:mod:`videonorm.data.decoders.torchcodec`) are decoded by PyAV on the CPU and moved to the GPU. NVDEC's colour
conversion is not swscale's: pixel values of GPU-decoded frames may differ from the CPU path's by a few levels
(not measured here: no GPU). Repeated augmentation is not offered on this path.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from videonorm.data.video import read_clip

# data.decoder names that decode a batch in the training process -> the device kind they decode on
BATCH_DECODERS = {"torchcodec_cuda": "cuda"}
DESCRIPTOR_KEYS = ("path", "frames", "mode", "crop")


class BatchDecoder:
    """Decode and transform a batch of clip descriptors on ``device`` (see the module docstring).

    Args:
        transforms: ``mode -> [transform per crop position]`` (``ClipSpec.transforms``), applied on the device.
        device: where frames are decoded and transformed (``"cuda"``; ``"cpu"`` runs the same logic without a GPU).
        threads: FFmpeg threads for files decoded on the CPU.
    """

    def __init__(self, transforms: Mapping[str, list], device: str | torch.device, threads: int = 1) -> None:
        self.transforms, self.device, self.threads = dict(transforms), torch.device(device), threads

    def __call__(self, batch: dict) -> dict:
        """A collated batch of descriptors -> the same batch with ``video`` (N, 3, T, H, W) uint8 on the device."""
        clips, decoded = [], {}  # test: the crops of one clip are neighbours in a batch and share one decode
        for path, frames, mode, crop in zip(batch["path"], batch["frames"], batch["mode"], batch["crop"]):
            wanted = frames.tolist()
            key = (path, tuple(wanted))
            if key not in decoded:
                video, _ = read_clip(path, lambda n: wanted, "torchcodec", self.threads, device=str(self.device))
                decoded = {key: video.to(self.device)}  # the last clip only: its crops are consecutive items
            clips.append(self.transforms[mode][int(crop)](decoded[key]))  # (3, T, H, W) uint8
        out = {key: value for key, value in batch.items() if key not in DESCRIPTOR_KEYS}
        out["video"] = torch.stack(clips)
        return out
