"""``videonorm predict`` on real tiny videos with a checkpoint of a real ``videonorm fit``: per-video top-5 from the
softmax averaged over the test views (checked against the test data path), broken files listed, not fatal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.videos import make_dataset, write_not_a_video
from tests.wandb_files import find_offline_runs, read_offline_run
from videonorm.cli import main
from videonorm.data.dataset import VideoDataset
from videonorm.data.manifest import manifest_text
from videonorm.predict import load_checkpoint
from videonorm.train.module import VideoClassifier

DEMO = Path(__file__).resolve().parents[1] / "videonorm" / "configs" / "demo"


@pytest.fixture(autouse=True)
def _offline(wandb_offline):  # every test here: W&B offline in its tmp_path (conftest)
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A GN demo model fit for 2 epochs on 3 classes (test setting: 2 clips x 3 crops)."""
    root = tmp_path_factory.mktemp("predict")
    # 25 frames: the last test window starts at 9 with window_align 1 and at 8 with the demo's window_align 2
    data = make_dataset(root / "data", num_classes=3, per_class=4, num_frames=25)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DIR", str(root / "wandb_home"))
        assert main(["fit", "--config", str(DEMO / "b4_8x2.yaml"), "--model.net.norm", "gn", "--data.root",
                     str(data["root"]), "--trainer.default_root_dir", str(root / "runs"), "--trainer.max_epochs", "2",
                     "--trainer.enable_progress_bar", "false", "--model.lr", "0.05", "--data.test_crops", "3"]) == 0
    ckpt = root / "runs" / "demo" / "i3d_r14-gn-g4-w16-b4-8x2" / "checkpoints" / "last.ckpt"
    return {"ckpt": ckpt, "data": data}


def reference_probs(ckpt: Path, data: dict, rel_paths: list[str], clips: int = 2, crops: int = 3) -> torch.Tensor:
    """(N, C) class probabilities the way `videonorm test` computes them: the test dataset's views (same sampling and
    crops), the model loaded by Lightning, softmax averaged over each video's views."""
    model = VideoClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    from videonorm.data.datamodule import KineticsDataModule

    dm = KineticsDataModule(str(data["root"]), num_frames=8, sampling_rate=2, test_scale=64, test_crop_size=64,
                            test_clips=clips, test_crops=crops, window_align=2)  # the demo configs' values
    ds = VideoDataset(data["root"], [(p, 0) for p in rel_paths], "test", clip=dm.clip, decoder="pyav")
    views = ds.views_per_video
    with torch.no_grad():
        probs = torch.stack([model(model.on_after_batch_transfer({"video": ds[i]["video"][None]}, 0)["video"])
                             .softmax(1)[0] for i in range(len(ds))])
    return probs.view(len(rel_paths), views, -1).mean(1)


