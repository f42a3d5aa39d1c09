"""Every YAML under configs/ parses through the real CLI and says what its file name says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from videonorm.cli import main
from videonorm.models.norm import NORM_NAMES
from videonorm.train.module import VideoClassifier


def _is_wandb_sweep(path: Path) -> bool:
    """W&B sweep specs (configs/sweeps/, tested with the sweeps) are not Lightning CLI configs."""
    data = yaml.safe_load(path.read_text())
    return isinstance(data, dict) and {"program", "parameters"} <= data.keys()


ROOT = Path(__file__).resolve().parents[1] / "videonorm" / "configs"
# the demo's learning-rate table (norm -> lr per 16 clips, tested in tests/test_demo.py) is data, not a CLI config
LR_TABLE = ROOT / "demo" / "lr.yaml"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if not _is_wandb_sweep(p) and p != LR_TABLE)
# <...>_<norm>_b<clips per device>_<frames>x<sampling rate>.yaml; the demo's batch configs leave the norm to the
# command line: b<clips per device>_<frames>x<sampling rate>.yaml
NORMS = "|".join(sorted(NORM_NAMES, key=len, reverse=True))  # longest first: gn_ws before gn
NAME = re.compile(rf"(?:^|_)(?:(?P<norm>{NORMS})_)?b(?P<batch>\d+)_(?P<frames>\d+)x(?P<rate>\d+)\.yaml$")
# linear scaling rule per config directory: (lr, for this many clips in total)
LR_RULE = {"kinetics400": (0.01, 64), "demo": (0.03, 16)}


def _print_config(path: Path, capsys, *extra: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--data.root", "/nonexistent/dataset", *extra, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_configs_exist():
    names = {p.relative_to(ROOT).as_posix() for p in CONFIGS}
    for norm in ("bn", "gn"):
        for cell in ("b8_32x2", "b4_32x2", "b4_64x1"):
            assert f"kinetics400/i3d_r50_{norm}_{cell}.yaml" in names
    assert "kinetics400/base.yaml" in names and "demo/base.yaml" in names
    assert {f"demo/b{b}_8x2.yaml" for b in (16, 4, 2, 1)} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_parses_and_matches_its_name(path, capsys):
    cfg = _print_config(path, capsys)
    assert cfg["trainer"]["sync_batchnorm"] is False
    assert cfg["checkpoint"]["monitor"] == "val/top1" and cfg["checkpoint"]["mode"] == "max"
    assert cfg["checkpoint"]["save_last"] is False  # last.ckpt comes from last_checkpoint, every epoch
    last = cfg["last_checkpoint"]
    assert (last["monitor"], last["filename"], last["save_top_k"]) == (None, "last", 1)
    assert cfg["trainer"]["logger"]["class_path"] == "videonorm.train.logger.WandbRunLogger"
    grid = path.relative_to(ROOT).parts[0]  # kinetics400/extra/ cells belong to the kinetics400 grid
    assert cfg["trainer"]["logger"]["init_args"]["group"] == grid
    match = NAME.search(path.name)
    if path.name == "base.yaml":
        assert match is None and cfg.get("base") is None
        return
    assert match, f"{path.name}: name does not say <norm>_b<batch>_<frames>x<rate>"
    assert cfg["base"] is None  # the printed config is complete: usable as a --config from anywhere
    assert "base: base.yaml" in path.read_text() or "base: ../base.yaml" in path.read_text()
    assert cfg["model"]["net"]["norm"] == (match["norm"] or "bn")
    assert cfg["data"]["batch_size"] == int(match["batch"])
    assert cfg["data"]["num_frames"] == int(match["frames"])
    assert cfg["data"]["sampling_rate"] == int(match["rate"])
    base_lr, per_clips = LR_RULE[grid]
    trainer = cfg["trainer"]
    clips = cfg["data"]["batch_size"] * trainer["devices"] * trainer["num_nodes"]
    assert cfg["model"]["lr"] == pytest.approx(base_lr * clips / per_clips)
    # the comment does the same arithmetic
    assert re.search(rf"{clips} clips -> lr .*= {cfg['model']['lr']}\b", path.read_text())


@pytest.mark.parametrize("folder", ["demo", "kinetics400"])
def test_every_norm_scheme_builds_from_every_config_folder(folder, capsys):
    """Every scheme builds with a folder's model settings (width, groups); the experiment files change only norm
    and lr (``test_config_parses_and_matches_its_name``). The scheme arguments come through the CLI."""
    path = next(p for p in CONFIGS if p.parent.name == folder and p.name == "base.yaml")
    model = _print_config(path, capsys, "--model.net.norm", "syncbn", "--model.net.norm_sync_group", "2",
                          "--model.net.norm_options", '{"warmup_steps": 10}')["model"]  # fmt: skip
    net = model["net"]
    assert (net["norm"], net["norm_sync_group"], net["norm_options"]) == ("syncbn", 2, {"warmup_steps": 10})
    for norm in NORM_NAMES:
        options = {"warmup_steps": 10} if norm == "brn" else None
        module = VideoClassifier(**{**model, "net": {**net, "norm": norm, "norm_options": options}})
        assert module.hparams.net["norm"] == norm and sum(p.numel() for p in module.parameters()) > 0


def test_kinetics_experiment_shows_merged_base(capsys):
    path = next(p for p in CONFIGS if p.name == "i3d_r50_gn_b4_32x2.yaml")
    cfg = _print_config(path, capsys)
    model, data, trainer = cfg["model"], cfg["data"], cfg["trainer"]
    assert (model["net"]["norm"], model["net"]["norm_groups"], model["lr"]) == ("gn", 32, 0.005)
    assert (data["batch_size"], data["num_frames"], data["sampling_rate"]) == (4, 32, 2)
    # from base.yaml: the paper's recipe
    assert (model["net"]["depth"], model["net"]["width"], model["net"]["dropout"], model["weight_decay"]) == (
        50, 64, 0.5, 1e-4)
    assert model["norm_weight_decay"] == 0.0 and model["net"]["zero_init_residual"] is True
    assert model["lr_steps"] == [40.92, 81.83] and trainer["max_epochs"] == 109
    assert (data["train_min_scale"], data["train_max_scale"], data["crop_size"]) == (256, 320, 224)
    assert (data["test_clips"], data["test_crops"], data["test_scale"], data["test_crop_size"]) == (10, 3, 256, 256)
    assert (trainer["devices"], trainer["precision"], trainer["strategy"]) == (8, "32-true", "ddp")  # fp32: the paper's
    assert cfg["precise_bn"]["num_batches"] == 200
    # command-line overrides still win over both files
    cfg = _print_config(path, capsys, "--model.lr", "0.02", "--trainer.num_nodes", "2", "--trainer.precision",
                        "bf16-mixed")  # fmt: skip
    assert cfg["model"]["lr"] == 0.02 and cfg["trainer"]["num_nodes"] == 2 and cfg["model"]["net"]["norm"] == "gn"
    assert cfg["trainer"]["precision"] == "bf16-mixed"  # ours, one flag away


def test_missing_base_is_a_clear_error(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("base: nowhere.yaml\nmodel:\n  norm: gn\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(exp), "--print_config"])
    assert "nowhere.yaml" in str(exit_info.value.code) and str(exp) in str(exit_info.value.code)


def test_shipped_configs_by_name_from_any_directory_and_print_config_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no checkout here
    cfg = _print_config("kinetics400/i3d_r50_gn_b4_32x2", capsys)  # a shipped name, .yaml optional
    assert (cfg["model"]["net"]["norm"], cfg["data"]["batch_size"]) == ("gn", 4)
    mine = tmp_path / "elsewhere" / "my.yaml"
    mine.parent.mkdir()
    mine.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(mine.parent.parent)
    again = _print_config(mine, capsys)  # the printed config works as a --config, from another directory
    assert again == cfg


def test_a_config_name_that_does_not_exist_lists_the_shipped_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "kinetics400/i3d_r50_gn_b3_32x2", "--print_config"])
    message = str(exit_info.value.code)
    assert "no such file, and no shipped config of that name" in message
    assert "kinetics400/i3d_r50_gn_b4_32x2.yaml" in message and "demo/b16_8x2.yaml" in message