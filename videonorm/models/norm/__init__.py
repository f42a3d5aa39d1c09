"""Normalization schemes by name: the one registry (``SCHEMES``) every other module asks.

The config holds a name; ``norm_layer(name, groups)`` turns it into a callable ``make(num_features)`` that
every block calls, timm style. The callable also takes the ``eps`` and ``momentum`` keywords that
pytorchvideo's builders pass (``norm(num_features=..., eps=..., momentum=...)``): the batch-norm family uses
them, the group-norm family has no running statistics and ignores ``momentum``, and schemes whose papers give
their own eps (FRN, EvoNorm) use that instead.

A scheme replaces the norm layer alone, the norm and the activation after it (``norm_act``: the layer applies
its own nonlinearity, and the builder drops its ReLU there), or also the convolutions (``conv``: every
``nn.Conv3d`` becomes that class, applied by ``prepare_model``). Semantics on a video tensor ``(N, C, T, H, W)``:

=============  ========================================================================================
``bn``         per channel over (N, T, H, W) of the batch on one device (the paper's BN)
``syncbn``     ``bn`` with statistics over a group of processes: all of them, or ``sync_group`` = k
               consecutive ranks (k x clips per device pooled; ``model.norm_sync_group``)
``frozenbn``   fixed affine transform from stored statistics; nothing updates, even in ``train()`` (BN*)
``brn``        Batch Renormalization (Ioffe 2017): ``bn`` corrected toward the running statistics by
               clipped r and d, relaxed from plain BN over a schedule in steps
``gn``         per sample over (C/G, T, H, W); ``ln`` is GN with G = 1, ``in`` GN with G = C
``gn_ws``      ``gn`` after weight-standardized convolutions (Qiao et al. 2019), every conv
``frn``        norm-act: per sample and channel over (T, H, W), no mean, then TLU (Singh & Krishnan 2020)
``evonorm_s0`` norm-act: ``x sigmoid(v x)`` over a per-sample (C/G, T, H, W) std (Liu et al. 2020)
``evonorm_b0`` norm-act: ``x`` over the max of a batch std over (N, T, H, W) and ``v x`` + an instance std
=============  ========================================================================================

Each scheme's paper defaults stand beside its layer (``batch.py``, ``group.py``, ``norm_act.py``) and in its
``options``, which ``norm_options`` (``model.norm_options`` in configs) overrides.

Adding a scheme: its layer, and one ``Scheme`` entry below. Weight decay groups (``is_norm``), weight init
(``reset_parameters`` of every norm layer), precise BN (``bn_modules``), run identity (``uses_groups``,
``uses_sync_group``), the single-clip warning and the benchmarks all follow from the entry.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from videonorm.models.norm.batch import BatchRenorm3d, FrozenBatchNorm3d, SyncBatchNorm3d
from videonorm.models.norm.group import StdConv3d
from videonorm.models.norm.norm_act import EvoNormB0, EvoNormS0, FilterResponseNorm3d


@dataclass(frozen=True)
class Scheme:
    """One normalization scheme: what it builds, and what the rest of the code needs to know about it.

    Attributes:
        layer: the module class ``make`` returns.
        build: ``build(c, *, eps, momentum, groups, sync_group, apply_act, **options) -> layer``.
        options: the paper's values of its knobs (``norm_options`` overrides them; these names only).
        groups: built with the ``groups`` count (so the count is part of a run's identity).
        sync: reduces statistics over a group of processes of size ``sync_group`` (part of the identity).
        norm_act: applies its own activation: the builder drops the ReLU after it and asks for
            ``apply_act=False`` where a norm has no ReLU after it.
        conv: class replacing every ``nn.Conv3d`` of the model (``from_conv(conv, **options)``: the scheme's
            options are the convolution's).
        batch_stats: normalizes with statistics of the batch in training (warned about at one clip).
        precise_bn: has BN running statistics that precise BN recomputes (``bn_modules``).
    """

    layer: type[nn.Module]
    build: Callable[..., nn.Module]
    options: Mapping[str, float] = field(default_factory=dict)
    groups: bool = False
    sync: bool = False
    norm_act: bool = False
    conv: type[nn.Conv3d] | None = None
    batch_stats: bool = False
    precise_bn: bool = False


def _group_norm(c: int, *, eps: float, groups: int, **_: Any) -> nn.GroupNorm:
    return nn.GroupNorm(groups, c, eps=eps, affine=True)


# The papers' values of each scheme's knobs (the layers' docstrings give the sources); norm_options overrides them.
BRN_PAPER = {"r_max": 3.0, "d_max": 5.0, "warmup_steps": 5000, "r_max_steps": 40000, "d_max_steps": 25000}
WS_PAPER = {"ws_eps": 1e-5}  # weight standardization's eps (the GN after it keeps the builder's 1e-5)
FRN_PAPER = {"eps": 1e-6}
EVONORM_PAPER = {"eps": 1e-5}  # both variants; S0's groups are norm_groups (32 in the paper)

SCHEMES: dict[str, Scheme] = {
    # the batch-norm family: statistics of the batch on one device (syncbn: of a group of devices)
    "bn": Scheme(nn.BatchNorm3d, lambda c, *, eps, momentum, **_: nn.BatchNorm3d(c, eps=eps, momentum=momentum),
                 batch_stats=True, precise_bn=True),
    "syncbn": Scheme(SyncBatchNorm3d, lambda c, *, eps, momentum, sync_group, **_: SyncBatchNorm3d(
        c, eps=eps, momentum=momentum, sync_group=sync_group), sync=True, batch_stats=True, precise_bn=True),
    "frozenbn": Scheme(FrozenBatchNorm3d, lambda c, *, eps, **_: FrozenBatchNorm3d(c, eps=eps)),
    "brn": Scheme(BatchRenorm3d, lambda c, *, eps, momentum, groups, sync_group, apply_act, **options: BatchRenorm3d(
        c, eps=eps, momentum=momentum, **options), options=BRN_PAPER, batch_stats=True, precise_bn=True),
    # the group-norm family: statistics of each sample
    "gn": Scheme(nn.GroupNorm, _group_norm, groups=True),
    "ln": Scheme(nn.GroupNorm, lambda c, *, eps, **_: nn.GroupNorm(1, c, eps=eps)),
    "in": Scheme(nn.GroupNorm, lambda c, *, eps, **_: nn.GroupNorm(c, c, eps=eps)),
    "gn_ws": Scheme(nn.GroupNorm, _group_norm, options=WS_PAPER, groups=True, conv=StdConv3d),
    # normalization-activation layers
    "frn": Scheme(FilterResponseNorm3d, lambda c, *, eps, apply_act, **_: FilterResponseNorm3d(
        c, eps=eps, apply_act=apply_act), options=FRN_PAPER, norm_act=True),
    "evonorm_s0": Scheme(EvoNormS0, lambda c, *, eps, groups, apply_act, **_: EvoNormS0(
        c, groups=groups, eps=eps, apply_act=apply_act), options=EVONORM_PAPER, groups=True, norm_act=True),
    "evonorm_b0": Scheme(EvoNormB0, lambda c, *, eps, momentum, apply_act, **_: EvoNormB0(
        c, eps=eps, momentum=momentum, apply_act=apply_act), options=EVONORM_PAPER, norm_act=True,
        batch_stats=True),
}  # fmt: skip
NORM_NAMES = tuple(SCHEMES)
# Every module class a scheme builds: what "is a norm layer" means for weight decay and weight init.
NORM_TYPES = tuple(dict.fromkeys(s.layer for s in SCHEMES.values()))
_PRECISE_BN_TYPES = tuple(dict.fromkeys(s.layer for s in SCHEMES.values() if s.precise_bn))
_BATCH_STAT_TYPES = tuple(dict.fromkeys(s.layer for s in SCHEMES.values() if s.batch_stats))


def get_scheme(name: str) -> Scheme:
    """The registry entry of ``name``.

    Args:
        name: one of ``NORM_NAMES``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones).
    """
    if name not in SCHEMES:
        raise ValueError(f"unknown norm {name!r}; allowed: {', '.join(NORM_NAMES)}")
    return SCHEMES[name]


def uses_groups(name: str) -> bool:
    """Whether norm ``name`` is built with the ``groups`` argument (``gn``, ``gn_ws``, ``evonorm_s0``).

    Args:
        name: one of ``NORM_NAMES``.

    Raises:
        ValueError: unknown ``name``.
    """
    return get_scheme(name).groups


def uses_sync_group(name: str) -> bool:
    """Whether norm ``name`` takes the ``sync_group`` argument (``syncbn``).

    Args:
        name: one of ``NORM_NAMES``.

    Raises:
        ValueError: unknown ``name``.
    """
    return get_scheme(name).sync


def is_norm(module: nn.Module) -> bool:
    """True if ``module`` is a normalization layer that a scheme builds.

    Args:
        module: any module.
    """
    return isinstance(module, NORM_TYPES)


def bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The layers with BN running statistics that can be recomputed (precise BN): ``bn``, ``syncbn``, ``brn``.

    Frozen BN and the batch-independent norms have no statistics to recompute; EvoNorm-B0 keeps only a
    running variance (of a different quantity) and is left as trained.

    Args:
        model: the network to search.
    """
    return [m for m in model.modules() if isinstance(m, _PRECISE_BN_TYPES) and m.track_running_stats]


def resolve_options(name: str, options: Mapping[str, float] | None = None) -> dict[str, float]:
    """The scheme's paper options with ``options`` laid over them.

    Args:
        name: one of ``NORM_NAMES``.
        options: overrides (``model.norm_options``); each must be one of the scheme's options.

    Raises:
        ValueError: unknown ``name``, or an option the scheme does not have (the message lists its options).
    """
    scheme = get_scheme(name)
    unknown = sorted(set(options or {}) - set(scheme.options))
    if unknown:
        known = ", ".join(f"{k}={v:g}" for k, v in scheme.options.items()) or "none"
        raise ValueError(f"norm {name!r} has no option {', '.join(map(repr, unknown))}; its options (paper "
                         f"defaults): {known}")  # fmt: skip
    return {**scheme.options, **(options or {})}


class _Unbuilt(nn.Module):
    """Stands where a norm could not be built (``defer_errors``) until ``prepare_model`` names it."""

    def __init__(self, num_features: int, message: str) -> None:
        super().__init__()
        self.num_features, self.message = num_features, message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(self.message)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def norm_layer(name: str, groups: int = 32, *, sync_group: int = 0, options: Mapping[str, float] | None = None,
               defer_errors: bool = False) -> Callable[..., nn.Module]:  # fmt: skip
    """Resolve a norm name into a constructor ``make(num_features, eps=1e-5, momentum=0.1, apply_act=True)``.

    Args:
        name: one of ``NORM_NAMES``.
        groups: number of groups G for the schemes that ``uses_groups`` (each group normalizes C/G channels
            over T, H, W); unused by the others (``ln`` is G = 1, ``in`` is G = C).
        sync_group: for ``syncbn``, the processes whose batches each statistic pools (0: all of them).
        options: overrides of the scheme's paper options (``resolve_options``).
        defer_errors: a channel count that ``groups`` does not divide leaves a placeholder instead of raising,
            so that ``prepare_model`` can name the layers (``blocks.0.norm``) in its error: for model builders.

    Returns:
        A callable that builds one normalization module for ``num_features`` channels (``apply_act=False``: a
        norm-act scheme's layer without its nonlinearity). A channel count that ``groups`` does not divide
        raises ValueError when the callable is called (with ``defer_errors``, in ``prepare_model``).

    Raises:
        ValueError: unknown ``name`` or option, ``groups < 1`` for a grouped scheme, ``sync_group < 0``.
    """
    scheme = get_scheme(name)
    settings = resolve_options(name, options)
    if scheme.groups and (not isinstance(groups, int) or isinstance(groups, bool) or groups < 1):
        raise ValueError(f"norm {name!r} needs a positive integer group count, got groups={groups!r}")
    if scheme.sync and (not isinstance(sync_group, int) or sync_group < 0):
        raise ValueError(f"norm {name!r}: sync_group must be an integer >= 0 (0: all processes), got {sync_group!r}")

    def make(num_features: int, eps: float = 1e-5, momentum: float = 0.1, apply_act: bool = True) -> nn.Module:
        if scheme.groups and num_features % groups:
            message = (f"norm {name!r}: {groups} groups do not divide {num_features} channels; valid group counts "
                       f"for {num_features} channels: {_divisors(num_features)}")  # fmt: skip
            if defer_errors:
                return _Unbuilt(num_features, message)
            raise ValueError(message)
        kwargs = {"eps": eps, "momentum": momentum, **settings}
        return scheme.build(num_features, groups=groups, sync_group=sync_group, apply_act=apply_act, **kwargs)

    make.__name__ = make.__qualname__ = f"norm_layer_{name}"
    return make


# ---- the model-level half of a scheme --------------------------------------------------------------------
def prepare_model(model: nn.Module, name: str, groups: int = 32, options: Mapping[str, float] | None = None) -> None:
    """What a scheme does beyond its norm layers, in place: name the layers a group count did not fit, swap
    the convolutions (weight standardization), and watch for batch statistics over a single clip.

    Call it once the builder has made every layer with ``norm_layer(name, ..., defer_errors=True)``.

    Args:
        model: the built network.
        name: its norm scheme.
        groups: the group count it was built with (for the error message).
        options: the same overrides given to ``norm_layer``.

    Raises:
        ValueError: ``groups`` does not divide the channels of some norm layers (the message names them and
            the group counts that fit every layer).
    """
    scheme = get_scheme(name)
    unbuilt = [(path, m) for path, m in model.named_modules() if isinstance(m, _Unbuilt)]
    if unbuilt:
        channels = [getattr(m, "num_features", None) or m.num_channels for m in model.modules()
                    if is_norm(m) or isinstance(m, _Unbuilt)]  # GroupNorm says num_channels
        paths = [path for path, _ in unbuilt]
        more = f" (and {len(paths) - 1} more layers: {', '.join(paths[1:4])}{', ...' if len(paths) > 4 else ''})"
        raise ValueError(f"norm {name!r}: {groups} groups do not divide {unbuilt[0][1].num_features} channels of "
                         f"layer {paths[0]}{more if len(paths) > 1 else ''}; group counts that divide every norm "
                         f"layer's channels: {_divisors(math.gcd(*channels))}")  # fmt: skip
    if scheme.conv is not None:
        settings = resolve_options(name, options)
        for parent in list(model.modules()):
            for child_name, child in parent.named_children():
                if type(child) is nn.Conv3d:
                    setattr(parent, child_name, scheme.conv.from_conv(child, **settings))
    if scheme.batch_stats:
        _SingleClipWarning(model, name)


def _statistics_batch(layer: nn.Module, clips: int) -> int | None:
    """Clips one batch statistic of ``layer`` pools in this forward (None: it takes none)."""
    if not layer.training:
        return None
    return layer.statistics_batch(clips) if hasattr(layer, "statistics_batch") else clips


class _SingleClipWarning:
    """Forward hooks that warn once, at the first training forward whose batch statistics come from a single
    clip, how many values per channel they pool (T x H x W of that clip, per layer). A class, not closures, so
    the model still pickles."""

    def __init__(self, model: nn.Module, name: str) -> None:
        self.name = name
        self.values: dict[str, int] = {}
        self.layer_handles: list = []
        self.handles = [model.register_forward_pre_hook(self.before), model.register_forward_hook(self.after)]

    def before(self, model: nn.Module, args: tuple) -> None:
        self._remove(self.layer_handles)  # left by a forward that raised
        self.values = {}
        x = args[0] if args else None
        if not (model.training and torch.is_tensor(x) and x.dim() >= 3 and x.shape[0] == 1):
            return  # the cheap test first: this runs before every forward
        self.layer_handles = [
            m.register_forward_pre_hook(functools.partial(self.record, path)) for path, m in model.named_modules()
            if isinstance(m, _BATCH_STAT_TYPES) and _statistics_batch(m, 1) == 1
        ]  # fmt: skip

    def record(self, path: str, layer: nn.Module, args: tuple) -> None:
        self.values[path] = args[0].numel() // args[0].shape[1]  # values per channel: (T, H, W) of one clip

    def after(self, model: nn.Module, args: tuple, output: Any) -> None:
        self._remove(self.layer_handles)
        if not self.values:
            return
        v = self.values
        low, high = min(v, key=v.get), max(v, key=v.get)
        warnings.warn(
            f"norm {self.name!r} takes batch statistics from a single clip in training (1 clip per device, no "
            f"sync): each channel's mean and variance pool the T x H x W values of one clip, {v[low]} at {low} "
            f"to {v[high]} at {high}. Expect noisy statistics and a train/eval gap; more clips per device, "
            f"'syncbn' across devices, or a batch-independent norm (gn, frn, evonorm_s0) avoid it.",
            UserWarning, stacklevel=2)  # fmt: skip
        self._remove(self.handles)  # once

    @staticmethod
    def _remove(handles: list) -> None:
        for handle in handles:
            handle.remove()
        handles.clear()


__all__ = [
    "NORM_NAMES", "NORM_TYPES", "SCHEMES", "BatchRenorm3d", "EvoNormB0", "EvoNormS0", "FilterResponseNorm3d",
    "FrozenBatchNorm3d", "Scheme", "StdConv3d", "SyncBatchNorm3d", "bn_modules", "get_scheme", "is_norm",
    "norm_layer", "prepare_model", "resolve_options", "uses_groups", "uses_sync_group",
]  # fmt: skip
