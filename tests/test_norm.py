"""videonorm.models.norm: the registry, the statistics each batch norm takes (BN, SyncBN and its groups, frozen
BN, Batch Renorm) against hand computations, and bad input. The norm-act schemes: tests/test_norm_act.py."""

import warnings

import pytest
import torch
import torch.nn as nn

from videonorm.models.norm import (
    NORM_NAMES,
    SCHEMES,
    BatchRenorm3d,
    EvoNormB0,
    EvoNormS0,
    FilterResponseNorm3d,
    FrozenBatchNorm3d,
    GroupNorm3d,
    SyncBatchNorm3d,
    bn_modules,
    is_norm,
    norm_layer,
    norm_types,
    resolve_options,
    uses_groups,
    uses_sync_group,
)

C = 8  # channels of the test tensors
EXPECTED = {  # name -> (class, GroupNorm groups for C channels with groups=4): written out, not read from SCHEMES
    "bn": (nn.BatchNorm3d, None),
    "syncbn": (SyncBatchNorm3d, None),
    "frozenbn": (FrozenBatchNorm3d, None),
    "brn": (BatchRenorm3d, None),
    "gn": (GroupNorm3d, 4),
    "ln": (GroupNorm3d, 1),
    "in": (GroupNorm3d, C),
    "gn_ws": (GroupNorm3d, 4),
    "frn": (FilterResponseNorm3d, None),
    "evonorm_s0": (EvoNormS0, None),
    "evonorm_b0": (EvoNormB0, None),
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
    assert is_norm(layer) and isinstance(layer, norm_types())
    if groups is not None:
        assert layer.num_groups == groups and layer.num_channels == C and layer.affine


@pytest.mark.parametrize("name", NORM_NAMES)
def test_factory_takes_pytorchvideo_keywords(name):
    layer = norm_layer(name, groups=4)(num_features=C, eps=1e-3, momentum=0.2)
    # the builder's BN-shaped eps, except where the scheme's paper gives its own
    assert layer.eps == {"frn": 1e-6, "evonorm_s0": 1e-5, "evonorm_b0": 1e-5}.get(name, 1e-3)
    if name in ("bn", "syncbn", "brn", "evonorm_b0"):
        assert layer.momentum == 0.2


def test_registry_answers_every_question():
    assert NORM_NAMES == tuple(EXPECTED)
    assert set(norm_types()) == {cls for cls, _ in EXPECTED.values()}
    assert [n for n in NORM_NAMES if uses_groups(n)] == ["gn", "gn_ws", "evonorm_s0"]
    assert [n for n in NORM_NAMES if uses_sync_group(n)] == ["syncbn"]
    assert [n for n, s in SCHEMES.items() if s.norm_act] == ["frn", "evonorm_s0", "evonorm_b0"]
    assert [n for n, s in SCHEMES.items() if s.batch_stats] == ["bn", "syncbn", "brn", "evonorm_b0"]
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'; allowed: " + ", ".join(NORM_NAMES)):
        uses_groups("batchnorm")


def test_options_are_the_papers_and_overridable():
    assert resolve_options("brn") == {"r_max": 3.0, "d_max": 5.0, "warmup_steps": 5000, "r_max_steps": 40000,
                                      "d_max_steps": 25000}  # fmt: skip
    layer = norm_layer("brn", options={"warmup_steps": 10, "r_max": 2})(C)
    assert (layer.warmup_steps, layer.r_max, layer.d_max) == (10, 2.0, 5.0)
    assert norm_layer("frn", options={"eps": 1e-4})(C).eps == 1e-4
    with pytest.raises(ValueError, match=r"norm 'brn' has no option 'warmup'; its options \(paper defaults\): "
                                         r"r_max=3, d_max=5, warmup_steps=5000"):
        norm_layer("brn", options={"warmup": 10})
    with pytest.raises(ValueError, match=r"norm 'bn' has no option 'eps'; its options \(paper defaults\): none"):
        norm_layer("bn", options={"eps": 1e-3})


def test_is_norm_rejects_other_modules():
    assert not is_norm(nn.Conv3d(3, 3, 1))
    assert not is_norm(nn.BatchNorm2d(3))  # not something the factory makes


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match=r"'batchnorm'.*bn, syncbn, frozenbn, brn, gn, ln, in, gn_ws, frn, "
                                         r"evonorm_s0, evonorm_b0"):
        norm_layer("batchnorm")


@pytest.mark.parametrize("name", ["gn", "gn_ws", "evonorm_s0"])
def test_groups_not_dividing_channels(name):
    make = norm_layer(name, groups=32)  # the factory itself is fine; the channel count is checked on use
    with pytest.raises(ValueError, match=rf"norm '{name}': 32 groups do not divide 24 channels.*"
                                         r"\[1, 2, 3, 4, 6, 8, 12, 24\]"):
        make(24)


