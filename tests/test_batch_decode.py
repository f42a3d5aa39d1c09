"""The batch decoder (``data.decoder: torchcodec_cuda``): workers choose the frames, the training process decodes and
transforms a batch. Its batching logic runs here on the CPU (torchcodec's CPU decoder); the GPU test runs only where
CUDA exists."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from tests.videos import frame_indices, make_dataset
from videonorm.data.batch_decode import BatchDecoder
from videonorm.data.datamodule import KineticsDataModule
from videonorm.data.dataset import ClipSpec, VideoDataset
from videonorm.data.sampling import multiview_clip_indices
from videonorm.data.video import DecoderUnavailableError, read_clip, require_backend, video_info

try:
    require_backend("torchcodec")
except DecoderUnavailableError as error:
    pytest.skip(str(error), allow_module_level=True)

CLIP = ClipSpec(num_frames=4, sampling_rate=2, train_min_scale=48, train_max_scale=56, crop_size=40, test_scale=48,
                test_crop_size=48, test_clips=2, test_crops=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return make_dataset(tmp_path_factory.mktemp("batch"), num_classes=2, per_class=2, num_frames=30)


def _transforms() -> dict:
    return {mode: CLIP.transforms(mode) for mode in ("train", "val", "test")}


@pytest.mark.parametrize("mode, workers", [("val", 0), ("test", 1)])
def test_decoded_batches_equal_the_cpu_pipelines(data, mode, workers, monkeypatch):
    from videonorm.data import batch_decode

    reads = []

    def counting(path, *args, **kwargs):
        reads.append(path)
        return read_clip(path, *args, **kwargs)

    monkeypatch.setattr(batch_decode, "read_clip", counting)
    manifest = data["manifests"]["val"]
    cpu = VideoDataset(data["root"], manifest, mode, CLIP)
    deferred = VideoDataset(data["root"], manifest, mode, CLIP, deferred=True)
    item = deferred[1]
    assert "video" not in item and item["mode"] == mode and item["frames"].dtype == torch.long
    decoder = BatchDecoder(_transforms(), "cpu")
    reference = DataLoader(cpu, batch_size=4)
    for batch, expected in zip(DataLoader(deferred, batch_size=4, num_workers=workers), reference):
        out = decoder(batch)
        assert set(out) == set(expected)
        assert out["video"].dtype == torch.uint8 and torch.equal(out["video"], expected["video"])  # bit for bit
        for key in ("label", "index", "view", "skipped"):
            assert torch.equal(out[key], expected[key])
    if mode == "test":  # one decode per clip and batch: a clip's crops share it (a batch of 4 can split them)
        assert len(cpu) // CLIP.test_crops <= len(reads) < len(cpu)
    else:
        assert len(reads) == len(cpu)


def test_workers_choose_the_same_frames_as_the_cpu_path(data):
    path = data["root"] / data["videos"]["val"][0][0]
    deferred = VideoDataset(data["root"], data["manifests"]["val"], "test", CLIP, deferred=True)
    views = [deferred[i] for i in range(CLIP.test_clips * CLIP.test_crops)]
    expected = multiview_clip_indices(video_info(path)[0], 4, 2, 2)
    for view in views:
        clip, crop = divmod(view["view"], 3)
        assert torch.equal(view["frames"], expected[clip]) and view["crop"] == crop
    # decoded without a crop that could cut the cells: the frames spell the indices they were asked for
    whole = {m: [lambda clip: clip.permute(1, 0, 2, 3)] * 3 for m in ("train", "val", "test")}
    batch = next(iter(DataLoader(deferred, batch_size=len(views))))
    video = BatchDecoder(whole, "cpu")(batch)["video"]  # (N, 3, T, H, W)
    for clip, frames in zip(video, batch["frames"]):
        assert frame_indices(clip.permute(1, 0, 2, 3)) == frames.tolist()


def test_train_batches_are_random_crops_of_the_chosen_windows(data):
    deferred = VideoDataset(data["root"], data["manifests"]["train"], "train", CLIP, deferred=True)
    torch.manual_seed(0)
    batch = next(iter(DataLoader(deferred, batch_size=4, shuffle=True)))
    window = (CLIP.num_frames - 1) * CLIP.sampling_rate
    assert all(int(f[-1] - f[0]) == window and torch.all(f.diff() == 2) for f in batch["frames"])
    out = BatchDecoder(_transforms(), "cpu")(batch)
    assert out["video"].shape == (4, 3, 4, 40, 40) and out["video"].dtype == torch.uint8
    assert "path" not in out and "frames" not in out


def test_repeated_augmentation_and_no_gpu_are_clear_errors(data):
    with pytest.raises(ValueError, match="not offered with a batch decoder"):
        VideoDataset(data["root"], data["manifests"]["train"], "train", CLIP, repeat_aug=2, deferred=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="decodes on a CUDA GPU and none is available"):
            KineticsDataModule(str(data["root"]), decoder="torchcodec_cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU decode (NVDEC) is not tested")
def test_on_the_gpu_the_datamodule_hands_over_decoded_batches(data):
    dm = KineticsDataModule(str(data["root"]), decoder="torchcodec_cuda", batch_size=2, num_workers=1,
                            num_frames=4, sampling_rate=2, train_min_scale=48, train_max_scale=56, crop_size=40,
                            test_scale=48, test_crop_size=48, test_clips=2, test_crops=3)
    dm.setup("test")
    batch = dm.on_before_batch_transfer(next(iter(dm.test_dataloader())), 0)
    assert batch["video"].is_cuda and batch["video"].shape == (2, 3, 4, 48, 48)
    cpu = next(iter(DataLoader(VideoDataset(data["root"], data["manifests"]["val"], "test", CLIP), batch_size=2)))
    # NVDEC's colour conversion is not swscale's: a few levels apart at most
    assert (batch["video"].cpu().int() - cpu["video"].int()).abs().max() <= 8
