"""The reference numbers: Wu & He, "Group Normalization", ECCV 2018 (arXiv:1803.08494), Kinetics-400.

ResNet-50 I3D trained from ImageNet on 8 GPUs, top-1 / top-5 (%) on the Kinetics-400 validation set,
video-level (softmax averaged over the test views; our ``test/top1``). Data, not code: one row per cell of
the paper's table, keyed like our runs (norm, clips per GPU, frames, temporal stride).
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = "Wu & He, Group Normalization, ECCV 2018 (Kinetics-400, ResNet-50 I3D)"
# What a run must match to stand beside these numbers (besides the grid cell): the paper's network.
MODEL_DEPTH = 50
MODEL_WIDTH = 64  # channels of the stem / first stage; our tiny CPU runs use less


@dataclass(frozen=True)
class PaperResult:
    """One cell of the paper's table.

    Attributes:
        norm: norm name as in our configs (``bn``, ``gn``).
        norm_groups: GN's group count (32 in the paper), None for BN.
        batch_size: clips per GPU.
        num_frames: frames per clip.
        sampling_rate: temporal stride between frames.
        top1: top-1 accuracy, percent.
        top5: top-5 accuracy, percent.
    """

    norm: str
    norm_groups: int | None
    batch_size: int
    num_frames: int
    sampling_rate: int
    top1: float
    top5: float


KINETICS_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("bn", None, 8, 32, 2, 73.3, 90.7),
    PaperResult("bn", None, 4, 32, 2, 72.1, 90.0),
    PaperResult("bn", None, 4, 64, 1, 73.3, 90.8),
    PaperResult("gn", 32, 8, 32, 2, 73.0, 90.6),
    PaperResult("gn", 32, 4, 32, 2, 72.8, 90.6),
    PaperResult("gn", 32, 4, 64, 1, 74.5, 91.7),
)


def paper_result(
    norm: str, norm_groups: int | None, batch_size: int, num_frames: int, sampling_rate: int,
    depth: int = MODEL_DEPTH, width: int = MODEL_WIDTH,
) -> PaperResult | None:
    """The paper's number for a grid cell, or None where the paper has none (other norm, batch, model...).

    Args:
        norm: norm name of our runs.
        norm_groups: their group count (ignored for norms the paper ran without groups).
        batch_size: clips per device.
        num_frames: frames per clip.
        sampling_rate: temporal stride.
        depth: ResNet depth of our runs (the paper's is 50).
        width: base width of our runs (the paper's is 64).
    """
    if depth != MODEL_DEPTH or width != MODEL_WIDTH:
        return None
    for r in KINETICS_RESULTS:
        if (r.norm, r.batch_size, r.num_frames, r.sampling_rate) == (norm, batch_size, num_frames, sampling_rate):
            if r.norm_groups is None or r.norm_groups == norm_groups:
                return r
    return None


# The paper's figures draw BN dashed and GN solid; other norms get their own dash patterns.
LINESTYLES = {"bn": "--", "gn": "-"}
_OTHER_LINESTYLES = ("-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))


def linestyle(norm: str) -> str | tuple:
    """Matplotlib line style for a norm in the paper's figure convention (BN dashed, GN solid).

    Args:
        norm: norm name.
    """
    if norm in LINESTYLES:
        return LINESTYLES[norm]
    return _OTHER_LINESTYLES[sum(map(ord, norm)) % len(_OTHER_LINESTYLES)]  # stable per name across calls
