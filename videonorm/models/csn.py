"""ir-CSN (Tran et al. 2019, "Video Classification with Channel-Separated Convolutional Networks") over
pytorchvideo's ``create_csn``: bottleneck blocks whose 3x3x3 convolution is depthwise (one group per channel).

Module names are pytorchvideo's (``blocks.0`` stem, ``blocks.1..4`` res2..res5, ``blocks.5`` head), so its model
zoo's ``CSN_32x2_R101.pyth`` (hub ``csn_r101``: 32 frames at stride 2, 22.21M parameters with 400 classes) loads
with ``strict=True`` into the BN model with ``depth`` 101. 3x7x7 stem with a 1x3x3 max-pool (the hub model's),
temporal stride 2 in res3..res5. Reads ``depth`` (50 or 101; 14 and 26 shallow, ``videonorm.models.resnet``) and
``width`` (stem channels, 64). The head pools adaptively (any T, H, W) instead of pytorchvideo's fixed kernel and
returns logits. No 2D ImageNet source has its depthwise 3x3x3 layers: ``model.pretrained_2d`` is refused.
"""

from __future__ import annotations

import torch.nn as nn
from pytorchvideo.models.csn import create_csn

from videonorm.models import resnet


def csn_resnet(spec, norm) -> nn.Module:
    """ir-CSN (module docstring); registry entry ``csn_resnet``.

    Raises:
        ValueError: unsupported depth, a width below 1.
    """
    return resnet.build(create_csn, spec, norm, stem_pool=nn.MaxPool3d)
