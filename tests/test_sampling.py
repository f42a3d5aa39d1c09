"""videonorm.data.sampling: temporal windows and spatial test crops."""

from __future__ import annotations

import pytest
import torch

from videonorm.data.sampling import (
    center_clip_indices,
    crop_offsets,
    multiview_clip_indices,
    train_clip_indices,
)


def test_train_clip_is_a_strided_window_inside_the_video():
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(300):
        idx = train_clip_indices(20, 4, 3, g)
        assert idx.dtype == torch.long and idx.shape == (4,)
        assert torch.equal(idx - idx[0], torch.tensor([0, 3, 6, 9]))
        starts.add(int(idx[0]))
    assert starts == set(range(20 - 12 + 1))  # every start that keeps the 12-frame window inside


def test_train_clip_deterministic_under_a_seed():
    a = [train_clip_indices(300, 32, 2, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    g = torch.Generator().manual_seed(7)
    draws = {int(train_clip_indices(300, 32, 2, g)[0]) for _ in range(20)}
    assert len(draws) > 1  # a generator's successive draws differ


def test_short_video_repeats_frames():
    # 5 frames, window 4 x 2 = 8: start at 0, clamp past the end
    assert train_clip_indices(5, 4, 2).tolist() == [0, 2, 4, 4]
    assert center_clip_indices(5, 4, 2).tolist() == [0, 2, 4, 4]
    assert multiview_clip_indices(5, 4, 2, 3).tolist() == [[0, 2, 4, 4]] * 3
    assert train_clip_indices(1, 3, 1).tolist() == [0, 0, 0]


def test_center_clip():
    assert center_clip_indices(100, 4, 2).tolist() == [46, 48, 50, 52]  # slack 92, start 46
    assert center_clip_indices(8, 4, 2).tolist() == [0, 2, 4, 6]


def test_test_clips_evenly_spaced_from_first_to_last_frame():
    clips = multiview_clip_indices(100, 4, 2, 5)  # window 8, slack 92: starts 0, 23, 46, 69, 92
    assert clips.shape == (5, 4)
    assert clips[:, 0].tolist() == [0, 23, 46, 69, 92]
    assert int(clips[-1, -1]) == 98  # the last window ends on the video's last stride position
    assert torch.equal(clips[2], center_clip_indices(100, 4, 2))
    assert torch.equal(multiview_clip_indices(100, 4, 2, 1), center_clip_indices(100, 4, 2)[None])
    ten = multiview_clip_indices(300, 32, 2, 10)
    assert ten.shape == (10, 32) and ten.min() >= 0 and ten.max() <= 299
    assert (ten[1:, 0] > ten[:-1, 0]).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one frame"):
        train_clip_indices(0, 4, 2)
    with pytest.raises(ValueError):
        center_clip_indices(10, 0, 2)
    with pytest.raises(ValueError, match="num_clips"):
        multiview_clip_indices(10, 4, 2, 0)


def test_crop_offsets_along_the_long_side():
    assert crop_offsets(256, 340, 256, 3) == [(0, 0), (0, 42), (0, 84)]  # landscape: left, center, right
    assert crop_offsets(340, 256, 256, 3) == [(0, 0), (42, 0), (84, 0)]  # portrait: top, center, bottom
    assert crop_offsets(256, 340, 224, 3) == [(16, 0), (16, 58), (16, 116)]
    assert crop_offsets(256, 340, 224, 1) == [(16, 58)]
    with pytest.raises(ValueError, match="does not fit"):
        crop_offsets(200, 340, 224, 3)
    with pytest.raises(ValueError, match="1 or 3"):
        crop_offsets(256, 340, 224, 2)
