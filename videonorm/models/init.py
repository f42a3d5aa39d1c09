"""Weight initialization of the video ResNets, for every norm type the registry can build."""

from __future__ import annotations

import torch.nn as nn

from videonorm.models.norm.build import is_norm
from videonorm.models.residual import branch_ends


def init_weights(model: nn.Module, zero_init_residual: bool = True, head_init_std: float = 0.01) -> None:
    """Initialize in place: Kaiming convs, norms at their own initial state, zero-gamma residual ends, small
    classifier.

    Every norm layer a scheme builds resets itself (``reset_parameters``): gamma 1, beta 0, running statistics
    cleared, norm-act parameters at their papers' values (FRN's tau 0, EvoNorm's v 1); frozen BN becomes the
    identity transform. Frozen BN is never zero-initialized: its gamma is a buffer that could not move away
    from 0, so the residual branch would stay dead.

    Args:
        model: a network of a registered backbone (residual blocks are found by ``videonorm.models.residual``).
        zero_init_residual: set gamma = 0 in the last norm of every residual branch.
        head_init_std: standard deviation of the `nn.Linear` classifier weights (biases are zeroed).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):  # weight-standardized convs too: they standardize whatever they hold
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif is_norm(m):
            m.reset_parameters()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=head_init_std)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for parent, name in branch_ends(model):
            end = getattr(parent, name)
            if is_norm(end) and isinstance(end.weight, nn.Parameter):
                nn.init.zeros_(end.weight)
