"""The real Lightning CLI on tiny real videos: fit writes checkpoints and an offline W&B run, resume continues,
validate/test print top-1/top-5."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from tests.videos import make_dataset
from videonorm.cli import main
from videonorm.results.runs import find_offline_runs, read_offline_run
from videonorm.train.schedule import EpochSchedule

DEMO = Path(__file__).resolve().parents[1] / "videonorm" / "configs" / "demo"
TRAIN_VIDEOS, BATCH = 12, 4  # 3 classes x 4 videos, 4 clips per step: 3 steps per epoch


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, num_classes=3, per_class=4, num_frames=24)
    return root


@pytest.fixture(autouse=True)
def wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))


def _run(subcommand: str, norm: str, dataset: Path, runs: Path, *extra: str) -> None:
    args = [
        subcommand,
        "--config", str(DEMO / f"b{BATCH}_8x2.yaml"), "--model.norm", norm,
        "--data.root", str(dataset),
        "--trainer.default_root_dir", str(runs),
        "--trainer.enable_progress_bar", "false",
        "--precise_bn.num_batches", "2",
        # the demo validates every other epoch and logs every 10 steps; these tests look at every epoch and step
        "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
        *extra,
    ]
    assert main(args) == 0


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
    assert not torch.equal(first["state_dict"]["model.blocks.0.conv.weight"], resumed["state_dict"]["model.blocks.0.conv.weight"])

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
    assert (config["model.norm"], config["model.norm_groups"], config["model.width"]) == ("bn", 4, 16)
    assert (config["data.batch_size"], config["data.num_frames"], config["data.sampling_rate"]) == (4, 8, 2)
    assert (config["trainer.devices"], config["trainer.num_nodes"], config["seed_everything"]) == (1, 1, 0)
    assert config["effective_batch_size"] == 4 and config["model.lr"] == 0.02 and config["model.num_classes"] == 3
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
