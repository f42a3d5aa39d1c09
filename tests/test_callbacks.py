"""PreciseBN: BN running statistics become the plain average of per-batch statistics. CpuThreads."""

from __future__ import annotations

import copy
import logging

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from videonorm.train.callbacks import CpuThreads, PreciseBN, update_bn_stats
from videonorm.train.module import VideoClassifier


def _tiny_bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4), nn.GroupNorm(2, 4)
    )


def _hand_stats(net: nn.Sequential, batches: list[torch.Tensor]):
    """Per-BN average over batches of the batch mean and unbiased variance, by hand (train-mode BN)."""
    means = [torch.zeros(4), torch.zeros(4)]
    variances = [torch.zeros(4), torch.zeros(4)]
    for x in batches:
        y1 = net[0](x)
        means[0] += y1.mean(dim=(0, 2, 3, 4))
        variances[0] += y1.var(dim=(0, 2, 3, 4), unbiased=True)
        h = F.batch_norm(y1, None, None, net[1].weight, net[1].bias, training=True)  # batch statistics
        y2 = net[3](torch.relu(h))
        means[1] += y2.mean(dim=(0, 2, 3, 4))
        variances[1] += y2.var(dim=(0, 2, 3, 4), unbiased=True)
    n = len(batches)
    return [m / n for m in means], [v / n for v in variances]


def test_update_bn_stats_matches_hand_computation():
    net = _tiny_bn_net()
    g = torch.Generator().manual_seed(1)
    # batches with different offsets, so the exponential average (momentum 0.1) and the true average differ
    batches = [torch.randn(2, 3, 4, 5, 5, generator=g) + i for i in range(4)]
    with torch.no_grad():
        for x in batches:
            net.train()(x)  # ordinary training forward passes: EMA statistics
        expected_mean, expected_var = _hand_stats(net, batches)
    ema = net[1].running_mean.clone()
    net.eval()
    used = update_bn_stats(net, iter(batches), num_batches=10)
    assert used == 4
    assert not net.training  # training flag restored
    assert not torch.allclose(ema, expected_mean[0], atol=1e-3)
    for i, bn in enumerate((net[1], net[4])):
        assert bn.momentum == 0.1  # restored
        torch.testing.assert_close(bn.running_mean, expected_mean[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bn.running_var, expected_var[i], atol=1e-5, rtol=1e-5)


def test_update_bn_stats_uses_only_num_batches():
    net = _tiny_bn_net()
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(2, 3, 4, 5, 5, generator=g) * (i + 1) for i in range(5)]
    with torch.no_grad():
        expected_mean, expected_var = _hand_stats(net, batches[:2])
    assert update_bn_stats(net, iter(batches), num_batches=2) == 2
    torch.testing.assert_close(net[1].running_var, expected_var[0], atol=1e-5, rtol=1e-5)


def _clip_batches(n: int, num_classes: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [
        {
            "video": torch.randn(3, 8, 64, 64, generator=g) + i % 3,
            "label": torch.tensor(i % num_classes),
            "index": torch.tensor(i),
            "view": torch.tensor(0),
            "skipped": torch.tensor(0),
        }
        for i in range(n)
    ]


def _fit(module: VideoClassifier, callback: PreciseBN, tmp_path) -> DataLoader:
    items = _clip_batches(6)
    train = DataLoader(items, batch_size=2, shuffle=False)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback], default_root_dir=tmp_path,
    )
    trainer.fit(module, train, DataLoader(items[:2], batch_size=2))
    return train


def test_precise_bn_callback_sets_stats_before_validation(tmp_path):
    pl.seed_everything(0)
    module = VideoClassifier(norm="bn", depth=50, width=8, num_classes=3, dropout=0.0, lr=0.05)
    callback = PreciseBN(num_batches=2)
    train = _fit(module, callback, tmp_path)
    assert callback.last_num_batches == 2
    # the weights do not change after the end-of-epoch validation: recomputing on the same two batches
    # from the fitted weights must give exactly the stats the callback left
    reference = copy.deepcopy(module)
    clips = (b["video"] for b in train)
    update_bn_stats(reference, clips, num_batches=2)
    stem_bn = module.model.blocks[0].norm
    torch.testing.assert_close(stem_bn.running_mean, reference.model.blocks[0].norm.running_mean)
    torch.testing.assert_close(stem_bn.running_var, reference.model.blocks[0].norm.running_var)
    assert stem_bn.running_mean.requires_grad is False and not stem_bn.running_mean.is_inference()


def test_precise_bn_is_a_noop_for_gn(tmp_path, caplog):
    pl.seed_everything(0)
    module = VideoClassifier(norm="gn", norm_groups=4, depth=50, width=8, num_classes=3, dropout=0.0)
    callback = PreciseBN(num_batches=2)
    with caplog.at_level(logging.INFO):
        _fit(module, callback, tmp_path)
    assert callback.last_num_batches == 0
    assert sum("no trainable BatchNorm" in r.getMessage() for r in caplog.records) == 1


def test_precise_bn_rejects_negative_batches():
    with pytest.raises(ValueError, match="num_batches"):
        PreciseBN(num_batches=-1)


class _Clips(pl.LightningDataModule):
    def __init__(self, num_workers: int) -> None:
        super().__init__()
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_clip_batches(4), batch_size=2, num_workers=self.num_workers)


class _ThreadProbe(pl.Callback):
    def __init__(self) -> None:
        self.seen: set[int] = set()

    def on_train_batch_start(self, *args) -> None:
        self.seen.add(torch.get_num_threads())


@pytest.mark.parametrize(("workers", "omp", "enabled", "during"), [
    (1, None, True, 1),  # 2 threads - 1 worker
    (0, None, True, 2),  # no workers: nothing to make room for
    (1, "2", True, 2),  # the user (or Lightning's DDP launcher) chose
    (1, None, False, 2),
])
def test_cpu_threads_leave_cores_to_data_workers(tmp_path, monkeypatch, workers, omp, enabled, during):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probe = _ThreadProbe()
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[CpuThreads(enabled=enabled), probe], default_root_dir=tmp_path,
        )
        module = VideoClassifier(norm="gn", norm_groups=4, depth=50, width=8, num_classes=3, dropout=0.0)
        trainer.fit(module, datamodule=_Clips(workers))
        assert probe.seen == {during}
        assert torch.get_num_threads() == 2  # restored after the fit
    finally:
        torch.set_num_threads(before)
