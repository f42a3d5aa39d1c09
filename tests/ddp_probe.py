"""A callback for tests/test_ddp.py: each DDP process writes what it saw to ``<out_dir>/rank<r>_<stage>.json``.

Loaded by class path (``ddp_probe.Probe``) from a config file, in every process Lightning's DDP launcher
starts; ``tests/`` is on PYTHONPATH for those processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import nn


class Probe(pl.Callback):
    """Record per-process batches, indices, BN statistics after the first step, val clips and test views.

    Args:
        out_dir: Where the JSON files go.
    """

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.record: dict[str, Any] = {"train_batch_sizes": [], "train_indices": [], "test_keys": [], "val_indices": []}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch == 0:
            self.record["train_batch_sizes"].append(int(batch["video"].shape[0]))
            self.record["train_indices"] += batch["index"].tolist()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == 1:  # after the first optimizer step: BN buffers hold one batch's statistics
            bn = next(m for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
            self.record["bn_type"] = type(bn).__name__
            self.record["bn_running_mean"] = bn.running_mean.tolist()
            self.record["bn_running_var"] = bn.running_var.tolist()

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.current_epoch == 0 and not trainer.sanity_checking:
            self.record["val_indices"] += batch["index"].tolist()

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.record["test_keys"] += [[int(i), int(v)] for i, v in zip(batch["index"], batch["view"])]

    def _write(self, trainer: pl.Trainer, stage: str) -> None:
        self.record["world_size"] = trainer.world_size
        self.record["metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}_{stage}.json"
        path.write_text(json.dumps(self.record))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bn = next((m for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)
        if bn is not None:  # after precise BN, which ran before the last validation
            self.record["bn_final_running_mean"] = bn.running_mean.tolist()
        self._write(trainer, "fit")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "test")