def test_predict_writes_top5_per_video_and_lists_broken_files(trained, tmp_path, capsys):
    data, videos = trained["data"], [rel for rel, _ in trained["data"]["videos"]["val"][::4]]  # one per class
    broken = write_not_a_video(tmp_path / "notes.mp4")
    missing = tmp_path / "gone.mp4"
    out = tmp_path / "out"
    args = ["predict", str(trained["ckpt"]), *(str(data["root"] / v) for v in videos), str(broken), str(missing),
            "--out", str(out), "--workers", "0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    expected = reference_probs(trained["ckpt"], data, videos)
    result = json.loads((out / "predictions.json").read_text())
    assert result["settings"]["views_per_video"] == 6 and result["settings"]["clip"]["test_clips"] == 2
    assert [v["path"] for v in result["videos"]] == [str(data["root"] / v) for v in videos]
    classes = data["classes"]
    for video, probs in zip(result["videos"], expected):
        top = probs.topk(3)
        assert video["views"] == 6
        assert [t["class"] for t in video["top"]] == [classes[i] for i in top.indices]
        assert [t["prob"] for t in video["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    failed = {f["path"]: f["reason"] for f in result["failed"]}
    assert set(failed) == {str(broken), str(missing)} and failed[str(missing)] == "no such file"
    with (out / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(data["root"] / v) for v in videos] + [str(broken), str(missing)]
    assert list(rows[0])[:4] == ["path", "label", "top1_class", "top1_prob"] and "top3_prob" in rows[0]
    for row, video in zip(rows, result["videos"]):
        assert (row["top1_class"], float(row["top1_prob"])) == (video["top"][0]["class"],
                                                                 pytest.approx(video["top"][0]["prob"], abs=1e-6))
    assert rows[-1]["error"] == "no such file" and rows[-1]["top1_class"] == ""
    # the printed table: a row per video, then the files that could not be decoded, with the reasons
    for video in result["videos"]:
        row = f"  {video['top'][0]['class']} {video['top'][0]['prob']:.2f}, {video['top'][1]['class']}"
        assert any(line.startswith("...") and video["path"].endswith(line.split()[0][3:]) and row in line
                   for line in printed.splitlines())  # paths longer than 48 characters keep their end
    assert f"Not decodable (2):\n  {broken}: {failed[str(broken)]}\n  {missing}: no such file" in printed
    assert "3 video(s) predicted (2 clip(s) x 3 crop(s) each), 2 not decodable" in printed


def test_predict_a_manifest_labelled_or_not(trained, tmp_path, capsys):
    data = trained["data"]
    val = data["videos"]["val"][::2]  # 2 videos per class
    unlabelled = tmp_path / "test.txt"  # e.g. Kinetics' unlabelled test split: paths alone
    unlabelled.write_text(manifest_text([(rel, None) for rel, _ in val]))
    one_view = ["--clips", "1", "--crops", "1", "--workers", "0"]
    assert main(["predict", str(trained["ckpt"]), "--manifest", str(unlabelled), "--root", str(data["root"]),
                 "--out", str(tmp_path / "u"), *one_view]) == 0
    capsys.readouterr()
    unlabelled_result = json.loads((tmp_path / "u" / "predictions.json").read_text())
    assert len(unlabelled_result["videos"]) == len(val) and unlabelled_result["settings"]["views_per_video"] == 1
    assert all("label" not in v for v in unlabelled_result["videos"])

    labelled = data["root"] / "some_val.txt"  # paths relative to the manifest's folder (the default --root)
    labelled.write_text(manifest_text(val))
    assert main(["predict", str(trained["ckpt"]), "--manifest", str(labelled), "--out", str(tmp_path / "l"),
                 *one_view]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "l" / "predictions.json").read_text())
    probs = reference_probs(trained["ckpt"], data, [rel for rel, _ in val], clips=1, crops=1)
    labels = torch.tensor([label for _, label in val])
    top1 = (probs.argmax(1) == labels).double().mean().item()
    top3 = (probs.topk(3).indices == labels[:, None]).any(1).double().mean().item()
    assert f"top-1 / top-5 over the {len(val)} labelled videos: {100 * top1:.1f} / {100 * top3:.1f} %" in printed
    assert [v["label"] for v in result["videos"]] == [data["classes"][label] for _, label in val]
    assert [v["top"] for v in result["videos"]] == [v["top"] for v in unlabelled_result["videos"]]


def test_predict_on_a_non_video_file_says_so_in_one_line(trained, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes, not a video\n")
    assert main(["predict", str(trained["ckpt"]), str(notes), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no video could be decoded ({notes}: ")
    assert not (tmp_path / "out").exists()  # nothing half written


def test_checkpoint_without_metadata_is_a_clear_error(trained, tmp_path, capsys):
    """Every checkpoint `videonorm fit` saves holds the class names and clip settings; one without them (another
    tool's, or from before they were stored) is refused in one line."""
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    assert ckpt["videonorm"]["classes"] == trained["data"]["classes"]
    del ckpt["videonorm"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    video = str(trained["data"]["root"] / trained["data"]["videos"]["val"][0][0])
    assert main(["predict", str(old), video, "--out", str(tmp_path / "out"), "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {old}: the checkpoint has no class names or clip settings (it was not saved by "
                   "`videonorm fit`, or by a version before they were stored); predict needs them")
    assert not (tmp_path / "out").exists()


class _Payload:
    """Unpickling this runs code (it touches a marker file): what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, crafted)
    assert main(["predict", str(crafted), str(tmp_path / "x.mp4")]) == 1
    assert f"error: {crafted}: not a videonorm checkpoint (UnpicklingError" in capsys.readouterr().err
    assert not marker.exists()


def test_predict_logs_a_wandb_run_of_job_type_predict(trained, tmp_path, capsys):
    video = str(trained["data"]["root"] / trained["data"]["videos"]["val"][0][0])
    out = tmp_path / "out"
    assert main(["predict", str(trained["ckpt"]), video, str(tmp_path / "gone.mp4"), "--out", str(out),
                 "--workers", "0", "--wandb"]) == 0
    assert f"wandb sync {out / 'wandb'}" in capsys.readouterr().out
    (run_file,) = find_offline_runs(out)
    run = read_offline_run(run_file)
    assert run.job_type == "predict" and run.complete
    assert (run.summary["predict/videos"], run.summary["predict/failed"]) == (1, 1)
    assert run.config["checkpoint"] == str(trained["ckpt"].resolve()) and run.config["clip.test_clips"] == 2


def test_checkpoints_written_before_the_model_spec_still_load(trained, tmp_path):
    """A checkpoint whose hyperparameters hold the spec fields flat (model.norm, ..., before model.net existed) is
    read by `predict` and by `videonorm test`, as the same network."""
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["norm"] == "gn"
    legacy = {**{k: v for k, v in ckpt["hyper_parameters"].items() if k != "net"}, **ckpt["hyper_parameters"]["net"]}
    old = tmp_path / "old.ckpt"
    torch.save({**ckpt, "hyper_parameters": legacy}, old)
    loaded = load_checkpoint(old)
    assert loaded.model.net.norm == "gn" and loaded.model.net.norm_groups == 4 and loaded.model.net.width == 16
    data = trained["data"]
    code = main(["test", "--config", str(DEMO / "b4_8x2.yaml"), "--data.root", str(data["root"]),
                 "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
                 "--ckpt_path", str(old)])
    assert code == 0
    tested = yaml.safe_load(next((tmp_path / "runs").rglob("config_test.yaml")).read_text())
    assert tested["model"]["net"]["norm"] == "gn"  # from the checkpoint, over the config's bn
