"""videonorm: which normalization, at which batch size? I3D ResNets with swappable norms on Kinetics."""

__version__ = "0.1.0"
