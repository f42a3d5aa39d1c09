"""Where clips come from: temporal windows (frame indices) and spatial test crops (pixel offsets).

A clip of ``num_frames`` frames at ``sampling_rate`` spans a window of ``num_frames * sampling_rate`` frames
and takes every ``sampling_rate``-th frame of it (the paper: 32 x 2, a 64-frame window).

  * train: a window at a uniformly random start;
  * val: the center window;
  * test: ``num_clips`` windows evenly spaced from the first frame to the last (for one clip: the center).

A video shorter than the window is never rejected: the window starts at frame 0 and indices past the end are
clamped to the last frame (the last frame repeats).

``align`` > 1 puts every window start on a multiple of ``align`` (train: uniform over those; val and test: the
nearest one below). With ``align=2`` and an even stride, a clip holds only even frames, which a video encoded in
kinetics-prep's stride-2 layout (odd frames non-reference) decodes without its odd frames.
"""

from __future__ import annotations

import torch


def _window(num_video_frames: int, num_frames: int, sampling_rate: int, start: int) -> torch.Tensor:
    if num_video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_video_frames}")
    if num_frames < 1 or sampling_rate < 1:
        raise ValueError(f"num_frames and sampling_rate must be >= 1, got {num_frames} and {sampling_rate}")
    indices = start + torch.arange(num_frames, dtype=torch.long) * sampling_rate
    return indices.clamp_(0, num_video_frames - 1)


def _slack(num_video_frames: int, num_frames: int, sampling_rate: int) -> int:
    """Number of window starts beyond the first that keep the whole window inside the video."""
    return max(num_video_frames - num_frames * sampling_rate, 0)


def train_clip_indices(
    num_video_frames: int, num_frames: int, sampling_rate: int, generator: torch.Generator | None = None,
    align: int = 1,
) -> torch.Tensor:
    """A random training clip: window start uniform over every position that fits (and is a multiple of ``align``).

    Args:
        num_video_frames: Frames in the video.
        num_frames: Frames in the clip (T).
        sampling_rate: Stride between clip frames.
        generator: Random source (default: torch's global one, seeded per DataLoader worker).
        align: Window starts are multiples of this (see the module docstring).

    Returns:
        (num_frames,) int64 frame indices, ascending, clamped to the video.
    """
    slack = _slack(num_video_frames, num_frames, sampling_rate)
    start = align * int(torch.randint(0, slack // align + 1, (), generator=generator))
    return _window(num_video_frames, num_frames, sampling_rate, start)


def center_clip_indices(num_video_frames: int, num_frames: int, sampling_rate: int, align: int = 1) -> torch.Tensor:
    """The center clip (validation).

    Args:
        num_video_frames: Frames in the video.
        num_frames: Frames in the clip (T).
        sampling_rate: Stride between clip frames.
        align: Window starts are multiples of this (the center one rounded down).

    Returns:
        (num_frames,) int64 frame indices.
    """
    start = _slack(num_video_frames, num_frames, sampling_rate) // 2 // align * align
    return _window(num_video_frames, num_frames, sampling_rate, start)


def multiview_clip_indices(num_video_frames: int, num_frames: int, sampling_rate: int, num_clips: int,
                      align: int = 1) -> torch.Tensor:
    """``num_clips`` clips evenly spaced over the video (multi-view testing).

    Clip ``k`` starts at ``round(k * slack / (num_clips - 1))`` where ``slack`` is the last start that fits, so
    the first clip starts at frame 0 and the last one ends at the last frame (PySlowFast's ``use_offset``
    spacing); a single clip is the center clip.

    Args:
        num_video_frames: Frames in the video.
        num_frames: Frames in each clip (T).
        sampling_rate: Stride between clip frames.
        num_clips: Number of clips (K).
        align: Window starts are multiples of this (each rounded down).

    Returns:
        (num_clips, num_frames) int64 frame indices; row k is clip k.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_clips == 1:
        return center_clip_indices(num_video_frames, num_frames, sampling_rate, align)[None]
    slack = _slack(num_video_frames, num_frames, sampling_rate)
    starts = [round(k * slack / (num_clips - 1)) // align * align for k in range(num_clips)]
    return torch.stack([_window(num_video_frames, num_frames, sampling_rate, s) for s in starts])


def crop_offsets(height: int, width: int, crop_size: int, num_crops: int = 3) -> list[tuple[int, int]]:
    """Top-left corners of spatial test crops of ``crop_size`` x ``crop_size``.

    One crop: the center. Three crops: start, center and end of the long side (left/center/right for
    landscape frames, top/center/bottom for portrait), centered on the short side, as in PySlowFast's
    ``uniform_crop``.

    Args:
        height: Frame height (after the short-side resize).
        width: Frame width.
        crop_size: Side of the square crop (<= height and width).
        num_crops: 1 or 3.

    Returns:
        ``[(top, left), ...]`` in crop order.
    """
    if crop_size > min(height, width):
        raise ValueError(f"crop {crop_size} does not fit in a {height}x{width} frame")
    center = ((height - crop_size) // 2, (width - crop_size) // 2)
    if num_crops == 1:
        return [center]
    if num_crops != 3:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    if height > width:
        return [(0, center[1]), center, (height - crop_size, center[1])]
    return [(center[0], 0), center, (center[0], width - crop_size)]

