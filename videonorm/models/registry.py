"""Backbones by name: the one map from ``model.arch`` (a config string) to a builder.

Every builder takes the same keywords (``depth``, ``norm``, ``norm_groups``, ``norm_sync_group``, ``norm_options``,
``num_classes``, ``width``, ``dropout``, ``zero_init_residual``) and returns an ``nn.Module`` mapping
``(N, 3, T, H, W)`` clips to ``(N, num_classes)`` logits. Adding a backbone is one builder (its own file) and one
entry here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch.nn as nn

from videonorm.models.i3d import i3d_resnet

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "i3d_resnet": functools.partial(i3d_resnet, arch="i3d"),  # the paper's (Non-local) I3D
    "c2d_resnet": functools.partial(i3d_resnet, arch="c2d"),  # no temporal kernels: a 2D baseline
}


def build_model(arch: str = "i3d_resnet", **kwargs) -> nn.Module:
    """Build the backbone registered as ``arch``.

    Args:
        arch: a key of ``BACKBONES``.
        **kwargs: the builder's keywords (see the module docstring).

    Raises:
        ValueError: unknown ``arch`` (the message lists the known ones).
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[arch](**kwargs)


def num_parameters(model: nn.Module) -> int:
    """Trainable parameter count.

    Args:
        model: any module.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
