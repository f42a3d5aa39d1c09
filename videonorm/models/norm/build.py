"""A norm scheme resolved once (:class:`Norm`): it builds every layer of a model and finishes the built model.

``resolve(spec)`` checks the name, the options and the group count once; builders then call ``norm.make(channels)``
(timm style: the channel count first; pytorchvideo's ``norm(num_features=..., eps=..., momentum=...)`` calls work as
they are), and ``norm.finish(model)`` does what the scheme needs beyond its layers: name the layers whose channels
the groups do not divide, swap the convolutions (weight standardization), and watch for batch statistics over a
single clip. Also the questions asked of built models: ``is_norm`` and ``bn_modules``.
"""

from __future__ import annotations

import functools
import importlib
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from videonorm.models.norm.schemes import GROUP_RULES, SCHEMES, Scheme, get_scheme, group_count, resolve_options


@functools.cache
def _load(path: str) -> type[nn.Module]:
    """The class a table entry names: ``"batch:BatchRenorm3d"`` (inside this package) or ``"torch.nn:BatchNorm3d"``."""
    module, _, name = path.partition(":")
    package = module if "." in module else f"videonorm.models.norm.{module}"
    return getattr(importlib.import_module(package), name)


class _Unbuilt(nn.Module):
    """Stands where a norm could not be built until ``Norm.finish`` names every such layer in one error."""

    def __init__(self, num_features: int, message: str) -> None:
        super().__init__()
        self.num_features, self.message = num_features, message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(self.message)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Norm:
    """One norm scheme with its settings, resolved: builds layers (``make``) and finishes models (``finish``).

    Args:
        name: one of ``NORM_NAMES``.
        groups: G for the schemes built with ``norm_groups`` (unused by the others: ``ln`` is G = 1, ``in`` G = C).
        sync_group: for ``syncbn``, the processes each statistic pools (0: all of them).
        options: overrides of the scheme's paper options (``resolve_options``).
        group_rule: how a grouped scheme fits ``groups`` to a layer it does not divide (``GROUP_RULES``):
            ``"divide"`` (an error naming the layers) or ``"largest_divisor"`` (the largest divisor <= G).

    Raises:
        ValueError: unknown ``name``, option or ``group_rule``, a group count that is not a positive integer for a
            grouped scheme, a negative ``sync_group``.
    """

    def __init__(self, name: str, groups: int = 32, sync_group: int = 0,
                 options: Mapping[str, float] | None = None, group_rule: str = "divide") -> None:
        self.name, self.scheme = name, get_scheme(name)
        settings = resolve_options(name, options)
        self.layer_options = {k: settings[k] for k in self.scheme.options}
        self.conv_options = {k: settings[k] for k in self.scheme.conv_options}
        if self.scheme.groups == "G" and (not isinstance(groups, int) or isinstance(groups, bool) or groups < 1):
            raise ValueError(f"norm {name!r} needs a positive integer group count, got groups={groups!r}")
        if self.scheme.sync and (not isinstance(sync_group, int) or sync_group < 0):
            raise ValueError(f"norm {name!r}: sync_group must be an integer >= 0 (0: all processes), got "
                             f"{sync_group!r}")
        if group_rule not in GROUP_RULES:
            raise ValueError(f"unknown norm_group_rule {group_rule!r}; allowed: {', '.join(GROUP_RULES)}")
        self.groups, self.sync_group, self.group_rule = groups, sync_group, group_rule

    @property
    def norm_act(self) -> bool:
        """The layer applies its own activation: builders put no ReLU after it."""
        return self.scheme.norm_act

    def activation(self) -> type[nn.Module] | None:
        """What a builder puts after a norm: ``nn.ReLU``, or nothing after a norm-act layer."""
        return None if self.scheme.norm_act else nn.ReLU

    @property
    def layer_class(self) -> type[nn.Module]:
        """The class of the layers ``make`` builds."""
        return _load(self.scheme.layer)

    def groups_for(self, channels: int) -> int | None:
        """The group count of a layer over ``channels`` channels (None: the scheme has no groups); for grouped
        schemes, ``norm_groups`` fitted by the group rule (``videonorm.models.norm.schemes.group_count``)."""
        if self.scheme.groups == "G":
            return group_count(channels, self.groups, self.group_rule)
        return {"1": 1, "C": channels, None: None}[self.scheme.groups]

    def make(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, apply_act: bool = True,
             defer_errors: bool = False) -> nn.Module:
        """One norm layer over ``num_features`` channels.

        Args:
            num_features: channel count C.
            eps: the builder's eps (schemes whose papers give their own, FRN and EvoNorm, use that instead).
            momentum: running-statistics update factor (schemes without running statistics take none).
            apply_act: False: a norm-act scheme's layer without its nonlinearity (before a residual sum).
            defer_errors: a channel count the groups do not divide leaves a placeholder that ``finish`` names,
                instead of raising here (builders use it, so the error can name every such layer).

        Raises:
            ValueError: the groups do not divide ``num_features`` (without ``defer_errors``).
        """
        groups = self.groups_for(num_features)
        if groups is not None and num_features % groups:
            message = (f"norm {self.name!r}: {groups} groups do not divide {num_features} channels; valid group "
                       f"counts for {num_features} channels: {_divisors(num_features)}")
            if defer_errors:
                return _Unbuilt(num_features, message)
            raise ValueError(message)
        keywords: dict[str, Any] = {"eps": eps}
        if self.scheme.momentum:
            keywords["momentum"] = momentum
        if groups is not None:
            keywords["groups"] = groups
        if self.scheme.sync:
            keywords["sync_group"] = self.sync_group
        if self.scheme.norm_act:
            keywords["apply_act"] = apply_act
        return self.layer_class(num_features, **{**keywords, **self.layer_options})

    def __call__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, apply_act: bool = True
                 ) -> nn.Module:
        """``make`` with deferred errors: what builders (pytorchvideo's ``norm=`` argument) call."""
        return self.make(num_features, eps=eps, momentum=momentum, apply_act=apply_act, defer_errors=True)

    def finish(self, model: nn.Module) -> None:
        """What the scheme does beyond its layers, in place, once the builder has made every layer.

        Raises:
            ValueError: the groups do not divide the channels of some layers (the message names them and the group
                counts that fit every layer).
        """
        unbuilt = [(path, m) for path, m in model.named_modules() if isinstance(m, _Unbuilt)]
        if unbuilt:
            channels = [m.num_features for m in model.modules() if is_norm(m) or isinstance(m, _Unbuilt)]
            paths = [path for path, _ in unbuilt]
            more = f" (and {len(paths) - 1} more layers: {', '.join(paths[1:4])}{', ...' if len(paths) > 4 else ''})"
            raise ValueError(f"norm {self.name!r}: {self.groups} groups do not divide {unbuilt[0][1].num_features} "
                             f"channels of layer {paths[0]}{more if len(paths) > 1 else ''}; group counts that "
                             f"divide every norm layer's channels: {_divisors(math.gcd(*channels))}; or "
                             f"model.net.norm_group_rule largest_divisor (each layer: the largest divisor of its "
                             f"channels <= {self.groups})")
        if self.scheme.conv is not None:
            conv = _load(self.scheme.conv)
            for parent in list(model.modules()):
                for child_name, child in parent.named_children():
                    if type(child) is nn.Conv3d:
                        setattr(parent, child_name, conv.from_conv(child, **self.conv_options))
        if self.scheme.batch_stats:
            _SingleClipWarning(model, self.name)

    def __repr__(self) -> str:
        return (f"Norm({self.name!r}, groups={self.groups}, sync_group={self.sync_group}, "
                f"options={ {**self.layer_options, **self.conv_options} }, group_rule={self.group_rule!r})")


