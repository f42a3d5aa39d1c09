"""videonorm.data.transforms: torchvision v2 clip transforms, uint8 (T, 3, H, W) -> uint8 (3, T, H, W), then the
on-device normalization to float (``ClipNormalize``)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from videonorm.data.transforms import ClipNormalize, multiview_transform, train_transform, val_transform

MEAN, STD = 0.45, 0.225
NORMALIZE = ClipNormalize()  # the Kinetics mean/std, as the model applies it to a batch


def float_path(transform):
    """The transform followed by the model's normalization: what the network sees."""
    return lambda clip: NORMALIZE(transform(clip))


def normalize(clip_uint8: torch.Tensor) -> torch.Tensor:
    """Reference: /255, normalize, (T, 3, H, W) -> (3, T, H, W)."""
    return ((clip_uint8.float() / 255 - MEAN) / STD).permute(1, 0, 2, 3)


@pytest.fixture
def clip() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 48, 64), dtype=torch.uint8, generator=g)  # (T, 3, H, W)


def test_train_shapes_and_dtype(clip):
    out = train_transform(56, 72, 40)(clip)
    assert out.shape == (3, 4, 40, 40) and out.dtype == torch.uint8 and out.is_contiguous()
    assert type(out) is torch.Tensor  # plain tensor, not a tv_tensor, for default_collate and the model
    assert NORMALIZE(out).dtype == torch.float32


def test_train_same_random_parameters_for_every_frame(clip):
    same = clip[:1].expand(6, -1, -1, -1).clone()  # 6 identical frames
    transform = train_transform(56, 72, 40)
    for seed in range(5):
        torch.manual_seed(seed)
        out = transform(same)  # (3, 6, 40, 40)
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(6))


