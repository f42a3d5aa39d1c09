"""Clip transforms, built on ``torchvision.transforms.v2`` only, and the normalization that follows them.

Input: a clip as decoded by :mod:`videonorm.data.video`, uint8 ``(T, 3, H, W)``. Output of the geometric transforms
(what DataLoader workers hand over): uint8 ``(3, T, H, W)``, channel-first, ready to be stacked into the model's
``(N, 3, T, H, W)``. The clip is wrapped in ``tv_tensors.Video``, so every random parameter (scale, crop position,
flip) is drawn once per clip and applied to all of its frames. Resizing runs on uint8 (torchvision's fast path,
antialiased); in training the crop box is cut before resizing (:class:`RandomShortSideScaleCrop`), so only kept
pixels are resampled.

  * train: short side scaled to a random size in ``[min_scale, max_scale]``, random square crop, horizontal flip;
  * val: short side to ``scale``, center crop;
  * test: short side to ``scale``, one of ``num_crops`` crops (see :func:`videonorm.data.sampling.crop_offsets`):
    :func:`multiview_transform` returns one transform per spatial crop.

Conversion to float and mean/std normalization (``/255``, Kinetics mean/std 0.45/0.225) happen on the training
device, a whole batch at a time (:class:`ClipNormalize`, applied by the LightningModule after the batch is on its
device): a uint8 clip is a quarter of the bytes to move from worker to main process and to the GPU, and the
arithmetic is the same per element as on the worker, so the result is bit for bit the same on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from videonorm.data.sampling import crop_offsets

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


class AsVideo:
    """Wrap a ``(T, 3, H, W)`` tensor as ``tv_tensors.Video`` so v2 transforms treat it as one clip."""

    def __call__(self, clip: torch.Tensor) -> tv_tensors.Video:
        if clip.ndim != 4 or clip.shape[1] != 3:
            raise ValueError(f"expected a clip (T, 3, H, W), got shape {tuple(clip.shape)}")
        return clip if isinstance(clip, tv_tensors.Video) else tv_tensors.Video(clip)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ToChannelFirst:
    """uint8 ``(T, 3, H, W)`` -> uint8 ``(3, T, H, W)``, contiguous (the worker's hand-off format)."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 clip, got {clip.dtype}")
        return clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ClipNormalize(nn.Module):
    """uint8 clips ``(..., 3, T, H, W)`` -> float32, ``(x / 255 - mean) / std`` per channel, in one pass.

    The same result as ``v2.ToDtype(float32, scale=True)`` then ``v2.Normalize``, without their full-size float
    intermediates. Mean and std are buffers, so the module moves to the batch's device with its owner.

    Args:
        mean: Per-channel mean, on the [0, 1] scale.
        std: Per-channel std, on the [0, 1] scale.
    """

    def __init__(self, mean: Sequence[float] = KINETICS_MEAN, std: Sequence[float] = KINETICS_STD):
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)
        self.register_buffer("shift", torch.tensor(self.mean).view(3, 1, 1, 1) * 255, persistent=False)
        self.register_buffer("scale", 1 / (torch.tensor(self.std).view(3, 1, 1, 1) * 255), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dtype != torch.uint8:
            raise TypeError(f"expected uint8 clips, got {clips.dtype}")
        return clips.to(torch.float32).sub_(self.shift).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class RandomShortSideScaleCrop(v2.Transform):
    """Random short-side scale in ``[min_scale, max_scale]`` then a random ``crop_size`` square crop, done as one
    crop-then-resize of the matching box of the input (only the kept pixels are resampled).

    The scale and the crop position are drawn exactly as ``v2.RandomResize(min_scale, max_scale + 1)`` followed
    by ``v2.RandomCrop(crop_size)`` draw them; the box is then mapped back to input pixels (rounded to whole
    pixels, so the result differs from resizing the full frame by sub-pixel resampling only).

    Args:
        min_scale: Smallest short side.
        max_scale: Largest short side (inclusive).
        crop_size: Side of the output square.
    """

    def __init__(self, min_scale: int, max_scale: int, crop_size: int):
        super().__init__()
        self.min_scale, self.max_scale, self.crop_size = min_scale, max_scale, crop_size

    def make_params(self, flat_inputs: list) -> dict:
        height, width = F.get_size(flat_inputs[0])
        scale = int(torch.randint(self.min_scale, self.max_scale + 1, ()))
        # the size v2.Resize([scale]) would produce
        if height <= width:
            new_h, new_w = scale, int(scale * width / height)
        else:
            new_h, new_w = int(scale * height / width), scale
        top = int(torch.randint(0, new_h - self.crop_size + 1, ()))
        left = int(torch.randint(0, new_w - self.crop_size + 1, ()))
        box_h = min(max(round(self.crop_size * height / new_h), 1), height)
        box_w = min(max(round(self.crop_size * width / new_w), 1), width)
        box_top = min(round(top * height / new_h), height - box_h)
        box_left = min(round(left * width / new_w), width - box_w)
        return dict(top=box_top, left=box_left, height=box_h, width=box_w)

    def transform(self, inpt, params: dict):
        size = [self.crop_size, self.crop_size]
        return self._call_kernel(F.resized_crop, inpt, **params, size=size, antialias=True)


class FixedCrop:
    """Crop number ``index`` of ``num_crops`` square test crops (positions from ``sampling.crop_offsets``).

    Args:
        size: Side of the crop.
        index: Which crop, ``0 <= index < num_crops``.
        num_crops: 1 (center) or 3 (along the long side).
    """

    def __init__(self, size: int, index: int, num_crops: int):
        if not 0 <= index < num_crops:
            raise ValueError(f"crop index {index} outside [0, {num_crops})")
        self.size, self.index, self.num_crops = size, index, num_crops

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        height, width = clip.shape[-2:]
        top, left = crop_offsets(height, width, self.size, self.num_crops)[self.index]
        return F.crop(clip, top, left, self.size, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, index={self.index}, num_crops={self.num_crops})"


def train_transform(
    min_scale: int = 256,
    max_scale: int = 320,
    crop_size: int = 224,
    flip: bool = True,
) -> v2.Compose:
    """Training augmentation: random short-side scale, random crop, flip.

    Args:
        min_scale: Smallest short side after scaling.
        max_scale: Largest short side after scaling (inclusive).
        crop_size: Side of the square random crop (<= min_scale).
        flip: Horizontal flip with probability 0.5.

    Returns:
        A callable: uint8 (T, 3, H, W) -> uint8 (3, T, crop_size, crop_size).
    """
    if not crop_size <= min_scale <= max_scale:
        raise ValueError(f"need crop_size <= min_scale <= max_scale, got {crop_size}, {min_scale}, {max_scale}")
    steps = [AsVideo(), RandomShortSideScaleCrop(min_scale, max_scale, crop_size)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())  # on the small uint8 crop
    return v2.Compose(steps + [ToChannelFirst()])


def val_transform(scale: int = 256, crop_size: int = 224) -> v2.Compose:
    """Validation: short side to ``scale``, center crop.

    Args:
        scale: Short side after resizing.
        crop_size: Side of the center crop (<= scale).

    Returns:
        A callable: uint8 (T, 3, H, W) -> uint8 (3, T, crop_size, crop_size).
    """
    if crop_size > scale:
        raise ValueError(f"crop_size {crop_size} > scale {scale}")
    return v2.Compose([AsVideo(), v2.Resize(scale, antialias=True), v2.CenterCrop(crop_size), ToChannelFirst()])


def multiview_transform(scale: int = 256, crop_size: int = 256, num_crops: int = 3) -> list[v2.Compose]:
    """Multi-view testing: short side to ``scale``, then ``num_crops`` fixed crops.

    Args:
        scale: Short side after resizing.
        crop_size: Side of each square crop (<= scale).
        num_crops: 1 (center) or 3 (start/center/end of the long side).

    Returns:
        ``num_crops`` callables, crop ``j`` at position ``j``: uint8 (T, 3, H, W) -> uint8
        (3, T, crop_size, crop_size).
    """
    if crop_size > scale:
        raise ValueError(f"crop_size {crop_size} > scale {scale}")
    resize = [AsVideo(), v2.Resize(scale, antialias=True)]
    return [v2.Compose([*resize, FixedCrop(crop_size, j, num_crops), ToChannelFirst()]) for j in range(num_crops)]

