"""Normalization schemes by name: the one table (``SCHEMES``) every other module asks. Imports no torch.

A config holds a name; :func:`videonorm.models.norm.build.resolve` turns it, once, into a ``Norm`` that builds the
layers and finishes the built model. Semantics on a video tensor ``(N, C, T, H, W)``:

=============  ========================================================================================
``bn``         per channel over (N, T, H, W) of the batch on one device (the paper's BN)
``syncbn``     ``bn`` with statistics over a group of processes: all of them, or ``sync_group`` = k
               consecutive ranks (k x clips per device pooled; ``model.net.norm_sync_group``)
``frozenbn``   fixed affine transform from stored statistics; nothing updates, even in ``train()`` (BN*)
``brn``        Batch Renormalization (Ioffe 2017): ``bn`` corrected toward the running statistics by
               clipped r and d, relaxed from plain BN over a schedule in steps
``gn``         per sample over (C/G, T, H, W); ``ln`` is GN with G = 1, ``in`` GN with G = C
``gn_ws``      ``gn`` after weight-standardized convolutions (Qiao et al. 2019), every conv
``frn``        norm-act: per sample and channel over (T, H, W), no mean, then TLU (Singh & Krishnan 2020)
``evonorm_s0`` norm-act: ``x sigmoid(v x)`` over a per-sample (C/G, T, H, W) std (Liu et al. 2020)
``evonorm_b0`` norm-act: ``x`` over the max of a batch std over (N, T, H, W) and ``v x`` + an instance std
=============  ========================================================================================

Adding a scheme: its layer class in ``batch.py``, ``group.py`` or ``norm_act.py`` (with ``reset_parameters``), and
one ``Scheme`` entry below. Weight decay groups and weight init (``is_norm``), precise BN (``bn_modules``), run
identity (``uses_groups``, ``uses_sync_group``), 2D initialization, the single-clip warning, the benchmarks and the
model tests all follow from the entry. ``GROUP_RULES`` says how a grouped scheme fits G to widths it does not divide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Scheme:
    """One normalization scheme: the layer it builds, and what the rest of the code needs to know about it.

    The layer is built as ``layer(num_features, eps=..., **keywords)`` where the keywords are exactly those the
    flags below call for (nothing is passed that the layer would have to ignore).

    Attributes:
        layer: ``"<module>:<class>"``, the module inside ``videonorm.models.norm``.
        options: the paper's values of the layer's own knobs (``model.net.norm_options`` overrides them).
        conv: ``"<module>:<class>"`` replacing every ``nn.Conv3d`` of the model (``Class.from_conv(conv,
            **conv_options)``), or None.
        conv_options: the paper's values of the convolution's knobs (overridable like ``options``).
        groups: how many groups the layer normalizes over: ``"G"`` (``norm_groups``, so the count is part of a
            run's identity), ``"1"`` (all channels together) or ``"C"`` (each channel alone); None: no groups.
        sync: takes ``sync_group``, the processes whose batches one statistic pools (part of the identity).
        momentum: keeps running statistics, updated with the builder's ``momentum``.
        norm_act: applies its own activation (``apply_act``): a builder drops the ReLU after it, and the norms
            that end a residual branch are built with ``apply_act=False``.
        batch_stats: normalizes with statistics of the batch in training (warned about at one clip).
        precise_bn: has running statistics that precise BN recomputes (``bn_modules``): BN's mean and variance,
            EvoNorm-B0's variance.
        checkpoint: the 2D ImageNet checkpoints whose norm tensors it takes: ``"bn"`` (running statistics),
            ``"gn"`` (GN affine only), or None (no 2D source has its layers).
    """

    layer: str
    options: Mapping[str, float] = field(default_factory=dict)
    conv: str | None = None
    conv_options: Mapping[str, float] = field(default_factory=dict)
    groups: Literal["G", "1", "C"] | None = None
    sync: bool = False
    momentum: bool = False
    norm_act: bool = False
    batch_stats: bool = False
    precise_bn: bool = False
    checkpoint: Literal["bn", "gn"] | None = None

    @property
    def all_options(self) -> dict[str, float]:
        """Every knob ``norm_options`` may set, with its paper value."""
        return {**self.options, **self.conv_options}


# The papers' values of each scheme's knobs (the layers' docstrings give the sources); norm_options overrides them.
BRN_PAPER = {"r_max": 3.0, "d_max": 5.0, "warmup_steps": 5000, "r_max_steps": 40000, "d_max_steps": 25000}
WS_PAPER = {"ws_eps": 1e-5}  # weight standardization's eps (the GN after it keeps the builder's 1e-5)
FRN_PAPER = {"eps": 1e-6}
EVONORM_PAPER = {"eps": 1e-5}  # both variants; S0's groups are norm_groups (32 in the paper)

_BN = dict(momentum=True, batch_stats=True, precise_bn=True, checkpoint="bn")
SCHEMES: dict[str, Scheme] = {
    # the batch-norm family: statistics of the batch on one device (syncbn: of a group of devices)
    "bn": Scheme("torch.nn:BatchNorm3d", **_BN),
    "syncbn": Scheme("batch:SyncBatchNorm3d", sync=True, **_BN),
    "frozenbn": Scheme("batch:FrozenBatchNorm3d", checkpoint="bn"),
    "brn": Scheme("batch:BatchRenorm3d", options=BRN_PAPER, **_BN),
    # the group-norm family: statistics of each sample
    "gn": Scheme("group:GroupNorm3d", groups="G", checkpoint="gn"),
    "ln": Scheme("group:GroupNorm3d", groups="1", checkpoint="gn"),
    "in": Scheme("group:GroupNorm3d", groups="C", checkpoint="gn"),
    # GN weights trained without standardization mean something else under it: no 2D source takes gn_ws
    "gn_ws": Scheme("group:GroupNorm3d", groups="G", conv="group:StdConv3d", conv_options=WS_PAPER),
    # normalization-activation layers
    "frn": Scheme("norm_act:FilterResponseNorm3d", options=FRN_PAPER, norm_act=True),
    "evonorm_s0": Scheme("norm_act:EvoNormS0", options=EVONORM_PAPER, groups="G", norm_act=True),
    "evonorm_b0": Scheme("norm_act:EvoNormB0", options=EVONORM_PAPER, momentum=True, norm_act=True,
                         batch_stats=True, precise_bn=True),
}
NORM_NAMES = tuple(SCHEMES)


def get_scheme(name: str) -> Scheme:
    """The table entry of ``name``.

    Args:
        name: one of ``NORM_NAMES``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones).
    """
    if name not in SCHEMES:
        raise ValueError(f"unknown norm {name!r}; allowed: {', '.join(NORM_NAMES)}")
    return SCHEMES[name]


def uses_groups(name: str) -> bool:
    """Whether norm ``name`` is built with ``norm_groups`` (``gn``, ``gn_ws``, ``evonorm_s0``).

    Raises:
        ValueError: unknown ``name``.
    """
    return get_scheme(name).groups == "G"


def uses_sync_group(name: str) -> bool:
    """Whether norm ``name`` takes ``norm_sync_group`` (``syncbn``).

    Raises:
        ValueError: unknown ``name``.
    """
    return get_scheme(name).sync


# How a grouped scheme (``groups="G"``) picks the group count of a layer over C channels from G = norm_groups
# (``model.net.norm_group_rule``; part of a run's identity). "divide": G itself, and a G that does not divide some
# layer's channels is an error naming those layers (the paper's networks: every width a multiple of 32).
# "largest_divisor": the largest divisor of C that is <= G, per layer, for networks whose widths G does not divide
# (X3D's 24/48/54/108/...; SlowFast's 8-channel fast stem): with G = 32, 24 channels get 24 groups (one channel
# each: IN there), 54 get 27, 96 get 32. Layers G divides get G either way. The value is the run-name suffix of
# the group count (``-g32ld``; "divide" adds none).
GROUP_RULES: dict[str, str] = {"divide": "", "largest_divisor": "ld"}


def group_count(channels: int, groups: int, rule: str = "divide") -> int:
    """The group count a layer over ``channels`` channels gets from ``groups`` under ``rule`` (``GROUP_RULES``).

    Args:
        channels: C.
        groups: G (``norm_groups``).
        rule: ``"divide"`` (G, whether or not it divides C) or ``"largest_divisor"`` (the largest divisor of C
            that is <= G).

    Raises:
        ValueError: unknown ``rule``.
    """
    if rule not in GROUP_RULES:
        raise ValueError(f"unknown norm_group_rule {rule!r}; allowed: {', '.join(GROUP_RULES)}")
    if rule == "divide":
        return groups
    return max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)


def resolve_options(name: str, options: Mapping[str, float] | None = None) -> dict[str, float]:
    """The scheme's paper options (layer and convolution) with ``options`` laid over them.

    Args:
        name: one of ``NORM_NAMES``.
        options: overrides (``model.net.norm_options``); each must be one of the scheme's options.

    Raises:
        ValueError: unknown ``name``, or an option the scheme does not have (the message lists its options).
    """
    known = get_scheme(name).all_options
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        listed = ", ".join(f"{k}={v:g}" for k, v in known.items()) or "none"
        raise ValueError(f"norm {name!r} has no option {', '.join(map(repr, unknown))}; its options (paper "
                         f"defaults): {listed}")
    return {**known, **(options or {})}
