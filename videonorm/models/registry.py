"""Backbones by name: the one table from ``model.net.arch`` to a builder, and :func:`build_model`. Imports no torch.

A builder is ``builder(spec, norm) -> nn.Module``: it reads its fields of the :class:`~videonorm.models.spec.ModelSpec`
and makes every norm layer with ``norm`` (a resolved :class:`~videonorm.models.norm.build.Norm`: ``norm(channels)``,
and ``norm.activation()`` after it), and returns a network mapping ``(N, 3, T, H, W)`` clips to
``(N, num_classes)`` logits. :func:`build_model` does the rest for every backbone alike: norm-act layers at the
ends of residual branches, the scheme's own post-build step, weight init and zero-init. Adding a backbone is one
builder in its own file and one entry in ``BACKBONES``. Variants of one network that differ in fixed sizes (X3D-XS
to L, SlowFast 8x8 and 4x16) are entries sharing a builder, which reads ``spec.arch``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from videonorm.models.spec import DEFAULTS, ModelSpec

# Fields every backbone honours; the others are read only by the backbones that list them in ``uses``.
COMMON_FIELDS = ("arch", "norm", "norm_groups", "norm_group_rule", "norm_sync_group", "norm_options", "num_classes",
                 "dropout", "zero_init_residual", "head_init_std")


@dataclass(frozen=True)
class Backbone:
    """One registered network.

    Attributes:
        builder: ``"<module>:<function>"``, the module inside ``videonorm.models`` (loaded when first built).
        token: its run-name prefix, formatted with the spec's fields (``"i3d_r{depth}"`` -> ``i3d_r50``).
        title: its name in tables, formatted the same way (``"I3D ResNet-{depth}"``).
        uses: the spec fields it reads beyond ``COMMON_FIELDS``; another field set away from its default is an
            error (nothing a user asks for is silently ignored).
        inflate: a 2D ImageNet ResNet inflates into it (``model.pretrained_2d``; ``videonorm.models.inflate``).
        small: spec fields of a small instance where every norm's groups of 4 fit (channel counts multiples of 4,
            or the ``largest_divisor`` group rule for fixed widths): what the tests that run over every backbone
            build, with clips of 8 frames at 32 x 32.
    """

    builder: str
    token: str
    title: str
    uses: tuple[str, ...] = ()
    inflate: bool = False
    small: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        """The builder function."""
        module, _, name = self.builder.partition(":")
        return getattr(importlib.import_module(f"videonorm.models.{module}"), name)

    def check(self, spec: ModelSpec) -> None:
        """Raise ValueError naming every field of ``spec`` this backbone would ignore."""
        ignored = [f.name for f in dataclasses.fields(spec) if f.name not in COMMON_FIELDS + self.uses
                   and getattr(spec, f.name) != getattr(DEFAULTS, f.name)]
        if ignored:
            raise ValueError(f"arch {spec.arch!r} does not use {', '.join(ignored)} (it reads "
                             f"{', '.join(self.uses) or 'only the common fields'}); leave them unset")


_RESNET = ("depth", "width", "stem_pool_padding")
_DEPTH_WIDTH = ("depth", "width")
_X3D_SMALL = {"norm_group_rule": "largest_divisor"}  # X3D-XS is small; no G > 6 divides all its widths
_SLOWFAST_SMALL = {"depth": 14, "width": 32}  # the fast pathway has width / 8 channels: 4 in the stem
BACKBONES: dict[str, Backbone] = {
    # the paper's (Non-local) I3D, and its 2D baseline (no temporal kernels)
    "i3d_resnet": Backbone("i3d:i3d_resnet", "i3d_r{depth}", "I3D ResNet-{depth}", _RESNET, inflate=True,
                           small={"depth": 14, "width": 8}),
    "c2d_resnet": Backbone("i3d:c2d_resnet", "c2d_r{depth}", "C2D ResNet-{depth}", _RESNET, inflate=True,
                           small={"depth": 14, "width": 8}),
    # X3D (pytorchvideo's create_x3d): XS, S and M are one network fed different clips (videonorm.models.x3d)
    "x3d_xs": Backbone("x3d:x3d", "x3d_xs", "X3D-XS", small=_X3D_SMALL),
    "x3d_s": Backbone("x3d:x3d", "x3d_s", "X3D-S", small=_X3D_SMALL),
    "x3d_m": Backbone("x3d:x3d", "x3d_m", "X3D-M", small=_X3D_SMALL),
    "x3d_l": Backbone("x3d:x3d", "x3d_l", "X3D-L", small=_X3D_SMALL),
    # SlowFast R50 (pytorchvideo's create_slowfast), one clip in: the slow pathway's frames are picked inside
    "slowfast_8x8_resnet": Backbone("slowfast:slowfast", "slowfast_8x8_r{depth}", "SlowFast 8x8 ResNet-{depth}",
                                    _DEPTH_WIDTH, small=_SLOWFAST_SMALL),
    "slowfast_4x16_resnet": Backbone("slowfast:slowfast", "slowfast_4x16_r{depth}", "SlowFast 4x16 ResNet-{depth}",
                                     _DEPTH_WIDTH, small=_SLOWFAST_SMALL),
    # R(2+1)D: pytorchvideo's bottleneck R50 16x4, and torchvision's R(2+1)D-18 (fixed widths)
    "r2plus1d_resnet": Backbone("r2plus1d:r2plus1d_resnet", "r2plus1d_r{depth}", "R(2+1)D ResNet-{depth}",
                                _DEPTH_WIDTH, small={"depth": 14, "width": 8}),
    "r2plus1d_18": Backbone("r2plus1d:r2plus1d_18", "r2plus1d_18", "R(2+1)D-18 (torchvision)",
                            small={"norm_group_rule": "largest_divisor"}),
    # ir-CSN (pytorchvideo's create_csn): depthwise 3x3x3 bottlenecks; the model zoo's is R101 32x2
    "csn_resnet": Backbone("csn:csn_resnet", "csn_r{depth}", "ir-CSN ResNet-{depth}", _DEPTH_WIDTH,
                           small={"depth": 14, "width": 8}),
}


def get_backbone(arch: str) -> Backbone:
    """The table entry of ``arch``.

    Raises:
        ValueError: unknown ``arch`` (the message lists the known ones).
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[arch]


def build_model(spec: ModelSpec | None = None, **fields: Any):
    """Build the network a spec describes: ``build_model(ModelSpec(norm="gn"))`` or ``build_model(norm="gn")``.

    Args:
        spec: the network (default: ``ModelSpec()``, the paper's I3D ResNet-50 with BN).
        **fields: spec fields replacing those of ``spec``.

    Returns:
        An ``nn.Module`` mapping ``(N, 3, T, H, W)`` float clips to ``(N, num_classes)`` logits.

    Raises:
        ValueError: unknown arch or norm, a field the backbone does not use, a norm option the scheme does not
            have, groups that do not divide some layer's channels (naming the layers), the builder's own errors.
    """
    from videonorm.models.init import init_weights
    from videonorm.models.norm.build import resolve
    from videonorm.models.residual import norm_act_ends

    spec = dataclasses.replace(ModelSpec.of(spec), **fields)
    backbone = get_backbone(spec.arch)
    backbone.check(spec)
    norm = resolve(spec)
    model = backbone.load()(spec, norm)
    if norm.norm_act:
        norm_act_ends(model, norm)
    norm.finish(model)
    init_weights(model, zero_init_residual=spec.zero_init_residual, head_init_std=spec.head_init_std)
    return model


def num_parameters(model) -> int:
    """Trainable parameter count.

    Args:
        model: any module.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
