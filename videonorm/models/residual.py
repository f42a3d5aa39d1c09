"""Where residual branches end, in networks made of pytorchvideo's ``ResBlock`` (every registered backbone).

Two things depend on it for every backbone alike: zero-init (the last norm of each residual branch starts at
gamma = 0, so the block starts as the identity) and norm-act schemes (the norms right before a residual sum, the
branch's last and the shortcut's, have no nonlinearity after them, and the ReLU after the sum stays).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.nn as nn
from pytorchvideo.models.resnet import ResBlock


def branch_ends(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """``(module, attribute)`` of the last norm of every residual branch (``branch2.norm_c``)."""
    for block in model.modules():
        if isinstance(block, ResBlock):
            yield block.branch2, "norm_c"


def shortcut_norms(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """``(module, attribute)`` of the norm of every projection shortcut (``branch1_norm``)."""
    for block in model.modules():
        if isinstance(block, ResBlock) and block.branch1_norm is not None:
            yield block, "branch1_norm"


def norm_act_ends(model: nn.Module, norm) -> None:
    """For norm-act schemes (built with no activation after their norms): the norms before each residual sum are
    rebuilt without their nonlinearity, and the activation after the sum is a ReLU (the papers' layers replace
    norm + activation pairs; that ReLU follows a sum, not a norm).

    Args:
        model: the built network.
        norm: its resolved scheme (``videonorm.models.norm.build.Norm``).
    """
    for parent, name in [*branch_ends(model), *shortcut_norms(model)]:
        setattr(parent, name, norm(getattr(parent, name).num_features, apply_act=False))
    for block in model.modules():
        if isinstance(block, ResBlock):
            block.activation = nn.ReLU()
