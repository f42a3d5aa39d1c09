"""videonorm.models: I3D ResNet layout, every norm, init, pytorchvideo compatibility, 2D->3D inflation."""

import functools

import pytest
import torch
import torch.nn as nn
import torchvision
from pytorchvideo.models.resnet import BottleneckBlock, ResBlock
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.video.resnet import BasicBlock

from videonorm.models import BACKBONES, build_model, num_parameters
from videonorm.models.inflate import inflate_2d
from videonorm.models.init import init_weights
from videonorm.models.residual import branch_ends, shortcut_norms
from videonorm.models.norm import NORM_NAMES, SCHEMES, Norm, StdConv3d, bn_modules, is_norm

TINY = dict(width=8, norm_groups=4, num_classes=5)  # every channel count is a multiple of 8
R50_NORM_LAYERS = 1 + 16 * 3 + 4  # stem + three per bottleneck + one per stage shortcut
R50_ACT_NORMS = 1 + 16 * 2  # norms followed by a ReLU: the stem's, norm_a and norm_b of each bottleneck
NORM_ACT = [n for n, s in SCHEMES.items() if s.norm_act]


def _clip(t: int = 8, size: int = 64, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, t, size, size, generator=torch.Generator().manual_seed(seed))  # (N, 3, T, H, W)


@pytest.fixture(scope="module")
def r50_bn():
    return build_model(depth=50, norm="bn", num_classes=400)


# ---------------------------------------------------------------- every backbone x every norm family


def _small(arch: str, **fields) -> nn.Module:
    return build_model(arch=arch, **{"num_classes": 5, "norm_groups": 4, **BACKBONES[arch].small, **fields})


FAMILIES = ["bn", "brn", "gn", "gn_ws", "frn", "evonorm_s0", "evonorm_b0"]  # one of each kind of layer and wiring
# One registry entry per builder: the entries that share one (X3D-XS/S/M/L, SlowFast 8x8/4x16) build the same code
# with other sizes, which tests/test_backbones.py checks at full size (parameters, names, multiply-adds).
BUILDERS = [a for a, b in BACKBONES.items() if next(x for x, c in BACKBONES.items() if c.builder == b.builder) == a]


@pytest.mark.parametrize("norm", FAMILIES)
@pytest.mark.parametrize("arch", BUILDERS)
def test_every_backbone_trains_with_every_norm_family(arch, norm):
    torch.manual_seed(0)
    model = _small(arch, norm=norm, zero_init_residual=False).train()
    logits = model(_clip(size=32))  # the smallest size every backbone takes (total spatial stride 32)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    layers = [m for m in model.modules() if is_norm(m)]
    assert layers and all(type(m) is Norm(norm, 4).layer_class for m in layers)
    assert all(type(m) is (StdConv3d if norm == "gn_ws" else nn.Conv3d) for m in model.modules()
               if isinstance(m, nn.Conv3d))
    assert torch.isfinite(model.eval()(_clip(size=32, seed=1))).all()


@pytest.mark.parametrize("arch", BACKBONES)
def test_every_backbone_starts_its_residual_branches_at_zero_and_ends_norm_act_branches_without_act(arch):
    model = _small(arch, norm="bn")
    ends = {id(getattr(parent, name)) for parent, name in branch_ends(model)}
    blocks = [m for m in model.modules() if isinstance(m, (ResBlock, BasicBlock))]
    assert len(ends) == len(blocks) > 0  # one end per residual block, whatever the block type
    assert all(torch.all(m.weight == (0 if id(m) in ends else 1)) for m in model.modules() if is_norm(m))
    # precise BN recomputes every norm layer's statistics: stems, blocks, SlowFast's lateral connections, X3D's head
    assert bn_modules(model) == [m for m in model.modules() if is_norm(m)]
    model = _small(arch, norm="frn")
    last = [getattr(parent, name) for parent, name in [*branch_ends(model), *shortcut_norms(model)]]
    assert last and not any(m.apply_act for m in last)
    assert all(m.apply_act for m in model.modules() if is_norm(m) and all(m is not e for e in last))


