"""I3D ResNet builders, weight init, and 2D->3D inflation of ImageNet ResNet checkpoints.

The networks are pytorchvideo `create_resnet` models, so module names match pytorchvideo's `i3d_r50`
(`blocks.0` stem, `blocks.1` res2, `blocks.2` temporal pool, `blocks.3..5` res3..res5, `blocks.6` head)
and its checkpoints load with `strict=True` into the BN model.

The default `arch="i3d"` is the Non-local paper's 32-frame I3D ResNet (video-nonlocal-net, the model of
the Group Normalization paper's Kinetics experiment):

    input                                        32 x 224 x 224 (T x H x W)
    stem   5x7x7 conv, stride (2, 2, 2)          16 x 112 x 112
           2x3x3 max-pool, stride (2, 2, 2)      8 x 56 x 56
    res2   3 blocks, conv_a 3x1x1 in all         8 x 56 x 56
    pool   2x1x1 max-pool, stride (2, 1, 1)      4 x 56 x 56
    res3   conv_a 3x1x1 in blocks [1, 0, 1, 0]   4 x 28 x 28
    res4   [1, 0, 1, 0, 1, 0] (R101: 1, 0, ... over 23 blocks)   4 x 14 x 14
    res5   [0, 1, 0]                             4 x 7 x 7
    head   global average pool, dropout, linear

R50 with 400 classes: 28.0M parameters, 33.1 G multiply-adds per 32x224x224 clip (torch's FLOP counter / 2).

pytorchvideo's own `i3d_r50` is the 8-frame variant of the same network (no temporal stride in the stem);
the weights have identical shapes, so its checkpoints load here, but the temporal strides differ.
`arch="c2d"` is the 2D baseline: 1x7x7 stem and all temporal kernels 1, no temporal striding or pooling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from pytorchvideo.models.head import ResNetBasicHead, create_res_basic_head
from pytorchvideo.models.resnet import BottleneckBlock, ResStage, create_resnet

from videonorm.norm import FrozenBatchNorm3d, is_norm, norm_layer

# Bottleneck blocks per stage (res2..res5).
STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


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


ARCHS = {
    "i3d": _Arch((5, 7, 7), (2, 2, 2), (2, 3, 3), (2, 2, 2), 2, ((3,), (3, 1), (3, 1), (1, 3))),
    "c2d": _Arch((1, 7, 7), (1, 2, 2), (1, 3, 3), (1, 2, 2), 1, ((1,), (1,), (1,), (1,))),
}


def _max_pool(kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> nn.Module:
    """Max-pool that never pads in time (Non-local's pool1 is a max over frame pairs).

    pytorchvideo pads every dimension by kernel // 2, which for a temporal kernel of 2 would add a frame.
    Called by `create_resnet` for the stem pool and the pool after res2.
    """
    if tuple(kernel_size) == (1, 1, 1) and tuple(stride) == (1, 1, 1):
        return nn.Identity()  # keeps the block indices of the pooled variant
    return nn.MaxPool3d(kernel_size, stride=stride, padding=(0, *tuple(padding)[1:]))


def _head(**kwargs: Any) -> nn.Module:
    # Adaptive pooling instead of pytorchvideo's fixed AvgPool3d(4, 7, 7): any T >= 8, H, W >= 64 work.
    kwargs.update(pool=nn.AdaptiveAvgPool3d, output_size=(1, 1, 1), activation=None)
    return create_res_basic_head(**kwargs)


def i3d_resnet(
    depth: int = 50,
    norm: str = "bn",
    norm_groups: int = 32,
    num_classes: int = 400,
    width: int = 64,
    dropout: float = 0.5,
    zero_init_residual: bool = True,
    head_init_std: float = 0.01,
    arch: str = "i3d",
) -> nn.Module:
    """Build an I3D (or C2D) ResNet for `(N, 3, T, H, W)` clips returning `(N, num_classes)` logits.

    Args:
        depth: 50 or 101.
        norm: a name from `videonorm.norm.NORM_NAMES`.
        norm_groups: groups for `norm="gn"`; must divide `width` (every normalized channel count is
            `width` times a power of two).
        num_classes: classifier outputs.
        width: stem channels (64 in the paper); stage i has `width * 2**i` bottleneck channels and
            `4 * width * 2**i` outputs, so small values give tiny CPU models.
        dropout: dropout rate before the classifier.
        zero_init_residual: start each bottleneck's last norm at gamma = 0 (the block is the identity).
        head_init_std: standard deviation of the classifier's initial weights.
        arch: `"i3d"` (Non-local 32-frame I3D) or `"c2d"` (all temporal kernels 1, no temporal pooling).

    Raises:
        ValueError: unsupported depth or arch, unknown norm, or groups that do not divide the channels.
    """
    if depth not in STAGE_DEPTHS:
        raise ValueError(f"unsupported depth {depth}; supported: {sorted(STAGE_DEPTHS)}")
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHS)}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    spec = ARCHS[arch]
    stage_kernels = [
        [(t, 1, 1) for t in (pattern * n)[:n]] for pattern, n in zip(spec.conv_a_t, STAGE_DEPTHS[depth])
    ]
    model = create_resnet(
        model_depth=depth,
        model_num_class=num_classes,
        dropout_rate=dropout,
        norm=norm_layer(norm, norm_groups),
        stem_dim_out=width,
        stem_conv_kernel_size=spec.stem_kernel,
        stem_conv_stride=spec.stem_stride,
        stem_pool=_max_pool,
        stem_pool_kernel_size=spec.stem_pool_kernel,
        stem_pool_stride=spec.stem_pool_stride,
        stage1_pool=_max_pool,
        stage1_pool_kernel_size=(spec.res2_pool_t, 1, 1),
        stage_conv_a_kernel_size=stage_kernels,
        head=_head,
    )
    init_weights(model, zero_init_residual=zero_init_residual, head_init_std=head_init_std)
    return model


def init_weights(model: nn.Module, zero_init_residual: bool = True, head_init_std: float = 0.01) -> None:
    """Initialize in place: Kaiming convs, unit norms, zero-gamma residual ends, small classifier.

    Frozen BN gets the identity transform (weight 1, bias 0, mean 0, var 1) and is never zero-initialized:
    its gamma could not move away from 0, so the residual branch would stay dead.

    Args:
        model: a network from `i3d_resnet` (any module tree with pytorchvideo bottlenecks works).
        zero_init_residual: set gamma = 0 in the last norm (`norm_c`) of every bottleneck.
        head_init_std: standard deviation of the `nn.Linear` classifier weights (biases are zeroed).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, FrozenBatchNorm3d):
            for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
                getattr(m, name).fill_(value)
        elif is_norm(m):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if getattr(m, "running_mean", None) is not None:
                m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=head_init_std)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, BottleneckBlock) and is_norm(m.norm_c) and m.norm_c.weight is not None:
                if not isinstance(m.norm_c, FrozenBatchNorm3d):
                    nn.init.zeros_(m.norm_c.weight)


