"""The backbones beyond I3D against their references: pytorchvideo's builders and torchvision's R(2+1)D-18 (the
same parameter count, module names that take their state dicts with ``strict=True``, the same outputs), the model
zoos' parameter counts, multiply-adds per clip; SlowFast's one-clip input; the norm-act wiring of X3D and
R(2+1)D-18; GN's group rule for widths G does not divide, and its place in run identity.

Every-norm forward/backward on small instances of every backbone: tests/test_models.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision
from pytorchvideo.layers.swish import Swish
from pytorchvideo.models import hub
from pytorchvideo.models.slowfast import create_slowfast
from torch.utils.flop_counter import FlopCounterMode

from videonorm import identity
from videonorm.models import BACKBONES, ModelSpec, build_model, num_parameters
from videonorm.models.norm import Norm, is_norm
from videonorm.models.norm.schemes import group_count
from videonorm.models.pretrained import initialize_from
from videonorm.models.r2plus1d import DropoutLinear
from videonorm.models.slowfast import slow_frames


def _slowfast_4x16() -> nn.Module:
    # PySlowFast's SLOWFAST_4x16_R50: alpha 8, lateral kernel 5 (pytorchvideo has no hub builder for it)
    return create_slowfast(slowfast_fusion_conv_kernel_size=(5, 1, 1), slowfast_fusion_conv_stride=(8, 1, 1))


# arch, spec fields, the reference network (400 classes), the zoo's parameters (M), the clip (frames, size) and the
# multiply-adds per clip (G) there. Zoos: pytorchvideo's (Kinetics-400 table), torchvision's for R(2+1)D-18.
FULL_SIZE = [
    ("c2d_resnet", {}, hub.c2d_r50, 24.33, (8, 224), 32.70),  # its names; pytorchvideo's also pools time after res2
    ("x3d_xs", {}, hub.x3d_xs, 3.79, (4, 160), 0.61),
    ("x3d_s", {}, hub.x3d_s, 3.79, (13, 160), 1.96),
    ("x3d_m", {}, hub.x3d_m, 3.79, (16, 224), 4.73),
    ("x3d_l", {}, hub.x3d_l, 6.15, (16, 312), 18.37),
    ("slowfast_8x8_resnet", {}, hub.slowfast_r50, 34.57, (32, 224), 50.31),
    ("slowfast_4x16_resnet", {}, _slowfast_4x16, 34.48, (32, 224), 27.64),
    ("r2plus1d_resnet", {}, hub.r2plus1d_r50, 28.11, (16, 224), 57.53),
    ("r2plus1d_18", {}, torchvision.models.video.r2plus1d_18, 31.51, (16, 112), 40.52),
    ("csn_resnet", {"depth": 101}, hub.csn_r101, 22.21, (32, 224), 56.47),
]


def _gmacs(model: nn.Module, frames: int, size: int) -> float:
    with torch.device("meta"):
        clip = torch.empty(1, 3, frames, size, size)
    with FlopCounterMode(display=False) as counter:
        model(clip)
    return counter.get_total_flops() / 2e9


@pytest.mark.parametrize("arch, fields, reference, zoo, clip, gmacs", FULL_SIZE, ids=[c[0] for c in FULL_SIZE])
def test_full_size_network_is_the_reference_one(arch, fields, reference, zoo, clip, gmacs):
    """Shapes only (the meta device): parameter counts, names and multiply-adds need no values."""
    with torch.device("meta"):
        model = build_model(arch=arch, **fields).eval()  # eval: one clip's batch statistics would warn
        frozen = build_model(arch=arch, norm="frozenbn", **fields)
        ref = reference()
    assert num_parameters(model) == num_parameters(ref)
    assert num_parameters(model) == pytest.approx(zoo * 1e6, rel=0.01)
    # every name and shape of the reference's BN state dict, nothing more: its checkpoints load (BN*: frozen BN too)
    model.load_state_dict(ref.state_dict(), strict=True)
    frozen.load_state_dict(ref.state_dict(), strict=True)
    assert round(_gmacs(model, *clip), 2) == gmacs  # torch's FLOP counter / 2: convolutions and the classifier


def test_multiply_adds_agree_with_the_zoo_at_its_test_crop():
    """pytorchvideo's zoo counts SlowFast R50 8x8 at its 256 x 256 test crops: 65.71 G (50.31 G at 224 x 224)."""
    with torch.device("meta"):
        model = build_model(arch="slowfast_8x8_resnet").eval()
    assert round(_gmacs(model, 32, 256), 2) == 65.71


