"""The LightningModule: I3D ResNet video classifier with loss, SGD + epoch schedule, and top-1/top-5 metrics.

Batches are the datamodule's dicts: ``video`` (N, 3, T, H, W) float, ``label`` (N,), ``index`` (N,) video index
in its manifest, ``view`` (N,) view index, ``skipped`` (N,) broken videos skipped to produce each item.

Logged metrics (fractions in [0, 1]):
    train/loss, train/top1, train/top5, train/lr   every step
    train/loss_epoch, train/top1_epoch             per epoch (mean over the epoch, all devices)
    val/loss, val/top1, val/top5                   per epoch, single center clip per video; top-1/top-5 count
                                                   each video once across devices; plus val/videos
    test/top1, test/top5                           video level: softmax averaged over each video's views,
                                                   each video counted once across devices; plus
                                                   test/videos, test/views_per_video, test/clip_top1
    data/skipped_videos                            broken videos skipped while training, per epoch, all devices
    data/skipped_videos_val, data/skipped_videos_test
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.functional.classification import multiclass_accuracy

from videonorm import models
from videonorm.norm import is_norm

# arch name -> builder(depth=, norm=, norm_groups=, num_classes=, width=, dropout=, zero_init_residual=)
ARCHS = {
    "i3d_resnet": functools.partial(models.i3d_resnet, arch="i3d"),  # the paper's (Non-local) I3D
    "c2d_resnet": functools.partial(models.i3d_resnet, arch="c2d"),  # no temporal kernels: a 2D baseline
}


class EpochSchedule:
    """Learning-rate factor as a function of the optimizer step, defined in (fractional) epochs.

    ``factor(step) = warmup(e) * main(e)`` with ``e = step / steps_per_epoch``: ``main`` is a step schedule
    (``gamma ** (number of lr_steps <= e)``) or a cosine over ``max_epochs``; ``warmup`` rises linearly from
    ``warmup_start_factor`` to 1 over ``warmup_epochs``. The optimizer step count lives in the checkpoint
    (``LambdaLR.last_epoch``), the curve comes from the config: a resumed run with the same config continues
    on exactly the same curve, and one resumed with a longer ``max_epochs`` follows the longer curve.

    Args:
        steps_per_epoch: Optimizer steps per epoch.
        schedule: ``"step"`` or ``"cosine"``.
        lr_steps: Epochs at which the step schedule multiplies the lr by ``lr_gamma``.
        lr_gamma: Step-schedule factor.
        max_epochs: Length of the cosine.
        warmup_epochs: Linear warmup length in epochs (0: none).
        warmup_start_factor: Warmup's initial factor.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        schedule: str = "step",
        lr_steps: Sequence[float] = (),
        lr_gamma: float = 0.1,
        max_epochs: float | None = None,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if schedule == "cosine" and not (max_epochs and max_epochs > 0):
            raise ValueError("schedule='cosine' needs trainer.max_epochs > 0 (the cosine's length)")
        self.steps_per_epoch = int(steps_per_epoch)
        self.schedule = schedule
        self.lr_steps = sorted(float(e) for e in lr_steps)
        self.lr_gamma = float(lr_gamma)
        self.max_epochs = float(max_epochs) if max_epochs else None
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_start_factor = float(warmup_start_factor)

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch
        if self.schedule == "cosine":
            assert self.max_epochs is not None
            factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.max_epochs) / self.max_epochs))
        else:
            factor = self.lr_gamma ** sum(epoch >= e for e in self.lr_steps)
        if epoch < self.warmup_epochs:
            factor *= self.warmup_start_factor + (1.0 - self.warmup_start_factor) * epoch / self.warmup_epochs
        return factor


