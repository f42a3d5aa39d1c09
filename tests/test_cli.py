"""The real Lightning CLI on tiny real videos: fit writes checkpoints, the local record and an offline W&B run,
resume continues, validate/test print top-1/top-5; a diverged fit stops and is marked, a fit never overwrites a
run, skipped videos are listed, W&B summaries and the test report."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import pytest
import torch

from tests.videos import make_dataset
from tests.wandb_files import find_offline_runs, read_offline_run
from videonorm.cli import main
from videonorm.results.records import read_record_run
from videonorm.train.cli import run_lightning_cli
from videonorm.train.progress import ProgressBar
from videonorm.train.schedule import EpochSchedule

DEMO = Path(__file__).resolve().parents[1] / "videonorm" / "configs" / "demo"
TRAIN_VIDEOS, BATCH = 12, 4  # 3 classes x 4 videos, 4 clips per step: 3 steps per epoch


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, num_classes=3, per_class=4, num_frames=24)
    return root


@pytest.fixture(autouse=True)
def _offline(wandb_offline):  # every test here: W&B offline in its tmp_path (conftest)
    pass


def _args(norm: str, dataset: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "--config", str(DEMO / f"b{BATCH}_8x2.yaml"), "--model.net.norm", norm,
        "--data.root", str(dataset),
        "--trainer.default_root_dir", str(runs),
        "--trainer.enable_progress_bar", "false",
        "--precise_bn.num_batches", "2",
        # the demo validates every other epoch and logs every 10 steps; these tests look at every epoch and step
        "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
        *extra,
    ]


def _run(subcommand: str, norm: str, dataset: Path, runs: Path, *extra: str) -> None:
    assert main([subcommand, *_args(norm, dataset, runs, *extra)]) == 0


def test_fit_then_resume_continues_step_epoch_schedule_and_wandb_run(dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    schedule_args = ("--model.lr", "0.02", "--model.schedule", "step", "--model.lr_steps", "[1.5]",
                     "--model.warmup_epochs", "0.5")
    _run("fit", "bn", dataset, runs, "--trainer.max_epochs", "1", *schedule_args)
    run_dir = runs / "demo" / "i3d_r14-bn-w16-b4-8x2"
    ckpt_dir = run_dir / "checkpoints"
    assert (ckpt_dir / "last.ckpt").is_file() and (ckpt_dir / "best.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    steps = TRAIN_VIDEOS // BATCH
    first = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    epochs_done = lambda ckpt: ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]  # noqa: E731
    assert (epochs_done(first), first["global_step"]) == (1, steps)
    out = capsys.readouterr().out
    assert "wandb sync" in out and str(run_dir / "wandb") in out

    _run("fit", "bn", dataset, runs, "--trainer.max_epochs", "2", "--ckpt_path", "last", *schedule_args)
    resumed = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert (epochs_done(resumed), resumed["global_step"]) == (2, 2 * steps)
    assert resumed["lr_schedulers"][0]["last_epoch"] == 2 * steps  # the schedule went on, not restarted
    schedule = EpochSchedule(steps, "step", lr_steps=[1.5], warmup_epochs=0.5)
    lr = resumed["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.02 * schedule(2 * steps)) == pytest.approx(0.002)
    key = "model.blocks.0.conv.weight"
    assert not torch.equal(first["state_dict"][key], resumed["state_dict"][key])

    # one W&B run id across both fits; the resumed part logs epoch 1 only, from step `steps` on
    run_files = find_offline_runs(run_dir)
    assert len(run_files) == 2
    parts = sorted((read_offline_run(p) for p in run_files), key=lambda r: r.source)
    assert parts[0].run_id == parts[1].run_id == (run_dir / "wandb_run_id").read_text().strip()
    assert parts[0].name == "i3d_r14-bn-w16-b4-8x2" and parts[0].group == "demo"
    epochs = [{row["epoch"] for row in p.history if "epoch" in row} for p in parts]
    assert epochs == [{0}, {1}]
    assert min(row["trainer/global_step"] for row in parts[1].history if "train/loss" in row) == steps

    config = parts[1].config  # the contract with `videonorm compare`
    assert (config["model.net.norm"], config["model.net.norm_groups"], config["model.net.width"]) == ("bn", 4, 16)
    assert (config["data.batch_size"], config["data.num_frames"], config["data.sampling_rate"]) == (4, 8, 2)
    assert (config["trainer.devices"], config["trainer.num_nodes"], config["seed_everything"]) == (1, 1, 0)
    assert config["effective_batch_size"] == 4 and config["model.lr"] == 0.02 and config["model.net.num_classes"] == 3
    assert len(config["dataset.hash"]) == 12 and config["dataset.train.present"] == TRAIN_VIDEOS
    assert config["dataset.train.missing"] == 0
    for key in ("train/loss", "train/top1", "val/loss", "val/top1", "val/top5", "data/skipped_videos"):
        assert any(key in row for row in parts[1].history), key
    assert all(0.0 <= row["val/top1"] <= 1.0 for row in parts[1].history if "val/top1" in row)


def test_gn_fit_validate_test_print_top1_top5(dataset, tmp_path, capsys, caplog):
    runs = tmp_path / "runs"
    with caplog.at_level(logging.INFO):
        _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "1")
    run_dir = runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2"
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    messages = [r.getMessage() for r in caplog.records]
    assert any("GPU available" in m for m in messages)  # Lightning's own start-up lines still show ...
    assert not any("litlogger" in m for m in messages)  # ... but not its advertisement
    capsys.readouterr()

    _run("validate", "gn", dataset, runs, "--ckpt_path", "best")
    out = capsys.readouterr().out
    assert "val/top1" in out and "val/top5" in out

    _run("test", "gn", dataset, runs, "--ckpt_path", "last", "--data.test_clips", "2", "--data.test_crops", "3")
    out = capsys.readouterr().out
    assert "test/top1" in out and "test/top5" in out
    test_run = next(r for r in map(read_offline_run, find_offline_runs(run_dir)) if "test/top1" in r.summary)
    assert test_run.run_id == (run_dir / "wandb_run_id").read_text().strip()  # logged into the trained run
    assert test_run.summary["test/videos"] == 12 and test_run.summary["test/views_per_video"] == 6
    assert 0.0 <= test_run.summary["test/top1"] <= test_run.summary["test/top5"] <= 1.0
    assert (run_dir / "config_test.yaml").is_file() and (run_dir / "config_validate.yaml").is_file()


def test_last_ckpt_is_the_latest_epoch_even_when_val_does_not_improve(dataset, tmp_path):
    """Lightning >= 2.6 writes save_last's last.ckpt only beside a new best; ours is written every epoch."""
    runs = tmp_path / "runs"
    # lr 0 and GN: the weights, hence val top-1, never change, so the best stays epoch 0
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "3", "--model.lr", "0")
    ckpt_dir = runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2" / "checkpoints"
    load = lambda name: torch.load(ckpt_dir / name, map_location="cpu", weights_only=False)  # noqa: E731
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert load("best.ckpt")["epoch"] == 0
    last = load("last.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 3 * (TRAIN_VIDEOS // BATCH)


def test_fit_with_repeated_augmentation(dataset, tmp_path):
    runs = tmp_path / "runs"
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "1", "--data.repeat_aug", "2")
    last = torch.load(runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2-ra2" / "checkpoints" / "last.ckpt",
                      map_location="cpu", weights_only=False)
    # every video once per epoch, 2 videos x 2 clips per step: twice the steps of repeat_aug 1
    assert last["global_step"] == 2 * (TRAIN_VIDEOS // BATCH)


def test_sync_batchnorm_flag_is_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="sync_batchnorm"):
        _run("fit", "bn", dataset, tmp_path / "runs", "--trainer.sync_batchnorm", "true")