def test_2d_inflation_is_refused_where_no_2d_source_fits():
    archs = [a for a, b in BACKBONES.items() if not b.inflate]
    assert set(archs) >= {"x3d_m", "slowfast_8x8_resnet", "r2plus1d_resnet", "r2plus1d_18", "csn_resnet"}
    for arch in archs:
        with pytest.raises(ValueError, match=rf"arch '{arch}' has no 2D ImageNet ResNet to inflate \(inflatable: "
                                             r"i3d_resnet, c2d_resnet\)"):
            initialize_from(nn.Identity(), "torchvision:resnet50", ModelSpec(arch=arch))


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BN parameters and statistics, so an eval forward tests every norm's placement."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model.eval()


# ---------------------------------------------------------------- SlowFast: one clip in


def test_slow_frames_are_packpathways():
    """PySlowFast's and pytorchvideo's PackPathway: linspace(0, T - 1, T // alpha), truncated."""
    assert slow_frames(32, 4).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert slow_frames(32, 8).tolist() == [0, 10, 20, 31]
    assert slow_frames(8, 4).tolist() == [0, 7]


@pytest.mark.parametrize("arch, alpha, lateral_t", [("slowfast_8x8_resnet", 4, 7), ("slowfast_4x16_resnet", 8, 5)])
def test_slowfast_on_one_clip_equals_pytorchvideos_on_packed_pathways(arch, alpha, lateral_t):
    # pytorchvideo's depth "18" is one bottleneck per stage: our depth 14 (R50 cut to its first blocks)
    ref = create_slowfast(model_depth=18, stem_dim_outs=(32, 4), model_num_class=5, dropout_rate=0.0,
                          slowfast_fusion_conv_kernel_size=(lateral_t, 1, 1),
                          slowfast_fusion_conv_stride=(alpha, 1, 1), head_pool=nn.AdaptiveAvgPool3d)
    ref = _randomize_norms(ref)
    model = build_model(arch=arch, depth=14, width=32, num_classes=5, dropout=0.0).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    clip = torch.randn(2, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref([clip.index_select(2, slow_frames(16, alpha)), clip])
        torch.testing.assert_close(model(clip), expected)


def test_slowfast_fast_pathway_norms_pool_alpha_times_the_frames_over_an_eighth_of_the_channels():
    """The batch-statistics question of the README: per clip, a fast-pathway BN averages each channel over alpha x
    more frames than the slow pathway's at the same stage, with 1/8 of its channels."""
    model = build_model(arch="slowfast_8x8_resnet", depth=14, width=32, num_classes=5)
    seen = {}
    for path in ("blocks.1.multipathway_blocks.0.res_blocks.0.branch2.norm_a",
                 "blocks.1.multipathway_blocks.1.res_blocks.0.branch2.norm_a"):
        model.get_submodule(path).register_forward_hook(lambda m, i, o, path=path: seen.__setitem__(path, i[0].shape))
    model(torch.randn(2, 3, 32, 64, 64))
    slow, fast = seen.values()
    assert (fast[2], slow[2]) == (32, 8) and (slow[1], fast[1]) == (32, 4)


def test_slowfast_refuses_a_clip_alpha_does_not_divide():
    model = build_model(arch="slowfast_8x8_resnet", depth=14, width=32, num_classes=5)
    with pytest.raises(ValueError, match=r"slowfast_8x8_resnet: the clip's 10 frames are not a multiple of alpha = 4"):
        model(torch.randn(1, 3, 10, 32, 32))
    with pytest.raises(ValueError, match="width must be a multiple of 8"):
        build_model(arch="slowfast_8x8_resnet", width=20)
    with pytest.raises(ValueError, match=r"unsupported depth 101; supported: \[14, 26, 50\]"):
        build_model(arch="slowfast_4x16_resnet", depth=101)


# ---------------------------------------------------------------- R(2+1)D-18: torchvision's network, our norms


def test_r2plus1d_18_with_bn_computes_torchvisions_network():
    ref = _randomize_norms(torchvision.models.video.r2plus1d_18(num_classes=5))
    model = build_model(arch="r2plus1d_18", num_classes=5).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    clip = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(clip), ref(clip))


def test_r2plus1d_18_norm_act_layers_replace_each_norm_relu_pair():
    model = build_model(arch="r2plus1d_18", norm="frn", norm_group_rule="largest_divisor", num_classes=5)
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert relus == [f"layer{i}.{j}.relu" for i in range(1, 5) for j in range(2)]  # only after each residual sum
    acting = [m for m in model.modules() if is_norm(m) and m.apply_act]
    assert len(acting) == 2 + 8 * 3  # the stem's two, and per block: two (2+1)D middles and conv1's end


