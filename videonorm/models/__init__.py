"""Video models: backbones by name, normalization schemes by name, weight init and ImageNet inflation.

The public API, usable without Lightning::

    from videonorm.models import build_model
    model = build_model("i3d_resnet", depth=50, norm="gn", norm_groups=32, num_classes=400)

Modules: :mod:`~videonorm.models.registry` (backbone names), :mod:`~videonorm.models.norm` (norm names),
:mod:`~videonorm.models.i3d` (the I3D ResNet builder), :mod:`~videonorm.models.init` (weight init),
:mod:`~videonorm.models.inflate` (2D -> 3D checkpoints),
:mod:`~videonorm.models.pretrained` (2D ImageNet sources: files, Caffe2 pickles, torchvision, timm).
"""

from videonorm.models.i3d import i3d_resnet
from videonorm.models.inflate import inflate_2d
from videonorm.models.init import init_weights
from videonorm.models.norm import NORM_NAMES, norm_layer
from videonorm.models.registry import BACKBONES, build_model, num_parameters

__all__ = ["BACKBONES", "NORM_NAMES", "build_model", "i3d_resnet", "inflate_2d", "init_weights", "norm_layer",
           "num_parameters"]