def test_wandb_mode_follows_env_and_credentials(monkeypatch, tmp_path):
    from videonorm.train.logger import WandbRunLogger, has_wandb_credentials, wandb_mode

    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert not has_wandb_credentials() and wandb_mode() == "offline"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "0" * 40 + "\n")
    netrc.chmod(0o600)
    assert has_wandb_credentials() and wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the environment wins over credentials
    assert wandb_mode() == "offline"
    # log_model needs an online run: dropped offline instead of failing (Lightning's WandbLogger raises)
    logger = WandbRunLogger(save_dir=str(tmp_path / "run"), log_model=True, group="g", tags=["t"])
    assert logger.mode == "offline" and logger._log_model is False
    assert logger._wandb_init["group"] == "g" and logger._wandb_init["tags"] == ["t"]
    assert (tmp_path / "run").is_dir()


def _ckpt_tensors(path: Path) -> list[torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    tensors = [t for t in ckpt["state_dict"].values() if t.is_floating_point()]
    tensors += [t for s in ckpt["optimizer_states"][0]["state"].values() for t in s.values() if torch.is_tensor(t)]
    return tensors


def test_diverged_fit_stops_is_marked_and_compare_leaves_it_out(dataset, tmp_path, capsys):
    """Issue 13.1: lr 1e6 used to exit 0 with NaN checkpoints, and compare averaged the run in at chance."""
    runs = tmp_path / "runs"
    _run("fit", "bn", dataset, runs, "--trainer.max_epochs", "1")  # a healthy run beside it
    run_dir = runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2"
    capsys.readouterr()
    # one good epoch at lr 0.005, then the step schedule multiplies it by 2e8: lr 1e6 from epoch 1 on
    explode = ("--model.schedule", "step", "--model.lr_steps", "[1]", "--model.lr_gamma", "2e8", "--model.lr", "0.005")
    assert main(["fit", *_args("gn", dataset, runs, "--trainer.max_epochs", "4", *explode)]) == 1
    err = capsys.readouterr().err
    record = read_record_run(run_dir)
    info = {k.split("/")[1]: v for k, v in record.summary.items() if k.startswith("diverged/")}
    assert record.summary["diverged"] is True and "diverged" in record.tags and not record.complete
    assert info["step"] > info["last_finite_step"] >= TRAIN_VIDEOS // BATCH  # after the good epoch
    assert not math.isfinite(info["loss"]) and math.isfinite(info["last_finite_loss"])
    assert (f"training diverged: loss {info['loss']} at step {info['step']} (epoch {info['epoch']}); the last finite "
            f"loss was {info['last_finite_loss']:.4g} at step {info['last_finite_step']}") in err
    assert "model.lr = 0.005" in err and "compare leaves it out" in err
    assert "its checkpoints (best.ckpt, last.ckpt) are from before the divergence" in err
    # no step with a NaN loss reached the weights: every checkpoint on disk is finite, from a finished epoch
    for name in ("last.ckpt", "best.ckpt"):
        assert all(torch.isfinite(t).all() for t in _ckpt_tensors(run_dir / "checkpoints" / name)), name
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == info["epoch"] - 1
    # W&B: the part that diverged carries the summary key and the tag
    part = max(map(read_offline_run, find_offline_runs(run_dir)), key=lambda r: len(r.tags))
    assert part.summary["diverged"] is True and "diverged" in part.tags and part.exit_code == 1

    out = tmp_path / "out"
    assert main(["compare", str(runs), "--out", str(out), "--metric", "val"]) == 0
    md = (out / "compare.md").read_text()
    rows = (out / "compare.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("bn,")  # the healthy run alone
    diverged = md.split("## Diverged (not compared)")[1]
    assert f"i3d_r14-gn-g4-w16-b4-8x2 ({record.run_id})" in diverged and f"at step {info['step']}" in diverged
    assert "| GN (G=4)" not in md  # not in the table

    with pytest.raises(SystemExit, match="holds a run that diverged"):  # resuming it would replay the same steps
        main(["fit", *_args("gn", dataset, runs, "--ckpt_path", "last", "--trainer.max_epochs", "4", *explode)])


def test_fit_into_an_existing_run_is_refused_and_nothing_is_touched(dataset, tmp_path, capsys):
    """Issue 13.7: a second fit without --ckpt_path used to overwrite last.ckpt and the stored W&B id."""
    runs = tmp_path / "runs"
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "1")
    run_dir = runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2"
    files = [run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt", run_dir / "wandb_run_id",
             run_dir / "record.jsonl", run_dir / "config.yaml"]
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    wandb_parts = set(run_dir.glob("wandb/offline-run-*"))
    with pytest.raises(SystemExit) as refused:
        main(["fit", *_args("gn", dataset, runs, "--trainer.max_epochs", "2")])
    message = str(refused.value)
    assert message.startswith(f"error: {run_dir} already holds a run (checkpoints/best.ckpt, checkpoints/last.ckpt, "
                              "record.jsonl)")
    assert "--ckpt_path last" in message and "--trainer.logger.init_args.name NAME" in message
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before
    assert set(run_dir.glob("wandb/offline-run-*")) == wandb_parts
    # the two ways out it offers both work
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "1", "--trainer.logger.init_args.name", "gn-again")
    assert (runs / "demo" / "gn-again" / "checkpoints" / "last.ckpt").is_file()
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1
    assert (run_dir / "wandb_run_id").read_bytes() == before[run_dir / "wandb_run_id"][0]


