"""The norm-act schemes (FRN + TLU, EvoNorm-S0, EvoNorm-B0) and weight standardization (``gn_ws``): each against a
hand computation of its formula over the right axes, against timm's 2D layers at T = 1, and its gradients."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from videonorm.models.norm import EvoNormB0, EvoNormS0, FilterResponseNorm3d, StdConv3d, norm_layer

C, G = 8, 4  # channels and groups of the test tensors
VIEW = (1, C, 1, 1, 1)


def _video(seed: int = 0, t: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, C, t, 5, 6, generator=g) * 3 + 1  # (N, C, T, H, W)


def _randomize(layer: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial gamma, beta and activation parameters (same values for layers with the same names)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(layer.named_parameters()):
            p.copy_(torch.rand(p.shape, generator=g) + 0.5 if name != "tau" else torch.randn(p.shape, generator=g))
    return layer


def _affine(y: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    return y * layer.weight.view(VIEW) + layer.bias.view(VIEW)


# ---------------------------------------------------------------- hand computations


def test_frn_normalizes_each_sample_and_channel_over_time_space_then_tlu():
    layer = _randomize(norm_layer("frn")(C))
    assert layer.eps == 1e-6  # the paper's
    x = _video()
    nu2 = x.square().mean(dim=(2, 3, 4), keepdim=True)  # no mean subtracted
    y = _affine(x / torch.sqrt(nu2 + 1e-6), layer)
    expected = torch.maximum(y, layer.tau.view(VIEW))
    assert (expected == layer.tau.view(VIEW)).any() and (expected > layer.tau.view(VIEW)).any()  # TLU at work
    torch.testing.assert_close(layer.train()(x), expected)
    torch.testing.assert_close(layer.eval()(x), expected)  # no batch statistics: train = eval
    # per-frame statistics (a 2D FRN on each frame) differ: time is pooled
    per_frame = x / torch.sqrt(x.square().mean(dim=(3, 4), keepdim=True) + 1e-6)
    assert not torch.allclose(expected, torch.maximum(_affine(per_frame, layer), layer.tau.view(VIEW)), atol=1e-3)
    plain = _randomize(norm_layer("frn")(C, apply_act=False))
    assert plain.tau is None and len(list(plain.parameters())) == 2
    torch.testing.assert_close(plain(x), _affine(x / torch.sqrt(nu2 + 1e-6), plain))


def test_evonorm_s0_over_groups_of_channels_time_space():
    layer = _randomize(norm_layer("evonorm_s0", groups=G)(C))
    x = _video()
    n = x.shape[0]
    var = x.reshape(n, G, -1).var(dim=-1, unbiased=False)  # per sample, per group of C/G channels over (T, H, W)
    std = torch.sqrt(var + 1e-5).repeat_interleave(C // G, dim=1).view(n, C, 1, 1, 1)
    expected = _affine(x * torch.sigmoid(layer.v.view(VIEW) * x) / std, layer)
    torch.testing.assert_close(layer.train()(x), expected)
    torch.testing.assert_close(layer.eval()(x), expected)
    plain = _randomize(norm_layer("evonorm_s0", groups=G)(C, apply_act=False))
    assert plain.v is None
    # without the gate it still divides by the group std (timm's EvoNorm2dS0a): a block end stays normalized
    torch.testing.assert_close(plain(x), _affine(x / std, plain))
    assert plain(x).std() < x.std() / 2  # x has std 3


def test_evonorm_b0_batch_std_against_instance_std_and_running_variance():
    layer = _randomize(norm_layer("evonorm_b0")(C, momentum=0.1)).train()
    x = _video()
    var_b = x.var(dim=(0, 2, 3, 4), unbiased=False)  # per channel over (N, T, H, W)
    var_i = x.var(dim=(2, 3, 4), unbiased=False, keepdim=True)  # per sample and channel over (T, H, W)

    def expected_for(batch_var: torch.Tensor) -> torch.Tensor:
        left = torch.sqrt(batch_var + 1e-5).view(VIEW)
        right = layer.v.view(VIEW) * x + torch.sqrt(var_i + 1e-5)
        assert (left > right).any() and (left < right).any()  # both sides of the max are taken
        return _affine(x / torch.maximum(left, right), layer)

    torch.testing.assert_close(layer(x), expected_for(var_b))
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * x.var(dim=(0, 2, 3, 4), unbiased=True))
    torch.testing.assert_close(layer.eval()(x), expected_for(layer.running_var))
    plain = _randomize(norm_layer("evonorm_b0")(C, apply_act=False))
    assert plain.v is None and plain.running_var is None and plain.statistics_batch(1) is None
    torch.testing.assert_close(plain.train()(x), _affine(x, plain))


def test_std_conv_standardizes_each_output_channel_of_the_weight():
    torch.manual_seed(0)
    conv = StdConv3d(C, 6, (3, 3, 3), padding=1, bias=True)
    with torch.no_grad():
        conv.weight.mul_(5).add_(torch.arange(6.0).view(6, 1, 1, 1, 1))  # far from standardized
    w = conv.weight.detach().flatten(1)
    w_hat = (w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, unbiased=False, keepdim=True) + 1e-5)
    w_hat = w_hat.view_as(conv.weight)
    x = _video()
    expected = F.conv3d(x, w_hat, conv.bias, padding=1)  # outputs ~ 40: fp32 sums of 216 terms in another order
    torch.testing.assert_close(conv(x), expected, rtol=1e-4, atol=1e-3)
    stats = conv.standardized_weight().detach().flatten(1)
    torch.testing.assert_close(stats.mean(1), torch.zeros(6), atol=1e-5, rtol=0)
    raw_var = w.var(1, unbiased=False)
    torch.testing.assert_close(stats.var(1, unbiased=False), raw_var / (raw_var + 1e-5))  # 1 but for eps
    # same state as the conv it replaces; gradients reach the raw weight
    plain = nn.Conv3d(C, 6, 3, padding=1)
    copy = StdConv3d.from_conv(plain)
    assert list(copy.state_dict()) == list(plain.state_dict())
    torch.testing.assert_close(copy.weight, plain.weight)
    copy(x).square().mean().backward()
    assert copy.weight.grad is not None and copy.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- against timm's 2D layers at T = 1


def _timm_pairs():
    timm_layers = pytest.importorskip("timm.layers")
    return {  # ours (5D) -> timm's (4D), with the same eps and groups
        "frn": (norm_layer("frn")(C), timm_layers.FilterResponseNormTlu2d(C, eps=1e-6)),
        "frn_no_act": (norm_layer("frn")(C, apply_act=False),
                       timm_layers.FilterResponseNormTlu2d(C, apply_act=False, eps=1e-6)),
        "evonorm_s0": (norm_layer("evonorm_s0", groups=G)(C), timm_layers.EvoNorm2dS0(C, groups=G, eps=1e-5)),
        # timm's S0a form without the gate (divides by the group std); its EvoNorm2dS0 is the affine alone there
        "evonorm_s0_no_act": (norm_layer("evonorm_s0", groups=G)(C, apply_act=False),
                              timm_layers.EvoNorm2dS0a(C, groups=G, apply_act=False, eps=1e-5)),
        "evonorm_b0": (norm_layer("evonorm_b0")(C), timm_layers.EvoNorm2dB0(C, eps=1e-5, momentum=0.1)),
        "evonorm_b0_no_act": (norm_layer("evonorm_b0")(C, apply_act=False),
                              timm_layers.EvoNorm2dB0(C, apply_act=False, eps=1e-5)),
    }  # fmt: skip


@pytest.mark.parametrize("key", ["frn", "frn_no_act", "evonorm_s0", "evonorm_s0_no_act", "evonorm_b0",
                                 "evonorm_b0_no_act"])  # fmt: skip
def test_norm_act_equals_timm_2d_at_one_frame(key):
    ours, theirs = _timm_pairs()[key]
    _randomize(ours), _randomize(theirs)
    for step in range(2):  # training steps (B0: running variance), then inference
        x = _video(step, t=1)
        torch.testing.assert_close(ours.train()(x).squeeze(2), theirs.train()(x.squeeze(2)), rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.buffers(), theirs.buffers()):
        torch.testing.assert_close(a, b)
    x = _video(5, t=1)
    torch.testing.assert_close(ours.eval()(x).squeeze(2), theirs.eval()(x.squeeze(2)), rtol=1e-5, atol=1e-5)


def test_std_conv_equals_timm_2d_at_one_frame():
    timm_layers = pytest.importorskip("timm.layers")
    ours = StdConv3d(C, 6, (1, 3, 3), padding=(0, 1, 1), bias=False)
    theirs = timm_layers.StdConv2d(C, 6, 3, padding=1, eps=1e-5)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight.squeeze(2))
    x = _video(t=1)
    torch.testing.assert_close(ours(x).squeeze(2), theirs(x.squeeze(2)), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["frn", "evonorm_s0", "evonorm_b0"])
@pytest.mark.parametrize("apply_act", [True, False])
def test_gradient_reaches_every_parameter_and_the_input(name, apply_act):
    layer = _randomize(norm_layer(name, groups=G)(C, apply_act=apply_act)).train()
    assert isinstance(layer, {"frn": FilterResponseNorm3d, "evonorm_s0": EvoNormS0, "evonorm_b0": EvoNormB0}[name])
    x = _video().requires_grad_(True)
    (layer(x) * torch.arange(x.numel()).view_as(x).sin()).sum().backward()
    assert x.grad.abs().sum() > 0
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"weight", "bias"} | ({"tau" if name == "frn" else "v"} if apply_act else set())
    for n, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
