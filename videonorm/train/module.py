"""The LightningModule: I3D ResNet video classifier with loss, SGD + epoch schedule, and top-1/top-5 metrics.

Batches are the datamodule's dicts: ``video`` (N, 3, T, H, W) uint8 as the workers hand it over (converted to float
and normalized with the model's mean/std on the device, in ``on_after_batch_transfer``; a float ``video`` is taken
as already normalized), ``label`` (N,), ``index`` (N,) video index in its manifest, ``view`` (N,) view index,
``skipped`` (N,) broken videos skipped to produce each item.

Logged metrics (fractions in [0, 1]):
    train/loss, train/top1, train/top5, train/lr   every step
    train/loss_epoch, train/top1_epoch             per epoch (mean over the epoch, all devices)
    val/loss, val/top1, val/top5                   per epoch, single center clip per video; top-1/top-5 count
                                                   each video once across devices; plus val/videos
    test/top1, test/top5, test/mean_class_acc      video level: softmax averaged over each video's views,
                                                   each video counted once across devices; plus
                                                   test/videos, test/views_per_video, test/clip_top1
                                                   (the confusion matrix: ``test_confusion``, for TestReport)
    data/skipped_videos                            broken videos skipped while training, per epoch, all devices
    data/skipped_videos_val, data/skipped_videos_test
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.functional.classification import multiclass_accuracy

from videonorm import metric_keys as keys
from videonorm.data.transforms import KINETICS_MEAN, KINETICS_STD, ClipNormalize
from videonorm.identity import INIT_HASH_KEY, INIT_SOURCE_KEY, STEPS_PER_EPOCH_KEY
from videonorm.models import ModelSpec, build_model
from videonorm.models.norm.build import is_norm
from videonorm.models.pretrained import initialize_from
from videonorm.train.metrics import UniqueVideoAccuracy, VideoLevelAccuracy
from videonorm.train.schedule import EpochSchedule


class VideoClassifier(pl.LightningModule):
    """I3D ResNet trained with cross-entropy and SGD; norm and batch-size experiments change only plain values.

    Args:
        net: The network (``videonorm.models.ModelSpec``: backbone, depth, width, norm and its options, classes,
            dropout, zero-init); ``model.net.*`` in configs, ``num_classes`` linked from ``data.num_classes``.
        pretrained_2d: 2D ImageNet ResNet to inflate when a fit starts (never when it resumes from a checkpoint):
            a file path, ``caffe2-bgr:``/``caffe2-rgb:`` + a Caffe2 ``.pkl``, ``torchvision:<WeightsEnum>`` or
            ``timm:<model>`` (``videonorm.models.pretrained``); None trains from scratch.
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
        mean: Per-channel input mean on the [0, 1] scale (Kinetics' 0.45; the Non-local models' 114.75 / 255).
        std: Per-channel input std on the [0, 1] scale (0.225; the Non-local models' 57.375 / 255).
    """

    def __init__(
        self,
        net: ModelSpec = ModelSpec(),
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
        mean: tuple[float, float, float] = KINETICS_MEAN,
        std: tuple[float, float, float] = KINETICS_STD,
    ) -> None:
        super().__init__()
        # logger=False: W&B gets the full flattened CLI config instead (videonorm.train.logger.run_config);
        # the hparams still go into every checkpoint.
        self.save_hyperparameters(logger=False)
        self.net = ModelSpec.of(net)  # a checkpoint's hyperparameters hold the spec as a plain dict
        self.hparams["net"] = self.net.as_dict()  # so that torch.load(weights_only=True) reads them back
        self.model = build_model(self.net)
        # what pretrained_2d put into the model (videonorm.models.pretrained.describe), kept in every checkpoint
        self.pretrained_2d_info: dict[str, Any] | None = None
        num_classes = self.net.num_classes
        self.top_k = min(5, num_classes)  # top-5 is undefined with fewer than 5 classes (tiny demos)
        self.train_loss_epoch = MeanMetric()
        self.train_top1_epoch = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.normalize = ClipNormalize(mean, std)
        self.val_accuracy = UniqueVideoAccuracy(self.top_k)
        self.test_accuracy = VideoLevelAccuracy(num_classes, self.top_k)
        self.test_confusion: Tensor | None = None  # (C, C) of the last test

    def forward(self, video: Tensor) -> Tensor:
        """(N, 3, T, H, W) float -> (N, num_classes) logits."""
        return self.model(video)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 clips -> normalized float, as a batch on the training device (train, val, test, predict, and
        precise BN's batches alike)."""
        if isinstance(batch, dict) and isinstance(batch.get("video"), Tensor) and batch["video"].dtype == torch.uint8:
            batch = {**batch, "video": self.normalize(batch["video"])}
        return batch

    # ---- initialization -------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Inflate the 2D ImageNet weights when a fit starts fresh; a resume keeps its checkpoint's weights.

        Not in ``setup``: Lightning restores a checkpoint after ``setup`` and sets ``trainer.ckpt_path`` only then,
        so a resume looked like a fresh start there and needed the 2D file again. By ``on_fit_start`` the
        checkpoint is restored (for strategies that restore it after setup, such as DeepSpeed, the 2D file is
        still read and then overwritten).
        """
        if self.hparams.pretrained_2d and self.trainer.ckpt_path is None and self.pretrained_2d_info is None:
            self.load_pretrained_2d(self.hparams.pretrained_2d)
        info = self.pretrained_2d_info
        # the run's config records what only the fit knows: which 2D weights it started from (identity.init_text),
        # and its steps per epoch (identity.run_recipe reads schedules counted in steps as fractions of the run)
        params = {STEPS_PER_EPOCH_KEY: self._steps_per_epoch()}
        if info:
            params.update({INIT_SOURCE_KEY: info["source"], INIT_HASH_KEY: info["sha256"]})
        for logger in self.loggers:
            logger.log_hyperparams(params)

    def load_pretrained_2d(self, spec: str) -> dict[str, Any]:
        """Inflate a 2D ImageNet ResNet into the 3D model (``videonorm.models.pretrained.initialize_from``).

        Args:
            spec: a ``model.pretrained_2d`` source (file path, ``caffe2-bgr:``/``caffe2-rgb:`` path,
                ``torchvision:<WeightsEnum>``, ``timm:<model>``).

        Returns:
            The initialization's identity (source, spec, sha256 of the 2D weights, norm, groups), also stored in
            every checkpoint of the run.
        """
        info = initialize_from(self.model, spec, self.net).describe()
        self.pretrained_2d_info = info
        rank_zero_info(f"model.pretrained_2d: inflated {spec} ({info['source']}, {info['norm']}, "
                       f"sha256 {info['sha256']})")
        return info

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pretrained_2d"] = self.pretrained_2d_info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.pretrained_2d_info = checkpoint.get("pretrained_2d")

    # ---- train / val -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        video, label = batch["video"], batch["label"]  # (N, 3, T, H, W), (N,)
        logits = self(video)
        loss = F.cross_entropy(logits, label)
        n = label.shape[0]
        self.log(keys.TRAIN_LOSS, loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        top1, top5 = (self._accuracy(logits, label, k) for k in (1, self.top_k))
        self.log(keys.TRAIN_TOP1, top1, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log(keys.TRAIN_TOP5, top5, on_step=True, on_epoch=False, batch_size=n)
        self.log(keys.TRAIN_LR, self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        self.train_loss_epoch.update(loss.detach(), weight=n)
        self.train_top1_epoch.update(logits.detach(), label)
        self.log(keys.TRAIN_LOSS_EPOCH, self.train_loss_epoch, on_step=False, on_epoch=True)
        self.log(keys.TRAIN_TOP1_EPOCH, self.train_top1_epoch, on_step=False, on_epoch=True)
        self._log_skipped(batch, keys.SKIPPED_VIDEOS["train"])
        return loss

    # ---- validation: clip-level accuracy, each video counted once over all ranks --------------------------
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        video, label = batch["video"], batch["label"]
        logits = self(video)
        loss = F.cross_entropy(logits, label)
        self.val_accuracy.update(logits, label, batch["index"])
        n = label.shape[0]
        # the loss is a mean over batches, the sampler's padded duplicates included (at most world-1 clips)
        self.log(keys.VAL_LOSS, loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=n, prog_bar=True)
        self._log_skipped(batch, keys.SKIPPED_VIDEOS["val"])

    def on_validation_epoch_end(self) -> None:
        """val/top1, val/top5 over the unique val videos: DistributedSampler pads the last shard with repeats."""
        if self.val_accuracy.update_count == 0:
            return  # e.g. limit_val_batches=0
        result = self.val_accuracy.compute()
        self.val_accuracy.reset()
        # identical on every rank (gathered rows): sync_dist only keeps Lightning from warning
        self.log(keys.VAL_TOP1, result["top1"], on_step=False, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log(keys.VAL_TOP5, result["top5"], on_step=False, on_epoch=True, sync_dist=True)
        self.log(keys.VAL_VIDEOS, result["videos"], on_step=False, on_epoch=True, sync_dist=True)

    def _accuracy(self, logits: Tensor, label: Tensor, k: int) -> Tensor:
        return multiclass_accuracy(logits.detach(), label, self.net.num_classes, top_k=k, average="micro")

    def _log_skipped(self, batch: dict[str, Tensor], name: str) -> None:
        if "skipped" in batch:
            skipped = batch["skipped"].sum().float()
            self.log(name, skipped, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True, batch_size=1)

    # ---- test: video-level multi-view accuracy ----------------------------------------------------------
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        probs = self(batch["video"]).float().softmax(dim=1)  # (N, C); views are averaged in probability space
        self.test_accuracy.update(probs, batch["label"], batch["index"], batch["view"])
        self._log_skipped(batch, keys.SKIPPED_VIDEOS["test"])

    def on_test_epoch_end(self) -> None:
        metrics = self.test_accuracy.compute()
        self.test_accuracy.reset()
        self.test_confusion = metrics.pop("confusion")  # (C, C) videos; written and logged by reports.TestReport
        for name, value in metrics.items():
            # identical on every rank (all-gathered keys, all-reduced sums): the mean over ranks changes
            # nothing, sync_dist only keeps Lightning from warning about unsynced epoch-level values
            self.log(keys.TEST_PREFIX + name, value, on_step=False, on_epoch=True, sync_dist=True)

    # ---- optimization ----------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """SGD parameter groups: conv/linear weights get ``weight_decay``; the parameters of every norm layer (gamma,
        beta, FRN's tau, EvoNorm's v: ``is_norm``) and all biases get ``norm_weight_decay``."""
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
