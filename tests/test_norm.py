"""videonorm.models.norm: the factory, the statistics each norm takes, frozen BN."""

import pytest
import torch
import torch.nn as nn

from videonorm.models.norm import (
    NORM_NAMES,
    NORM_TYPES,
    FrozenBatchNorm3d,
    SyncBatchNorm3d,
    bn_modules,
    is_norm,
    norm_layer,
)

C = 8  # channels of the test tensors
EXPECTED = {  # name -> (class, GroupNorm groups for C channels with groups=4)
    "bn": (nn.BatchNorm3d, None),
    "syncbn": (SyncBatchNorm3d, None),
    "frozenbn": (FrozenBatchNorm3d, None),
    "gn": (nn.GroupNorm, 4),
    "ln": (nn.GroupNorm, 1),
    "in": (nn.GroupNorm, C),
}


def _video(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, C, 4, 5, 6, generator=g) * 3 + 1  # (N, C, T, H, W)


def _randomize_affine(layer: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(C, generator=g) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=g))


@pytest.mark.parametrize("name", NORM_NAMES)
def test_factory_builds_the_named_type(name):
    layer = norm_layer(name, groups=4)(C)
    cls, groups = EXPECTED[name]
    assert type(layer) is cls
    assert is_norm(layer) and isinstance(layer, NORM_TYPES)
    if groups is not None:
        assert layer.num_groups == groups and layer.num_channels == C and layer.affine


@pytest.mark.parametrize("name", NORM_NAMES)
def test_factory_takes_pytorchvideo_keywords(name):
    layer = norm_layer(name, groups=4)(num_features=C, eps=1e-3, momentum=0.2)
    assert layer.eps == 1e-3
    if name in ("bn", "syncbn"):
        assert layer.momentum == 0.2


def test_is_norm_rejects_other_modules():
    assert not is_norm(nn.Conv3d(3, 3, 1))
    assert not is_norm(nn.BatchNorm2d(3))  # not something the factory makes


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match=r"'batchnorm'.*bn, syncbn, frozenbn, gn, ln, in"):
        norm_layer("batchnorm")


def test_groups_not_dividing_channels():
    make = norm_layer("gn", groups=32)  # the factory itself is fine; the channel count is checked on use
    with pytest.raises(ValueError, match=r"32 groups do not divide 24 channels.*\[1, 2, 3, 4, 6, 8, 12, 24\]"):
        make(24)


@pytest.mark.parametrize("groups", [0, -2])
def test_nonpositive_groups_rejected_at_factory(groups):
    with pytest.raises(ValueError, match="group count"):
        norm_layer("gn", groups=groups)


