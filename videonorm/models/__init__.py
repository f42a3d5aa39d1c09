"""Video models: backbones by name, normalization schemes by name, weight init and ImageNet inflation.

The public API, usable without Lightning::

    from videonorm.models import ModelSpec, build_model
    model = build_model(ModelSpec(arch="i3d_resnet", depth=50, norm="gn", norm_groups=32, num_classes=400))
    model = build_model(norm="gn", num_classes=400)  # the same: spec fields as keywords

Modules: :mod:`~videonorm.models.spec` (``ModelSpec``: what to build), :mod:`~videonorm.models.registry` (backbone
names, ``build_model``), :mod:`~videonorm.models.norm` (norm names), the builders (:mod:`~videonorm.models.i3d`: I3D
and C2D ResNets; :mod:`~videonorm.models.x3d`, :mod:`~videonorm.models.slowfast`, :mod:`~videonorm.models.r2plus1d`,
:mod:`~videonorm.models.csn`; :mod:`~videonorm.models.resnet`: what the ResNet ones share),
:mod:`~videonorm.models.residual` (residual-branch ends), :mod:`~videonorm.models.init` (weight
init), :mod:`~videonorm.models.inflate` (2D -> 3D checkpoints), :mod:`~videonorm.models.pretrained` (2D ImageNet
sources: files, Caffe2 pickles, torchvision, timm). Importing the package loads no torch (run naming reads the
tables); the builders load it when first used.
"""

from __future__ import annotations

from videonorm.models.norm.schemes import NORM_NAMES
from videonorm.models.registry import BACKBONES, build_model, num_parameters
from videonorm.models.spec import ModelSpec

__all__ = ["BACKBONES", "NORM_NAMES", "ModelSpec", "build_model", "num_parameters"]
