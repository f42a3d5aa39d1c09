"""VideoClassifier: schedule, parameter groups, video-level test metric, frozen BN through a real fit."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from videonorm.models import ModelSpec
from videonorm.models.norm import FrozenBatchNorm3d, is_norm
from videonorm.models.spec import FIELDS
from videonorm.train.metrics import VideoLevelAccuracy
from videonorm.train.module import VideoClassifier
from videonorm.train.schedule import EpochSchedule

TINY = dict(depth=50, width=8, norm_groups=4, num_classes=5, dropout=0.0)


def _module(**kwargs) -> VideoClassifier:
    """A tiny VideoClassifier: ModelSpec fields and module arguments as keywords."""
    net = {k: kwargs.pop(k) for k in list(kwargs) if k in FIELDS}
    return VideoClassifier(ModelSpec(**{**TINY, **net}), **kwargs)


def test_step_schedule_in_fractional_epochs():
    sched = EpochSchedule(steps_per_epoch=10, schedule="step", lr_steps=[1.5, 3], lr_gamma=0.1)
    assert sched(0) == 1.0
    assert sched(14) == 1.0  # epoch 1.4
    assert sched(15) == pytest.approx(0.1)  # epoch 1.5: first step
    assert sched(29) == pytest.approx(0.1)
    assert sched(30) == pytest.approx(0.01)


def test_cosine_with_linear_warmup():
    sched = EpochSchedule(steps_per_epoch=4, schedule="cosine", max_epochs=10, warmup_epochs=1, warmup_start_factor=0.1)
    cosine = lambda e: 0.5 * (1 + math.cos(math.pi * e / 10))  # noqa: E731
    assert sched(0) == pytest.approx(0.1)
    assert sched(2) == pytest.approx(cosine(0.5) * (0.1 + 0.9 * 0.5))
    assert sched(4) == pytest.approx(cosine(1.0))
    assert sched(40) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="max_epochs"):
        EpochSchedule(steps_per_epoch=4, schedule="cosine")


def test_parameter_groups_exclude_norm_params_and_biases():
    module = _module(norm="gn", weight_decay=1e-4, norm_weight_decay=0.0)
    decay, no_decay = module.parameter_groups()
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    norm_params = {id(p) for m in module.model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    biases = {id(p) for n, p in module.model.named_parameters() if n.endswith("bias")}
    assert {id(p) for p in no_decay["params"]} == norm_params | biases
    assert norm_params and not norm_params & {id(p) for p in decay["params"]}
    assert all(p.dim() > 1 for p in decay["params"])  # conv kernels and the classifier matrix
    total = sum(p.numel() for p in module.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == total


def _views(rows, num_classes=6):
    """rows: (index, view, label, probs list) -> one test batch."""
    index = torch.tensor([r[0] for r in rows])
    view = torch.tensor([r[1] for r in rows])
    label = torch.tensor([r[2] for r in rows])
    probs = torch.tensor([r[3] for r in rows], dtype=torch.float32)
    return index, view, label, probs


def test_video_level_accuracy_averages_views_and_counts_each_view_once():
    # video 0 (label 0): view 0 says class 1 strongly, views 1-2 say class 0 -> average picks 0 (correct)
    # video 1 (label 2): both views put class 2 third -> top-1 wrong, top-5 right
    # the duplicated (0, 0) row mimics DistributedSampler padding: counted once, or video 0 flips to class 1
    p = lambda *v: list(v)  # noqa: E731
    batch1 = _views(
        [
            (0, 0, 0, p(0.0, 1.0, 0, 0, 0, 0)),
            (0, 1, 0, p(0.9, 0.1, 0, 0, 0, 0)),
            (0, 2, 0, p(0.9, 0.1, 0, 0, 0, 0)),
        ]
    )
    batch2 = _views(
        [
            (1, 0, 2, p(0.5, 0.3, 0.2, 0, 0, 0)),
            (1, 1, 2, p(0.5, 0.3, 0.2, 0, 0, 0)),
            (0, 0, 0, p(0.0, 1.0, 0, 0, 0, 0)),  # padding duplicate
        ]
    )
    metric = VideoLevelAccuracy(num_classes=6, top_k=5)
    for index, view, label, probs in (batch1, batch2):
        metric.update(probs, label, index, view)
    m = metric.compute()
    assert m["videos"] == 2
    assert m["top1"] == pytest.approx(0.5)
    assert m["top5"] == pytest.approx(1.0)
    assert m["views_per_video"] == pytest.approx(2.5)
    assert m["clip_top1"] == pytest.approx(2 / 5)  # unique views: 2 of video 0's three are right


class _RandomClips(Dataset):
    """Batches in the datamodule's dict format, from a fixed random generator."""

    def __init__(self, n: int, num_classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.video = torch.randn(n, 3, 8, 64, 64, generator=g)
        self.label = torch.randint(0, num_classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"video": self.video[i], "label": self.label[i], "index": torch.tensor(i), "view": torch.tensor(0),
                "skipped": torch.tensor(0)}


def test_frozen_bn_stays_frozen_through_a_fit(tmp_path):
    pl.seed_everything(0)
    # zero_init_residual=False: a frozen gamma of 0 would switch the residual branches off for good
    module = _module(norm="frozenbn", lr=0.1, zero_init_residual=False)
    frozen = [m for m in module.modules() if isinstance(m, FrozenBatchNorm3d)]
    assert frozen
    before = {k: v.clone() for k, v in module.state_dict().items() if "norm" in k or "bn" in k}
    assert before
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    loader = DataLoader(_RandomClips(4, 5), batch_size=2)
    conv_before = module.model.blocks[0].conv.weight.detach().clone()
    trainer.fit(module, loader)
    assert trainer.global_step == 2
    assert not torch.equal(conv_before, module.model.blocks[0].conv.weight)  # training did happen
    after = module.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert all(not any(True for _ in m.parameters()) for m in frozen)  # buffers only: nothing to optimize


def test_validation_top1_top5_match_the_models_predictions(tmp_path):
    pl.seed_everything(0)
    module = _module(norm="gn", num_classes=7)  # 7 classes: top-5 is not trivially 1
    with torch.no_grad():  # a classifier with spread-out logits
        module.model.blocks[-1].proj.weight.normal_(0, 1.0)
    data = _RandomClips(12, 7)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    (metrics,) = trainer.validate(module, DataLoader(data, batch_size=5))  # 3 batches, the last one short
    module.eval()
    with torch.no_grad():
        top = module(data.video).topk(5, dim=1).indices
    assert metrics["val/videos"] == 12
    assert 0 < metrics["val/top1"] < metrics["val/top5"] < 1, metrics
    assert metrics["val/top1"] == pytest.approx((top[:, 0] == data.label).float().mean().item())
    assert metrics["val/top5"] == pytest.approx((top == data.label[:, None]).any(dim=1).float().mean().item())


def test_uint8_batches_are_normalized_on_the_device_and_float_ones_pass_through():
    module = _module(norm="gn", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    video = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    batch = {"video": video, "label": torch.tensor([0, 1])}
    out = module.on_after_batch_transfer(batch, 0)
    expected = (video.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]).view(3, 1, 1, 1)
    assert out["video"].dtype == torch.float32 and torch.allclose(out["video"], expected, atol=1e-5)
    assert out["label"] is batch["label"] and batch["video"].dtype == torch.uint8  # the input batch is not changed
    floats = {"video": torch.randn(2, 3, 4, 8, 8)}
    assert module.on_after_batch_transfer(floats, 0)["video"] is floats["video"]