@pytest.mark.parametrize("name", ["gn", "ln", "in"])
def test_group_norms_normalize_each_sample_over_group_time_space(name):
    x = _video()
    layer = norm_layer(name, groups=4)(C)
    _randomize_affine(layer)
    groups = layer.num_groups
    n = x.shape[0]
    # Hand computation: each sample, each group of C/G channels, over (C/G, T, H, W).
    xg = x.reshape(n, groups, -1)
    mean = xg.mean(-1, keepdim=True)
    var = xg.var(-1, unbiased=False, keepdim=True)
    expected = ((xg - mean) / torch.sqrt(var + layer.eps)).reshape_as(x)
    expected = expected * layer.weight.view(1, C, 1, 1, 1) + layer.bias.view(1, C, 1, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # Per-frame statistics (a 2D GN on each frame) give a different answer: time is really pooled.
    per_frame = torch.stack([nn.functional.group_norm(x[:, :, t], groups, eps=layer.eps) for t in range(4)], 2)
    per_frame = per_frame * layer.weight.view(1, C, 1, 1, 1) + layer.bias.view(1, C, 1, 1, 1)
    assert not torch.allclose(layer(x), per_frame, atol=1e-3)


@pytest.mark.parametrize("name", ["bn", "syncbn"])
def test_batch_norms_normalize_each_channel_over_batch_time_space(name):
    x = _video()
    layer = norm_layer(name)(C, momentum=0.1).train()
    _randomize_affine(layer)
    # Hand computation: per channel over (N, T, H, W).
    mean = x.mean(dim=(0, 2, 3, 4), keepdim=True)
    var = x.var(dim=(0, 2, 3, 4), unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + layer.eps)
    expected = expected * layer.weight.view(1, C, 1, 1, 1) + layer.bias.view(1, C, 1, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # Running statistics move 10% toward the batch's (unbiased variance, as PyTorch defines it).
    torch.testing.assert_close(layer.running_mean, 0.1 * mean.flatten())
    unbiased = x.var(dim=(0, 2, 3, 4), unbiased=True)
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * unbiased)


def _bn_with_stats() -> nn.BatchNorm3d:
    bn = nn.BatchNorm3d(C)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(C, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(C, generator=g))
        bn.running_mean.copy_(torch.randn(C, generator=g))
        bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
    return bn


def test_frozen_bn_loads_bn_state_and_matches_bn_in_eval():
    bn = _bn_with_stats().eval()
    frozen = norm_layer("frozenbn")(C)
    assert list(frozen.state_dict()) == list(bn.state_dict())
    frozen.load_state_dict(bn.state_dict(), strict=True)
    frozen.train()  # train mode must not switch to batch statistics
    x = _video()
    torch.testing.assert_close(frozen(x), bn(x))
    nn.BatchNorm3d(C).load_state_dict(frozen.state_dict(), strict=True)  # and back


def test_frozen_bn_never_changes():
    frozen = norm_layer("frozenbn")(C)
    frozen.load_state_dict(_bn_with_stats().state_dict())
    assert list(frozen.parameters()) == []
    model = nn.Sequential(nn.Conv3d(C, C, 1), frozen, nn.Conv3d(C, 2, 1)).train()
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    conv_before = model[0].weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for seed in range(2):
        loss = model(_video(seed)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in frozen.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model[0].weight, conv_before)  # the step did happen


def test_bn_modules_lists_only_recomputable_batch_norms():
    model = nn.Sequential(*(norm_layer(name, groups=4)(C) for name in NORM_NAMES))
    assert [type(m) for m in bn_modules(model)] == [nn.BatchNorm3d, SyncBatchNorm3d]


def _sync_bn_worker(rank: int, world: int, init_file: str, x: torch.Tensor, out: dict) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        layer = norm_layer("syncbn")(C)
        _randomize_affine(layer)
        part = x.chunk(world)[rank].clone().requires_grad_(True)
        y = layer(part)
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()  # a loss that weighs every output
        out[rank] = (y.detach(), part.grad, layer.running_mean.clone(), layer.running_var.clone(),
                     layer.weight.grad.clone())
    finally:
        torch.distributed.destroy_process_group()


def test_syncbn_on_cpu_equals_bn_over_the_union_of_the_processes_batches(tmp_path):
    """2 gloo processes with half the batch each = one BatchNorm3d over the whole batch (values, grads, stats)."""
    import torch.multiprocessing as mp

    world, x = 2, _video().repeat(2, 1, 1, 1, 1)[:4]  # (4, C, T, H, W): 2 clips per process
    out = mp.Manager().dict()
    mp.spawn(_sync_bn_worker, args=(world, str(tmp_path / "init"), x, out), nprocs=world)

    ref = nn.BatchNorm3d(C)
    _randomize_affine(ref)
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    weights = torch.cat([torch.arange(y[:2].numel()).view_as(y[:2]).sin()] * 2)  # each rank's loss weights
    (y * weights).sum().backward()
    for rank in range(world):
        y_r, grad_r, mean_r, var_r, wgrad_r = out[rank]
        torch.testing.assert_close(y_r, y.detach().chunk(world)[rank], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(grad_r, xr.grad.chunk(world)[rank], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mean_r, ref.running_mean)
        torch.testing.assert_close(var_r, ref.running_var)
    # weight gradients are per process (DDP averages them); their sum is the whole batch's gradient
    torch.testing.assert_close(out[0][4] + out[1][4], ref.weight.grad, atol=1e-4, rtol=1e-4)
