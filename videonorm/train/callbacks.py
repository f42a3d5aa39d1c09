"""Training callbacks: precise BN, CPU threads beside data workers, and the run's guards and reports.

Guards and reports (added by the CLI to every run; see each class): :class:`DivergenceGuard` stops a fit at the
first non-finite loss, :class:`SkippedVideos` lists the broken videos a stage skipped, :class:`BestValidation`
keeps the best validation epoch across resumed parts, :class:`TestReport` writes per-class accuracy and the
confusion matrix, :class:`CheckpointMetadata` stores what ``videonorm predict`` needs in each checkpoint, and
:class:`ProgressBar` is Lightning's bar without ``v_num``.

BN's running statistics are an exponential average of per-iteration batch statistics taken while the weights
were still changing; precise BN (PySlowFast's default, 200 batches) replaces them, before each validation,
with statistics of the current weights over N training batches on every device: the pooled mean E[x] and
variance E[x^2] - E[x]^2 of everything each BN layer saw, as the Non-local code computes them
(lib/utils/bn_helper.py: per batch and GPU it adds up mean and var + mean^2, then var = E[x^2] - E[x]^2).
Averaging per-batch variances instead (fvcore's ``update_bn_stats``) leaves out how the batch means vary, so
it underestimates the population variance, the more the smaller the batch: the regime this suite studies.

It touches only BN layers that track running statistics and can change (BN, SyncBN); frozen BN and the
batch-independent norms (GN, LN, IN) have nothing to recompute, so for them the callback says so once and
does nothing. That is why the CLI adds it to every run (``--precise_bn.num_batches 0`` turns it off).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from videonorm.files import csv_text, write_text_atomic
from videonorm.models.norm import bn_modules


def info_line(message: str) -> None:
    """``rank_zero_info`` on a line of its own: a progress bar drawn on the terminal is cleared first, redrawn after."""
    with tqdm.external_write_mode():
        rank_zero_info(message)


@torch.no_grad()
def update_bn_stats(
    model: nn.Module,
    inputs: Iterable[Tensor],
    num_batches: int,
    forward: Callable[[Tensor], object] | None = None,
    average: Callable[[Tensor], Tensor] | None = None,
) -> int:
    """Set BN running statistics to the pooled mean and variance of their inputs over ``num_batches`` batches.

    The model runs in train mode (frozen BN layers keep their own semantics) without gradients, so each BN
    layer sees the activations training gives it; its training flag is restored afterwards. Each BN layer's
    input is summed per channel over (N, T, H, W) in float64: ``running_mean = E[x]`` and ``running_var =
    E[x^2] - E[x]^2`` over every element of every batch on every process (a population variance, as the
    Non-local code's; batches of different sizes count by their elements).

    Args:
        model: Model holding the BN layers.
        inputs: Iterable of model inputs, e.g. (N, 3, T, H, W) clips already on the model's device.
        num_batches: Number of batches to use (fewer if ``inputs`` runs out).
        forward: Called on each input (default ``model``).
        average: Averages a tensor across processes (default: identity, one process); applied to the sums
            and to the element counts, so the ratio is the pooled statistic of all processes.

    Returns:
        The number of batches used.
    """
    layers = bn_modules(model)
    if not layers:
        return 0
    forward = forward or model
    was_training = model.training
    # per layer: [sum of x, sum of x^2, element count] per channel, float64 against cancellation in E[x^2]-E[x]^2
    sums = [[torch.zeros(bn.num_features, dtype=torch.float64, device=bn.running_mean.device) for _ in range(3)]
            for bn in layers]
    # the passes update the buffers with their momentum on the way; put them back if the update fails
    saved = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in layers]

    def accumulate(acc: list[Tensor]) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]  # (N, C, T, H, W)
            dims = [0, *range(2, x.dim())]
            var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
            count = x.numel() // x.shape[1]
            acc[0] += mean.double() * count
            acc[1] += (var.double() + mean.double() ** 2) * count
            acc[2] += count

        return hook

    handles = [bn.register_forward_pre_hook(accumulate(acc)) for bn, acc in zip(layers, sums)]
    used = 0
    model.train()
    try:
        for batch in itertools.islice(inputs, num_batches):
            forward(batch)
            used += 1
        if used == 0:
            raise ValueError("precise BN: the data gave no batches")
    except BaseException:
        for bn, (mean, var, tracked) in zip(layers, saved):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(tracked)
        raise
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    average = average or (lambda t: t)
    for bn, (sum_x, sum_x2, count), (_, _, tracked) in zip(layers, sums, saved):
        count = average(count)
        mean = average(sum_x) / count
        var = (average(sum_x2) / count - mean**2).clamp(min=0)
        # copy_ into the existing buffers (never rebind): they stay ordinary tensors owned by the module
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.num_batches_tracked.copy_(tracked)
    return used


def _separate_iteration(loader: object) -> object:
    """A DataLoader that iterates like ``loader`` without touching its persistent worker iterator.

    With ``persistent_workers``, ``iter(loader)`` resets the loader's one live iterator, which would disturb
    the training epoch when validation runs mid-epoch. Same dataset, batch sampler (and so the same
    distributed shard), collate and worker seeding; fresh workers that end with the pass.
    """
    if not isinstance(loader, DataLoader) or not loader.persistent_workers:
        return loader
    return DataLoader(
        loader.dataset,
        batch_sampler=loader.batch_sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        persistent_workers=False,
    )


class PreciseBN(pl.Callback):
    """Recompute BN running statistics on ``num_batches`` training batches before each validation of a fit.

    Skipped during the sanity check and in ``validate``/``test`` (stats come from the checkpoint there).
    A no-op, announced once, for models without trainable BN (GN, LN, IN, frozen BN).

    Args:
        num_batches: Training batches per device to average over (PySlowFast: 200); 0 disables.
        input_key: Key of the clip tensor in the batch dicts.
    """

    def __init__(self, num_batches: int = 200, input_key: str = "video") -> None:
        super().__init__()
        if num_batches < 0:
            raise ValueError(f"num_batches must be >= 0, got {num_batches}")
        self.num_batches = num_batches
        self.input_key = input_key
        self._announced = False
        self.last_num_batches = 0  # batches used by the last update (0: none)

    def _say_once(self, message: str) -> None:
        if not self._announced:
            info_line(message)  # it comes mid-epoch, while the progress bar is drawn
            self._announced = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.num_batches == 0:
            return
        if not bn_modules(pl_module):
            self._say_once("PreciseBN: the model has no trainable BatchNorm (GN/LN/IN/frozen BN): nothing to do.")
            return
        loader = trainer.train_dataloader
        if loader is None:
            return
        loader = _separate_iteration(loader)

        def clips() -> Iterable[Tensor]:
            for batch in loader:
                batch = trainer.strategy.batch_to_device(batch)
                yield batch[self.input_key] if isinstance(batch, dict) else batch[0]

        def forward(video: Tensor) -> None:
            with trainer.precision_plugin.forward_context():
                pl_module(video)

        def average(t: Tensor) -> Tensor:
            return trainer.strategy.reduce(t, reduce_op="mean")

        # validation runs under inference mode; BN buffers must stay ordinary tensors for training
        with torch.inference_mode(False):
            used = update_bn_stats(pl_module, clips(), self.num_batches, forward=forward, average=average)
        self.last_num_batches = used
        if used < self.num_batches:
            self._say_once(f"PreciseBN: the train loader has {used} batches, fewer than num_batches={self.num_batches}")


class CpuThreads(pl.Callback):
    """On CPU, leave one core to each DataLoader worker: torch's threads = its current count - workers (>= 1).

    torch starts as many intra-op threads as the process may use cores. Decoding workers need cores too, and
    torch's OpenMP threads spin-wait at every parallel region, so sharing cores with a worker costs more than
    its share: a 4-epoch demo fit on the 2-core dev box with 1 worker took 22.8 s with 2 torch threads and
    17.3 s with 1. Nothing is changed on GPUs (the main process there mostly waits), when the loader has no
    workers, or when ``OMP_NUM_THREADS`` is set: by the user, or by Lightning's DDP launchers, which already
    divide the cores among a node's processes. The previous count is restored at teardown.

    Args:
        enabled: ``False`` leaves torch's thread count alone.
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self._restore: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        workers = getattr(trainer.datamodule, "num_workers", 0) or 0
        if (not self.enabled or workers == 0 or not isinstance(trainer.accelerator, CPUAccelerator)
                or os.environ.get("OMP_NUM_THREADS")):
            return
        self._restore = torch.get_num_threads()
        threads = max(1, self._restore - workers)
        torch.set_num_threads(threads)
        rank_zero_info(f"CpuThreads: {threads} torch thread(s) beside {workers} data worker(s) on CPU")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._restore is not None:
            torch.set_num_threads(self._restore)
            self._restore = None


# ---- guards and reports of a run ------------------------------------------------------------------------


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
        if "val/top1" not in metrics:
            return
        top1 = float(metrics["val/top1"])
        if not math.isfinite(top1) or (self.best is not None and top1 <= self.best["val/best_top1"]):
            return
        top5 = float(metrics["val/top5"]) if "val/top5" in metrics else None
        self.best = {"val/best_epoch": trainer.current_epoch, "val/best_top1": top1, "val/best_top5": top5}
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


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num`` (the loggers' versions: a fragment of the W&B id, or
    ``None`` for the local record, beside the metrics)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