def test_skipped_videos_are_listed_with_reasons_at_the_end_and_saved(tmp_path, capsys):
    """Issue 13.13: a broken video in train and val (decoded in a DataLoader worker): its path and reason come out."""
    data = tmp_path / "data"
    make_dataset(data, num_classes=3, per_class=4, num_frames=24, broken=("not_a_video",))
    runs = tmp_path / "runs"
    _run("fit", "gn", data, runs, "--trainer.max_epochs", "1", "--data.max_skip_fraction", "0.5")
    run_dir = runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2"
    out = capsys.readouterr().out
    with (run_dir / "skipped_videos_fit.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["split"], Path(r["path"]).relative_to(data).as_posix()) for r in rows] == [
        ("train", "videos/train/broken_not_a_video.mp4"), ("val", "videos/val/broken_not_a_video.mp4")]
    assert all(r["reason"] for r in rows)
    assert f"Skipped videos (fit): 2, listed with the reasons in {run_dir / 'skipped_videos_fit.csv'}" in out
    for r in rows:
        assert f"  {r['split']:<5} {r['path']}: {r['reason']}" in out
    record = read_record_run(run_dir)  # the count is still logged beside the list
    assert sum(row.get("data/skipped_videos", 0) for row in record.history) >= 1

    _run("test", "gn", data, runs, "--ckpt_path", "last", "--data.max_skip_fraction", "0.5")
    assert f"Skipped videos (test): 1, listed with the reasons in {run_dir / 'skipped_videos_test.csv'}" in (
        capsys.readouterr().out)


