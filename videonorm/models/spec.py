"""What network to build: :class:`ModelSpec`, the one place of the model's keywords and their defaults.

The CLI fills it through jsonargparse (``model.net`` in configs, ``--model.net.norm gn`` on the command line), the
module and ``videonorm bench model`` build from it (:func:`videonorm.models.build_model`), and run identity reads it
back from a run's flattened config (:meth:`ModelSpec.from_config`). Imports no torch: naming and comparing runs
never loads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Where the spec sits in a run's config: model.net.<field>. Runs and checkpoints written before the spec existed
# hold the same fields one level up (model.<field>): read_config and lift_legacy accept both.
CONFIG_PREFIX = "model.net."
LEGACY_PREFIX = "model."


@dataclass
class ModelSpec:
    """A video network: backbone, normalization and head.

    Args:
        arch: Backbone name (a key of ``videonorm.models.registry.BACKBONES``).
        depth: Network depth (ResNets: 50 or 101 as in the paper; 14 and 26 are shallow variants).
        width: Stem width (64 in the paper; stage i has ``width * 2**i`` bottleneck channels).
        norm: Norm scheme name (``videonorm.models.norm.NORM_NAMES``); ``syncbn`` is the only way SyncBN is used.
        norm_groups: Group count G for the schemes built with groups (``gn``, ``gn_ws``, ``evonorm_s0``).
        norm_group_rule: How those schemes fit G to a layer whose channels it does not divide
            (``videonorm.models.norm.schemes.GROUP_RULES``): ``"divide"`` (an error naming the layers: the paper's
            networks, every width a multiple of 32) or ``"largest_divisor"`` (each layer gets the largest divisor
            of its channels <= G: X3D's 24/54-channel layers, SlowFast's 8-channel fast stem).
        norm_sync_group: ``syncbn`` only: processes whose batches each statistic pools, in groups of consecutive
            ranks (0: all processes; 1: per-device BN); must divide the number of processes.
        norm_options: Overrides of the norm scheme's paper options, e.g. ``{"warmup_steps": 500}`` for ``brn``
            (``videonorm.models.norm.SCHEMES``).
        num_classes: Classifier outputs (the CLI links it from ``data.num_classes``).
        dropout: Dropout rate before the classifier.
        zero_init_residual: Start the last norm of every residual branch at gamma = 0 (the block is the identity).
        head_init_std: Standard deviation of the classifier's initial weights.
        stem_pool_padding: I3D/C2D only: spatial padding of the stem max-pool, 1 (torchvision, 56 x 56 at res2 for
            224 input) or 0 (the Non-local code, 55 x 55).
    """

    arch: str = "i3d_resnet"
    depth: int = 50
    width: int = 64
    norm: str = "bn"
    norm_groups: int = 32
    norm_group_rule: str = "divide"
    norm_sync_group: int = 0
    norm_options: dict[str, float] | None = None
    num_classes: int = 400
    dropout: float = 0.5
    zero_init_residual: bool = True
    head_init_std: float = 0.01
    stem_pool_padding: int = 1

    def as_dict(self) -> dict[str, Any]:
        """Plain values (what checkpoints store: ``torch.load(weights_only=True)`` reads them back)."""
        return {**dataclasses.asdict(self), "norm_options": dict(self.norm_options or {}) or None}

    @classmethod
    def of(cls, value: ModelSpec | Mapping[str, Any] | None) -> ModelSpec:
        """A spec from a spec, a mapping of its fields (a checkpoint's hyperparameters) or None (the defaults).

        Raises:
            ValueError: a mapping key that is not a field (the message lists the fields).
        """
        if isinstance(value, cls):
            return value
        values = dict(value or {})
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ValueError(f"model spec has no field {', '.join(map(repr, unknown))}; fields: {', '.join(FIELDS)}")
        return cls(**values)

    @classmethod
    def read_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The spec's fields present in a flattened run config (``model.net.norm``, or ``model.norm`` in runs
        written before the spec existed); absent fields are left out.

        Args:
            config: a flattened run config (the W&B run config, a record's config).
        """
        found = {}
        for name in FIELDS:
            for prefix in (CONFIG_PREFIX, LEGACY_PREFIX):
                if config.get(prefix + name) is not None:
                    found[name] = config[prefix + name]
                    break
        return found


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelSpec))
DEFAULTS = ModelSpec()


def lift_legacy(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A module's hyperparameters with spec fields stored flat (checkpoints written before the spec existed)
    moved under ``net``; current ones are returned as they are.

    Args:
        hparams: a checkpoint's ``hyper_parameters``.
    """
    flat = {k: v for k, v in hparams.items() if k in FIELDS}
    if not flat:
        return dict(hparams)
    rest = {k: v for k, v in hparams.items() if k not in FIELDS}
    return {**rest, "net": {**flat, **dict(rest.get("net") or {})}}

