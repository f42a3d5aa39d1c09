"""The reference numbers: Wu & He, "Group Normalization", ECCV 2018 (arXiv:1803.08494), Kinetics-400.

ResNet-50 I3D fine-tuned from ImageNet on 8 GPUs, top-1 / top-5 (%) on the Kinetics-400 validation set,
video-level (softmax averaged over the test views; our ``test/top1``). Data, not code: one row per cell of
the paper's table, keyed like our runs (norm, clips per GPU, frames, temporal stride).

A run stands beside these numbers only when its whole setup is the paper's (:func:`setup_gaps` lists what
differs): the I3D ResNet-50 at width 64, initialized from a 2D ImageNet model, 400 classes, 8 devices, no repeated
augmentation, fp32 training, and one of the paper's cells (32x2 or 64x1 frames, 8 or 4 clips per device).
"""

from __future__ import annotations

from dataclasses import dataclass

from videonorm.identity import FP32, SCRATCH, Setting

CITATION = "Wu & He, Group Normalization, ECCV 2018 (Kinetics-400, ResNet-50 I3D)"
# The paper's setup besides the grid cell.
MODEL_ARCH = "i3d_resnet"
MODEL_DEPTH = 50
MODEL_WIDTH = 64  # channels of the stem / first stage; our tiny CPU runs use less
NUM_CLASSES = 400
WORLD_SIZE = 8  # GPUs: the paper's per-GPU batch is only the paper's at its total batch
STEM_POOL_PADDING = 0  # the Non-local code's stem pool: 55x55 at res2 (videonorm.models.i3d, stem_pool_padding)
# The paper's runs trained in fp32: the Non-local code (Caffe2) has no reduced-precision path, and its loader casts
# every blob to float32 (lib/utils/checkpoints.py). Lightning calls it "32-true".
PRECISION = FP32


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


def setup_gaps(setting: Setting) -> list[str]:
    """What keeps a run's setup from being the paper's (empty: it is the paper's, up to the grid cell).

    Args:
        setting: the run's setting.
    """
    row, col = setting.row, setting.column
    gaps = []
    if row.arch != MODEL_ARCH:
        gaps.append(f"architecture {row.arch} (the paper's: {MODEL_ARCH})")
    if (row.depth, row.width) != (MODEL_DEPTH, MODEL_WIDTH):
        gaps.append(f"ResNet-{row.depth} at width {row.width} (the paper's: ResNet-{MODEL_DEPTH}, width {MODEL_WIDTH})")
    if row.init == SCRATCH:
        gaps.append("trained from scratch (the paper fine-tunes from ImageNet)")
    if row.stem_pool_padding not in (None, STEM_POOL_PADDING):
        gaps.append(f"stem max-pool padding {row.stem_pool_padding} "
                    f"(the original's: {STEM_POOL_PADDING}, 55x55 at res2)")
    if row.num_classes is not None and row.num_classes != NUM_CLASSES:
        gaps.append(f"{row.num_classes} classes (Kinetics-400 has {NUM_CLASSES})")
    if col.world_size is not None and col.world_size != WORLD_SIZE:
        gaps.append(f"{col.world_size} devices (the paper's: {WORLD_SIZE} GPUs)")
    if col.repeat_aug > 1:
        gaps.append(f"repeated augmentation x{col.repeat_aug}")
    precision = dict(row.recipe.items).get("precision", PRECISION)  # a Row built without a recipe: unknown, no gap
    if precision != PRECISION:
        gaps.append(f"precision {precision} (the paper's: fp32, {PRECISION})")
    return gaps


def paper_result(setting: Setting) -> PaperResult | None:
    """The paper's number for a run's setting, or None where the paper has none (another cell or setup).

    Args:
        setting: the run's setting.
    """
    if setup_gaps(setting):
        return None
    return cell_result(setting.row.norm, setting.row.norm_groups, setting.column.batch_size,
                       setting.column.num_frames, setting.column.sampling_rate)


def cell_result(norm: str, norm_groups: int | None, batch_size: int, num_frames: int,
                sampling_rate: int | None) -> PaperResult | None:
    """The paper's cell for a norm, batch and clip shape, whatever the rest of the setup.

    Args:
        norm: norm name of our runs.
        norm_groups: their group count (ignored for norms the paper ran without groups).
        batch_size: clips per device.
        num_frames: frames per clip.
        sampling_rate: temporal stride.
    """
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