# torchvision / timm ResNet block parts -> pytorchvideo bottleneck parts.
_BLOCK_PARTS = {
    "conv1": "branch2.conv_a",
    "bn1": "branch2.norm_a",
    "conv2": "branch2.conv_b",
    "bn2": "branch2.norm_b",
    "conv3": "branch2.conv_c",
    "bn3": "branch2.norm_c",
    "downsample.0": "branch1_conv",
    "downsample.1": "branch1_norm",
}
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.(.+)\.([^.]+)")


def _name_map(model3d: nn.Module) -> tuple[dict[str, str], str]:
    """Module prefix map 2D -> 3D (stem, stages), and the 3D classifier prefix, read off the model."""
    blocks = model3d.blocks
    stage_idx = [i for i, b in enumerate(blocks) if isinstance(b, ResStage)]
    head_idx = [i for i, b in enumerate(blocks) if isinstance(b, ResNetBasicHead)]
    if len(stage_idx) != 4 or len(head_idx) != 1:
        raise ValueError("inflate_2d expects an i3d_resnet model (4 ResStages and a ResNetBasicHead)")
    prefixes = {"conv1": "blocks.0.conv", "bn1": "blocks.0.norm"}
    for layer, i in enumerate(stage_idx, start=1):
        prefixes[f"layer{layer}"] = f"blocks.{i}.res_blocks"
    return prefixes, f"blocks.{head_idx[0]}.proj"