@pytest.mark.parametrize("arch", BACKBONES)
def test_every_backbone_refuses_what_it_would_ignore(arch):
    unused = [f for f in ("depth", "width", "stem_pool_padding") if f not in BACKBONES[arch].uses]
    for name in unused:
        with pytest.raises(ValueError, match=rf"arch '{arch}' does not use {name}"):
            _small(arch, **{name: 0})
    with pytest.raises(ValueError, match="groups do not divide"):
        _small(arch, norm="gn", norm_groups=7, norm_group_rule="divide")


# ---------------------------------------------------------------- every norm, tiny model


@pytest.mark.parametrize("depth, width", [(50, 8), (14, 16)])  # the demo's R50 at width 8; a shallow width-16 one
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_training_step_every_norm(norm, depth, width):
    torch.manual_seed(0)
    model = build_model(norm=norm, depth=depth, zero_init_residual=False, **{**TINY, "width": width}).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    logits = model(_clip())
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # FRN's TLU threshold in the stem feeds the max-pool, which never picks a value clipped at tau (the
        # window's minimum): no gradient there until a whole window falls below tau
        assert p.grad.abs().sum() > 0 or name == "blocks.0.norm.tau", name
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert sum(not torch.equal(a, p) for a, p in zip(before, model.parameters())) >= len(before) - 1
    assert torch.isfinite(model.eval()(_clip(seed=1))).all()  # running statistics after the step


@pytest.mark.parametrize("norm", NORM_NAMES)
def test_norm_layers_are_the_requested_type_and_groups(norm):
    model = build_model(norm=norm, **TINY)
    layers = [m for m in model.modules() if is_norm(m)]
    assert len(layers) == R50_NORM_LAYERS
    assert all(type(m) is Norm(norm, 4).layer_class for m in layers)
    if norm in ("gn", "ln", "in", "gn_ws", "evonorm_s0"):
        expected = {"ln": lambda c: 1, "in": lambda c: c}.get(norm, lambda c: 4)
        assert all((getattr(m, "num_groups", None) or m.groups) == expected(getattr(m, "num_channels", None)
                   or m.num_features) for m in layers)  # fmt: skip
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert len(convs) == R50_NORM_LAYERS  # one conv before every norm
    assert all(type(m) is (StdConv3d if norm == "gn_ws" else nn.Conv3d) for m in convs)


@pytest.mark.parametrize("norm", NORM_ACT)
def test_norm_act_schemes_replace_the_relu_after_each_norm_and_keep_the_one_after_each_sum(norm):
    model = build_model(norm=norm, **TINY)
    assert [m.apply_act for m in model.modules() if is_norm(m)].count(True) == R50_ACT_NORMS
    assert model.blocks[0].activation is None  # the stem's norm is norm-act
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 16 and all(name.endswith(".activation") for name in relus)  # after each residual sum
    for block in model.modules():
        if isinstance(block, BottleneckBlock):
            assert block.act_a is None and block.act_b is None
            assert block.norm_a.apply_act and block.norm_b.apply_act and not block.norm_c.apply_act


def test_parameter_counts_equal_across_norms_but_the_activation_parameters():
    """All norms have 2C affine values per layer: parameters for most, buffers for frozen BN; norm-act layers
    followed by a nonlinearity add one per channel (FRN's tau, EvoNorm's v)."""
    counts = {norm: num_parameters(build_model(norm=norm, **TINY)) for norm in NORM_NAMES}
    frozen = build_model(norm="frozenbn", **TINY)
    affine_buffers = sum(m.weight.numel() + m.bias.numel() for m in frozen.modules() if is_norm(m))
    counts["frozenbn"] += affine_buffers
    act_channels = sum(m.num_features for m in build_model(norm="frn", **TINY).modules() if is_norm(m) and m.apply_act)
    for norm in NORM_ACT:
        counts[norm] -= act_channels
    assert len(set(counts.values())) == 1, counts


def test_frozen_bn_model_keeps_its_buffers_in_training():
    model = build_model(norm="frozenbn", **TINY).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "norm" in k}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(model(_clip()), torch.tensor([1, 2])).backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


# ---------------------------------------------------------------- layout