def test_wandb_best_epoch_job_type_and_test_report(dataset, tmp_path):
    """Issue 16.4: val summaries are the best epoch (with the epoch), job types, and at test the per-class
    accuracy, the confusion matrix and the mean class accuracy (MMAction2's definition)."""
    runs = tmp_path / "runs"
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "3", "--model.lr", "0.05")
    _run("test", "gn", dataset, runs, "--ckpt_path", "last", "--data.test_clips", "2", "--data.test_crops", "1")
    run_dir = runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2"
    fit_part, test_part = sorted(map(read_offline_run, find_offline_runs(run_dir)), key=lambda r: r.source)
    assert fit_part.job_type == test_part.job_type == "train"  # one run: the test continues the trained run
    val = {row["epoch"]: row for row in fit_part.history if "val/top1" in row}
    best_epoch = max(val, key=lambda e: (val[e]["val/top1"], -e))  # the first of equal bests
    assert fit_part.summary["val/top1"] == {"max": max(r["val/top1"] for r in val.values())}
    assert fit_part.summary["val/top5"] == {"max": max(r["val/top5"] for r in val.values())}
    assert fit_part.summary["val/best_epoch"] == best_epoch
    assert fit_part.summary["val/best_top1"] == pytest.approx(val[best_epoch]["val/top1"])
    assert fit_part.summary["val/best_top5"] == pytest.approx(val[best_epoch]["val/top5"])

    with (run_dir / "test_confusion.csv").open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["true \\ predicted", "class_0", "class_1", "class_2"]
    confusion = torch.tensor([[int(x) for x in row[1:]] for row in table[1:]])
    assert int(confusion.sum()) == TRAIN_VIDEOS  # every val video once
    summary = test_part.summary
    assert summary["test/top1"] == pytest.approx(float(confusion.diag().sum() / confusion.sum()))
    # MMAction2's mean_class_accuracy: over the labels seen as truth or prediction, hits / count (0 if no count)
    seen = ((confusion.sum(0) + confusion.sum(1)) > 0).nonzero().flatten().tolist()
    hand = sum(float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else 0.0 for c in seen) / len(seen)
    assert summary["test/mean_class_acc"] == pytest.approx(hand)
    with (run_dir / "test_per_class.csv").open(newline="") as f:
        per_class = list(csv.DictReader(f))
    assert [(r["class"], int(r["videos"]), int(r["correct"])) for r in per_class] == [
        (f"class_{c}", int(confusion[c].sum()), int(confusion[c, c])) for c in range(3)]
    # W&B: the same per-class table, and the confusion matrix chart's table of its non-empty cells
    files = Path(test_part.source).parent / "files"
    logged = json.loads((files / summary["test/per_class.path"]).read_text())
    assert logged["columns"] == ["label", "class", "videos", "accuracy"]
    assert [row[:3] for row in logged["data"]] == [[c, f"class_{c}", int(confusion[c].sum())] for c in range(3)]
    assert summary["test/confusion_matrix_table.nrows"] == int((confusion > 0).sum())