def _map_key(key: str, prefixes: Mapping[str, str], head: str) -> str | None:
    """3D name for a torchvision-style 2D key, or None if it has no counterpart."""
    module, _, tensor = key.rpartition(".")
    if module in ("conv1", "bn1"):
        return f"{prefixes[module]}.{tensor}"
    if module == "fc":
        return f"{head}.{tensor}"
    match = _BLOCK_KEY.fullmatch(key)
    if match is None or match.group(3) not in _BLOCK_PARTS:
        return None
    layer, block, part, tensor = match.groups()
    return f"{prefixes['layer' + layer]}.{block}.{_BLOCK_PARTS[part]}.{tensor}"


def inflate_2d(
    model3d: nn.Module,
    state_dict_2d: Mapping[str, torch.Tensor],
    strict: bool = True,
    skip_classifier: bool = True,
) -> nn.Module:
    """Load a 2D ImageNet ResNet checkpoint (torchvision/timm names) into a 3D model built by `i3d_resnet`.

    Each 2D kernel `(O, I, kh, kw)` is repeated over the 3D kernel's temporal size kt and divided by kt,
    so a video of identical frames gives the 2D network's activations (away from temporal borders). Norm
    tensors are copied as they are: BN weight, bias and running statistics (into `bn`, `syncbn` or
    `frozenbn` models), or GN weight and bias (a GN checkpoint into a `gn`/`ln`/`in` model).

    Args:
        model3d: the target, modified in place.
        state_dict_2d: 2D ResNet state dict with names `conv1`, `bn1`, `layer1.0.conv1`, ...,
            `layer1.0.downsample.0`, `fc`.
        strict: raise if a 2D tensor has no place in the model or a model tensor gets no value.
        skip_classifier: leave the classifier (`fc` -> head `proj`) as initialized.

    Returns:
        `model3d`.

    Raises:
        ValueError: listing every shape mismatch (always), and with `strict` every unmapped 2D key and
            every model key left without a value.
    """
    prefixes, head = _name_map(model3d)
    target = model3d.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state_dict_2d.items():
        if skip_classifier and key.startswith("fc."):
            continue
        key3d = _map_key(key, prefixes, head)
        if key3d is None or key3d not in target:
            unexpected.append(key if key3d is None else f"{key} -> {key3d}")
            continue
        want = target[key3d]
        if value.dim() == 4 and want.dim() == 5:  # conv (O, I, kh, kw) -> (O, I, kt, kh, kw)
            kt = want.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
        if value.shape != want.shape:
            mismatched.append(f"{key} {tuple(value.shape)} -> {key3d} {tuple(want.shape)}")
            continue
        loaded[key3d] = value.to(want.dtype)
    missing = [
        k
        for k in target
        if k not in loaded
        and not k.endswith("num_batches_tracked")  # some checkpoints (e.g. converted ones) lack it
        and not (skip_classifier and k.startswith(head + "."))
    ]
    problems = [f"shape mismatch: {m}" for m in mismatched]
    if strict:
        problems += [f"unmapped 2D key: {k}" for k in unexpected]
        problems += [f"missing 3D key: {k}" for k in missing]
    if problems:
        raise ValueError(f"inflate_2d: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    model3d.load_state_dict(loaded, strict=False)
    return model3d


def num_parameters(model: nn.Module) -> int:
    """Trainable parameter count.

    Args:
        model: any module.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
