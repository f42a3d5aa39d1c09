"""PreciseBN: BN running statistics become the pooled mean and variance of everything each BN saw."""

from __future__ import annotations

import copy
import logging

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from videonorm.models import ModelSpec
from videonorm.models.norm import EvoNormB0
from videonorm.train.module import VideoClassifier
from videonorm.train.precise_bn import PreciseBN, update_bn_stats


def _tiny_bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4), nn.GroupNorm(2, 4)
    )


def _bn_inputs(net: nn.Sequential, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each BN's input over all batches, concatenated along N, by hand (train-mode BN: batch statistics)."""
    first, second = [], []
    for x in batches:
        y1 = net[0](x)
        h = F.batch_norm(y1, None, None, net[1].weight, net[1].bias, training=True)  # this batch's statistics
        first.append(y1)
        second.append(net[3](torch.relu(h)))
    return [torch.cat(first), torch.cat(second)]


def _pooled(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population variance of (N, C, T, H, W) over every element it holds."""
    x = x.double()
    return x.mean(dim=(0, 2, 3, 4)), x.var(dim=(0, 2, 3, 4), correction=0)


def test_update_bn_stats_is_the_pooled_variance_of_the_data_it_saw():
    net = _tiny_bn_net()
    g = torch.Generator().manual_seed(1)
    # batches with different offsets, so the exponential average (momentum 0.1) and the pooled one differ, and
    # uneven batch sizes (the last one smaller): elements count, not batches
    batches = [torch.randn(2 if i < 3 else 1, 3, 4, 5, 5, generator=g) + i for i in range(4)]
    with torch.no_grad():
        for x in batches:
            net.train()(x)  # ordinary training forward passes: EMA statistics
        inputs = _bn_inputs(net, batches)
    ema = net[1].running_mean.clone()
    tracked = net[1].num_batches_tracked.clone()
    net.eval()
    used = update_bn_stats(net, iter(batches), num_batches=10)
    assert used == 4
    assert not net.training  # training flag restored
    assert torch.equal(net[1].num_batches_tracked, tracked)
    for i, bn in enumerate((net[1], net[4])):
        mean, var = _pooled(inputs[i])
        torch.testing.assert_close(bn.running_mean.double(), mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), var, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ema, net[1].running_mean, atol=1e-3)
    # averaging the per-batch variances (fvcore's estimate) misses how the batch means spread: smaller
    with torch.no_grad():
        per_batch = torch.stack([y.var(dim=(0, 2, 3, 4)) for y in net[0](torch.cat(batches)).split([2, 2, 2, 1])])
    assert torch.all(per_batch.mean(0) < net[1].running_var)


def test_update_bn_stats_recomputes_evonorm_b0_running_variance():
    """EvoNorm-B0 keeps a running variance of its input per channel over (N, T, H, W): precise BN sets it to the
    pooled variance of everything the layer saw, unbiased (n / (n - 1)) like the layer's own running update."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(3, 4, 1), EvoNormB0(4), nn.Conv3d(4, 4, 1), EvoNormB0(4),
                        EvoNormB0(4, apply_act=False))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(2 if i < 3 else 1, 3, 4, 5, 5, generator=g) * (1 + i) + i for i in range(4)]
    with torch.no_grad():  # each B0's input by hand; a B0 in training normalizes with batch statistics only
        first = [net[0](x) for x in batches]
        second = [net[2](copy.deepcopy(net[1]).train()(y)) for y in first]
    assert update_bn_stats(net.eval(), iter(batches), num_batches=10) == 4
    for layer, inputs in ((net[1], first), (net[3], second)):
        x = torch.cat(inputs).double()
        pooled = x.var(dim=(0, 2, 3, 4), correction=0)
        n = x.numel() // x.shape[1]
        torch.testing.assert_close(layer.running_var.double(), pooled * n / (n - 1), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(layer.running_var, torch.ones(4), atol=0.5)  # far from where it started
    assert net[4].running_var is None  # without its activation B0 keeps no statistics


def test_update_bn_stats_uses_only_num_batches():
    net = _tiny_bn_net()
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(2, 3, 4, 5, 5, generator=g) * (i + 1) for i in range(5)]
    with torch.no_grad():
        _, var = _pooled(_bn_inputs(net, batches[:2])[0])
    assert update_bn_stats(net, iter(batches), num_batches=2) == 2
    torch.testing.assert_close(net[1].running_var.double(), var, atol=1e-5, rtol=1e-5)


def test_update_bn_stats_pools_across_processes_through_average():
    """Two "processes" with one batch each: averaging the sums and counts gives the statistics of both."""
    g = torch.Generator().manual_seed(4)
    shards = [torch.randn(2, 3, 4, 5, 5, generator=g), torch.randn(1, 3, 4, 5, 5, generator=g) * 3 + 2]
    nets = [_tiny_bn_net() for _ in shards]
    with torch.no_grad():
        expected = _pooled(_bn_inputs(nets[0], shards)[0])
    # run the two processes one after the other; the second's `average` sees both sets of sums
    sums: list[list[torch.Tensor]] = []

    def record(t: torch.Tensor) -> torch.Tensor:
        sums.append([t.clone()])
        return t

    update_bn_stats(nets[0], iter(shards[:1]), 1, average=record)
    first = iter(sums)
    update_bn_stats(nets[1], iter(shards[1:]), 1, average=lambda t: (t + next(first)[0]) / 2)
    torch.testing.assert_close(nets[1][1].running_mean.double(), expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nets[1][1].running_var.double(), expected[1], atol=1e-5, rtol=1e-5)


def test_update_bn_stats_restores_the_buffers_when_it_fails():
    net = _tiny_bn_net()
    before = net[1].running_mean.clone(), net[1].running_var.clone()

    def broken():
        yield torch.randn(2, 3, 4, 5, 5) + 5
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        update_bn_stats(net, broken(), num_batches=3)
    assert torch.equal(net[1].running_mean, before[0]) and torch.equal(net[1].running_var, before[1])
    assert not net[1]._forward_pre_hooks  # no hook left behind


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
    module = VideoClassifier(ModelSpec(norm="bn", depth=50, width=8, num_classes=3, dropout=0.0), lr=0.05)
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
    module = VideoClassifier(ModelSpec(norm="gn", norm_groups=4, depth=50, width=8, num_classes=3, dropout=0.0))
    callback = PreciseBN(num_batches=2)
    with caplog.at_level(logging.INFO):
        _fit(module, callback, tmp_path)
    assert callback.last_num_batches == 0
    assert sum("no trainable BatchNorm or EvoNorm-B0" in r.getMessage() for r in caplog.records) == 1


def test_precise_bn_rejects_negative_batches():
    with pytest.raises(ValueError, match="num_batches"):
        PreciseBN(num_batches=-1)
