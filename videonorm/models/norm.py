"""Normalization layers by name: the only module that knows `bn`, `syncbn`, `frozenbn`, `gn`, `ln`, `in`.

The config holds a string; `norm_layer(name, groups)` turns it into a callable `make(num_features)` that
every block calls, timm style. The callable also takes the `eps` and `momentum` keywords that
pytorchvideo's builders pass (`norm(num_features=..., eps=..., momentum=...)`); the group-norm family has
no running statistics and ignores `momentum`.

Semantics on a video tensor `(N, C, T, H, W)`:
- `bn`: per channel over (N, T, H, W) of the batch on one device (the paper's BN).
- `syncbn`: like `bn`, but the statistics are reduced over all devices of the process group.
- `frozenbn`: fixed affine transform from stored statistics; nothing updates, even in `train()` (the
  paper's BN*, for fine-tuning from a checkpoint).
- `gn`: per sample over (C/G, T, H, W); `ln` is GN with G=1, `in` is GN with G=C.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
import torch.nn.functional as F

NORM_NAMES = ("bn", "syncbn", "frozenbn", "gn", "ln", "in")


class FrozenBatchNorm3d(nn.Module):
    """BatchNorm3d with statistics and affine parameters held fixed (buffers, not parameters).

    Its state_dict has exactly the keys of `nn.BatchNorm3d` (including `num_batches_tracked`), so BN
    checkpoints load into it with `strict=True` and back.

    Args:
        num_features: channel count C of the `(N, C, T, H, W)` input.
        eps: added to the variance before the square root.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        # Kept only so the keys match BatchNorm3d; never incremented.
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # training=False: use the stored statistics whatever self.training says.
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class SyncBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d whose training statistics are reduced over every process of the group (SyncBN).

    Not `nn.SyncBatchNorm`: DDP refuses that class on CPU ("SyncBatchNorm layers only work with GPU
    modules"), and its forward reduces only CUDA tensors. Here CUDA tensors take torch's fused sync kernel,
    other devices (CPU + gloo: DDP tests, CPU clusters) all-reduce the per-channel sum, sum of squares and
    count with autograd-aware collectives. Outside a multi-process group it is plain BatchNorm3d, and its
    state dict has BatchNorm3d's keys, so checkpoints move freely between `bn` and `syncbn`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = dist.group.WORLD if dist.is_available() and dist.is_initialized() else None
        world_size = dist.get_world_size(group) if group is not None else 1
        if not self.training or world_size == 1:
            return super().forward(x)
        momentum = self._update_factor()
        if x.is_cuda:
            # torch's own SyncBN autograd function (what nn.SyncBatchNorm.forward calls)
            from torch.nn.modules._functions import SyncBatchNorm as _sync_batch_norm

            return _sync_batch_norm.apply(
                x, self.weight, self.bias, self.running_mean, self.running_var, self.eps, momentum, group, world_size
            )
        return self._all_reduce_forward(x, group, momentum)

    def _update_factor(self) -> float:
        """The running-statistics update factor of this step (``momentum``, or 1/n for a cumulative average)."""
        if not self.track_running_stats:
            return 0.0
        self.num_batches_tracked += 1
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def _all_reduce_forward(self, x: torch.Tensor, group, momentum: float) -> torch.Tensor:
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()  # accumulate in fp32 even under autocast
        count = torch.full((1,), x.numel() // c, dtype=xf.dtype, device=x.device)
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])  # (2C + 1,)
        stats = dist_fn.all_reduce(stats, group=group)  # sums over processes; gradients flow back to every x
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c : 2 * c] / total - mean * mean).clamp(min=0)  # biased: what BN normalizes with
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * total / (total - 1).clamp(min=1), momentum)  # unbiased
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


# Every module class `norm_layer` can produce: for weight-decay exclusion and weight init elsewhere.
NORM_TYPES = (nn.BatchNorm3d, nn.SyncBatchNorm, FrozenBatchNorm3d, nn.GroupNorm)  # SyncBatchNorm3d is a BatchNorm3d


def is_norm(module: nn.Module) -> bool:
    """True if `module` is a normalization layer that `norm_layer` can produce.

    Args:
        module: any module.
    """
    return isinstance(module, NORM_TYPES)


def bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose running statistics can be recomputed (precise BN).

    Frozen BN and the group-norm family have no statistics to recompute and are left out.

    Args:
        model: the network to search.
    """
    return [
        m
        for m in model.modules()
        if isinstance(m, (nn.BatchNorm3d, nn.SyncBatchNorm)) and m.track_running_stats
    ]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _group_norm(num_features: int, groups: int, eps: float) -> nn.GroupNorm:
    if num_features % groups != 0:
        raise ValueError(
            f"group norm: {groups} groups do not divide {num_features} channels; "
            f"valid group counts for {num_features} channels: {_divisors(num_features)}"
        )
    return nn.GroupNorm(groups, num_features, eps=eps, affine=True)


# name -> build(num_features, eps, momentum, groups)
_BUILDERS: dict[str, Callable[[int, float, float, int], nn.Module]] = {
    "bn": lambda c, eps, momentum, g: nn.BatchNorm3d(c, eps=eps, momentum=momentum),
    "syncbn": lambda c, eps, momentum, g: SyncBatchNorm3d(c, eps=eps, momentum=momentum),
    "frozenbn": lambda c, eps, momentum, g: FrozenBatchNorm3d(c, eps=eps),
    "gn": lambda c, eps, momentum, g: _group_norm(c, g, eps),
    "ln": lambda c, eps, momentum, g: _group_norm(c, 1, eps),
    "in": lambda c, eps, momentum, g: _group_norm(c, c, eps),
}
assert tuple(_BUILDERS) == NORM_NAMES


def uses_groups(name: str) -> bool:
    """Whether norm ``name`` is built with the ``groups`` argument (``gn``; ``ln``/``in`` fix their own).

    Args:
        name: one of `NORM_NAMES`.

    Raises:
        ValueError: unknown `name`.
    """
    if name not in NORM_NAMES:
        raise ValueError(f"unknown norm {name!r}; allowed: {', '.join(NORM_NAMES)}")
    return name == "gn"


def norm_layer(name: str, groups: int = 32) -> Callable[..., nn.Module]:
    """Resolve a norm name into a constructor `make(num_features, eps=1e-5, momentum=0.1)`.

    Args:
        name: one of `NORM_NAMES`.
        groups: number of groups G for `gn` (each group normalizes C/G channels over T, H, W); unused by
            the other names (`ln` is G=1, `in` is G=C).

    Returns:
        A callable that builds one normalization module for `num_features` channels. A channel count that
        `groups` does not divide raises ValueError when the callable is called.

    Raises:
        ValueError: unknown `name`, or `groups < 1` for `gn`.
    """
    if name not in NORM_NAMES:
        raise ValueError(f"unknown norm {name!r}; allowed: {', '.join(NORM_NAMES)}")
    if name == "gn" and (not isinstance(groups, int) or groups < 1):
        raise ValueError(f"norm 'gn' needs a positive integer group count, got groups={groups!r}")

    build = _BUILDERS[name]

    def make(num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
        return build(num_features, eps, momentum, groups)

    make.__name__ = make.__qualname__ = f"norm_layer_{name}"
    return make