def test_dropout_linear_drops_before_the_classifier_under_nn_linears_names():
    layer = DropoutLinear(4, 3, p=1.0)
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 4)
    torch.testing.assert_close(layer.train()(x), layer.bias.expand(2, 3))  # every input dropped
    torch.testing.assert_close(layer.eval()(x), nn.functional.linear(x, layer.weight, layer.bias))


# ---------------------------------------------------------------- X3D


def test_x3d_norm_act_layers_take_the_place_of_swish_and_the_head_relu():
    plain = build_model(arch="x3d_xs", num_classes=5)
    blocks = plain.blocks[1].res_blocks[0].branch2
    assert sum(isinstance(m, Swish) for m in plain.modules()) == 26  # one per block: X3D-XS has 3 + 5 + 11 + 7
    assert isinstance(blocks.act_a, nn.ReLU) and isinstance(plain.blocks[5].pool.pre_act, nn.ReLU)
    model = build_model(arch="x3d_xs", norm="evonorm_s0", norm_group_rule="largest_divisor", num_classes=5)
    assert not any(isinstance(m, Swish) for m in model.modules())
    head = model.blocks[5].pool
    assert head.pre_act is None and head.pre_norm.apply_act and isinstance(head.post_act, nn.ReLU)
    block = model.blocks[1].res_blocks[0].branch2
    assert block.act_a is None and block.act_b is None and block.norm_b[0].apply_act


# ---------------------------------------------------------------- the group rule


def test_largest_divisor_rule_gives_each_layer_the_largest_divisor_up_to_g():
    widths = [24, 48, 54, 96, 108, 192, 216, 432, 45, 921, 64]
    assert [group_count(c, 32, "largest_divisor") for c in widths] == [24, 24, 27, 32, 27, 32, 27, 27, 15, 3, 32]
    assert [group_count(c, 32) for c in widths] == [32] * len(widths)  # "divide": G, checked by the layer
    assert Norm("gn", 8, group_rule="largest_divisor").groups_for(54) == 6
    assert Norm("ln", group_rule="largest_divisor").groups_for(54) == 1  # only the schemes built with G
    assert Norm("in", group_rule="largest_divisor").groups_for(54) == 54
    model = build_model(arch="x3d_m", norm="gn", norm_group_rule="largest_divisor")
    layers = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert {m.num_channels for m in layers} == {24, 48, 54, 96, 108, 192, 216, 432}
    assert all(m.num_groups == group_count(m.num_channels, 32, "largest_divisor") for m in layers)
    s0 = build_model(arch="x3d_xs", norm="evonorm_s0", norm_groups=16, norm_group_rule="largest_divisor")
    assert {(m.num_features, m.groups) for m in s0.modules() if is_norm(m)} >= {(24, 12), (54, 9), (432, 16)}


def test_divide_rule_names_the_layers_and_the_other_rule():
    with pytest.raises(ValueError, match=r"32 groups do not divide 24 channels of layer blocks.0.norm .*; group "
                                         r"counts that divide every norm layer's channels: \[1, 2, 3, 6\]; or "
                                         r"model.net.norm_group_rule largest_divisor"):
        build_model(arch="x3d_xs", norm="gn")
    with pytest.raises(ValueError, match=r"unknown norm_group_rule 'nearest'; allowed: divide, largest_divisor"):
        build_model(arch="x3d_xs", norm="gn", norm_group_rule="nearest")


def test_group_rule_is_part_of_run_identity():
    base = {"model.net.arch": "x3d_m", "model.net.norm": "gn", "model.net.norm_groups": 32, "model.net.depth": 50,
            "model.net.width": 64, "data.batch_size": 8, "data.num_frames": 16, "data.sampling_rate": 5}
    divide = identity.run_setting(base)  # a config without the key: written before the rule existed
    ld = identity.run_setting({**base, "model.net.norm_group_rule": "largest_divisor"})
    assert divide != ld and divide.row.norm_group_rule == "divide"
    assert identity.run_name(divide) == "x3d_m-gn-b8-16x5" and identity.run_name(ld) == "x3d_m-gn-g32ld-b8-16x5"
    assert (divide.row.label, ld.row.label) == ("GN (G=32)", "GN (G=32, largest divisor)")
    assert ld.row.network == "X3D-M, from scratch"  # no width: X3D does not read it
    bn = identity.run_setting({**base, "model.net.norm": "bn", "model.net.norm_group_rule": "largest_divisor"})
    assert bn.row.norm_group_rule is None and identity.run_name(bn) == "x3d_m-bn-b8-16x5"  # BN has no groups
    sf = identity.run_setting({**base, "model.net.arch": "slowfast_8x8_resnet", "model.net.width": 32})
    assert identity.run_name(sf) == "slowfast_8x8_r50-gn-w32-b8-16x5"
    assert sf.row.network == "SlowFast 8x8 ResNet-50, width 32, from scratch"
