"""videonorm demo, reduced (fewer clips and epochs, the same code path): data, four runs, the comparison."""

from __future__ import annotations

import csv

import matplotlib.image
import pytest

from videonorm import demo
from videonorm.results.runs import load_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))


def test_demo_end_to_end_then_rerun_reuses_the_data(tmp_path, offline, capsys):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--classes", "3", "--per-class", "4", "--epochs", "1", "--jobs", "1"]
    assert demo.main(args) == 0
    printed = capsys.readouterr().out

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

    # four runs, each with validation and video-level test metrics in its W&B run
    runs, errors = load_runs([str(out / "runs")])
    assert errors == []
    names = sorted(r.name for r in runs)
    assert names == sorted(["i3d_r50-bn-w8-b8-8x2", "i3d_r50-gn-g4-w8-b8-8x2", "i3d_r50-bn-w8-b4-8x2",
                            "i3d_r50-gn-g4-w8-b4-8x2"])
    for run in runs:
        assert 0.0 <= run.summary["test/top1"] <= run.summary["test/top5"] <= 1.0, run.name
        assert any("val/top1" in row for row in run.history), run.name
        assert f"[demo] {run.name}: test top-1 / top-5 = {100 * run.summary['test/top1']:.1f}" in printed

    # the comparison: CSV rows for the four cells, Markdown printed, valid non-trivial PNGs
    compare_dir = out / "compare"
    with open(compare_dir / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert "| BN |" in printed and "| GN (G=4) |" in printed
    for png in ("val_error_curves.png", "top1_vs_batch.png"):
        path = compare_dir / png
        assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
        assert matplotlib.image.imread(path).std() > 0  # not a blank image

    # a rerun reuses the prepared data (nothing re-encoded) and trains only what is asked
    mtimes = {p: p.stat().st_mtime_ns for p in (data / "videos").rglob("*.mp4")}
    assert demo.main([*args, "--runs", "gn_b4_8x2"]) == 0
    assert "reusing prepared data" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (data / "videos").rglob("*.mp4")} == mtimes
