"""The batch-norm family on `(N, C, T, H, W)`: frozen BN, SyncBN over groups of processes, Batch Renormalization.

Each keeps `nn.BatchNorm3d`'s state dict keys, so checkpoints move freely between `bn`, `syncbn`, `frozenbn`
and `brn` (and 2D BN checkpoints inflate into all of them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
import torch.nn.functional as F


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

    def reset_parameters(self) -> None:
        """The identity transform (weight 1, bias 0, mean 0, var 1): what a checkpoint then overwrites."""
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            getattr(self, name).fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # training=False: use the stored statistics whatever self.training says.
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


# group size -> (the default process group it was made in, this process's subgroup); remade for a new default group
_SUBGROUPS: dict[int, tuple[object, object]] = {}


def _subgroup(size: int) -> object:
    """This process's group of ``size`` consecutive ranks (``dist.new_subgroups``: a collective, once per size)."""
    world = dist.group.WORLD
    cached = _SUBGROUPS.get(size)
    if cached is None or cached[0] is not world:
        cached = (world, dist.new_subgroups(group_size=size)[0])
        _SUBGROUPS[size] = cached
    return cached[1]


class SyncBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d whose training statistics are reduced over groups of ``sync_group`` processes (SyncBN).

    ``sync_group=0`` reduces over every process of the job (the usual SyncBN); ``k > 0`` over groups of k
    consecutive ranks, the way PySlowFast (``BN.NUM_SYNC_DEVICES``) and Detectron sync BN in local groups, so
    each statistic pools k x clips-per-device clips; ``k = 1`` is plain per-device BN. k must divide the number
    of processes.

    Not `nn.SyncBatchNorm`: DDP refuses that class on CPU ("SyncBatchNorm layers only work with GPU
    modules"), and its forward reduces only CUDA tensors. Here CUDA tensors take torch's fused sync kernel,
    other devices (CPU + gloo: DDP tests, CPU clusters) all-reduce the per-channel sum, sum of squares and
    count with autograd-aware collectives. Outside a multi-process group it is plain BatchNorm3d, and its
    state dict has BatchNorm3d's keys, so checkpoints move freely between `bn` and `syncbn`.

    Args:
        num_features: channel count C.
        eps: added to the variance before the square root.
        momentum: running-statistics update factor (None: cumulative average).
        sync_group: processes per statistics group (0: all).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, sync_group: int = 0):
        super().__init__(num_features, eps=eps, momentum=momentum)
        if not isinstance(sync_group, int) or sync_group < 0:
            raise ValueError(f"syncbn: sync_group must be an integer >= 0 (0: all processes), got {sync_group!r}")
        self.sync_group = sync_group

    def sync_size(self) -> int:
        """Processes whose batches one statistic pools now (1 outside a multi-process job)."""
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        world = dist.get_world_size()
        size = self.sync_group or world
        if world % size:
            raise ValueError(f"syncbn: a sync group of {size} processes does not divide the {world} processes of "
                             f"the job (model.norm_sync_group; 0 syncs all of them)")
        return size

    def statistics_batch(self, clips: int) -> int:
        """Clips one batch statistic pools when each process holds ``clips``."""
        return clips * self.sync_size()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.sync_size()
        if not self.training or size == 1:
            return super().forward(x)
        group = dist.group.WORLD if self.sync_group == 0 else _subgroup(size)  # k = world: one group, all ranks
        momentum = self._update_factor()
        if x.is_cuda:
            # torch's own SyncBN autograd function (what nn.SyncBatchNorm.forward calls)
            from torch.nn.modules._functions import SyncBatchNorm as _sync_batch_norm

            return _sync_batch_norm.apply(
                x, self.weight, self.bias, self.running_mean, self.running_var, self.eps, momentum, group, size
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

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sync_group={self.sync_group}"


class BatchRenorm3d(nn.BatchNorm3d):
    """Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence in
    Batch-Normalized Models"), per channel over (N, T, H, W) of the batch on one device.

    Training: ``y = gamma * ((x - mu_B) / sigma_B * r + d) + beta`` with ``sigma_B = sqrt(var_B + eps)``,
    ``sigma = sqrt(running_var + eps)``, and the corrections, constants for backprop (stop-gradient),
    ``r = clip(sigma_B / sigma, 1/r_max, r_max)``, ``d = clip((mu_B - running_mean) / sigma, -d_max, d_max)``.
    Inference is BN's: ``gamma * (x - running_mean) / sigma + beta``. With r_max = 1 and d_max = 0 it is BN.

    The paper's schedule (Sec. 4, Inception-v3 on ImageNet): r_max = 1 and d_max = 0 (plain BN) for the first
    5000 training steps, "gradually relaxed" to r_max = 3 at 40k steps and d_max = 5 at 25k steps; here the
    relaxation is linear. The step count is this layer's ``num_batches_tracked``: the training forward passes
    with autograd on (optimizer steps, or micro-batches under gradient accumulation; precise BN's no-grad passes
    do not count), saved in checkpoints so a resumed run continues the schedule.

    Running statistics follow BN exactly (the builder's momentum, unbiased variance), so a BN checkpoint loads
    and precise BN recomputes them as for BN, inside :meth:`plain_statistics` (r = 1, d = 0: its train-mode
    passes must not correct toward the very statistics they rewrite). The paper averages sigma rather than the
    variance (as Chainer's implementation notes too); the difference is second order.

    Args:
        num_features: channel count C.
        eps: added to the variances.
        momentum: running-statistics update factor (None: cumulative average).
        r_max: final bound of r.
        d_max: final bound of d.
        warmup_steps: steps with r_max = 1, d_max = 0.
        r_max_steps: step where r_max reaches its final value.
        d_max_steps: step where d_max reaches its final value.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, r_max: float = 3.0,
                 d_max: float = 5.0, warmup_steps: int = 5000, r_max_steps: int = 40000,
                 d_max_steps: int = 25000) -> None:  # fmt: skip
        super().__init__(num_features, eps=eps, momentum=momentum)
        if r_max < 1 or d_max < 0 or min(warmup_steps, r_max_steps, d_max_steps) < 0:
            raise ValueError(f"brn: needs r_max >= 1, d_max >= 0 and step counts >= 0; got r_max={r_max}, "
                             f"d_max={d_max}, warmup_steps={warmup_steps}, r_max_steps={r_max_steps}, "
                             f"d_max_steps={d_max_steps}")  # fmt: skip
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.r_max_steps, self.d_max_steps = int(warmup_steps), int(r_max_steps), int(d_max_steps)
        self.renormalize = True  # False inside plain_statistics(): training forwards are plain BN

    @contextlib.contextmanager
    def plain_statistics(self) -> Iterator[None]:
        """Training forwards inside are plain BN (r = 1, d = 0), whatever the schedule says.

        Precise BN recomputes the running statistics from train-mode passes; with the corrections on, each
        pass would renormalize toward running statistics those same passes are rewriting (the layers after it
        would then see other inputs than BN would give them), so the recomputation is BN's.
        """
        before, self.renormalize = self.renormalize, False
        try:
            yield
        finally:
            self.renormalize = before

    def limits(self, step: int | None = None) -> tuple[float, float]:
        """(r_max, d_max) at ``step`` (default: this layer's step count).

        Args:
            step: training steps taken.
        """
        step = int(self.num_batches_tracked) if step is None else step

        def ramp(start: float, end: float, end_step: int) -> float:
            if step <= self.warmup_steps:
                return start
            if end_step <= self.warmup_steps:
                return end
            return start + (end - start) * min(1.0, (step - self.warmup_steps) / (end_step - self.warmup_steps))

        return ramp(1.0, self.r_max, self.r_max_steps), ramp(0.0, self.d_max, self.d_max_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.track_running_stats or not self.renormalize:
            return super().forward(x)
        r_max, d_max = self.limits()
        dims = [0, *range(2, x.dim())]
        with torch.no_grad():  # r and d are constants for backprop; taken before the running update below
            # sums about the running mean: cheap on CPU (torch.var_mean over these dims is ~3x a BN forward here),
            # and the running mean is close to the batch's, so the variance does not cancel
            shifted = x.float() - self.running_mean.view((1, -1) + (1,) * (x.dim() - 2))
            n = x.numel() // x.shape[1]
            offset = shifted.sum(dims) / n  # mu_B - running_mean
            var_b = ((shifted * shifted).sum(dims) / n - offset * offset).clamp(min=0)
            sigma = (self.running_var + self.eps).sqrt()
            r = ((var_b + self.eps).sqrt() / sigma).clamp(1 / r_max, r_max)
            d = (offset / sigma).clamp(-d_max, d_max)
        if torch.is_grad_enabled():
            self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(max(int(self.num_batches_tracked), 1)) if self.momentum is None else self.momentum
        # gamma (x_hat r + d) + beta = x_hat (gamma r) + (beta + gamma d): BN's fused kernel with that affine
        # transform normalizes with the batch statistics, backpropagates through them, and updates the running
        # statistics as BN does (in fp32 under autocast too); one pass, BN's memory.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight * r, self.bias + self.weight * d,
                            True, momentum, self.eps)  # fmt: skip

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", r_max={self.r_max:g}, d_max={self.d_max:g}, warmup_steps="
                f"{self.warmup_steps}, r_max_steps={self.r_max_steps}, d_max_steps={self.d_max_steps}")  # fmt: skip