def test_r50_has_28_0m_parameters_like_pytorchvideo(r50_bn):
    from pytorchvideo.models.hub import i3d_r50

    reference = i3d_r50(pretrained=False)  # same weights layout, no download
    assert round(num_parameters(r50_bn) / 1e6, 1) == 28.0
    assert num_parameters(r50_bn) == num_parameters(reference)
    r50_bn.load_state_dict(reference.state_dict(), strict=True)
    # The BN checkpoint also loads into the frozen-BN model (BN*), key for key.
    build_model(norm="frozenbn").load_state_dict(reference.state_dict(), strict=True)


def test_temporal_kernel_layout():
    r50 = build_model(**TINY)
    conv_a_t = [[b.branch2.conv_a.kernel_size[0] for b in r50.blocks[i].res_blocks] for i in (1, 3, 4, 5)]
    assert conv_a_t == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
    assert r50.blocks[0].conv.kernel_size == (5, 7, 7)
    r101 = build_model(depth=101, **TINY)
    assert [len(r101.blocks[i].res_blocks) for i in (1, 3, 4, 5)] == [3, 4, 23, 3]
    assert [b.branch2.conv_a.kernel_size[0] for b in r101.blocks[4].res_blocks] == [3, 1] * 11 + [3]
    c2d = build_model(arch="c2d_resnet", **TINY)
    assert all(m.kernel_size[0] == 1 for m in c2d.modules() if isinstance(m, nn.Conv3d))


def test_32_frames_reach_res5_as_4_positions():
    model = build_model(**TINY).eval()  # temporal strides do not depend on width
    shapes = {}
    for name, idx in (("res2", 1), ("res5", 5)):
        model.blocks[idx].register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    with torch.no_grad():
        assert model(_clip(t=32, n=1)).shape == (1, 5)
    assert shapes["res2"][2] == 8 and shapes["res5"][2] == 4
    assert shapes["res5"][1] == 4 * 8 * 8  # 4 * width * 2**3 channels


def test_r50_multiply_adds_per_32x224x224_clip():
    with torch.device("meta"):  # shapes only: counts FLOPs without computing
        model = build_model().eval()  # eval: one clip's batch statistics would warn
        clip = torch.empty(1, 3, 32, 224, 224)
    with FlopCounterMode(display=False) as counter:
        model(clip)
    macs = counter.get_total_flops() / 2
    assert 32e9 < macs < 35e9  # 33.1 G; without the stem's temporal stride it would double


def test_stem_pool_without_padding_is_the_non_local_layout(r50_bn):
    """stem_pool_padding=0: the Non-local code's pool1 (no padding), 55 x 55 at res2; same weights, fewer MACs."""
    with torch.device("meta"):
        model = build_model(stem_pool_padding=0).eval()  # eval: one clip's batch statistics would warn
        clip = torch.empty(1, 3, 32, 224, 224)
    shapes = {}
    for name, idx in (("res2", 1), ("res3", 3), ("res5", 5)):
        model.blocks[idx].register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape[2:]))
    with FlopCounterMode(display=False) as counter:
        model(clip)
    assert shapes == {"res2": (8, 55, 55), "res3": (4, 28, 28), "res5": (4, 7, 7)}
    assert 32.7e9 < counter.get_total_flops() / 2 < 32.9e9  # 32.8 G (33.1 G with padding 1)
    assert num_parameters(model) == num_parameters(r50_bn)  # padding has no weights
    with pytest.raises(ValueError, match="stem_pool_padding must be 0 or 1, got 2"):
        build_model(stem_pool_padding=2, **TINY)


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("norm", NORM_NAMES)
@pytest.mark.parametrize("zero_init", [True, False])
def test_init(norm, zero_init):
    model = build_model(norm=norm, zero_init_residual=zero_init, head_init_std=0.02, **TINY)
    last = {id(m.norm_c) for m in model.modules() if isinstance(m, BottleneckBlock)}
    assert len(last) == 16
    for m in model.modules():
        if is_norm(m):
            zeroed = zero_init and id(m) in last and norm != "frozenbn"  # frozen gamma = 0 would stay 0
            assert torch.all(m.weight == (0.0 if zeroed else 1.0))
            assert torch.all(m.bias == 0)
            if getattr(m, "running_var", None) is not None:
                assert torch.all(m.running_var == 1)
                assert getattr(m, "running_mean", None) is None or torch.all(m.running_mean == 0)
            if getattr(m, "tau", None) is not None:  # FRN's TLU threshold starts at 0, EvoNorm's v at 1
                assert torch.all(m.tau == 0)
            if getattr(m, "v", None) is not None:
                assert torch.all(m.v == 1)
    head = model.blocks[6].proj
    assert head.weight.std().item() == pytest.approx(0.02, rel=0.15) and torch.all(head.bias == 0)
    conv = model.blocks[4].res_blocks[0].branch2.conv_b  # (32, 32, 1, 3, 3)
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)


