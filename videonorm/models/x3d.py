"""X3D (Feichtenhofer 2020, "X3D: Expanding Architectures for Efficient Video Recognition"): XS, S, M and L over
pytorchvideo's ``create_x3d``, so module names are pytorchvideo's (``blocks.0`` stem, ``blocks.1..4`` res2..res5,
``blocks.5`` head) and its Kinetics checkpoints (``X3D_XS.pyth`` ... ``X3D_L.pyth``, hub ``x3d_xs`` ... ``x3d_l``)
load with ``strict=True`` into the BN model.

XS, S and M are one network (3.79M parameters with 400 classes): the paper expands them along the input only, so
the name says which clip a run means to feed (its ``data.num_frames``, ``data.sampling_rate``, crop size):

    X3D-XS   4 x 160^2, stride 12      X3D-S   13 x 160^2, stride 6
    X3D-M   16 x 224^2, stride 5       X3D-L   16 x 312^2, stride 5; depth factor 5.0 (6.15M parameters)

The network: a (2+1)D stem of 24 channels, four stages of 24 / 48 / 96 / 192 output channels with 2.25x wider
depthwise 3x3x3 bottlenecks (54 / 108 / 216 / 432 channels), squeeze-excitation in every other block, Swish after
the depthwise convolution, and a head that projects 192 -> 432 (conv, norm, ReLU), pools, projects to 2048 (conv,
ReLU) and classifies. The head pools adaptively (any T, H, W) instead of pytorchvideo's fixed kernel of the
variant's input (no weights change), and returns logits (no softmax).

Norms: every norm layer is the scheme's. GN's 32 groups divide none of 24, 48, 54, 108, 216 or 432: grouped
schemes need ``model.net.norm_group_rule largest_divisor`` (or a G dividing every width: 1, 2, 3 or 6)
(``videonorm.models.norm.schemes.GROUP_RULES``). Norm-act schemes (FRN, EvoNorm) replace each norm + activation
pair: in the bottleneck's middle that pair is the norm and the Swish after the squeeze-excitation, so the norm-act
layer's nonlinearity comes before the squeeze-excitation and no Swish follows (timm's EfficientNet order with its
norm-act layers). ``gn_ws`` standardizes every convolution, the squeeze-excitation's and the head's included.
There is no 2D ImageNet source to inflate.
"""

from __future__ import annotations

import torch.nn as nn
from pytorchvideo.layers.swish import Swish
from pytorchvideo.models.x3d import create_x3d

# The paper's variants by registry name: (frames, crop) of their input and the depth factor (width factor 2.0).
VARIANTS = {"x3d_xs": (4, 160, 2.2), "x3d_s": (13, 160, 2.2), "x3d_m": (16, 224, 2.2), "x3d_l": (16, 312, 5.0)}


def x3d(spec, norm) -> nn.Module:
    """The X3D variant ``spec.arch`` names (registry entries ``x3d_xs``, ``x3d_s``, ``x3d_m``, ``x3d_l``), for
    ``(N, 3, T, H, W)`` clips (T >= 1, H, W >= 32) returning ``(N, num_classes)`` logits.

    Reads ``num_classes`` and ``dropout`` of the spec; every norm layer is ``norm``'s.
    """
    frames, size, depth_factor = VARIANTS[spec.arch]
    act = norm.activation()
    model = create_x3d(
        input_clip_length=frames,  # only sizes pytorchvideo's fixed head pool, replaced below
        input_crop_size=size,
        model_num_class=spec.num_classes,
        dropout_rate=spec.dropout,
        depth_factor=depth_factor,
        norm=norm,
        activation=act,
        inner_act=Swish if act else None,  # a norm-act layer is the pair's nonlinearity (module docstring)
        head_activation=None,  # logits
    )
    head = model.blocks[-1].pool  # ProjectedPool: pre_conv, pre_norm, pre_act, pool, post_conv, post_act
    head.pool = nn.AdaptiveAvgPool3d((1, 1, 1))
    if not act:
        head.pre_act = None  # the ReLU after pre_norm (head_pool_act); post_act follows a conv, not a norm: stays
    return model
