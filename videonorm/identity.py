"""What a run *is*: the one definition of "the same experiment", its name, and its flattened config.

A :class:`Setting` is everything that makes two runs different experiments, read from a run's flattened config
by :func:`run_setting`:

* the network (:class:`Row`): architecture and depth, width, norm and its groups and group rule (for norms that use
  groups), the initialization (``scratch``, or the 2D ImageNet source and the hash of its weights), the number of
  classes and the stem's max-pool padding;
* how it was trained and tested (:class:`Recipe`, part of the row): learning rate per clip, epochs, schedule,
  warmup, optimizer, weight decays, zero-init, dropout, precision, the norm's own options, augmentation, test views;
* what a step sees (:class:`Column`): clips per device, devices x nodes (``world_size``, once a run has logged it),
  frames x stride, repeated augmentation.

Runs of one setting differ only in their seed (and are averaged by ``videonorm compare``); runs that differ in
any of these never are. The dataset is the remaining part of a run's identity; ``compare`` checks its fingerprint
(``dataset.hash``) separately and compares runs of one dataset copy only. The CLI names runs from the same
definition (:func:`run_name`), and the W&B config carries every key it reads.

Run name: ``{arch}-{norm}[-g{groups}[ld]][-w{width}]-b{batch}-{frames}x{rate}[-ra{k}][-in1k][-s{seed}]``, for example
``i3d_r50-gn-b4-32x2-in1k`` (the paper's GN, 4 clips per device, 32 frames at stride 2, ImageNet-initialized).
SyncBN over groups of k processes (``model.net.norm_sync_group`` = k > 0) is the norm ``syncbn-k{k}`` in names and
comparisons alike: its statistics pool k x batch clips, another experiment than ``syncbn`` over all devices.
``-g`` appears only for norms that use groups and a group count other than 32 or a group rule other than
``divide`` (``-g32ld``: ``largest_divisor``, ``videonorm.models.norm.schemes.GROUP_RULES``), ``-w`` only for widths
other than 64, ``-ra`` only for repeated augmentation (``data.repeat_aug`` > 1), ``-in1k`` only for runs initialized
from a 2D ImageNet model, ``-s`` only for seeds other than 0, so seed repeats never share a directory. The device
count is not in the name (``devices: auto`` is only resolved when the run starts); two runs that differ only in it
or in their 2D source share a name, and the CLI refuses to let one overwrite the other. Neither is the recipe: two
runs of one name with different recipes are never averaged, and ``videonorm demo`` names a run of another recipe
apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from videonorm.models.norm.schemes import GROUP_RULES, SCHEMES
from videonorm.models.registry import BACKBONES
from videonorm.models.spec import CONFIG_PREFIX, DEFAULTS, ModelSpec

SCRATCH = "scratch"
# Config keys that say which grid cell a run is (missing ones make the run unplaceable); the norm may also sit at
# model.norm, where runs written before the model spec existed keep it.
REQUIRED_KEYS = (CONFIG_PREFIX + "norm", "data.batch_size", "data.num_frames")
# Where a run's config records its initialization: the spec the user gave, and (logged by the module once it has
# read the weights) the source it resolved to and the hash of the 2D weights.
INIT_SPEC_KEY = "model.pretrained_2d"
INIT_SOURCE_KEY, INIT_HASH_KEY = "init.source", "init.sha256"


def _uses_groups(norm: str) -> bool:
    # a norm this version does not know (an older run): show the groups rather than guess
    return norm not in SCHEMES or SCHEMES[norm].groups == "G"


def norm_token(norm: str, sync_group: int | None) -> str:
    """The norm as runs are named and compared: ``syncbn-k2`` for SyncBN over groups of 2 processes, else ``norm``.

    Args:
        norm: ``model.net.norm``.
        sync_group: ``model.net.norm_sync_group`` (0 or None: all processes, the plain ``syncbn``).
    """
    synced = norm in SCHEMES and SCHEMES[norm].sync
    return f"{norm}-k{int(sync_group)}" if synced and sync_group else norm


def arch_token(arch: str, depth: int) -> str:
    """Short architecture name: ``("i3d_resnet", 50) -> "i3d_r50"`` (the registry's token).

    Args:
        arch: Backbone name (``model.net.arch``).
        depth: Network depth.
    """
    if arch in BACKBONES:
        return BACKBONES[arch].token.format(depth=depth)
    return arch.replace("resnet", f"r{depth}") if "resnet" in arch else f"{arch}{depth}"  # a backbone of old


def run_name(setting: Setting, seed: int | bool | None = 0) -> str:
    """Name of a run, e.g. ``i3d_r50-gn-b4-32x2-in1k`` (format in the module docstring).

    Args:
        setting: what the run is (:func:`run_setting` of its config).
        seed: ``seed_everything``; an int other than 0 adds ``-s{seed}``.
    """
    row, col = setting.row, setting.column
    parts = [arch_token(row.arch, row.depth if row.depth is not None else 0), row.norm]
    rule = GROUP_RULES.get(row.norm_group_rule or DEFAULTS.norm_group_rule, row.norm_group_rule)
    if row.norm_groups is not None and (row.norm_groups != DEFAULTS.norm_groups or rule):
        parts.append(f"g{row.norm_groups}{rule}")
    if row.width is not None and row.width != DEFAULTS.width:
        parts.append(f"w{row.width}")
    parts += [f"b{col.batch_size}", f"{col.num_frames}x{col.sampling_rate}"]
    if col.repeat_aug > 1:
        parts.append(f"ra{col.repeat_aug}")
    if row.init != SCRATCH:
        parts.append("in1k")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed != 0:
        parts.append(f"s{seed}")
    return "-".join(parts)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dot-separated keys (``{"data": {"root": "d"}}`` -> ``{"data.root": "d"}``).

    Leaves become W&B-friendly: scalars, strings and lists stay, other objects become their ``str``; an empty
    mapping is a leaf.

    Args:
        tree: Nested mapping (a CLI config, a W&B run config).
        prefix: Key prefix (without the trailing dot).
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# The recipe: what changes a result besides the network, the batch and the seed, as config keys and the short names
# shown where two recipes differ. The learning rate and the schedule options in steps are read apart (_lr_per_clip,
# _norm_options): in the terms the batch-size rules keep constant.
RECIPE_KEYS = {
    "trainer.max_epochs": "epochs", "trainer.precision": "precision",
    "trainer.accumulate_grad_batches": "grad accumulation", "trainer.gradient_clip_val": "grad clip",
    "model.schedule": "schedule", "model.lr_steps": "lr steps", "model.lr_gamma": "lr gamma",
    "model.warmup_epochs": "warmup epochs", "model.warmup_start_factor": "warmup start",
    "model.momentum": "momentum", "model.nesterov": "nesterov", "model.weight_decay": "weight decay",
    "model.norm_weight_decay": "norm weight decay", "model.mean": "input mean", "model.std": "input std",
    "net.zero_init_residual": "zero-init", "net.dropout": "dropout",
    "data.train_min_scale": "train scale min", "data.train_max_scale": "train scale max",
    "data.crop_size": "crop", "data.train_flip": "flip", "data.window_align": "window align",
    "data.test_scale": "test scale", "data.test_crop_size": "test crop", "data.test_clips": "test clips",
    "data.test_crops": "test crops",
}  # fmt: skip
STEPS_PER_EPOCH_KEY = "train.steps_per_epoch"  # logged by the module when a fit starts
FP32 = "32-true"  # Lightning's fp32 training, its default: what a run with trainer.precision null (or 32) ran in
# Lightning's older names of its precisions (it still takes them), and null: its default
_PRECISION_NAMES = {"None": FP32, "32": FP32, "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}


def precision_name(value: Any) -> str:
    """A run's ``trainer.precision`` by Lightning's current name (``32`` and null are ``32-true``), so that one
    precision is one recipe whatever spelling the config used."""
    return _PRECISION_NAMES.get(str(value), str(value))


def _canonical(value: Any) -> Any:
    """A hashable value that prints the same for the same number: lists as tuples, floats to 6 digits."""
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


@dataclass(frozen=True)
class Recipe:
    """How a network was trained and tested, in terms that the batch-size rules keep constant: the learning rate per
    clip (linear scaling keeps it), epochs, schedule, warmup, optimizer, weight decays, zero-init, dropout,
    precision, the norm's own options (those counted in steps as a fraction of the run's steps), the augmentation
    and the test views. Two runs with different recipes are different experiments.

    Attributes:
        items: ``(name, value)`` pairs, sorted by name (missing values None).
    """

    items: tuple[tuple[str, Any], ...] = ()

    @property
    def digest(self) -> str:
        """Six hex digits that name the recipe where a name must tell recipes apart."""
        return hashlib.sha1(repr(self.items).encode()).hexdigest()[:6]

    def text(self, names: Iterable[str]) -> str:
        """``lr/clip 0.001875, epochs 10``: the values of ``names``."""
        values = dict(self.items)
        return ", ".join(f"{name} {_show(values.get(name))}" for name in names)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_show, value)) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def recipe_differences(recipes: Iterable[Recipe]) -> list[str]:
    """The recipe names whose values are not the same in all of ``recipes``."""
    dicts = [dict(r.items) for r in recipes]
    names = sorted(set().union(*dicts)) if dicts else []
    return [n for n in names if len({repr(d.get(n)) for d in dicts}) > 1]


def _lr_per_clip(config: Mapping[str, Any]) -> float | None:
    """``model.lr`` over the clips of one step (clips per device x devices x gradient accumulation)."""
    lr, batch = config.get("model.lr"), config.get("data.batch_size")
    world = config.get("world_size")
    if world is None and all(isinstance(config.get(k), int) for k in ("trainer.devices", "trainer.num_nodes")):
        world = config["trainer.devices"] * config["trainer.num_nodes"]
    if lr is None or batch is None or world is None:
        return None
    return float(lr) / (int(batch) * int(world) * int(config.get("trainer.accumulate_grad_batches") or 1))


def _norm_options(config: Mapping[str, Any], net: Mapping[str, Any]) -> dict[str, Any]:
    """The norm's options as configured; those counted in optimizer steps (Batch Renorm's schedule) as a fraction
    of the run's steps when the run logged its steps per epoch, so that a schedule the demo scales with each run's
    length is one recipe at every batch size."""
    options = dict(net.get("norm_options") or {})
    for prefix in (CONFIG_PREFIX + "norm_options.", "model.norm_options."):  # flatten() spreads the mapping out
        options.update({k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)})
    steps_per_epoch, epochs = config.get(STEPS_PER_EPOCH_KEY), config.get("trainer.max_epochs")
    out = {}
    for name, value in options.items():
        if name.endswith("_steps") and steps_per_epoch and epochs and value is not None:
            # to the percent: each run rounds its own step counts, which moves the fraction by less than that
            out[f"{name[:-len('_steps')]} at run fraction"] = round(value / (steps_per_epoch * epochs), 2)
        else:
            out[name] = value
    return out


def run_recipe(config: Mapping[str, Any]) -> Recipe:
    """The recipe of a run, from its flattened config.

    Args:
        config: ``flatten``ed run config.
    """
    net = ModelSpec.read_config(config)
    values: dict[str, Any] = {"lr/clip": _lr_per_clip(config)}
    for key, name in RECIPE_KEYS.items():
        values[name] = net.get(key[4:]) if key.startswith("net.") else config.get(key)
    values["precision"] = precision_name(values["precision"])
    values.update({f"norm option {k}": v for k, v in _norm_options(config, net).items()})
    return Recipe(tuple(sorted((name, _canonical(value)) for name, value in values.items())))


@dataclass(frozen=True)
class Row:
    """A table row: the network (architecture, depth, width, norm and its groups, initialization) and its recipe."""

    depth: int | None
    width: int | None
    norm: str
    norm_groups: int | None  # None for norms that do not use groups
    norm_group_rule: str | None = None  # how G fits widths it does not divide (None for norms without groups)
    arch: str = DEFAULTS.arch
    init: str = SCRATCH  # "scratch", or "<2D source> <hash>" (see init_text)
    num_classes: int | None = None  # the classifier's outputs (None: not in the config)
    stem_pool_padding: int | None = None  # 1: 56x56 at res2 (pytorchvideo), 0: 55x55 (the original I3D)
    recipe: Recipe = Recipe()

    @property
    def label(self) -> str:
        """``GN (G=32)``, ``GN (G=32, largest divisor)``, ``BN``."""
        if self.norm_groups is None:
            return self.norm.upper()
        rule = self.norm_group_rule or DEFAULTS.norm_group_rule
        suffix = "" if rule == DEFAULTS.norm_group_rule else f", {rule.replace('_', ' ')}"
        return f"{self.norm.upper()} (G={self.norm_groups}{suffix})"

    @property
    def network(self) -> str:
        """``I3D ResNet-50, width 64, ImageNet init (R-50-GN.pkl 1a2b3c4d5e6f)``: the row without its norm."""
        depth = self.depth if self.depth is not None else "?"
        if self.arch in BACKBONES:
            name = BACKBONES[self.arch].title.format(depth=depth)
        else:  # a backbone of old
            name = self.arch.replace("_resnet", "").upper() + f" ResNet-{depth}" if "resnet" in self.arch \
                else f"{self.arch}-{depth}"
        init = "from scratch" if self.init == SCRATCH else f"ImageNet init ({self.init})"
        if self.arch in BACKBONES and "width" not in BACKBONES[self.arch].uses:
            return f"{name}, {init}"  # a fixed-width network (X3D): the config's width is the unused default
        return f"{name}, width {self.width if self.width is not None else '?'}, {init}"


@dataclass(frozen=True)
class Column:
    """A table column: what a step sees (clips per device, devices, frames, stride, repeated augmentation)."""

    batch_size: int
    num_frames: int
    sampling_rate: int | None
    repeat_aug: int = 1  # data.repeat_aug: k clips per decoded window (repeated augmentation)
    world_size: int | None = None  # devices x nodes (None: not logged, e.g. a run read before it started)

    @property
    def repeat_text(self) -> str:
        """``, ra2`` for repeated augmentation, nothing without it."""
        return f", ra{self.repeat_aug}" if self.repeat_aug > 1 else ""

    @property
    def label(self) -> str:
        """``8 (32f)``; with the stride when it is not the paper's for that length (``8 (8f x4)``), and the
        repeated augmentation when there is one (``8 (32f, ra2)``)."""
        usual = {32: 2, 64: 1}.get(self.num_frames)
        stride = "" if self.sampling_rate is None or self.sampling_rate == usual else f" x{self.sampling_rate}"
        return f"{self.batch_size} ({self.num_frames}f{stride}{self.repeat_text})"


@dataclass(frozen=True)
class Setting:
    """A grid cell: what a run is, apart from its seed."""

    row: Row
    column: Column

    @property
    def label(self) -> str:
        """``GN (G=32) 8 (32f)``."""
        return f"{self.row.label} {self.column.label}"


def init_text(config: Mapping[str, Any]) -> str:
    """``scratch``, or the 2D source and the first 12 hex digits of its weights' hash (``?`` before it is known).

    Args:
        config: flattened run config.
    """
    spec = config.get(INIT_SPEC_KEY)
    if spec in (None, "", "null", "None"):
        return SCRATCH
    source = str(config.get(INIT_SOURCE_KEY) or spec)
    digest = str(config.get(INIT_HASH_KEY) or "?")[:12]
    return f"{source} {digest}"


def run_setting(config: Mapping[str, Any]) -> Setting:
    """What a run is, from its flattened config (the W&B run config, or the CLI config flattened).

    Args:
        config: ``flatten``ed run config (``model.net.norm``, ``data.batch_size``, ``world_size``, ...).

    Raises:
        KeyError: a key of ``REQUIRED_KEYS`` is missing (message names it).
    """
    net = ModelSpec.read_config(config)
    missing = [k for k in REQUIRED_KEYS if config.get(k) is None and not (k == REQUIRED_KEYS[0] and "norm" in net)]
    if missing:
        raise KeyError(f"config lacks {', '.join(missing)}")
    norm = str(net["norm"]).lower()
    groups = _int_or_none(net.get("norm_groups"))
    row = Row(
        depth=_int_or_none(net.get("depth")),
        width=_int_or_none(net.get("width")),
        norm=norm_token(norm, _int_or_none(net.get("norm_sync_group"))),
        norm_groups=groups if groups is not None and _uses_groups(norm) else None,
        norm_group_rule=str(net.get("norm_group_rule") or DEFAULTS.norm_group_rule) if _uses_groups(norm) else None,
        arch=str(net.get("arch") or DEFAULTS.arch),
        init=init_text(config),
        num_classes=_int_or_none(net.get("num_classes")),
        stem_pool_padding=_int_or_none(net.get("stem_pool_padding")),
        recipe=run_recipe(config),
    )
    column = Column(
        batch_size=int(config["data.batch_size"]),
        num_frames=int(config["data.num_frames"]),
        sampling_rate=_int_or_none(config.get("data.sampling_rate")),
        repeat_aug=_int_or_none(config.get("data.repeat_aug")) or 1,
        world_size=_int_or_none(config.get("world_size")),
    )
    return Setting(row, column)
