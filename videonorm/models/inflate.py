"""2D -> 3D inflation of ImageNet ResNet checkpoints (torchvision / timm names) into the video ResNets."""

from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn as nn
from pytorchvideo.models.head import ResNetBasicHead
from pytorchvideo.models.resnet import ResStage

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
        shape2d = tuple(value.shape)
        if value.dim() == 4 and want.dim() == 5:  # conv (O, I, kh, kw) -> (O, I, kt, kh, kw)
            kt = want.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
        if value.shape != want.shape:
            mismatched.append(f"{key} {shape2d} -> {key3d} {tuple(want.shape)}")
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