def test_checkpoints_are_logged_as_artifacts_when_online(dataset, tmp_path, monkeypatch):
    """log_model (default on): best.ckpt as model-<id>:best, last.ckpt as model-<id>:latest. The logger is told it is
    online while wandb itself stays offline (WANDB_MODE), so the artifacts land in the .wandb file, not on a server."""
    runs = tmp_path / "runs"
    _run("fit", "gn", dataset, runs, "--trainer.max_epochs", "1", "--trainer.logger.init_args.offline", "false")
    (wandb_file,) = find_offline_runs(runs / "demo" / "i3d_r14-gn-g4-w16-b4-8x2")
    run = read_offline_run(wandb_file)
    artifacts, run_id = run.artifacts, run.run_id
    assert [(a["name"], a["type"], [c["path"] for c in a["manifest"]["contents"]], sorted(a["aliases"]))
            for a in artifacts] == [
        (f"model-{run_id}", "model", ["best.ckpt"], ["best", "latest"]),  # W&B moves "latest" on to the next
        (f"model-{run_id}", "model", ["last.ckpt"], ["latest"]),
    ]


def test_progress_bar_without_v_num(dataset, tmp_path):
    cli = run_lightning_cli(["--config", str(DEMO / "b4_8x2.yaml"), "--data.root", str(dataset),
                             "--trainer.default_root_dir", str(tmp_path / "runs")], run=False)
    bars = [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]
    assert len(bars) == 1 and cli.trainer.progress_bar_callback is bars[0]
    assert [type(lg).__name__ for lg in cli.trainer.loggers] == ["WandbRunLogger", "RunRecordLogger"]