@pytest.mark.parametrize("norm", ["gn", "brn", "frn", "evonorm_b0"])
def test_init_weights_resets_a_trained_model(norm):
    model = build_model(norm=norm, **TINY)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.add_(1)
    init_weights(model, zero_init_residual=True)
    norms = {name for name, m in model.named_modules() if is_norm(m)}
    for key, value in model.state_dict().items():
        if key.rpartition(".")[0] in norms:  # every norm parameter and statistic back at its initial value
            torch.testing.assert_close(value, fresh[key], msg=key)
    assert torch.all(model.blocks[1].res_blocks[0].branch2.norm_c.weight == 0)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(norm="batchnorm"), "unknown norm 'batchnorm'; allowed: " + ", ".join(NORM_NAMES)),
        (dict(norm="gn", norm_groups=16), r"norm 'gn': 16 groups do not divide 8 channels of layer blocks.0.norm "
                                          r"\(and 6 more layers: blocks.1.res_blocks.0.branch2.norm_a, .*\); group "
                                          r"counts that divide every norm layer's channels: \[1, 2, 4, 8\]"),
        (dict(norm="evonorm_s0", norm_groups=3), "3 groups do not divide 8 channels of layer blocks.0.norm"),
        (dict(norm="brn", norm_options={"rmax": 2}), "norm 'brn' has no option 'rmax'"),
        (dict(depth=34), r"unsupported depth 34; supported: \[14, 26, 50, 101\]"),
        (dict(arch="slowfast"), "unknown arch 'slowfast'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(**{**TINY, **kwargs})


# ---------------------------------------------------------------- inflation


def _randomized_2d_resnet50(norm: str = "bn") -> nn.Module:
    """torchvision ResNet-50 in float64 with non-trivial norm parameters and statistics."""
    torch.manual_seed(0)
    norm_layer = functools.partial(nn.GroupNorm, 32) if norm == "gn" else nn.BatchNorm2d
    model = torchvision.models.resnet50(weights=None, norm_layer=norm_layer).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _features_2d(model2d: nn.Module, frame: torch.Tensor) -> torch.Tensor:
    return nn.Sequential(*list(model2d.children())[:-2])(frame)  # layer4 output (N, 2048, h, w)


def test_inflate_maps_every_tensor(r50_bn):
    model2d = torchvision.models.resnet50(weights=None)
    head_before = r50_bn.blocks[6].proj.weight.detach().clone()
    inflate_2d(r50_bn, model2d.state_dict())
    w2d = model2d.layer1[0].conv1.weight  # (64, 64, 1, 1) -> conv_a (64, 64, 3, 1, 1)
    w3d = r50_bn.blocks[1].res_blocks[0].branch2.conv_a.weight
    torch.testing.assert_close(w3d, w2d.unsqueeze(2).expand_as(w3d) / 3)
    torch.testing.assert_close(w3d.sum(2), w2d)
    stem = r50_bn.blocks[0].conv.weight  # (64, 3, 5, 7, 7)
    torch.testing.assert_close(stem.sum(2), model2d.conv1.weight)
    norm3d = r50_bn.blocks[5].res_blocks[0].branch1_norm
    torch.testing.assert_close(norm3d.running_var, model2d.layer4[0].downsample[1].running_var)
    assert torch.equal(r50_bn.blocks[6].proj.weight, head_before)  # classifier skipped by default


@pytest.mark.parametrize("norm", ["bn", "frozenbn", "gn"])
def test_inflated_c2d_equals_2d_network_on_a_still_video(norm):
    model2d = _randomized_2d_resnet50("gn" if norm == "gn" else "bn")
    model3d = build_model(norm=norm, num_classes=1000, arch="c2d_resnet").double()
    inflate_2d(model3d, model2d.state_dict(), skip_classifier=False)
    model3d.eval()
    frame = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits3d = model3d(frame.unsqueeze(2).expand(2, 3, 3, 32, 32))  # 3 identical frames
        torch.testing.assert_close(logits3d, model2d(frame), rtol=1e-9, atol=1e-9)


def test_inflated_i3d_equals_2d_network_where_the_clip_border_is_out_of_reach():
    """A res5 position of the I3D sees 131 frames: input frames 8q-62 .. 8q+68 for position q.

    With 136 identical frames (17 res5 positions) only q = 8 sees no temporal zero padding, so it alone
    must equal the 2D network's features; its neighbours reach the padding by 8 frames and differ.
    """
    model2d = _randomized_2d_resnet50()
    model3d = inflate_2d(build_model(num_classes=1000).double(), model2d.state_dict()).eval()
    res5 = {}
    model3d.blocks[5].register_forward_hook(lambda m, i, o: res5.__setitem__("out", o))
    frame = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        model3d(frame.unsqueeze(2).expand(1, 3, 136, 32, 32))
        expected = _features_2d(model2d, frame)  # (1, 2048, 1, 1)
    out = res5["out"]  # (1, 2048, 17, 1, 1)
    assert out.shape[2] == 17
    error = (out - expected.unsqueeze(2)).abs().amax(dim=(0, 1, 3, 4))  # per temporal position
    assert error[8] < 1e-9
    assert error[7] > 1e-6 and error[9] > 1e-6
    assert error[0] > 1.0


def test_inflate_reports_every_problem():
    model3d = build_model(width=32, num_classes=10)
    with pytest.raises(ValueError) as info:
        inflate_2d(model3d, torchvision.models.resnet50(weights=None).state_dict())
    message = str(info.value)
    assert "shape mismatch: conv1.weight (64, 3, 7, 7) -> blocks.0.conv.weight (32, 3, 5, 7, 7)" in message
    assert "layer4.2.conv3.weight" in message  # the last one is listed too, not just the first

    gn3d = build_model(norm="gn", **TINY)
    with pytest.raises(ValueError, match=r"unmapped 2D key: bn1.running_mean -> blocks.0.norm.running_mean"):
        inflate_2d(gn3d, torchvision.models.resnet50(weights=None).state_dict())


def test_inflate_strict_flags_missing_and_unknown_keys(r50_bn):
    state = torchvision.models.resnet50(weights=None).state_dict()
    del state["layer3.1.conv2.weight"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        inflate_2d(r50_bn, state)
    assert "missing 3D key: blocks.4.res_blocks.1.branch2.conv_b.weight" in str(info.value)
    assert "unmapped 2D key: layer9.0.conv1.weight" in str(info.value)
    inflate_2d(r50_bn, state, strict=False)  # tolerated when not strict


@pytest.mark.parametrize("depth, blocks", [(14, (1, 1, 1, 1)), (26, (2, 2, 2, 2))])
def test_shallow_variants_keep_the_first_blocks_of_each_r50_stage(depth, blocks):
    from pytorchvideo.models.resnet import ResStage

    torch.manual_seed(0)
    shallow = build_model(depth=depth, norm="gn", norm_groups=4, width=16, num_classes=5, dropout=0.0)
    torch.manual_seed(0)
    r50 = build_model(depth=50, norm="gn", norm_groups=4, width=16, num_classes=5, dropout=0.0)
    stages = [b for b in shallow.blocks if isinstance(b, ResStage)]
    assert tuple(len(s.res_blocks) for s in stages) == blocks
    # every kept tensor has R50's name and shape (same stem, strides, widths and temporal kernels), nothing extra
    full = r50.state_dict()
    for name, tensor in shallow.state_dict().items():
        assert name in full and full[name].shape == tensor.shape, name
    kernels = [[tuple(b.branch2.conv_a.kernel_size) for b in s.res_blocks] for s in stages]
    r50_kernels = [[tuple(b.branch2.conv_a.kernel_size) for b in s.res_blocks][:n]
                   for s, n in zip([b for b in r50.blocks if isinstance(b, ResStage)], blocks)]
    assert kernels == r50_kernels
    assert shallow(torch.randn(2, 3, 8, 64, 64)).shape == (2, 5)
    assert num_parameters(shallow) < num_parameters(r50)
