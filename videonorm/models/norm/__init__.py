"""Normalization schemes: the table (:mod:`~videonorm.models.norm.schemes`, no torch), the resolved scheme that
builds layers (:mod:`~videonorm.models.norm.build`), and the layers by family (``batch.py``: frozen BN, SyncBN
groups, Batch Renorm; ``group.py``: GN and the weight-standardized convolution; ``norm_act.py``: FRN, EvoNorm).

Importing this package loads no torch; the names that need it are loaded when first used, so run naming and
``videonorm compare`` can ask the table without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from videonorm.models.norm.schemes import (
    NORM_NAMES,
    SCHEMES,
    Scheme,
    get_scheme,
    resolve_options,
    uses_groups,
    uses_sync_group,
)

_LAZY = {
    "Norm": "build", "bn_modules": "build", "is_norm": "build", "norm_layer": "build", "norm_types": "build",
    "resolve": "build",
    "BatchRenorm3d": "batch", "FrozenBatchNorm3d": "batch", "SyncBatchNorm3d": "batch",
    "GroupNorm3d": "group", "StdConv3d": "group",
    "EvoNormB0": "norm_act", "EvoNormS0": "norm_act", "FilterResponseNorm3d": "norm_act",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = ["NORM_NAMES", "SCHEMES", "Scheme", "get_scheme", "resolve_options", "uses_groups", "uses_sync_group",
           *_LAZY]
