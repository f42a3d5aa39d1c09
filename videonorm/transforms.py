"""Clip transforms, built on ``torchvision.transforms.v2`` only.

Input: a clip as decoded by :mod:`videonorm.video`, uint8 ``(T, 3, H, W)``. Output: float32 ``(3, T, H, W)``,
channel-first, ready to be stacked into the model's ``(N, 3, T, H, W)``. The clip is wrapped in
``tv_tensors.Video``, so every random parameter (scale, crop position, flip) is drawn once per clip and
applied to all of its frames. Resizing runs on uint8 (torchvision's fast path, antialiased) before the
conversion to float, so the float work is done on the small cropped clip only.

  * train: short side scaled to a random size in ``[min_scale, max_scale]``, random square crop, horizontal
    flip, /255, normalize (Kinetics mean/std 0.45/0.225);
  * val: short side to ``scale``, center crop;
  * test: short side to ``scale``, one of ``num_crops`` crops (see :func:`videonorm.sampling.crop_offsets`):
    :func:`test_transform` returns one transform per spatial crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from videonorm.sampling import crop_offsets

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


class ToModelLayout:
    """``(T, 3, H, W)`` -> plain contiguous tensor ``(3, T, H, W)``."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std)), ToModelLayout()]


def train_transform(
    min_scale: int = 256,
    max_scale: int = 320,
    crop_size: int = 224,
    flip: bool = True,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> v2.Compose:
    """Training augmentation: random short-side scale, random crop, flip, normalize.

    Args:
        min_scale: Smallest short side after scaling.
        max_scale: Largest short side after scaling (inclusive).
        crop_size: Side of the square random crop (<= min_scale).
        flip: Horizontal flip with probability 0.5.
        mean: Per-channel mean, on the [0, 1] scale.
        std: Per-channel std, on the [0, 1] scale.

    Returns:
        A callable: uint8 (T, 3, H, W) -> float32 (3, T, crop_size, crop_size).
    """
    if not crop_size <= min_scale <= max_scale:
        raise ValueError(f"need crop_size <= min_scale <= max_scale, got {crop_size}, {min_scale}, {max_scale}")
    steps = [
        AsVideo(),
        v2.RandomResize(min_scale, max_scale + 1, antialias=True),  # short side; randint's high is exclusive
        v2.RandomCrop(crop_size),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_float(mean, std))


def val_transform(
    scale: int = 256,
    crop_size: int = 224,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> v2.Compose:
    """Validation: short side to ``scale``, center crop, normalize.

    Args:
        scale: Short side after resizing.
        crop_size: Side of the center crop (<= scale).
        mean: Per-channel mean, on the [0, 1] scale.
        std: Per-channel std, on the [0, 1] scale.

    Returns:
        A callable: uint8 (T, 3, H, W) -> float32 (3, T, crop_size, crop_size).
    """
    if crop_size > scale:
        raise ValueError(f"crop_size {crop_size} > scale {scale}")
    return v2.Compose([AsVideo(), v2.Resize(scale, antialias=True), v2.CenterCrop(crop_size)] + _to_float(mean, std))


def test_transform(
    scale: int = 256,
    crop_size: int = 256,
    num_crops: int = 3,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> list[v2.Compose]:
    """Multi-view testing: short side to ``scale``, then ``num_crops`` fixed crops.

    Args:
        scale: Short side after resizing.
        crop_size: Side of each square crop (<= scale).
        num_crops: 1 (center) or 3 (start/center/end of the long side).
        mean: Per-channel mean, on the [0, 1] scale.
        std: Per-channel std, on the [0, 1] scale.

    Returns:
        ``num_crops`` callables, crop ``j`` at position ``j``: uint8 (T, 3, H, W) -> float32
        (3, T, crop_size, crop_size).
    """
    if crop_size > scale:
        raise ValueError(f"crop_size {crop_size} > scale {scale}")
    return [
        v2.Compose([AsVideo(), v2.Resize(scale, antialias=True), FixedCrop(crop_size, j, num_crops)] + _to_float(mean, std))
        for j in range(num_crops)
    ]


test_transform.__test__ = False  # not a pytest test, even when imported into a test module