def resolve(spec: Any) -> Norm:
    """The norm of a :class:`~videonorm.models.spec.ModelSpec` (its ``norm``, ``norm_groups``,
    ``norm_sync_group``, ``norm_options`` and ``norm_group_rule``), resolved once."""
    return Norm(spec.norm, spec.norm_groups, spec.norm_sync_group, spec.norm_options, spec.norm_group_rule)


def _layer_types(keep=lambda scheme: True) -> tuple[type[nn.Module], ...]:
    return tuple(dict.fromkeys(_load(s.layer) for s in SCHEMES.values() if keep(s)))


@functools.cache
def norm_types() -> tuple[type[nn.Module], ...]:
    """Every module class a scheme builds: what "is a norm layer" means for weight decay and weight init."""
    return _layer_types()


def is_norm(module: nn.Module) -> bool:
    """True if ``module`` is a normalization layer that a scheme builds.

    Args:
        module: any module.
    """
    return isinstance(module, norm_types())


def bn_modules(model: nn.Module) -> list[nn.Module]:
    """The layers whose running statistics precise BN recomputes: ``bn``, ``syncbn``, ``brn`` (a running mean and
    variance), and ``evonorm_b0`` with its activation (a running variance only; without it, it keeps none).

    Frozen BN and the batch-independent norms have no statistics to recompute, nor a BN built with
    ``track_running_stats=False``.

    Args:
        model: the network to search.
    """
    types = _precise_bn_types()
    return [m for m in model.modules() if isinstance(m, types) and getattr(m, "running_var", None) is not None]


@functools.cache
def _precise_bn_types() -> tuple[type[nn.Module], ...]:
    return _layer_types(lambda s: s.precise_bn)


@functools.cache
def _batch_stat_types() -> tuple[type[nn.Module], ...]:
    return _layer_types(lambda s: s.batch_stats)


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
            if isinstance(m, _batch_stat_types()) and _statistics_batch(m, 1) == 1
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


def norm_layer(name: str, groups: int = 32, *, sync_group: int = 0, options: Mapping[str, float] | None = None,
               group_rule: str = "divide"):
    """``Norm(name, ...).make``: a constructor ``make(num_features, eps=1e-5, momentum=0.1, apply_act=True)`` of one
    scheme's layers, for code that builds layers one by one (tests, other builders)."""
    return Norm(name, groups, sync_group, options, group_rule).make


__all__ = ["Norm", "Scheme", "bn_modules", "is_norm", "norm_layer", "norm_types", "resolve"]