def test_train_is_random_and_seeded(clip):
    transform = train_transform(56, 72, 40)
    torch.manual_seed(3)
    a = transform(clip)
    torch.manual_seed(3)
    b = transform(clip)
    assert torch.equal(a, b)
    outs = [transform(clip) for _ in range(5)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_train_scale_range_and_flip():
    # a horizontal ramp survives any scale and crop as a monotone row: flip shows as a decreasing row
    ramp = torch.arange(64, dtype=torch.uint8).mul(4).expand(2, 3, 48, 64).clone()
    transform = train_transform(48, 48, 48, flip=True)  # scale fixed to the short side: only crop and flip
    directions = set()
    for seed in range(20):
        torch.manual_seed(seed)
        row = transform(ramp)[0, 0, 0]
        directions.add(bool(row[-1] > row[0]))
    assert directions == {True, False}
    no_flip = train_transform(48, 48, 48, flip=False)
    assert all(bool(no_flip(ramp)[0, 0, 0, -1] > no_flip(ramp)[0, 0, 0, 0]) for _ in range(10))
    # the ramp's slope after scaling the short side from 48 to s is 4 * 48 / s per pixel: read s back
    scaled = train_transform(48, 96, 48, flip=False)
    sizes = []
    for seed in range(40):
        torch.manual_seed(seed)
        row = scaled(ramp)[0, 0, 0].float()
        sizes.append(4 * 48 / float((row[40] - row[8]) / 32))
    assert 46 < min(sizes) < 56 and 88 < max(sizes) < 98


def test_normalization_values():
    white = torch.full((2, 3, 48, 64), 255, dtype=torch.uint8)
    out = float_path(val_transform(48, 40))(white)
    assert torch.allclose(out, torch.full_like(out, (1 - MEAN) / STD))


def test_val_is_resize_then_center_crop(clip):
    out = float_path(val_transform(56, 40))(clip)
    reference = normalize(F.center_crop(F.resize(clip, 56, antialias=True), [40, 40]))
    assert out.shape == (3, 4, 40, 40)
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.equal(out, float_path(val_transform(56, 40))(clip))  # deterministic


def test_test_views_are_three_crops_along_the_long_side(clip):
    views = [float_path(t)(clip) for t in multiview_transform(48, 48, 3)]
    resized = F.resize(clip, 48, antialias=True)  # 48 x 64 already: short side 48
    for view, left in zip(views, (0, 8, 16)):  # left, center, right
        assert view.shape == (3, 4, 48, 48)
        assert torch.allclose(view, normalize(resized[..., left : left + 48]), atol=1e-5)
    portrait = clip.transpose(2, 3).contiguous()  # (T, 3, 64, 48)
    for view, top in zip([float_path(t)(portrait) for t in multiview_transform(48, 48, 3)], (0, 8, 16)):
        assert torch.allclose(view, normalize(portrait[:, :, top : top + 48]), atol=1e-5)
    (single,) = [t(clip) for t in multiview_transform(48, 40, 1)]
    assert torch.equal(single, val_transform(48, 40)(clip))


def test_channels_last_input_gives_same_result(clip):
    channels_last = clip.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # what the decoders return
    assert torch.equal(val_transform(56, 40)(channels_last), val_transform(56, 40)(clip))


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        val_transform(48, 40)(torch.zeros(3, 4, 48, 64, dtype=torch.uint8))
    with pytest.raises(ValueError):
        train_transform(56, 48, 40)
    with pytest.raises(ValueError):
        val_transform(32, 40)


def test_scale_crop_matches_resize_then_crop():
    # the fused crop-then-resize draws the same scale and position as RandomResize + RandomCrop and gives
    # the same pixels up to sub-pixel resampling; on a smooth ramp that is a difference of a grey level or two
    rows, cols = torch.meshgrid(torch.arange(48), torch.arange(64), indexing="ij")
    ramp = (2 * rows + 2 * cols).to(torch.uint8).expand(2, 3, 48, 64).clone()  # (T, 3, H, W)
    transform = train_transform(48, 80, 40, flip=False)
    for seed in range(10):
        torch.manual_seed(seed)
        out = transform(ramp).float() / 255
        torch.manual_seed(seed)
        scale = int(torch.randint(48, 81, ()))
        resized = F.resize(ramp, scale, antialias=True)
        top = int(torch.randint(0, resized.shape[-2] - 40 + 1, ()))
        left = int(torch.randint(0, resized.shape[-1] - 40 + 1, ()))
        reference = resized[..., top : top + 40, left : left + 40].float().permute(1, 0, 2, 3) / 255
        difference = (out - reference).abs() * 255
        assert difference.max() <= 4 and difference.mean() <= 1.5, (seed, difference.max(), difference.mean())


def test_fused_normalization_equals_torchvision_chain(clip):
    from torchvision.transforms import v2

    mean, std = (0.43, 0.4, 0.39), (0.23, 0.22, 0.225)
    ours = ClipNormalize(mean, std)(clip.permute(1, 0, 2, 3)[None])  # (1, 3, T, H, W)
    chain = v2.Normalize(mean, std)(v2.ToDtype(torch.float32, scale=True)(clip)).permute(1, 0, 2, 3)
    assert torch.allclose(ours[0], chain, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        ClipNormalize()(ours)


def _worker_float_path(clip_tchw: torch.Tensor) -> torch.Tensor:
    """The float hand-off this project used before the uint8 one (normalized per clip in the worker), kept here as
    the reference: float32 (3, T, H, W) = (x - 255 mean) * (1 / (255 std)), in place."""
    shift = torch.tensor((MEAN,) * 3).view(3, 1, 1, 1) * 255
    scale = 1 / (torch.tensor((STD,) * 3).view(3, 1, 1, 1) * 255)
    out = torch.empty((3, *clip_tchw.shape[:1], *clip_tchw.shape[2:]), dtype=torch.float32)
    out.copy_(clip_tchw.permute(1, 0, 2, 3))
    return out.sub_(shift).mul_(scale)


def test_uint8_hand_off_then_device_normalization_is_bit_for_bit_the_float_path(clip):
    transforms = [train_transform(56, 72, 40), val_transform(56, 40), *multiview_transform(48, 48, 3)]
    for transform in transforms:
        torch.manual_seed(7)
        batch = torch.stack([transform(clip), transform(clip.flip(0))])  # (2, 3, T, H, W) uint8, as collated
        torch.manual_seed(7)
        geometric = [transform(clip), transform(clip.flip(0))]  # the same random draws
        reference = torch.stack([_worker_float_path(g.permute(1, 0, 2, 3)) for g in geometric])
        assert batch.dtype == torch.uint8 and torch.equal(NORMALIZE(batch), reference)
