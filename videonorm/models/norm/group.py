"""The group-norm family on `(N, C, T, H, W)`: GN (LN and IN are GN with 1 and C groups) and the weight-standardized
convolution of ``gn_ws``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroupNorm3d(nn.GroupNorm):
    """``nn.GroupNorm`` built like the BN layers, channel count first (timm's ``GroupNorm`` does the same "for
    consistency in swapping norm layers with BN"): per sample over (C/G, T, H, W). Same state dict as
    ``nn.GroupNorm``.

    Args:
        num_features: channel count C.
        groups: G; must divide C.
        eps: added to each group's variance.
    """

    def __init__(self, num_features: int, groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__(groups, num_features, eps=eps)

    @property
    def num_features(self) -> int:
        """C, under the name the other norm layers use."""
        return self.num_channels


class StdConv3d(nn.Conv3d):
    """Conv3d whose weight is standardized per output channel at every use (Weight Standardization).

    Qiao et al. 2019, "Micro-Batch Training with Batch-Channel Normalization and Weight Standardization",
    eqs. 5-7: ``W_hat = (W - mean) / sqrt(var + eps)`` over each output channel's (C_in, kT, kH, kW) values,
    biased variance, eps inside the root (timm's ``StdConv2d`` is the same formula). eps = 1e-5 as in the
    authors' code (which adds it to the unbiased standard deviation instead: a factor sqrt(n / (n - 1)) on
    the weights, which the GN after every standardized conv cancels). The stored weight stays the raw one, so
    the state dict is ``nn.Conv3d``'s. Standardized in fp32 under autocast.

    Args:
        *args: ``nn.Conv3d``'s.
        ws_eps: added to each output channel's weight variance.
        **kwargs: ``nn.Conv3d``'s.
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ws_eps = ws_eps

    def standardized_weight(self) -> torch.Tensor:
        """The weight the convolution uses: zero mean, unit variance per output channel."""
        # BN's fused kernel over a (1, C_out, C_in/groups * kT * kH * kW) view does exactly this (timm's trick):
        # one pass, and backward keeps the weight and two per-channel vectors instead of weight-sized temporaries
        w = F.batch_norm(self.weight.float().reshape(1, self.out_channels, -1), None, None, training=True,
                         momentum=0.0, eps=self.ws_eps)  # fmt: skip
        return w.view_as(self.weight).to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv3d, ws_eps: float = 1e-5) -> StdConv3d:
        """A standardized copy of ``conv``: same shape, options and (raw) parameters.

        Args:
            conv: the convolution to replace.
            ws_eps: see the class.
        """
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, ws_eps=ws_eps, device=conv.weight.device,
                  dtype=conv.weight.dtype)  # fmt: skip
        new.load_state_dict(conv.state_dict())
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ws_eps={self.ws_eps}"