@pytest.mark.parametrize("name", ["gn", "evonorm_s0"])
@pytest.mark.parametrize("groups", [0, -2])
def test_nonpositive_groups_rejected_at_factory(name, groups):
    with pytest.raises(ValueError, match="group count"):
        norm_layer(name, groups=groups)


def test_negative_sync_group_rejected_at_factory():
    with pytest.raises(ValueError, match="sync_group must be an integer >= 0"):
        norm_layer("syncbn", sync_group=-1)


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


@pytest.mark.parametrize("name", ["bn", "syncbn", "brn"])  # brn: its first steps are plain BN (r = 1, d = 0)
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
    model = nn.Sequential(*(norm_layer(name, groups=4)(C) for name in NORM_NAMES),
                          norm_layer("evonorm_b0")(C, apply_act=False), nn.BatchNorm3d(C, track_running_stats=False))
    assert [type(m) for m in bn_modules(model)] == [nn.BatchNorm3d, SyncBatchNorm3d, BatchRenorm3d, EvoNormB0]


# ---------------------------------------------------------------- Batch Renormalization


def _brn(**options) -> BatchRenorm3d:
    layer = norm_layer("brn", options=options)(C).train()
    _randomize_affine(layer)
    return layer


def test_brn_renormalizes_toward_running_statistics_with_clipped_r_and_d():
    layer = _brn(warmup_steps=0, r_max_steps=0, d_max_steps=0)  # r_max = 3, d_max = 5 from step 1 on
    layer.num_batches_tracked.fill_(1)
    running_mean = torch.tensor([0.0, 1.0, 20.0, -1.0, 0.5, 1.0, 0.0, 2.0])  # channel 2: d clips at 5
    running_var = torch.tensor([1.0, 9.0, 4.0, 0.25, 100.0, 1.0, 4.0, 0.1])  # channels 4, 7: r clips
    layer.running_mean.copy_(running_mean)
    layer.running_var.copy_(running_var)
    x = _video().requires_grad_(True)  # (3, C, 4, 5, 6), values ~ N(1, 3^2)
    y = layer(x)
    # Hand computation (Ioffe 2017, Algorithm 1), r and d constants for backprop
    xr = x.detach().clone().requires_grad_(True)
    dims, view = (0, 2, 3, 4), (1, C, 1, 1, 1)
    mean_b = xr.mean(dims)
    sigma_b = (xr.var(dims, unbiased=False) + layer.eps).sqrt()
    sigma = (running_var + layer.eps).sqrt()
    r = (sigma_b / sigma).detach().clamp(1 / 3, 3)
    d = ((mean_b - running_mean) / sigma).detach().clamp(-5, 5)
    assert (r == 3).sum() + (r == 1 / 3).sum() >= 2 and (d.abs() == 5).any() and (d.abs() < 5).sum() >= 5
    expected = ((xr - mean_b.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view))
    expected = expected * layer.weight.detach().view(view) + layer.bias.detach().view(view)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    weights = torch.arange(y.numel()).view_as(y).sin()
    (y * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, ((expected - layer.bias.detach().view(view))
                                                   / layer.weight.detach().view(view) * weights).sum(dims))
    # running statistics: BN's update (unbiased variance)
    torch.testing.assert_close(layer.running_mean, 0.9 * running_mean + 0.1 * mean_b.detach())
    torch.testing.assert_close(layer.running_var, 0.9 * running_var + 0.1 * xr.detach().var(dims, unbiased=True))
    # inference: the running statistics, as BN
    layer.eval()
    sigma = (layer.running_var + layer.eps).sqrt()
    expected_eval = ((x - layer.running_mean.view(view)) / sigma.view(view) * layer.weight.view(view)
                     + layer.bias.view(view))  # fmt: skip
    torch.testing.assert_close(layer(x), expected_eval)


def test_brn_equals_bn_when_r_max_1_and_d_max_0():
    """Outputs, input and parameter gradients, running statistics, over SGD steps."""
    brn = _brn(r_max=1, d_max=0, warmup_steps=0)
    bn = nn.BatchNorm3d(C)
    bn.load_state_dict(brn.state_dict(), strict=True)  # same keys, same values
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (brn, bn)]
    for step in range(3):
        outs = []
        for m, opt in zip((brn, bn), opts):
            x = (_video(step) * (step + 1)).requires_grad_(True)
            y = m(x)
            (y * torch.arange(y.numel()).view_as(y).cos()).sum().backward()
            outs.append((y.detach(), x.grad, m.weight.grad.clone(), m.bias.grad.clone()))
            opt.step()
            opt.zero_grad()
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(brn, name), getattr(bn, name))
    brn.eval(), bn.eval()
    torch.testing.assert_close(brn(_video(9)), bn(_video(9)))


