"""videonorm demo, reduced (a smaller task, one epoch, two batch sizes; the same code path): data, the study's runs
side by side, the comparison with its verdict and plots."""

from __future__ import annotations

import csv

import matplotlib.image
import pytest

from videonorm import demo
from videonorm.cli import main as videonorm
from videonorm.results.runs import load_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_study_end_to_end_then_rerun_reuses_the_data(tmp_path, wandb_offline, capfd):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--classes", "3", "--per-class", "4", "--epochs", "1", "--batches", "4", "2",
            "--seeds", "0", "1", "--jobs", "2", "--", "--trainer.check_val_every_n_epoch", "1"]
    assert videonorm(["demo", *args]) == 0
    printed, errors = capfd.readouterr()  # file descriptors: the spawned runs' output too
    assert "FutureWarning" not in errors  # the entry point's dependency filters reach the spawned runs

    # data: kinetics-prep's manifests and class list, every listed video present
    data = out / "data"
    classes = (data / "classes.txt").read_text().split()
    assert len(classes) == 3
    for split in ("train", "val"):
        lines = (data / f"{split}.txt").read_text().splitlines()
        assert lines, split
        for line in lines:
            path, label = line.rsplit(" ", 1)
            assert (data / path).is_file() and 0 <= int(label) < 3

    # the study: BN and GN x 4 and 2 clips per device x 2 seeds, each with val and video-level test metrics
    runs, errors = load_runs([str(out / "runs")])
    assert errors == []
    expected = {f"i3d_r14-{norm}-w16-b{b}-8x2{'-s1' if s else ''}" for norm in ("bn", "gn-g4") for b in (4, 2)
                for s in (0, 1)}
    assert {r.name for r in runs} == expected
    for run in runs:
        assert 0.0 <= run.summary["test/top1"] <= run.summary["test/top5"] <= 1.0, run.name
        assert any("val/top1" in row for row in run.history), run.name
        assert f"{run.name}: test top-1 / top-5 = {100 * run.summary['test/top1']:.1f}" in printed
    assert len(list((out / "runs" / "demo").glob("*.log"))) == 8  # runs side by side log to files

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
    assert videonorm(["demo", *args[:-5], "--jobs", "1", "--norms", "gn", "--batches", "2", "--seeds", "1"]) == 0
    assert "reusing prepared data" in capfd.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (data / "videos").rglob("*.mp4")} == mtimes


def test_grids():
    assert demo.DEFAULT_GRID.cells()[:2] == [("bn", 16, 0), ("gn", 16, 0)]
    assert len(demo.DEFAULT_GRID.cells()) == 2 * 3 * 2 and min(demo.DEFAULT_GRID.batches) == 2
    assert max(demo.DEFAULT_GRID.batches) / min(demo.DEFAULT_GRID.batches) >= 8
    assert set(demo.DEFAULT_GRID.norms) < set(demo.FULL_GRID.norms) and 1 in demo.FULL_GRID.batches


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as info:
        videonorm(["demo", "--help"])
    assert info.value.code == 0 and "--full" in capsys.readouterr().out
