"""Normalization-activation layers on `(N, C, T, H, W)`: FRN + TLU, EvoNorm-S0, EvoNorm-B0.

Each replaces a norm *and* the ReLU after it. Where a ResNet has a norm without an activation after it (the
last norm of a bottleneck and the shortcut's norm, before the residual sum), the layer is built with
``apply_act=False``, and each then does what timm's layer of the same name does with ``apply_act=False``:

* FRN normalizes, without TLU (timm ``FilterResponseNormTlu2d``).
* EvoNorm-S0 divides by its group std, without the sigmoid gate: ``gamma * x / group_std(x) + beta`` (timm
  ``EvoNorm2dS0a``). The authors' reference code (tensorflow/tpu ``resnet_model.evonorm``) and timm's
  ``EvoNorm2dS0`` make ``nonlinearity=False`` the affine transform alone, but the reference never builds that
  layer in a network it ran: its EvoNorm ResNets are pre-activation only (``resnet``: "Evonorms require the
  pre-activation form"), where every norm has its activation. In a post-activation ResNet the affine form
  leaves every residual branch, and the projection shortcuts, unnormalized where every other scheme normalizes
  them; ``EvoNorm2dS0a``'s form is what timm's own post-activation EvoNorm networks use (byobnet's
  ``regnetz_*_evos``), and it keeps the trunk normalized like the other schemes.
* EvoNorm-B0 is the affine transform alone, as both the reference code and timm's ``EvoNorm2dB0`` do (no
  source has a B0 that normalizes without its activation); it then keeps no running variance. Its residual
  branches end unnormalized, unlike every other scheme's.

All statistics are taken in fp32 (under autocast too); the output has the input's dtype. videonorm's I3D is
post-activation, like the GN paper's, and keeps the ReLU after each residual sum: faithful layers in a different
block than the EvoNorm paper measured.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view((1, -1) + (1,) * (ndim - 2))  # (C,) -> (1, C, 1, 1, 1) for 5D input


class _AffineNormAct(nn.Module):
    """Per-channel gamma (``weight``) and beta (``bias``), and the activation parameter when ``apply_act``."""

    act_name = ""  # name of the activation's per-channel parameter
    act_init = 0.0

    def __init__(self, num_features: int, eps: float, apply_act: bool) -> None:
        super().__init__()
        self.num_features, self.eps, self.apply_act = num_features, eps, apply_act
        self.weight = nn.Parameter(torch.empty(num_features))
        self.bias = nn.Parameter(torch.empty(num_features))
        self.register_parameter(self.act_name, nn.Parameter(torch.empty(num_features)) if apply_act else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0, and the activation parameter at its paper's initial value."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        if self.apply_act:
            nn.init.constant_(getattr(self, self.act_name), self.act_init)

    def _affine(self, y: torch.Tensor) -> torch.Tensor:
        return y * _channel_view(self.weight, y.dim()) + _channel_view(self.bias, y.dim())

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, apply_act={self.apply_act}"


class FilterResponseNorm3d(_AffineNormAct):
    """Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan 2020).

    Per sample and channel over (T, H, W), without subtracting a mean: ``nu2 = mean(x^2)``,
    ``y = gamma * x / sqrt(nu2 + eps) + beta``, ``z = max(y, tau)``. Paper's defaults: eps = 1e-6, gamma = 1,
    beta = 0, tau = 0 (the paper learns eps only for 1x1 activation maps, which a video ResNet's norms never
    see). No batch statistics: train and eval are the same function.

    Args:
        num_features: channel count C.
        eps: added to nu2.
        apply_act: apply TLU (a learned ``tau`` per channel).
    """

    act_name = "tau"

    def __init__(self, num_features: int, eps: float = 1e-6, apply_act: bool = True) -> None:
        super().__init__(num_features, eps, apply_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        nu2 = xf.square().mean(dim=tuple(range(2, x.dim())), keepdim=True)  # (N, C, 1, 1, 1)
        # gamma folded into the per-(sample, channel) scale: backward keeps x and that small scale, not x_hat
        y = torch.addcmul(_channel_view(self.bias, x.dim()), xf,
                          torch.rsqrt(nu2 + self.eps) * _channel_view(self.weight, x.dim()))  # fmt: skip
        if self.apply_act:
            y = torch.maximum(y, _channel_view(self.tau, y.dim()))
        return y.to(x.dtype)


class EvoNormS0(_AffineNormAct):
    """EvoNorm-S0 (Liu et al. 2020, "Evolving Normalization-Activation Layers"), per sample over groups.

    ``y = gamma * x * sigmoid(v * x) / group_std(x) + beta``, ``group_std`` per sample and group of C/G channels
    over (C/G, T, H, W) (biased variance + eps, then the root). Reference defaults: G = 32, eps = 1e-5,
    v = 1. No batch statistics.

    Args:
        num_features: channel count C.
        groups: G; must divide C.
        eps: added to the group variance.
        apply_act: the sigmoid gate; without it ``y = gamma * x / group_std(x) + beta`` (timm's ``EvoNorm2dS0a``
            with ``apply_act=False``; the module docstring says why not the reference code's affine alone).
    """

    act_name = "v"
    act_init = 1.0

    def __init__(self, num_features: int, groups: int = 32, eps: float = 1e-5, apply_act: bool = True) -> None:
        if num_features % groups:
            raise ValueError(f"evonorm_s0: {groups} groups do not divide {num_features} channels")
        super().__init__(num_features, eps, apply_act)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        n, c = x.shape[:2]
        var = xf.reshape(n, self.groups, -1).var(dim=-1, correction=0)  # (N, G) over (C/G, T, H, W)
        inv_std = torch.rsqrt(var + self.eps).repeat_interleave(c // self.groups, dim=1)  # (N, C)
        scale = inv_std.view((n, c) + (1,) * (x.dim() - 2)) * _channel_view(self.weight, x.dim())  # gamma folded in
        gated = xf * torch.sigmoid(_channel_view(self.v, x.dim()) * xf) if self.apply_act else xf
        return torch.addcmul(_channel_view(self.bias, x.dim()), gated, scale).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, apply_act={self.apply_act}"


class EvoNormB0(_AffineNormAct):
    """EvoNorm-B0 (Liu et al. 2020): a batch statistic against an instance statistic, per channel.

    ``y = gamma * x / max(sqrt(var_B + eps), v * x + sqrt(var_I(x) + eps)) + beta``: ``var_B`` per channel over
    (N, T, H, W) of the batch on one device in training (the running average in eval, updated like BN's:
    the builder's momentum, reference decay 0.9, unbiased), ``var_I`` per sample and channel over (T, H, W);
    biased variances. Reference defaults: eps = 1e-5, v = 1.

    Args:
        num_features: channel count C.
        eps: added to both variances.
        momentum: running-variance update factor.
        apply_act: the nonlinear part; without it the layer is the affine transform alone (reference code and
            timm's ``EvoNorm2dB0``) and has no running variance.
    """

    act_name = "v"
    act_init = 1.0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, apply_act: bool = True) -> None:
        super().__init__(num_features, eps, apply_act)
        self.momentum = momentum
        self.register_buffer("running_var", torch.ones(num_features) if apply_act else None)

    def reset_parameters(self) -> None:
        """gamma = 1, beta = 0, v = 1, running variance 1."""
        super().reset_parameters()
        if getattr(self, "running_var", None) is not None:
            self.running_var.fill_(1.0)

    def statistics_batch(self, clips: int) -> int | None:
        """Clips one batch statistic pools (None: this layer takes none)."""
        return clips if self.apply_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        if self.apply_act:
            if self.training:
                var_b = xf.var(dim=(0, *range(2, x.dim())), correction=0)
                n = x.numel() // x.shape[1]
                with torch.no_grad():
                    self.running_var.lerp_(var_b * n / max(n - 1, 1), self.momentum)
            else:
                var_b = self.running_var
            left = _channel_view(torch.sqrt(var_b + self.eps), x.dim())
            var_i = xf.var(dim=tuple(range(2, x.dim())), correction=0, keepdim=True)
            right = _channel_view(self.v, x.dim()) * xf + torch.sqrt(var_i + self.eps)
            xf = xf / torch.maximum(left, right)
        return self._affine(xf).to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", momentum={self.momentum}"
