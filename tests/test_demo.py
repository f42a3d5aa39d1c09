"""videonorm demo, reduced (a smaller task, one epoch, two batch sizes; the same code path): data, the study's runs
side by side, the comparison with its verdict and plots."""

from __future__ import annotations

import csv

import matplotlib.image
import pytest
import yaml

from videonorm import demo
from videonorm.cli import main as videonorm
from videonorm.results.runs import load_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_study_end_to_end_then_rerun_reuses_the_data(tmp_path, wandb_offline, capfd):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--classes", "3", "--per-class", "6", "--epochs", "1", "--batches", "4", "2",
            "--seeds", "0", "1", "--jobs", "2", "--", "--trainer.check_val_every_n_epoch", "1"]
    assert videonorm(["demo", *args]) == 0
    printed, errors = capfd.readouterr()  # file descriptors: the spawned runs' output too
    assert "FutureWarning" not in errors  # the entry point's dependency filters reach the spawned runs

    # data: kinetics-prep's manifests and class list, every listed video present
    data = out / "data"
    classes = (data / "classes.txt").read_text().split()
    assert len(classes) == 3
    videos = {}
    for split in ("train", "val", "test"):
        lines = (data / f"{split}.txt").read_text().splitlines()
        assert lines, split
        for line in lines:
            path, label = line.rsplit(" ", 1)
            assert (data / path).is_file() and 0 <= int(label) < 3
        videos[split] = {line.rsplit(" ", 1)[0] for line in lines}
    assert not (videos["train"] & videos["val"] or videos["train"] & videos["test"] or videos["val"] & videos["test"])

    # the study: BN and GN x 4 and 2 clips per device x 2 seeds, each with val and video-level test metrics
    runs, errors = load_runs([str(out / "runs")])
    assert errors == []
    expected = {f"i3d_r14-{norm}-w16-b{b}-8x2{'-s1' if s else ''}" for norm in ("bn", "gn-g4") for b in (4, 2)
                for s in (0, 1)}
    assert {r.name for r in runs} == expected
    for run in runs:
        assert 0.0 <= run.summary["test/top1"] <= run.summary["test/top5"] <= 1.0, run.name
        assert run.config["data.test_manifest"] == "test.txt" and run.config["data.val_manifest"] == "val.txt"
        assert run.config["model.lr"] == pytest.approx(0.03 * run.config["data.batch_size"] / 16)  # lr.yaml, scaled
        assert any("val/top1" in row for row in run.history), run.name
        assert f"{run.name}: test top-1 / top-5 = {100 * run.summary['test/top1']:.1f}" in printed
    assert len(list((out / "runs" / "logs").glob("*.log"))) == 8  # runs side by side log to files

    # the comparison: 4 cells of 2 seeds (mean ± SE), a verdict per norm, valid non-trivial PNGs
    compare_dir = out / "compare"
    with open(compare_dir / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {int(r["n"]) for r in rows} == {2} and all(r["top1_se"] != "" for r in rows)
    assert "| BN |" in printed and "| GN (G=4) |" in printed and "(n=2)" in printed
    assert "## Does top-1 change with clips per device?" in printed
    for norm in ("BN", "GN (G=4)"):
        verdict = next(line for line in printed.splitlines() if line.startswith(f"- {norm}, 8f x2: top-1 at 4 -> 2"))
        assert any(call in verdict for call in ("drops (beyond 2 SE)", "rises (beyond 2 SE)", "inconclusive"))
    for png in ("val_error_curves.png", "top1_vs_batch.png"):
        path = compare_dir / png
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
        assert matplotlib.image.imread(path).std() > 0  # not a blank image

    # a rerun reuses the prepared data (nothing re-encoded) and the finished runs
    mtimes = {p: p.stat().st_mtime_ns for p in (data / "videos").rglob("*.mp4")}
    run_dir = out / "runs" / "demo" / "i3d_r14-gn-g4-w16-b2-8x2-s1"
    record = (run_dir / "record.jsonl").read_bytes()
    assert videonorm(["demo", *args[:-5], "--jobs", "1", "--norms", "gn", "--batches", "2", "--seeds", "1"]) == 0
    printed = capfd.readouterr().out
    assert "reusing prepared data" in printed and "another recipe" not in printed
    assert {p: p.stat().st_mtime_ns for p in (data / "videos").rglob("*.mp4")} == mtimes
    assert (run_dir / "record.jsonl").read_bytes()[:len(record)] == record  # re-tested, not retrained
    # ... but not a run of another recipe: asked for another lr, the demo trains a new run beside it and says so
    assert videonorm(["demo", *args[:-5], "--jobs", "1", "--norms", "gn", "--batches", "2", "--seeds", "1", "--lr", "0.01"]) == 0
    printed = capfd.readouterr().out
    assert f"{run_dir} holds a run of another recipe (model.lr 0.00375 (asked: 0.00125))" in printed
    (new,) = [p for p in run_dir.parent.glob("i3d_r14-gn-g4-w16-b2-8x2-s1-r*")]
    assert f"{new.name}: test top-1 / top-5" in printed
    # and data of other settings is not taken for the asked one
    with pytest.raises(SystemExit, match="holds demo data made with classes 3 \\(asked: 4\\)"):
        videonorm(["demo", "--out", str(out), "--classes", "4", "--per-class", "6"])


def test_calibration_runs_the_protocol_on_validation_and_the_study_uses_its_rates(tmp_path, wandb_offline, capfd):
    """--calibrate: every rate of the grid x 2 seeds at the largest batch, fit and validated only (the test split is
    never evaluated), the table, and lr.yaml, which a study then takes with --lr-table."""
    out = tmp_path / "demo"
    common = ["--out", str(out), "--classes", "2", "--per-class", "6", "--epochs", "1", "--norms", "gn",
              "--batches", "4", "2", "--jobs", "2"]
    with pytest.raises(SystemExit, match="a run of 1 epochs that validates every 2 does not validate its last"):
        videonorm(["demo", *common, "--calibrate"])
    common += ["--", "--trainer.check_val_every_n_epoch", "1"]
    assert videonorm(["demo", *common[:-3], "--calibrate", *common[-3:]]) == 0
    printed = capfd.readouterr().out
    cal = out / "calibration"
    rows = list(csv.DictReader((cal / "calibration.csv").open()))
    rates = sorted({float(r["lr_per_16_clips"]) for r in rows})
    assert {0.003, 0.01, 0.03} <= set(rates) and len(rows) == 2 * len(rates)
    chosen = {float(r["lr_per_16_clips"]) for r in rows if r["chosen"] == "1"}
    assert len(chosen) == 1 and yaml.safe_load((cal / "lr.yaml").read_text()) == {"gn": chosen.pop()}
    means = {lr: sum(float(r["val_top1"]) for r in rows if float(r["lr_per_16_clips"]) == lr) / 2 for lr in rates}
    assert means[yaml.safe_load((cal / "lr.yaml").read_text())["gn"]] == max(means.values())
    runs, _ = load_runs([str(cal / "runs")])
    assert len(runs) == len(rows)
    for run in runs:  # fit at the largest batch, validated, never tested
        assert run.config["data.batch_size"] == 4 and run.group == "demo-calibration"
        assert not any(key.startswith("test/") for row in run.history for key in row)
    assert not list((cal / "runs").rglob("config_test.yaml"))
    assert "| lr per 16 clips" in printed and "**chosen**" in printed
    # the study with those rates
    assert videonorm(["demo", *common[:-3], "--seeds", "0", "--lr-table", str(cal / "lr.yaml"), *common[-3:]]) == 0
    (run,) = [r for r in load_runs([str(out / "runs")])[0] if r.config["data.batch_size"] == 2]
    assert run.config["model.lr"] == pytest.approx(yaml.safe_load((cal / "lr.yaml").read_text())["gn"] * 2 / 16)


def test_calibration_protocol_grows_the_grid_at_an_edge_and_breaks_ties_low():
    """Step 4 and 5 of the protocol on known scores: a norm peaking past the grid's top gets 0.1 (and no more once
    inside); one peaking inside gets nothing; equal scores choose the smaller rate."""
    import math

    from videonorm.calibrate import calibrate

    peaks = {"up": 0.1, "in": 0.01, "flat": None}

    def run_cells(cells):
        return [50.0 if peaks[n] is None else 80 - 10 * abs(math.log10(lr / peaks[n])) + seed for n, lr, seed in cells]

    cal = calibrate(["up", "in", "flat"], 16, run_cells)
    # up: 0.03 is the grid's top, so 0.1, the new top, so 0.3, which is worse: 0.1 is inside; flat: every tie goes
    # to the smallest rate, an edge every time, until the two steps the protocol allows are spent
    assert cal.chosen == {"up": 0.1, "in": 0.01, "flat": 0.0003}
    assert cal.extended == {"up": [0.1, 0.3], "flat": [0.001, 0.0003]}
    assert cal.estimate("in", 0.01).n == 2 and cal.estimate("in", 0.01).mean == pytest.approx(80.5)


def test_grids():
    assert demo.DEFAULT_GRID.cells()[:2] == [("bn", 16, 0), ("gn", 16, 0)]
    assert len(demo.DEFAULT_GRID.cells()) == 2 * 3 * 2 and min(demo.DEFAULT_GRID.batches) == 2
    assert max(demo.DEFAULT_GRID.batches) / min(demo.DEFAULT_GRID.batches) >= 8
    assert set(demo.DEFAULT_GRID.norms) < set(demo.FULL_GRID.norms) and 1 in demo.FULL_GRID.batches


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as info:
        videonorm(["demo", "--help"])
    assert info.value.code == 0 and "--full" in capsys.readouterr().out
