"""What a run *is*: its name, its flattened config, and the grid cell it belongs to.

One definition, used where runs are named (the CLI: run directory and W&B name), where their config is logged
(W&B), and where they are grouped and compared (``videonorm compare``): runs of one :class:`Setting` differ only
in their seed and are averaged; runs of different settings never are.

Run name: ``{arch}-{norm}[-k{sync}][-g{groups}][-w{width}]-b{batch}-{frames}x{rate}[-ra{k}][-s{seed}]``, for
example ``i3d_r50-gn-b4-32x2`` (the paper's GN, 4 clips per device, 32 frames at stride 2). ``-k`` appears only
for SyncBN over groups of k processes (``model.norm_sync_group`` > 0: its statistics pool k x batch clips, so the
norm is ``syncbn-k{k}`` in names and comparisons alike), ``-g`` only for norms that use groups and a group count
other than 32, ``-w`` only for widths other than 64, ``-ra`` only for repeated augmentation (``data.repeat_aug``
> 1), ``-s`` only for seeds other than 0, so the paper's grid keeps its short names and seed repeats never share a
directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_GROUPS = 32  # GroupNorm's default group count in the paper
DEFAULT_WIDTH = 64  # ResNet stem width
# Config keys that say which grid cell a run is (missing ones make the run unplaceable).
REQUIRED_KEYS = ("model.norm", "data.batch_size", "data.num_frames")


def _uses_groups(norm: str) -> bool:
    from videonorm.models.norm import uses_groups  # imports torch, so lazily

    try:
        return uses_groups(norm)
    except ValueError:  # a norm this version does not know (an older run): show the groups rather than guess
        return True


def norm_token(norm: str, sync_group: int | None) -> str:
    """The norm as runs are named and compared: ``syncbn-k2`` for SyncBN over groups of 2 processes, else ``norm``.

    Args:
        norm: ``model.norm``.
        sync_group: ``model.norm_sync_group`` (0 or None: all processes, the plain ``syncbn``).
    """
    from videonorm.models.norm import uses_sync_group  # imports torch, so lazily

    try:
        synced = uses_sync_group(norm)
    except ValueError:  # a norm this version does not know
        synced = False
    return f"{norm}-k{int(sync_group)}" if synced and sync_group else norm


def arch_token(arch: str, depth: int) -> str:
    """Short architecture name: ``("i3d_resnet", 50) -> "i3d_r50"``.

    Args:
        arch: Backbone name (``model.arch``).
        depth: Network depth.
    """
    return arch.replace("resnet", f"r{depth}") if "resnet" in arch else f"{arch}{depth}"


def run_name(
    arch: str,
    depth: int,
    norm: str,
    norm_groups: int,
    width: int,
    batch_size: int,
    num_frames: int,
    sampling_rate: int,
    seed: int | bool | None = 0,
    repeat_aug: int = 1,
    norm_sync_group: int = 0,
) -> str:
    """Name of a run, e.g. ``i3d_r50-gn-b4-32x2`` (format in the module docstring).

    Args:
        arch: ``model.arch``.
        depth: ``model.depth``.
        norm: ``model.norm``.
        norm_groups: ``model.norm_groups``.
        width: ``model.width``.
        batch_size: ``data.batch_size`` (clips per device).
        num_frames: ``data.num_frames``.
        sampling_rate: ``data.sampling_rate``.
        seed: ``seed_everything``; an int other than 0 adds ``-s{seed}``.
        repeat_aug: ``data.repeat_aug``; k > 1 adds ``-ra{k}``.
        norm_sync_group: ``model.norm_sync_group``; k > 0 with ``syncbn`` adds ``-k{k}``.
    """
    parts = [arch_token(arch, depth), norm_token(norm, norm_sync_group)]
    if norm_groups != DEFAULT_GROUPS and _uses_groups(norm):
        parts.append(f"g{norm_groups}")
    if width != DEFAULT_WIDTH:
        parts.append(f"w{width}")
    parts += [f"b{batch_size}", f"{num_frames}x{sampling_rate}"]
    if repeat_aug > 1:
        parts.append(f"ra{repeat_aug}")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed != 0:
        parts.append(f"s{seed}")
    return "-".join(parts)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dot-separated keys (``{"model": {"norm": "gn"}}`` -> ``{"model.norm": "gn"}``).

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


@dataclass(frozen=True, order=True)
class Row:
    """A table row: the network (depth, width, norm and its groups)."""

    depth: int | None
    width: int | None
    norm: str
    norm_groups: int | None  # None for norms that do not use groups

    @property
    def label(self) -> str:
        """``GN (G=32)``, ``BN``."""
        return self.norm.upper() + (f" (G={self.norm_groups})" if self.norm_groups is not None else "")


@dataclass(frozen=True, order=True)
class Column:
    """A table column: what one device sees per step (clips, frames, stride, repeated augmentation)."""

    batch_size: int
    num_frames: int
    sampling_rate: int | None
    repeat_aug: int = 1  # data.repeat_aug: k clips per decoded window (repeated augmentation)

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


@dataclass(frozen=True, order=True)
class Setting:
    """A grid cell: what a run is, apart from its seed."""

    row: Row
    column: Column

    @property
    def label(self) -> str:
        """``GN (G=32) 8 (32f)``."""
        return f"{self.row.label} {self.column.label}"


def run_setting(config: Mapping[str, Any]) -> Setting:
    """The grid cell of a run, from its flattened config.

    Args:
        config: ``flatten``ed run config (``model.norm``, ``data.batch_size``, ...).

    Raises:
        KeyError: a key of ``REQUIRED_KEYS`` is missing (message names it).
    """
    missing = [k for k in REQUIRED_KEYS if config.get(k) is None]
    if missing:
        raise KeyError(f"config lacks {', '.join(missing)}")
    norm = str(config["model.norm"]).lower()
    groups = _int_or_none(config.get("model.norm_groups"))
    row = Row(
        depth=_int_or_none(config.get("model.depth")),
        width=_int_or_none(config.get("model.width")),
        norm=norm_token(norm, _int_or_none(config.get("model.norm_sync_group"))),
        norm_groups=groups if groups is not None and _uses_groups(norm) else None,
    )
    column = Column(
        batch_size=int(config["data.batch_size"]),
        num_frames=int(config["data.num_frames"]),
        sampling_rate=_int_or_none(config.get("data.sampling_rate")),
        repeat_aug=_int_or_none(config.get("data.repeat_aug")) or 1,
    )
    return Setting(row, column)
