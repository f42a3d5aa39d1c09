"""Weight initialization of the video ResNets, for every norm type the registry can build."""

from __future__ import annotations

import torch.nn as nn
from pytorchvideo.models.resnet import BottleneckBlock

from videonorm.models.norm import FrozenBatchNorm3d, is_norm


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
