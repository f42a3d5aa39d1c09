"""SlowFast (Feichtenhofer et al. 2019, "SlowFast Networks for Video Recognition"), R50 8x8 and 4x16, over
pytorchvideo's ``create_slowfast``: module names are pytorchvideo's (``blocks.0..4`` stems and stages, each a
``MultiPathWayWithFuse`` of the slow and fast pathway and the fast-to-slow lateral connection, ``blocks.5`` the
per-pathway pools, ``blocks.6`` the head), so its Kinetics checkpoint ``SLOWFAST_8x8_R50.pyth`` (hub
``slowfast_r50``) loads with ``strict=True`` into the BN 8x8 model; the 4x16 model has the names and shapes of
``create_slowfast`` with PySlowFast's ``SLOWFAST_4x16_R50`` settings (alpha 8, lateral kernel 5).

One input tensor, one decode: the model takes the fast pathway's clip ``(N, 3, T, H, W)`` (``data.num_frames``
32 at ``data.sampling_rate`` 2 for both variants) and picks the slow pathway's T / alpha frames inside its forward,
with PySlowFast's and pytorchvideo's ``PackPathway`` indices (``slow_frames``: T / alpha indices spread evenly over
0 .. T - 1, truncated; 0, 4, 8, 13, 17, 22, 26, 31 for T = 32, alpha = 4), so the data pipeline is the same as for
every other backbone and the pretrained checkpoints see the frames they were trained on.

    variant  alpha  slow frames  fast frames  lateral conv (fast -> slow)   beta (fast channels)
    8x8      4      8            32           7x1x1, temporal stride 4      1/8
    4x16     8      4            32           5x1x1, temporal stride 8      1/8

Reads ``depth`` (50; 14 and 26 are the shallow variants of ``videonorm.models.resnet``) and ``width`` (the slow
stem's channels, 64 in the paper, a multiple of 8: the fast pathway has width / 8). Norms: every norm layer is the
scheme's, the lateral connections' included (conv, norm, activation). Batch statistics differ between the
pathways: a fast-pathway BN pools alpha x more frames per clip over 8 x fewer channels than the slow one (README).
GN's 32 groups do not divide the fast pathway's 8- and 16-channel layers: grouped schemes need
``model.net.norm_group_rule largest_divisor`` (or G <= 8). The head pools each pathway adaptively (any T, H, W)
instead of pytorchvideo's fixed kernels (no weights change) and returns logits. No 2D ImageNet source inflates
into two pathways: ``model.pretrained_2d`` is refused.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from pytorchvideo.models.slowfast import create_slowfast

from videonorm.models.resnet import built_depth, keep_first_blocks

BETA_INV = 8  # slow / fast channel ratio (the paper's beta = 1/8)
# registry name -> (alpha: fast / slow frame ratio, temporal kernel of the lateral convolutions)
VARIANTS = {"slowfast_8x8_resnet": (4, 7), "slowfast_4x16_resnet": (8, 5)}


def slow_frames(frames: int, alpha: int) -> torch.Tensor:
    """The slow pathway's frame indices in a fast clip of ``frames`` frames: PySlowFast's ``PackPathway``,
    ``linspace(0, frames - 1, frames // alpha)`` truncated to integers.

    Args:
        frames: T of the fast clip.
        alpha: the fast / slow frame ratio.
    """
    return torch.linspace(0, frames - 1, frames // alpha).long()


class SlowFast(nn.Module):
    """The two-pathway network on one clip: the fast pathway gets the clip, the slow one its ``slow_frames``.

    Args:
        blocks: pytorchvideo's SlowFast ``Net.blocks`` (stems and stages with lateral connections, pools, head).
        alpha: fast / slow frame ratio.
        name: the variant, for error messages.
    """

    def __init__(self, blocks: nn.ModuleList, alpha: int, name: str) -> None:
        super().__init__()
        self.blocks, self.alpha, self.name = blocks, alpha, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        if frames % self.alpha:
            # the lateral convolutions (temporal stride alpha) would give the slow pathway another frame count
            raise ValueError(f"{self.name}: the clip's {frames} frames are not a multiple of alpha = {self.alpha} "
                             f"(the fast pathway's clip; the slow pathway takes {frames} // alpha of its frames)")
        pathways = [x.index_select(2, slow_frames(frames, self.alpha).to(x.device)), x]
        for block in self.blocks:
            pathways = block(pathways)
        return pathways


def slowfast(spec, norm) -> nn.Module:
    """The variant ``spec.arch`` names (registry entries ``slowfast_8x8_resnet``, ``slowfast_4x16_resnet``), for
    ``(N, 3, T, H, W)`` fast clips (T a multiple of alpha) returning ``(N, num_classes)`` logits.

    Raises:
        ValueError: a depth other than 14, 26 or 50, a width that is not a positive multiple of 8.
    """
    alpha, lateral_t = VARIANTS[spec.arch]
    built = built_depth(spec, supported=(14, 26, 50))  # pytorchvideo's R101 variants have other lateral kernels
    if spec.width % BETA_INV:
        raise ValueError(f"{spec.arch}: width must be a multiple of {BETA_INV} (the fast pathway has width / "
                         f"{BETA_INV} channels), got {spec.width}")
    net = create_slowfast(
        slowfast_channel_reduction_ratio=(BETA_INV,),
        slowfast_fusion_conv_kernel_size=(lateral_t, 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
        model_depth=built,
        model_num_class=spec.num_classes,
        dropout_rate=spec.dropout,
        norm=norm,
        activation=norm.activation(),  # a norm-act layer is its own activation
        stem_dim_outs=(spec.width, spec.width // BETA_INV),
        head_pool=nn.AdaptiveAvgPool3d,
        head_output_size=(1, 1, 1),
        head_activation=None,  # logits
    )
    keep_first_blocks(net, spec.depth)
    return SlowFast(net.blocks, alpha, spec.arch)
