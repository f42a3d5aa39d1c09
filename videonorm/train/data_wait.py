"""How long training waits for data: ``data/wait_fraction`` and ``data/clips_per_s`` per epoch, and a warning.

Video training is bound by decoding far more often than by the model. The loop's wait for a batch is the time from
the end of one training step to the start of the next (Lightning fetches the batch, moves it to the device and
normalizes it in between); the step is the rest. Per epoch this callback logs (to every logger and the progress bar):

* ``data/wait_fraction``: wait / (wait + step), over the epoch's training batches (validation is not counted);
* ``data/clips_per_s``: clips delivered per second of that time (clips per device; the number a GPU consumes).

The first batch of a fit is left out: it includes starting the DataLoader workers, a one-time cost. When the wait
fraction of an epoch exceeds ``warn_above``, one warning says so, with the advice that fits the loader.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from videonorm import metric_keys as keys


class DataWait(pl.Callback):
    """Measure the training loop's wait for data (see the module docstring).

    Args:
        warn_above: wait fraction above which one warning is given (0.05: the loop waits more than 5% of the time).
        enabled: ``False`` measures nothing.
    """

    def __init__(self, warn_above: float = 0.05, enabled: bool = True) -> None:
        super().__init__()
        self.warn_above, self.enabled = warn_above, enabled
        self._warned = False
        self._fit_batches = 0
        self._last_end: float | None = None
        self._start: float | None = None
        self.wait = self.step = 0.0
        self.clips = 0
        self.history: list[dict[str, float]] = []  # per epoch: wait_fraction, clips_per_s (also logged)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wait = self.step = 0.0
        self.clips = 0
        self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = time.perf_counter()
        self._start = now
        self._fit_batches += 1
        if self._fit_batches > 1 and self._last_end is not None:  # the fit's first batch starts the workers
            self.wait += now - self._last_end

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._start is not None and self._fit_batches > 1:
            self.step += now - self._start
            video = batch.get("video") if isinstance(batch, dict) else None
            self.clips += int(video.shape[0]) if video is not None else 0
        self._last_end = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = None  # the gap around a validation is not a wait for training data

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled or self.wait + self.step <= 0:
            return
        total = self.wait + self.step
        fraction, rate = self.wait / total, self.clips / total
        self.history.append({"wait_fraction": fraction, "clips_per_s": rate})
        pl_module.log(keys.WAIT_FRACTION, fraction, prog_bar=True, sync_dist=True)
        pl_module.log(keys.CLIPS_PER_S, rate, prog_bar=True, sync_dist=True)
        if fraction > self.warn_above and not self._warned:
            self._warned = True
            rank_zero_warn(self._advice(trainer, fraction))

    @staticmethod
    def _advice(trainer: pl.Trainer, fraction: float) -> str:
        datamodule = trainer.datamodule
        workers = getattr(datamodule, "num_workers", None)
        tips = [f"raise data.num_workers (now {workers}) if the machine has idle cores"]
        tips.append("prepare the videos with kinetics-prep (short GOP: random clips decode 1.4-1.7x faster)")
        if getattr(datamodule, "repeat_aug", 1) == 1:
            tips.append("or use repeated augmentation (--data.repeat_aug 2: two crops per decoded window)")
        return (f"DataWait: the training loop waited for data {fraction:.0%} of the epoch's training time; "
                + "; ".join(tips) + ".")