class VideoClassifier(pl.LightningModule):
    """I3D ResNet trained with cross-entropy and SGD; norm and batch-size experiments change only plain values.

    Args:
        arch: Builder name (key of ``ARCHS``).
        depth: ResNet depth (50 in the paper).
        width: Stem width (64 in the paper; small widths for CPU demos).
        norm: Norm name (``videonorm.norm.NORM_NAMES``). ``syncbn`` is the only way SyncBN is used.
        norm_groups: Group count for group-based norms.
        num_classes: Output classes; linked from ``data.num_classes`` by the CLI.
        dropout: Dropout before the classifier.
        zero_init_residual: Zero-init the last norm's gamma in each residual block.
        pretrained_2d: Path to a 2D ImageNet ResNet checkpoint to inflate (``models.inflate_2d``) when a fit
            starts from scratch (not when it resumes from a checkpoint).
        lr: Base learning rate for the whole (all-device) batch; the configs apply the linear scaling rule.
        momentum: SGD momentum.
        nesterov: Nesterov momentum.
        weight_decay: Weight decay of conv/linear weights.
        norm_weight_decay: Weight decay of norm parameters and all biases (0 in the paper's recipe).
        schedule: ``"step"`` or ``"cosine"``.
        lr_steps: Epochs (fractional allowed) where the step schedule multiplies the lr by ``lr_gamma``.
        lr_gamma: Step-schedule factor.
        warmup_epochs: Linear warmup length in epochs.
        warmup_start_factor: Warmup's initial lr factor.
    """

    def __init__(
        self,
        arch: str = "i3d_resnet",
        depth: int = 50,
        width: int = 64,
        norm: str = "bn",
        norm_groups: int = 32,
        num_classes: int = 400,
        dropout: float = 0.5,
        zero_init_residual: bool = True,
        pretrained_2d: str | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 1e-4,
        norm_weight_decay: float = 0.0,
        schedule: Literal["step", "cosine"] = "step",
        lr_steps: list[float] | None = None,
        lr_gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; known: {sorted(ARCHS)}")
        # logger=False: W&B gets the full flattened CLI config instead (videonorm.wandb_setup.run_config);
        # the hparams still go into every checkpoint.
        self.save_hyperparameters(logger=False)
        self.model = ARCHS[arch](
            depth=depth,
            norm=norm,
            norm_groups=norm_groups,
            num_classes=num_classes,
            width=width,
            dropout=dropout,
            zero_init_residual=zero_init_residual,
        )
        self.top_k = min(5, num_classes)  # top-5 is undefined with fewer than 5 classes (tiny demos)
        self.train_loss_epoch = MeanMetric()
        self.train_top1_epoch = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self._val_hits: list[Tensor] = []  # validation: (index, top-1 hit, top-k hit) rows per batch
        self._views: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # test: (index, view, label, probs)

    def forward(self, video: Tensor) -> Tensor:
        """(N, 3, T, H, W) float -> (N, num_classes) logits."""
        return self.model(video)

    # ---- setup -----------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Inflate the 2D ImageNet weights when a fit starts from scratch (a resume restores its own)."""
        if stage == "fit" and self.hparams.pretrained_2d and self.trainer.ckpt_path is None:
            self.load_pretrained_2d(self.hparams.pretrained_2d)

    def load_pretrained_2d(self, path: str | Path) -> None:
        """Inflate a 2D ResNet checkpoint into the 3D model (``models.inflate_2d``).

        Args:
            path: ``torch.save``d state dict (or a dict holding one under ``state_dict`` / ``model``).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained_2d: no such file: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        models.inflate_2d(self.model, state)

    # ---- train / val -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        video, label = batch["video"], batch["label"]  # (N, 3, T, H, W), (N,)
        logits = self(video)
        loss = F.cross_entropy(logits, label)
        n = label.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        top1, top5 = (self._accuracy(logits, label, k) for k in (1, self.top_k))
        self.log("train/top1", top1, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/top5", top5, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        self.train_loss_epoch.update(loss.detach(), weight=n)
        self.train_top1_epoch.update(logits.detach(), label)
        self.log("train/loss_epoch", self.train_loss_epoch, on_step=False, on_epoch=True)
        self.log("train/top1_epoch", self.train_top1_epoch, on_step=False, on_epoch=True)
        self._log_skipped(batch, "data/skipped_videos")
        return loss

    # ---- validation: clip-level accuracy, each video counted once over all ranks --------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_hits = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        video, label = batch["video"], batch["label"]
        logits = self(video)
        loss = F.cross_entropy(logits, label)
        top = logits.topk(self.top_k, dim=1).indices  # (N, k)
        hits = torch.stack([batch["index"].long(), top[:, 0] == label, (top == label[:, None]).any(dim=1)], dim=1)
        self._val_hits.append(hits.long().cpu())
        n = label.shape[0]
        # the loss is a mean over batches, the sampler's padded duplicates included (at most world-1 clips)
        self.log("val/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=n, prog_bar=True)
        self._log_skipped(batch, "data/skipped_videos_val")

    def on_validation_epoch_end(self) -> None:
        """val/top1, val/top5 over the unique val videos: DistributedSampler pads the last shard with repeats."""
        rows = torch.cat(self._val_hits) if self._val_hits else torch.zeros(0, 3, dtype=torch.long)
        self._val_hits = []
        seen: set[int] = set()
        top1 = topk = 0
        for rows_r in _gather_rows(rows, self.trainer.strategy):
            for index, hit1, hitk in rows_r.tolist():
                if index not in seen:
                    seen.add(index)
                    top1, topk = top1 + hit1, topk + hitk
        if not seen:
            return  # e.g. limit_val_batches=0
        n = len(seen)
        # identical on every rank (gathered rows): sync_dist only keeps Lightning from warning
        self.log("val/top1", top1 / n, on_step=False, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log("val/top5", topk / n, on_step=False, on_epoch=True, sync_dist=True)
        self.log("val/videos", float(n), on_step=False, on_epoch=True, sync_dist=True)

    def _accuracy(self, logits: Tensor, label: Tensor, k: int) -> Tensor:
        return multiclass_accuracy(logits.detach(), label, self.hparams.num_classes, top_k=k, average="micro")

    def _log_skipped(self, batch: dict[str, Tensor], name: str) -> None:
        if "skipped" in batch:
            skipped = batch["skipped"].sum().float()
            self.log(name, skipped, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True, batch_size=1)

    # ---- test: video-level multi-view accuracy ----------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._views = []

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self(batch["video"])
        probs = logits.float().softmax(dim=1)  # (N, C); views are averaged in probability space
        self._views.append(
            (batch["index"].long().cpu(), batch["view"].long().cpu(), batch["label"].long().cpu(), probs.cpu())
        )
        self._log_skipped(batch, "data/skipped_videos_test")

    def on_test_epoch_end(self) -> None:
        metrics = video_level_metrics(self._views, self.hparams.num_classes, self.top_k, self.trainer.strategy)
        self._views = []
        for name, value in metrics.items():
            # identical on every rank (all-gathered keys, all-reduced sums): the mean over ranks changes
            # nothing, sync_dist only keeps Lightning from warning about unsynced epoch-level values
            self.log(f"test/{name}", value, on_step=False, on_epoch=True, sync_dist=True)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Per-view class probabilities with the view's video index and view index."""
        probs = self(batch["video"]).float().softmax(dim=1)
        return {"index": batch["index"], "view": batch["view"], "probs": probs}

    # ---- optimization ----------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """SGD parameter groups: conv/linear weights get ``weight_decay``; norm params and biases get
        ``norm_weight_decay``."""
        no_decay_ids = {id(p) for m in self.model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if id(p) in no_decay_ids or name.endswith("bias") else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.hparams.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": self.hparams.norm_weight_decay})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameter_groups(), lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)
        schedule = EpochSchedule(
            steps_per_epoch=self._steps_per_epoch(),
            schedule=hp.schedule,
            lr_steps=hp.lr_steps or (),
            lr_gamma=hp.lr_gamma,
            max_epochs=self.trainer.max_epochs if (self.trainer.max_epochs or -1) > 0 else None,
            warmup_epochs=hp.warmup_epochs,
            warmup_start_factor=hp.warmup_start_factor,
        )

        def factor(step: int) -> float:
            # a plain function: LambdaLR checkpoints the __dict__ of callable objects, which would pin a
            # resumed run to the old curve (e.g. the old max_epochs of a cosine)
            return schedule(step)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        # stepped every optimizer step: the lr is a function of the fractional epoch, exact on resume
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        trainer = self.trainer
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()  # what trainer.estimated_stepping_batches does to count batches
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError("the epoch-based lr schedule needs a train dataloader with a length")
        return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def _gather_rows(rows: Tensor, strategy: Any) -> list[Tensor]:
    """All-gather int64 ``(n_r, k)`` tensors whose lengths differ across ranks -> one tensor per rank."""
    if getattr(strategy, "world_size", 1) == 1:
        return [rows]
    device = strategy.root_device
    count = torch.tensor([rows.shape[0]], device=device)
    counts = strategy.all_gather(count).reshape(-1).tolist()  # (W,)
    padded = torch.full((max(counts), rows.shape[1]), -1, dtype=torch.long, device=device)
    padded[: rows.shape[0]] = rows.to(device)
    gathered = strategy.all_gather(padded)  # (W, max_n, k)
    return [gathered[r, :n].cpu() for r, n in enumerate(counts)]


def video_level_metrics(
    views: list[tuple[Tensor, Tensor, Tensor, Tensor]], num_classes: int, top_k: int, strategy: Any = None
) -> dict[str, float]:
    """Video-level top-1/top-k from per-view probabilities, each (video, view) counted once over all ranks.

    DistributedSampler pads the last shard by repeating the first samples, so a (video index, view) pair
    can reach two ranks; the first occurrence in rank order is kept. Then each video's probabilities are
    averaged over its views, and the per-video sums are all-reduced. Only keys travel in the all-gather; the
    (videos x classes) sums travel in one all-reduce, so memory does not grow with the number of views.

    Args:
        views: This rank's ``(index, view, label, probs)`` per test batch; probs (N, C).
        num_classes: C.
        top_k: k of the second accuracy (5, or C when C < 5).
        strategy: Lightning strategy (``None``: single process).

    Returns:
        ``top1``, ``top5`` (fractions), ``videos`` (count), ``views_per_video`` (mean), ``clip_top1``
        (per-view accuracy over unique views).
    """
    if views:
        index, view, label, probs = (torch.cat(parts) for parts in zip(*views))
    else:
        index = view = label = torch.zeros(0, dtype=torch.long)
        probs = torch.zeros(0, num_classes)
    rows = torch.stack([index, view, label], dim=1)  # (n, 3)
    rank = getattr(strategy, "global_rank", 0)
    keep = torch.zeros(len(rows), dtype=torch.bool)
    seen: set[tuple[int, int]] = set()
    video_label: dict[int, int] = {}
    for r, rows_r in enumerate(_gather_rows(rows, strategy)):
        for i, (idx, v, lab) in enumerate(rows_r.tolist()):
            video_label.setdefault(idx, lab)
            if (idx, v) not in seen:
                seen.add((idx, v))
                if r == rank:
                    keep[i] = True
    if not video_label:
        raise RuntimeError("test produced no predictions (empty test set?)")
    num_videos = max(video_label) + 1
    sums = torch.zeros(num_videos, num_classes, dtype=torch.float64)
    sums.index_add_(0, index[keep], probs[keep].double())
    counts = torch.bincount(index[keep], minlength=num_videos).double()
    clip_hits = (probs[keep].argmax(1) == label[keep]).sum().double()
    if getattr(strategy, "world_size", 1) > 1:
        device = strategy.root_device
        sums = strategy.reduce(sums.to(device), reduce_op="sum").cpu()
        stacked = strategy.reduce(torch.cat([counts, clip_hits.view(1)]).to(device), reduce_op="sum").cpu()
        counts, clip_hits = stacked[:-1], stacked[-1]
    present = counts > 0
    labels = torch.full((num_videos,), -1, dtype=torch.long)
    for idx, lab in video_label.items():
        labels[idx] = lab
    mean_probs = sums[present] / counts[present, None]  # (V, C)
    targets = labels[present]
    topk = mean_probs.topk(top_k, dim=1).indices  # (V, k)
    views_per_video = counts[present]
    if views_per_video.min() != views_per_video.max():
        rank_zero_warn(
            f"test: videos have between {int(views_per_video.min())} and {int(views_per_video.max())} views "
            "(some views missing?)"
        )
    return {
        "top1": (topk[:, 0] == targets).double().mean().item(),
        "top5": (topk == targets[:, None]).any(dim=1).double().mean().item(),
        "videos": float(present.sum().item()),
        "views_per_video": views_per_video.mean().item(),
        "clip_top1": (clip_hits / counts.sum()).item(),
    }