def test_brn_schedule_in_steps():
    layer = norm_layer("brn")(C)  # the paper's: BN for 5k steps, r_max 3 at 40k, d_max 5 at 25k (linear)
    at = {s: layer.limits(s) for s in (0, 5000, 22500, 25000, 40000, 10**6)}
    assert at[0] == at[5000] == (1.0, 0.0)
    assert at[22500] == pytest.approx((1 + 2 * 17500 / 35000, 5 * 17500 / 20000))
    assert at[25000] == pytest.approx((1 + 2 * 20000 / 35000, 5.0))
    assert at[40000] == at[10**6] == (3.0, 5.0)
    # the step count: training forwards with autograd on; not precise BN's no-grad passes, not eval
    layer.train()(_video())
    with torch.no_grad():
        layer(_video())
    layer.eval()(_video())
    assert int(layer.num_batches_tracked) == 1 and layer.limits() == (1.0, 0.0)
    layer.num_batches_tracked.fill_(22500)  # restored from a checkpoint: the schedule continues
    assert layer.limits() == at[22500]


def test_precise_bn_recomputes_brn_statistics_as_for_bn_without_advancing_its_schedule():
    """Two BRN layers in a row, past warm-up, with running statistics far from the batches': the second layer's
    input depends on the first's r and d, so only passes with r = 1, d = 0 give BN's statistics."""
    from videonorm.train.precise_bn import update_bn_stats

    torch.manual_seed(0)

    def net(norm) -> nn.Sequential:
        return nn.Sequential(nn.Conv3d(C, C, 1), norm(), nn.ReLU(), nn.Conv3d(C, C, 1), norm())

    brn = net(lambda: _brn(warmup_steps=0, r_max_steps=0, d_max_steps=0))  # r_max 3, d_max 5 from step 1
    with torch.no_grad():
        for layer in (brn[1], brn[4]):
            layer.num_batches_tracked.fill_(7)
            layer.running_mean.fill_(-30.0)  # batch means ~ 0-5, batch variances ~ 1-30: r and d clip
            layer.running_var.fill_(0.01)
    assert brn[1].limits() == (3.0, 5.0)
    bn = net(lambda: nn.BatchNorm3d(C))
    bn.load_state_dict(brn.state_dict(), strict=True)
    batches = [_video(seed) for seed in range(3)]
    with torch.no_grad():  # what the BRN layers give in training, corrections on: far from BN's
        assert not torch.allclose(brn.train()(batches[0]), bn.train()(batches[0]), atol=0.1)
    bn.load_state_dict(brn.state_dict(), strict=True)  # that pass moved BN's buffers (BRN's did not: no-grad)
    assert update_bn_stats(brn, batches, 3) == update_bn_stats(bn, batches, 3) == 3
    for i in (1, 4):
        torch.testing.assert_close(brn[i].running_mean, bn[i].running_mean)
        torch.testing.assert_close(brn[i].running_var, bn[i].running_var)
        assert int(brn[i].num_batches_tracked) == 7 and brn[i].renormalize  # schedule kept, corrections back on


def test_brn_rejects_impossible_bounds():
    with pytest.raises(ValueError, match="r_max >= 1"):
        norm_layer("brn", options={"r_max": 0.5})(C)


# ---------------------------------------------------------------- every scheme under bf16 autocast


