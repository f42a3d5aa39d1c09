"""The I3D and C2D ResNet builders: temporal layouts as data (``LAYOUTS``), one builder over pytorchvideo's
``create_resnet``.

The networks are pytorchvideo `create_resnet` models, so module names match pytorchvideo's `i3d_r50`
(`blocks.0` stem, `blocks.1` res2, `blocks.2` temporal pool, `blocks.3..5` res3..res5, `blocks.6` head)
and its checkpoints load with `strict=True` into the BN model.

`i3d_resnet` is the Non-local paper's 32-frame I3D ResNet (video-nonlocal-net, the model of
the Group Normalization paper's Kinetics experiment):

    input                                        32 x 224 x 224 (T x H x W)
    stem   5x7x7 conv, stride (2, 2, 2)          16 x 112 x 112
           2x3x3 max-pool, stride (2, 2, 2)      8 x 56 x 56    (8 x 55 x 55 with stem_pool_padding=0)
    res2   3 blocks, conv_a 3x1x1 in all         8 x 56 x 56
    pool   2x1x1 max-pool, stride (2, 1, 1)      4 x 56 x 56
    res3   conv_a 3x1x1 in blocks [1, 0, 1, 0]   4 x 28 x 28
    res4   [1, 0, 1, 0, 1, 0] (R101: 1, 0, ... over 23 blocks)   4 x 14 x 14
    res5   [0, 1, 0]                             4 x 7 x 7
    head   global average pool, dropout, linear

R50 with 400 classes: 28.0M parameters, 33.1 G multiply-adds per 32x224x224 clip (torch's FLOP counter / 2);
32.8 G with ``stem_pool_padding=0``.

The stem max-pool pads one pixel on each side by default (torchvision's and pytorchvideo's ResNets, and the 2D
ImageNet networks we inflate): 112 -> 56. The Non-local code pools without padding (``pool1``: kernel
[2, 3, 3], stride [2, 2, 2], pads 0 in lib/models/resnet_video_org.py): 112 -> 55 at res2, 28, 14, 7 after;
``stem_pool_padding=0`` builds that, and the paper's configs use it. The weights are the same either way.

pytorchvideo's own `i3d_r50` is the 8-frame variant of the same network (no temporal stride in the stem);
the weights have identical shapes, so its checkpoints load here, but the temporal strides differ.
`c2d_resnet` is the 2D baseline: 1x7x7 stem and all temporal kernels 1, no temporal striding or pooling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch.nn as nn
from pytorchvideo.models.resnet import create_resnet

from videonorm.models import resnet


@dataclass(frozen=True)
class _Arch:
    """Temporal layout of one architecture; spatial layout is the standard ResNet's."""

    stem_kernel: tuple[int, int, int]
    stem_stride: tuple[int, int, int]
    stem_pool_kernel: tuple[int, int, int]
    stem_pool_stride: tuple[int, int, int]
    res2_pool_t: int  # temporal max-pool kernel = stride after res2 (1: none)
    # Per stage, the temporal kernel of conv_a in consecutive blocks, repeated to the stage depth.
    conv_a_t: tuple[tuple[int, ...], ...]


LAYOUTS = {
    "i3d": _Arch((5, 7, 7), (2, 2, 2), (2, 3, 3), (2, 2, 2), 2, ((3,), (3, 1), (3, 1), (1, 3))),
    "c2d": _Arch((1, 7, 7), (1, 2, 2), (1, 3, 3), (1, 2, 2), 1, ((1,), (1,), (1,), (1,))),
}


def _max_pool(
    kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], spatial_padding: int | None = None
) -> nn.Module:
    """Max-pool that never pads in time (Non-local's pool1 is a max over frame pairs).

    pytorchvideo pads every dimension by kernel // 2, which for a temporal kernel of 2 would add a frame.
    Called by `create_resnet` for the stem pool and the pool after res2; `spatial_padding` replaces
    pytorchvideo's spatial padding (the stem's `stem_pool_padding`).
    """
    if tuple(kernel_size) == (1, 1, 1) and tuple(stride) == (1, 1, 1):
        return nn.Identity()  # keeps the block indices of the pooled variant
    spatial = tuple(padding)[1:] if spatial_padding is None else (spatial_padding, spatial_padding)
    return nn.MaxPool3d(kernel_size, stride=stride, padding=(0, *spatial))


def i3d_resnet(spec, norm) -> nn.Module:
    """The Non-local paper's 32-frame I3D ResNet (module docstring); registry entry ``i3d_resnet``."""
    return _resnet(spec, norm, LAYOUTS["i3d"])


def c2d_resnet(spec, norm) -> nn.Module:
    """The 2D baseline: all temporal kernels 1, no temporal striding or pooling; registry entry ``c2d_resnet``."""
    return _resnet(spec, norm, LAYOUTS["c2d"])


def _resnet(spec, norm, layout: _Arch) -> nn.Module:
    """A video ResNet for `(N, 3, T, H, W)` clips returning `(N, num_classes)` logits.

    Reads ``depth`` (50 or 101, the paper's layouts; 14 / 26 shallow variants: 1 / 2 blocks per stage), ``width``
    (stem channels, 64 in the paper; stage i has `width * 2**i` bottleneck channels and `4 * width * 2**i`
    outputs, so small values give tiny CPU models; ``videonorm.models.resnet``), ``stem_pool_padding`` (1:
    torchvision, 56 x 56 at res2 for 224 input; 0: the Non-local code, 55 x 55), ``num_classes`` and ``dropout``
    of the spec (:class:`videonorm.models.spec.ModelSpec`); every norm layer is ``norm``'s.

    Raises:
        ValueError: unsupported depth, a width below 1, a stem pool padding other than 0 or 1.
    """
    built = resnet.built_depth(spec)
    if spec.stem_pool_padding not in (0, 1):
        raise ValueError(f"stem_pool_padding must be 0 or 1, got {spec.stem_pool_padding}")
    stage_kernels = [
        [(t, 1, 1) for t in (pattern * n)[:n]] for pattern, n in zip(layout.conv_a_t, resnet.STAGE_DEPTHS[built])
    ]
    return resnet.build(
        create_resnet, spec, norm,
        stem_conv_kernel_size=layout.stem_kernel,
        stem_conv_stride=layout.stem_stride,
        stem_pool=functools.partial(_max_pool, spatial_padding=spec.stem_pool_padding),
        stem_pool_kernel_size=layout.stem_pool_kernel,
        stem_pool_stride=layout.stem_pool_stride,
        stage1_pool=_max_pool,
        stage1_pool_kernel_size=(layout.res2_pool_t, 1, 1),
        stage_conv_a_kernel_size=stage_kernels,
    )
