"""The run's reports, added by the CLI to every run.

:class:`SkippedVideos` lists the broken videos a stage skipped, :class:`BestValidation` keeps the best validation
epoch across resumed parts, :class:`TestReport` writes per-class accuracy and the confusion matrix, and
:class:`CheckpointMetadata` stores what ``videonorm predict`` needs in each checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch.distributed as dist
from pytorch_lightning.trainer.states import TrainerFn

from videonorm import metric_keys as keys
from videonorm.files import csv_text, write_text_atomic


class SkippedVideos(pl.Callback):
    """At the end of fit, validate and test: print the broken videos that were skipped, with the reasons, and save
    them as ``<run dir>/skipped_videos_<stage>.csv`` (``split,path,reason``; merged with the file of an earlier,
    interrupted part of the same stage).

    The datasets live in DataLoader worker processes; each batch carries the failures that produced it
    (``skipped_files``: ``path<TAB>reason`` lines, see ``videonorm.data.dataset``), and the lists of all ranks are
    gathered at the end. ``data/skipped_videos`` stays the count.

    Args:
        show: Files printed (all of them are in the CSV).
    """

    KEY = "skipped_files"

    def __init__(self, show: int = 20) -> None:
        super().__init__()
        self.show = show
        self.found: dict[tuple[str, str], str] = {}  # (split, path) -> reason

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.found = {}

    def _collect(self, batch: Any, split: str) -> None:
        texts = batch.get(self.KEY, ()) if isinstance(batch, dict) else ()
        for line in (line for text in texts for line in str(text).splitlines()):
            path, _, reason = line.partition("\t")
            self.found.setdefault((split, path), reason)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._collect(batch, "train")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(batch, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(batch, "test")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "fit")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._report(trainer, "validate")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "test")

    def _report(self, trainer: pl.Trainer, stage: str) -> None:
        found = dict(self.found)
        if dist.is_available() and dist.is_initialized():
            gathered: list[dict] = [{} for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, found)
            found = {k: v for part in gathered for k, v in part.items()}
        if not trainer.is_global_zero or not found:
            return
        path = Path(trainer.default_root_dir) / f"skipped_videos_{stage}.csv"
        if path.is_file():  # an earlier part of this stage (a killed, then resumed fit)
            with path.open(newline="") as f:
                found = {(r["split"], r["path"]): r["reason"] for r in csv.DictReader(f)} | found
        rows = [(split, file, reason) for (split, file), reason in sorted(found.items())]
        write_text_atomic(path, csv_text(("split", "path", "reason"), rows))
        lines = [f"Skipped videos ({stage}): {len(rows)}, listed with the reasons in {path}"]
        lines += [f"  {split:<5} {file}: {reason}" for split, file, reason in rows[: self.show]]
        if len(rows) > self.show:
            lines.append(f"  ... and {len(rows) - self.show} more")
        print("\n".join(lines), flush=True)


class BestValidation(pl.Callback):
    """Track the best validation epoch of a fit (highest ``val/top1``) and put it in the loggers' summaries.

    ``val/best_epoch``, ``val/best_top1`` and ``val/best_top5`` (top-5 of that epoch), set each time the best
    improves on loggers that have ``log_summary``. The state is saved in checkpoints, so a resumed fit (and
    each offline W&B part) knows the best of the whole run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.best: dict[str, Any] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        metrics = trainer.callback_metrics
        if keys.VAL_TOP1 not in metrics:
            return
        top1 = float(metrics[keys.VAL_TOP1])
        if not math.isfinite(top1) or (self.best is not None and top1 <= self.best[keys.VAL_BEST_TOP1]):
            return
        top5 = float(metrics[keys.VAL_TOP5]) if keys.VAL_TOP5 in metrics else None
        self.best = {keys.VAL_BEST_EPOCH: trainer.current_epoch, keys.VAL_BEST_TOP1: top1, keys.VAL_BEST_TOP5: top5}
        for logger in trainer.loggers:
            if hasattr(logger, "log_summary"):
                logger.log_summary(self.best)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")


class TestReport(pl.Callback):
    """After a test: per-class accuracy and the confusion matrix (video level), from the module's
    ``test_confusion`` (C, C) (rows: true class, columns: predicted; videos).

    Written to ``<run dir>/test_per_class.csv`` (``label,class,videos,correct,accuracy``; accuracy empty for a
    class without test videos) and ``test_confusion.csv`` (one row per true class, one column per predicted class),
    and handed to loggers that have ``log_test_report`` (W&B: a per-class table and a confusion-matrix chart).
    """

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        confusion = getattr(pl_module, "test_confusion", None)
        if confusion is None or not trainer.is_global_zero:
            return
        confusion = confusion.long().cpu()
        classes = list(getattr(trainer.datamodule, "classes", None) or map(str, range(len(confusion))))
        videos, correct = confusion.sum(1).tolist(), confusion.diag().tolist()
        rows = [(i, name, n, c, f"{c / n:.6f}" if n else "") for i, (name, n, c) in
                enumerate(zip(classes, videos, correct))]
        out = Path(trainer.default_root_dir)
        write_text_atomic(out / "test_per_class.csv", csv_text(("label", "class", "videos", "correct", "accuracy"),
                                                                rows))
        write_text_atomic(out / "test_confusion.csv",
                          csv_text(("true \\ predicted", *classes),
                                   ([name, *row] for name, row in zip(classes, confusion.tolist()))))
        for logger in trainer.loggers:
            if hasattr(logger, "log_test_report"):
                logger.log_test_report(classes, confusion)


class CheckpointMetadata(pl.Callback):
    """Store what ``videonorm predict`` needs besides the weights in every checkpoint: the class names, the
    clip geometry of testing (frames, stride, scale, crops, clips, mean/std) and the decoder, under
    ``checkpoint["videonorm"]`` (plain lists, numbers and strings: loadable with ``weights_only=True``)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        datamodule = trainer.datamodule
        clip = getattr(datamodule, "clip", None)
        if clip is None or not hasattr(datamodule, "classes"):
            return
        checkpoint["videonorm"] = {
            "classes": list(datamodule.classes),
            "clip": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(clip).items()},
            "decoder": getattr(datamodule, "reading", {}).get("decoder"),
        }

