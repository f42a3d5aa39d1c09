"""The bottleneck ResNets built with pytorchvideo's builders (I3D/C2D, SlowFast, R(2+1)D, CSN): which depths exist,
how a shallow variant is cut from R50, and the arguments ``create_resnet``, ``create_r2plus1d`` and ``create_csn``
share (:func:`build`).

50 and 101 are the papers' depths. 14 and 26 are shallow variants for CPU runs and tests: the same stem, stages,
strides and widths with 1 and 2 bottleneck blocks per stage (timm's resnet14t / resnet26 stage depths), built as
R50 with each stage cut to its first blocks (the first one does the striding), so every tensor keeps R50's name
and shape. ``width`` is the stem's channel count (64 in the papers); stage i has ``width * 2**i`` bottleneck
channels, so small values give tiny models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn
from pytorchvideo.models.resnet import ResStage

# Bottleneck blocks per stage (res2..res5).
STAGE_DEPTHS = {14: (1, 1, 1, 1), 26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_BUILT = (50, 101)  # what pytorchvideo's builders make; the shallow depths are cut from 50


def built_depth(spec, supported: Sequence[int] = tuple(STAGE_DEPTHS)) -> int:
    """Check the spec's ``depth`` and ``width``; the depth to ask pytorchvideo's builder for (50 for the shallow
    variants, which :func:`keep_first_blocks` then cuts).

    Args:
        spec: a :class:`~videonorm.models.spec.ModelSpec`.
        supported: the depths the backbone has.

    Raises:
        ValueError: a depth not in ``supported``, a width below 1.
    """
    if spec.depth not in supported:
        raise ValueError(f"unsupported depth {spec.depth}; supported: {sorted(supported)}")
    if spec.width < 1:
        raise ValueError(f"width must be positive, got {spec.width}")
    return spec.depth if spec.depth in _BUILT else 50


def keep_first_blocks(model: nn.Module, depth: int) -> None:
    """Cut every ``ResStage`` of ``model`` (built as R50) to the first blocks of a shallow ``depth``, in place;
    nothing for the built depths. The shallow depths keep the same count in every stage, so this holds for any
    number of pathways (SlowFast's two).

    Args:
        model: the network pytorchvideo built.
        depth: the spec's depth.
    """
    if depth in _BUILT:
        return
    keep = STAGE_DEPTHS[depth][0]  # the same in every stage (the table's shallow rows)
    for stage in model.modules():
        if isinstance(stage, ResStage):
            stage.res_blocks = nn.ModuleList(list(stage.res_blocks)[:keep])


def build(builder: Callable[..., nn.Module], spec, norm, **options: Any) -> nn.Module:
    """A pytorchvideo ResNet-family network (``create_resnet``, ``create_r2plus1d``, ``create_csn``) of the spec's
    depth, width, classes and dropout, every norm ``norm``'s with ``norm.activation()`` after it, and a head that
    pools adaptively (any T, H, W; pytorchvideo's fixed ``AvgPool3d`` kernels fit one input size) and returns
    logits (no softmax); a shallow depth is cut from R50.

    Args:
        builder: the pytorchvideo builder.
        spec: a :class:`~videonorm.models.spec.ModelSpec`.
        norm: its resolved norm scheme.
        **options: the backbone's own arguments of ``builder`` (layouts, stem).

    Raises:
        ValueError: unsupported depth, a width below 1.
    """
    model = builder(
        model_depth=built_depth(spec),
        model_num_class=spec.num_classes,
        dropout_rate=spec.dropout,
        norm=norm,
        activation=norm.activation(),  # a norm-act layer is its own activation
        stem_dim_out=spec.width,
        head_pool=nn.AdaptiveAvgPool3d,
        head_output_size=(1, 1, 1),
        head_activation=None,
        **options,
    )
    keep_first_blocks(model, spec.depth)
    return model
