"""Where residual branches end, in the block types the registered backbones are made of: pytorchvideo's
``ResBlock`` (I3D, C2D, X3D, SlowFast, R(2+1)D, CSN) and torchvision's video ``BasicBlock`` (R(2+1)D-18).

Two things depend on it for every backbone alike: zero-init (the last norm of each residual branch starts at
gamma = 0, so the block starts as the identity) and norm-act schemes (the norms right before a residual sum, the
branch's last and the shortcut's, have no nonlinearity after them, and the ReLU after the sum stays).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.nn as nn
from pytorchvideo.models.resnet import ResBlock
from torchvision.models.video.resnet import BasicBlock


def branch_ends(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """``(module, attribute)`` of the last norm of every residual branch: ``branch2.norm_c`` of a ``ResBlock``,
    ``conv2[1]`` of torchvision's ``BasicBlock`` (``conv2`` is (conv, norm))."""
    for block in model.modules():
        if isinstance(block, ResBlock):
            yield block.branch2, "norm_c"
        elif isinstance(block, BasicBlock):
            yield block.conv2, "1"


def shortcut_norms(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """``(module, attribute)`` of the norm of every projection shortcut: ``branch1_norm`` of a ``ResBlock``,
    ``downsample[1]`` of torchvision's ``BasicBlock`` (``downsample`` is (conv, norm))."""
    for block in model.modules():
        if isinstance(block, ResBlock) and block.branch1_norm is not None:
            yield block, "branch1_norm"
        elif isinstance(block, BasicBlock) and block.downsample is not None:
            yield block.downsample, "1"


def norm_act_ends(model: nn.Module, norm) -> None:
    """For norm-act schemes (built with no activation after their norms): the norms before each residual sum are
    rebuilt without their nonlinearity, and the activation after the sum is a ReLU (the papers' layers replace
    norm + activation pairs; that ReLU follows a sum, not a norm; torchvision's ``BasicBlock.relu`` already is).

    Args:
        model: the built network.
        norm: its resolved scheme (``videonorm.models.norm.build.Norm``).
    """
    for parent, name in [*branch_ends(model), *shortcut_norms(model)]:
        setattr(parent, name, norm(getattr(parent, name).num_features, apply_act=False))
    for block in model.modules():
        if isinstance(block, ResBlock):
            block.activation = nn.ReLU()