@pytest.mark.parametrize("name", NORM_NAMES)
def test_bf16_autocast_keeps_statistics_in_fp32(name):
    torch.manual_seed(0)
    layer = norm_layer(name, groups=4)(C).train()
    reference = norm_layer(name, groups=4)(C).train()
    reference.load_state_dict(layer.state_dict())
    x = _video().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    expected = reference(x.float())  # fp32 on the same (bf16) input
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected, rtol=2e-2, atol=2e-2)
    for (key, value), ref in zip(layer.state_dict().items(), reference.state_dict().values()):
        assert value.dtype == ref.dtype, key  # running statistics stay fp32
        torch.testing.assert_close(value, ref, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------- one clip in training


def _fit_one_forward(norm: str, clips: int, train: bool = True) -> list[str]:
    from videonorm.models import build_model

    model = build_model(norm=norm, width=8, norm_groups=4, num_classes=3).train(train)
    x = torch.randn(clips, 3, 8, 64, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(x)
        model(x)
    return [str(w.message) for w in caught if "single clip" in str(w.message)]


@pytest.mark.parametrize("name", NORM_NAMES)
def test_batch_statistics_of_one_clip_warn_once_with_the_values_per_channel(name):
    messages = _fit_one_forward(name, clips=1)
    if name in ("bn", "syncbn", "brn", "evonorm_b0"):  # syncbn outside a process group: one device
        # 8 frames of 64^2: the stem's norm sees 4 x 32 x 32 values per channel, res5's 1 x 2 x 2 (its first
        # such layer: the shortcut's norm, which in EvoNorm-B0 is affine only, without batch statistics)
        low = "branch2.norm_b" if name == "evonorm_b0" else "branch1_norm"
        assert messages == [f"norm '{name}' takes batch statistics from a single clip in training (1 clip per "
                            "device, no sync): each channel's mean and variance pool the T x H x W values of one "
                            f"clip, 4 at blocks.5.res_blocks.0.{low} to 4096 at blocks.0.norm. Expect noisy "
                            "statistics and a train/eval gap; more clips per device, 'syncbn' across devices, or a "
                            "batch-independent norm (gn, frn, evonorm_s0) avoid it."]  # fmt: skip
    else:
        assert messages == []


def test_no_single_clip_warning_for_two_clips_or_in_eval():
    assert _fit_one_forward("bn", clips=2) == []
    assert _fit_one_forward("bn", clips=1, train=False) == []


# ---------------------------------------------------------------- SyncBN and its groups, 2 gloo processes


def _sync_bn_worker(rank: int, world: int, init_file: str, x: torch.Tensor, out: dict) -> None:
    from videonorm.models.norm import Norm

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for k in (0, 1, 2):
            layer = norm_layer("syncbn", sync_group=k)(C)
            _randomize_affine(layer)
            part = x.chunk(world)[rank].clone().requires_grad_(True)
            y = layer(part)
            (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()  # a loss that weighs every output
            out[rank, k] = (y.detach(), part.grad, layer.running_mean.clone(), layer.running_var.clone(),
                            layer.weight.grad.clone())
            model = nn.Sequential(layer)
            Norm("syncbn", sync_group=k).finish(model)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model(part[:1].detach())  # one clip per process
            out[rank, k, "warned"] = [str(w.message) for w in caught if "single clip" in str(w.message)]
        try:
            norm_layer("syncbn", sync_group=3)(C)(x.chunk(world)[rank])
        except ValueError as e:
            out[rank, 3] = str(e)
    finally:
        torch.distributed.destroy_process_group()


def test_syncbn_groups_over_gloo_processes(tmp_path):
    """2 gloo processes, 2 clips each. Sync group k: each statistic pools the clips of k consecutive ranks,
    exactly one BatchNorm3d over their union (values, input gradients, running statistics). k = 0 (the default
    process group) and k = 2 (``dist.new_subgroups`` of the world size) are full SyncBN; k = 1 is per-process BN."""
    import torch.multiprocessing as mp

    world, clips = 2, 2
    x = torch.cat([_video(seed) for seed in range(2)])[: world * clips]  # (4, C, T, H, W)
    out = mp.Manager().dict()
    mp.spawn(_sync_bn_worker, args=(world, str(tmp_path / "init"), x, out), nprocs=world)

    for k in (0, 1, 2):
        size = k or world
        for first in range(0, world, size):  # each sync group: one BN over its ranks' clips
            ref = nn.BatchNorm3d(C)
            _randomize_affine(ref)
            xr = x[first * clips : (first + size) * clips].clone().requires_grad_(True)
            y = ref(xr)
            weights = torch.cat([torch.arange(y[:clips].numel()).view_as(y[:clips]).sin()] * size)  # per rank
            (y * weights).sum().backward()
            wgrad = torch.zeros(C)
            for i, rank in enumerate(range(first, first + size)):
                y_r, grad_r, mean_r, var_r, wgrad_r = out[rank, k]
                part = slice(i * clips, (i + 1) * clips)
                torch.testing.assert_close(y_r, y.detach()[part], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(grad_r, xr.grad[part], atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(mean_r, ref.running_mean)
                torch.testing.assert_close(var_r, ref.running_var)
                wgrad += wgrad_r
            # weight gradients are per process (DDP averages them); their sum is the group's batch gradient
            torch.testing.assert_close(wgrad, ref.weight.grad, atol=1e-4, rtol=1e-4)
    # one clip per process: only unsynced BN warns
    assert [bool(out[0, k, "warned"]) for k in (0, 1, 2)] == [False, True, False]
    assert out[0, 3] == ("syncbn: a sync group of 3 processes does not divide the 2 processes of the job "
                         "(model.norm_sync_group; 0 syncs all of them)")
