"""The run's guard against divergence: a fit stops at the first non-finite training loss, marked diverged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the fit was stopped and the run marked diverged.

    Args:
        message: What happened (step, epoch, the loss, the last finite loss) and what to do.
        info: The same as data (``step``, ``epoch``, ``loss``, ``last_finite_loss``, ``last_finite_step``).
    """

    def __init__(self, message: str, info: dict[str, Any]):
        super().__init__(message)
        self.info = info


class DivergenceGuard(pl.Callback):
    """Stop a fit at the first non-finite training loss, before its gradients reach the weights.

    A diverged run otherwise trains on with NaN weights, saves NaN checkpoints, validates at chance and ends
    "successfully". Here the loss is checked before every backward (any rank's NaN stops every rank: one
    all-reduced flag); the loggers that can (W&B, the local record) mark the run diverged, and
    :class:`TrainingDiverged` ends the fit. The checkpoints on disk are those of the last finished epoch (Lightning
    saves none on an exception), all finite.
    """

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[int, Tensor] | None = None  # (global step, loss) of the last finite loss

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            self._last = (trainer.global_step, loss.detach())
            return
        info = {"step": trainer.global_step, "epoch": trainer.current_epoch, "loss": float(loss.detach())}
        if self._last is not None:
            info |= {"last_finite_loss": float(self._last[1]), "last_finite_step": self._last[0]}
        for logger in trainer.loggers:
            if hasattr(logger, "mark_diverged"):
                logger.mark_diverged(info)
        last = (f"the last finite loss was {info['last_finite_loss']:.4g} at step {info['last_finite_step']}"
                if self._last is not None else "no step before it had a finite loss")
        saved = sorted({Path(c.best_model_path).name for c in trainer.checkpoint_callbacks if c.best_model_path})
        kept = (f"its checkpoints ({', '.join(saved)}) are from before the divergence" if saved
                else "no checkpoint was saved")
        lr = getattr(pl_module, "hparams", {}).get("lr")
        raise TrainingDiverged(
            f"training diverged: loss {info['loss']} at step {info['step']} (epoch {info['epoch']}); {last}. "
            f"The fit stopped and the run is marked diverged (record.jsonl in {trainer.default_root_dir} and the "
            f"W&B summary/tag 'diverged'; compare leaves it out); {kept}. "
            f"Lower the learning rate (model.lr = {lr}) or check the data.",
            info,
        )

