"""videonorm.data on real small videos: manifests, VideoDataset modes, broken files, KineticsDataModule."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import pytest
import torch
from jsonargparse import ArgumentParser
from pytorch_lightning import seed_everything
from torch.utils.data import DataLoader

from tests.videos import make_dataset, write_not_a_video
from videonorm.data.datamodule import KineticsDataModule
from videonorm.data.dataset import ClipSpec, VideoDataset
from videonorm.data.manifest import ManifestError, read_classes, read_manifest
from videonorm.data.sampling import center_clip_indices, multiview_clip_indices
from videonorm.data.transforms import multiview_transform, val_transform
from videonorm.data.video import read_frames, video_info

SMALL_ARGS = dict(num_frames=4, sampling_rate=2, train_min_scale=48, train_max_scale=56, crop_size=40,
                  test_scale=48, test_crop_size=48)  # fmt: skip
SMALL = ClipSpec(**SMALL_ARGS)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> dict:
    """2 classes x 3 videos (24 frames, 64x48) for train and val. Read-only: copy it before changing it."""
    return make_dataset(tmp_path_factory.mktemp("kinetics"), num_classes=2, per_class=3)


@pytest.fixture(scope="session")
def broken_dataset(tmp_path_factory) -> dict:
    """Like ``dataset`` plus a truncated file, a non-video and a missing file in each manifest."""
    return make_dataset(tmp_path_factory.mktemp("broken"), 2, 3, broken=("truncated", "not_a_video"), missing=1)


def is_blank(video: torch.Tensor) -> bool:
    return bool(video.float().std() < 1e-3)


# ---- manifests ---------------------------------------------------------------------------------------------
def test_read_manifest(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("# comment\n\na/b.mp4 3\n  c/d.mp4\t0  \n\n")
    assert [(e.path, e.label, e.line) for e in read_manifest(path)] == [("a/b.mp4", 3, 3), ("c/d.mp4", 0, 4)]


@pytest.mark.parametrize("line", ["a.mp4", "a.mp4 x", "a.mp4 1 2"])
def test_malformed_manifest_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "m.txt"
    path.write_text(f"ok.mp4 0\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"{path}:3: "):
        read_manifest(path)


def test_read_classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("abseiling\nair drumming\n\n")
    assert read_classes(path) == ["abseiling", "air drumming"]
    path.write_text("a\n\nb\n")
    with pytest.raises(ValueError, match=r"classes.txt:2: blank line"):
        read_classes(path)
    path.write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"classes.txt:3: class 'a' already on line 1"):
        read_classes(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no class names"):
        read_classes(path)
    with pytest.raises(ManifestError, match="nope.txt: class list not found"):
        read_classes(tmp_path / "nope.txt")


# ---- VideoDataset ------------------------------------------------------------------------------------------
def test_train_items(dataset):
    torch.manual_seed(0)  # train crops are random; a crop may miss the test pattern's bright block
    ds = VideoDataset(dataset["root"], dataset["manifests"]["train"], "train", clip=SMALL)
    assert len(ds) == 6
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"video", "label", "index", "view", "skipped", "skipped_files"}
        assert item["video"].shape == (3, 4, 40, 40) and item["video"].dtype == torch.uint8
        label = dataset["videos"]["train"][i][1]
        assert (item["label"], item["index"], item["view"], item["skipped"]) == (label, i, 0, 0)
        assert not is_blank(item["video"])


def test_val_item_is_center_clip_center_crop(dataset):
    ds = VideoDataset(dataset["root"], dataset["manifests"]["val"], "val", clip=SMALL)
    path = dataset["root"] / dataset["videos"]["val"][4][0]
    expected = val_transform(48, 40)(read_frames(path, center_clip_indices(video_info(path)[0], 4, 2)))
    assert torch.equal(ds[4]["video"], expected)
    assert torch.equal(ds[4]["video"], ds[4]["video"])  # deterministic


def test_test_views_count_order_and_content(dataset):
    ds = VideoDataset(dataset["root"], dataset["manifests"]["val"], "test", clip=replace(SMALL, test_clips=2,
                                                                                         test_crops=3))
    assert len(ds) == 6 * 2 * 3
    crops = multiview_transform(48, 48, 3)
    for item in range(len(ds)):
        out = ds[item]
        assert (out["index"], out["view"]) == (item // 6, item % 6)
        clip, crop = divmod(out["view"], 3)
        path = dataset["root"] / dataset["videos"]["val"][out["index"]][0]
        indices = multiview_clip_indices(video_info(path)[0], 4, 2, 2)[clip]
        assert torch.equal(out["video"], crops[crop](read_frames(path, indices)))
        assert out["video"].shape == (3, 4, 48, 48)


def test_train_sampling_is_random_and_reproducible_under_a_seed(dataset):
    ds = VideoDataset(dataset["root"], dataset["manifests"]["train"], "train", clip=SMALL)
    torch.manual_seed(0)
    a = [ds[1]["video"] for _ in range(4)]
    torch.manual_seed(0)
    b = [ds[1]["video"] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(a[0], x) for x in a[1:])


def broken_indices(data: dict, split: str = "train") -> dict[int, str]:
    return {i: rel for i, (rel, _) in enumerate(data["videos"][split]) if "broken" in rel or "missing" in rel}


def test_broken_videos_are_replaced_counted_and_logged_once(broken_dataset, caplog):
    ds = VideoDataset(broken_dataset["root"], broken_dataset["manifests"]["train"], "train",
                      max_skip_fraction=1.0, clip=SMALL)  # fmt: skip
    broken = broken_indices(broken_dataset)
    assert len(broken) == 3 and len(ds) == 9
    with caplog.at_level(logging.WARNING, logger="videonorm.data"):
        for _ in range(2):
            for i in range(len(ds)):
                item = ds[i]
                assert not is_blank(item["video"])
                if i in broken:
                    assert item["skipped"] >= 1 and item["index"] not in broken
                    # the failures travel with the item (out of a DataLoader worker): path, tab, reason
                    paths = [line.split("\t")[0] for line in item["skipped_files"].splitlines()]
                    assert len(paths) == item["skipped"] and paths[0].endswith(broken[i])
                else:
                    assert (item["skipped"], item["index"], item["skipped_files"]) == (0, i, "")
    messages = [r.getMessage() for r in caplog.records if r.name == "videonorm.data"]
    for rel in broken.values():
        logged = [m for m in messages if rel in m]
        assert len(logged) == 1, (rel, messages)  # once per file, with its reason
    assert any("truncated" in m and "header announces" in m for m in messages)
    assert any("no such file" in m for m in messages)
    assert ds.failures >= 6 and len(ds.broken) == 3


def test_test_mode_broken_video_stands_in_with_the_replacements_own_views(broken_dataset):
    ds = VideoDataset(broken_dataset["root"], broken_dataset["manifests"]["val"], "test",
                      clip=replace(SMALL, test_clips=2, test_crops=3), max_skip_fraction=1.0)
    broken = broken_indices(broken_dataset, "val")
    for b in broken:
        items = [ds[b * 6 + v] for v in range(6)]
        (replacement,) = {item["index"] for item in items}  # one stand-in for all views of the video
        assert replacement not in broken
        assert [item["view"] for item in items] == list(range(6))
        assert [item["skipped"] for item in items][1:] == [0] * 5 and items[0]["skipped"] >= 1
        for v, item in enumerate(items):  # exact duplicates of the replacement's views: averages unchanged
            own = ds[replacement * 6 + v]
            assert torch.equal(item["video"], own["video"]) and item["label"] == own["label"]


def test_too_many_failures_stop_with_a_clear_error(broken_dataset):
    ds = VideoDataset(broken_dataset["root"], broken_dataset["manifests"]["train"], "train",
                      max_skip_fraction=0.05, min_attempts=4, clip=SMALL)  # fmt: skip
    with pytest.raises(RuntimeError, match=r"too many broken videos: \d+ of \d+ reads failed .*max_skip_fraction"):
        for i in range(len(ds)):
            ds[i]


def first_error(loader: DataLoader) -> str:
    """Iterate a loader to its first exception and return the message.

    The failed iterator is shut down explicitly: left to the garbage collector (it sits in a cycle with the
    traceback) its shutdown ran later, inside another test, and waited the 5 s join timeout per worker.
    """
    batches = iter(loader)
    try:
        for _ in batches:
            pass
    except RuntimeError as error:
        return str(error)
    finally:
        batches._shutdown_workers()
    return ""


def test_failure_error_crosses_dataloader_workers(broken_dataset):
    ds = VideoDataset(broken_dataset["root"], broken_dataset["manifests"]["train"], "train",
                      max_skip_fraction=0.0, min_attempts=1, clip=SMALL)  # fmt: skip
    assert "too many broken videos" in first_error(DataLoader(ds, batch_size=3, num_workers=2))


def test_only_video_broken_raises(tmp_path):
    write_not_a_video(tmp_path / "x.mp4")
    ds = VideoDataset(tmp_path, [("x.mp4", 0)], "val", max_skip_fraction=1.0, clip=SMALL)
    with pytest.raises(RuntimeError, match="only video"):
        ds[0]


# ---- KineticsDataModule ------------------------------------------------------------------------------------
def datamodule(root, **kwargs) -> KineticsDataModule:
    args = dict(batch_size=2, num_workers=2, test_clips=2, test_crops=3, **SMALL_ARGS)
    args.update(kwargs)
    return KineticsDataModule(str(root), **args)


def test_datamodule_batches_through_workers(dataset):
    dm = datamodule(dataset["root"])
    assert dm.num_classes == 2  # before setup: linked to the model at instantiation
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 6 videos, batch 2, drop_last
    for batch in batches:
        assert batch["video"].shape == (2, 3, 4, 40, 40) and batch["video"].dtype == torch.uint8
        for key in ("label", "index", "view", "skipped"):
            assert batch[key].shape == (2,) and batch[key].dtype == torch.int64
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(6))
    val = list(dm.val_dataloader())
    assert [b["index"].tolist() for b in val] == [[0, 1], [2, 3], [4, 5]]  # no shuffle
    assert val[0]["video"].shape == (2, 3, 4, 40, 40)
    dm.setup("test")  # test manifest defaults to val
    test = list(dm.test_dataloader())
    index = torch.cat([b["index"] for b in test])
    view = torch.cat([b["view"] for b in test])
    assert index.tolist() == [v for v in range(6) for _ in range(6)] and view.tolist() == list(range(6)) * 6
    assert test[0]["video"].shape == (2, 3, 4, 48, 48)


def test_repeated_augmentation_k_clips_of_one_window(dataset):
    torch.manual_seed(0)
    ds = VideoDataset(dataset["root"], dataset["manifests"]["train"], "train", repeat_aug=3, clip=SMALL)
    item = ds[0]
    assert item["video"].shape == (3, 3, 4, 40, 40) and item["video"].dtype == torch.uint8
    assert ds.attempts == 1  # one decode for the k clips
    clips = item["video"]
    assert not (torch.equal(clips[0], clips[1]) and torch.equal(clips[1], clips[2]))  # k augmentations
    assert not any(is_blank(clip) for clip in clips)


def test_datamodule_repeat_aug_keeps_clips_per_device(dataset):
    dm = datamodule(dataset["root"], batch_size=4, repeat_aug=2, num_workers=1)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 6 videos, 2 videos x 2 clips per batch: every video once per epoch
    for batch in batches:
        assert batch["video"].shape == (4, 3, 4, 40, 40)
        assert batch["index"][0::2].tolist() == batch["index"][1::2].tolist()  # a video's clips are adjacent
        assert batch["label"][0::2].tolist() == batch["label"][1::2].tolist()
        assert batch["skipped"][1::2].tolist() == [0, 0]  # broken-video counts stay on the first copy
    assert sorted(torch.cat([b["index"][0::2] for b in batches]).tolist()) == list(range(6))
    assert next(iter(dm.val_dataloader()))["video"].shape == (4, 3, 4, 40, 40)  # val: one clip per video


def test_datamodule_epochs_random_but_reproducible_under_seed_everything(dataset):
    def two_epochs():
        seed_everything(123)
        dm = datamodule(dataset["root"])
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [torch.cat([b["video"] for b in loader]) for _ in range(2)]

    first, second = two_epochs(), two_epochs()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], first[1])


def test_datamodule_skips_broken_and_drops_missing(broken_dataset, caplog):
    dm = datamodule(broken_dataset["root"], max_skip_fraction=1.0, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="videonorm.data"):
        dm.setup("fit")
    assert any("1 of 9 videos missing, dropped" in r.getMessage() for r in caplog.records)
    assert len(dm.train_set) == 8
    skipped = sum(int(b["skipped"].sum()) for b in dm.train_dataloader())
    assert skipped >= 2  # the truncated file and the non-video were each replaced
    fp = dm.fingerprint()
    assert (fp["train"]["listed"], fp["train"]["present"], fp["train"]["missing"]) == (9, 8, 1)


def test_fingerprint(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset["root"], root)
    dm = datamodule(root, test_manifest="val.txt")
    fp = dm.fingerprint()
    assert set(fp) == {"train", "val", "test", "classes", "total", "hash"}
    assert fp["train"]["listed"] == fp["train"]["present"] == 6 and fp["train"]["missing"] == 0
    assert len(fp["train"]["sha256"]) == 12 and len(fp["hash"]) == 12
    assert fp["total"] == {"listed": 12, "present": 12, "missing": 0}  # val counted once
    assert fp["classes"]["num_classes"] == 2
    with open(root / "train.txt", "a") as f:
        f.write("videos/train/extra.mp4 1\n")  # one more line (a listed video again would be an error)
    changed = datamodule(root).fingerprint()
    assert changed["hash"] != fp["hash"] and changed["train"]["sha256"] != fp["train"]["sha256"]
    assert changed["val"]["sha256"] == fp["val"]["sha256"]
    test_only = datamodule(root, train_manifest="not_here.txt").fingerprint()  # no train data where only testing
    assert test_only["train"]["sha256"] == "absent" and test_only["val"] == fp["val"]


def test_datamodule_setup_errors(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset["root"], root)
    (root / "bad_label.txt").write_text("# header\nvideos/train/class_0/000.mp4 0\nvideos/train/class_0/001.mp4 2\n")
    with pytest.raises(ValueError, match=r"bad_label.txt:3: label 2 outside \[0, 2\)"):
        datamodule(root, train_manifest="bad_label.txt").setup("fit")
    (root / "malformed.txt").write_text("videos/train/class_0/000.mp4\n")
    with pytest.raises(ValueError, match=r"malformed.txt:1: expected"):
        datamodule(root, train_manifest="malformed.txt").setup("fit")
    (root / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=r"empty.txt: manifest lists no videos"):
        datamodule(root, val_manifest="empty.txt").setup("validate")
    (root / "gone.txt").write_text("videos/gone/a.mp4 0\nvideos/gone/b.mp4 1\n")
    with pytest.raises(FileNotFoundError, match=r"gone.txt: none of its 2 videos exist .*videos/gone/a.mp4"):
        datamodule(root, test_manifest="gone.txt").setup("test")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        datamodule(root, train_manifest="nope.txt").setup("fit")
    with pytest.raises(FileNotFoundError, match="classes file"):
        datamodule(root, classes_file="nope.txt")
    with pytest.raises(ValueError, match="repeat_aug=3 must be >= 1 and divide batch_size=2"):
        datamodule(root, repeat_aug=3)
    with pytest.raises(ValueError, match="1 outside train mode"):
        VideoDataset(root, dataset["manifests"]["val"], "val", repeat_aug=2, clip=SMALL)


def test_manifest_paths_outside_the_root_need_an_opt_in(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset["root"], root)
    outside = tmp_path / "elsewhere.mp4"
    shutil.copy(root / dataset["videos"]["val"][0][0], outside)
    (root / "escape.txt").write_text(f"../elsewhere.mp4 0\n{outside} 1\n")
    with pytest.raises(ValueError, match=r"escape.txt:1: '../elsewhere.mp4' is outside the dataset root"):
        datamodule(root, val_manifest="escape.txt").setup("validate")
    dm = datamodule(root, val_manifest="escape.txt", allow_outside_root=True)
    dm.setup("validate")
    assert len(dm.val_set) == 2 and dm.val_set[0]["video"].shape == (3, 4, 40, 40)


def test_datamodule_from_jsonargparse(dataset):
    parser = ArgumentParser()
    parser.add_class_arguments(KineticsDataModule, "data")
    config = parser.parse_args(["--data.root", str(dataset["root"]), "--data.batch_size", "4",
                                "--data.test_manifest", "val.txt"])  # fmt: skip
    dm = parser.instantiate_classes(config).data
    assert isinstance(dm, KineticsDataModule)
    assert (dm.batch_size, dm.num_classes, dm.test_manifest) == (4, 2, "val.txt")
