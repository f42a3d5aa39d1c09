"""R(2+1)D (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition"): every 3x3x3
convolution factored into a 1x3x3 spatial and a 3x1x1 temporal one with a norm and an activation between them.
Two networks:

``r2plus1d_resnet``: pytorchvideo's ``create_r2plus1d``, the bottleneck R(2+1)D of its model zoo (R50 16x4: 16
frames at stride 4, 28.11M parameters with 400 classes): module names are pytorchvideo's (``blocks.0`` stem,
``blocks.1..4`` res2..res5, ``blocks.5`` head), so ``R2PLUS1D_16x4_R50.pyth`` (hub ``r2plus1d_r50``) loads with
``strict=True`` into the BN model. 1x7x7 stem without pooling; conv_b is (2+1)D with its inner norm
(``conv_b.norm``); temporal stride 2 in res4 and res5. Reads ``depth`` (50 or 101; 14 and 26 shallow,
``videonorm.models.resnet``) and ``width`` (stem channels, 64).

``r2plus1d_18``: torchvision's ``r2plus1d_18`` (basic blocks, 31.5M parameters with 400 classes, 16 x 112^2
clips), its ``BatchNorm3d`` layers replaced by the scheme's and, for norm-act schemes, the ReLU after each
replaced norm removed. Module names are torchvision's (``stem``, ``layer1..4``, ``fc``): its Kinetics weights
(``R2Plus1D_18_Weights.KINETICS400_V1``) load with ``strict=True`` into the BN model. Its widths are fixed, and
its (2+1)D blocks' inner widths (45 in the stem, 144, 230, 288, 460, 576, 921, 1152: torchvision matches the
parameters of a 3x3x3 convolution) are not multiples of 32: grouped schemes need
``model.net.norm_group_rule largest_divisor`` (921 = 3 x 307 then gets 3 groups). The spec's dropout is applied
before ``fc`` (torchvision has none) without renaming it.

Both heads pool adaptively (any T, H, W) and return logits. No 2D ImageNet source has (2+1)D layers:
``model.pretrained_2d`` is refused.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from pytorchvideo.models.r2plus1d import create_r2plus1d
from torchvision.models.video import r2plus1d_18 as torchvision_r2plus1d_18

from videonorm.models import resnet


def r2plus1d_resnet(spec, norm) -> nn.Module:
    """pytorchvideo's bottleneck R(2+1)D (module docstring); registry entry ``r2plus1d_resnet``.

    Raises:
        ValueError: unsupported depth, a width below 1.
    """
    return resnet.build(create_r2plus1d, spec, norm)


class DropoutLinear(nn.Linear):
    """``nn.Linear`` after dropout, with ``nn.Linear``'s state dict: the classifier of a network whose names
    have no place for a dropout module (torchvision's ``fc``).

    Args:
        in_features: inputs.
        out_features: outputs.
        p: dropout rate.
    """

    def __init__(self, in_features: int, out_features: int, p: float) -> None:
        super().__init__(in_features, out_features)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


def r2plus1d_18(spec, norm) -> nn.Module:
    """torchvision's R(2+1)D-18 with the scheme's norms (module docstring); registry entry ``r2plus1d_18``."""
    model = torchvision_r2plus1d_18(weights=None, num_classes=spec.num_classes)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:  # every BN sits in one
        children = list(seq.named_children())
        for (name, child), (next_name, after) in zip(children, children[1:] + [(None, None)]):
            if isinstance(child, nn.BatchNorm3d):
                setattr(seq, name, norm(child.num_features))
                if norm.norm_act and isinstance(after, nn.ReLU):
                    setattr(seq, next_name, nn.Identity())  # the norm-act layer is the pair's nonlinearity
    model.fc = DropoutLinear(model.fc.in_features, model.fc.out_features, spec.dropout)
    return model
