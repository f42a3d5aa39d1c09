"""videonorm compare: table, CSV, plots and the runs it leaves out.

Two sets of runs: (1) run records written here by the real ``RunRecordLogger`` following the logging contract of
``videonorm fit`` (exact known values: the table must show them); (2) runs from tiny real ``videonorm fit``
runs (BN and GN, two batch sizes) on real tiny videos: the table must show what those runs logged (as W&B's own
reader sees their W&B files).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
import torch
import yaml

from tests.test_runs import offline_wandb, write_record_run  # noqa: F401 - offline_wandb: autouse fixture
from tests.wandb_files import read_offline_run
from videonorm.cli import main as videonorm
from videonorm.identity import run_setting
from videonorm.results import comparison, paper, report
from videonorm.results.run_data import RunData

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


IMAGENET = {"bn": ("R50_IN1k.pkl", "a1b2c3d4e5f6"), "gn": ("R-50-GN.pkl", "0f9e8d7c6b5a")}


def kinetics_config(norm: str, batch: int, frames: int, rate: int, seed: int = 0, data: str = "k400-a") -> dict:
    """The config ``videonorm fit`` logs for a paper-setting run (flattened keys, see the W&B contract)."""
    source, digest = IMAGENET[norm]
    return {
        "model.net.arch": "i3d_resnet", "model.net.depth": 50, "model.net.width": 64, "model.net.norm": norm,
        "model.net.norm_groups": 32, "model.lr": 0.01 * batch / 8, "model.net.num_classes": 400,
        "model.pretrained_2d": f"/models/{source}", "init.source": source, "init.sha256": digest,
        "data.batch_size": batch, "data.num_frames": frames,
        "data.sampling_rate": rate, "trainer.devices": 8, "trainer.num_nodes": 1, "trainer.precision": "32-true",
        "seed_everything": seed,
        "world_size": 8, "effective_batch_size": 8 * batch, "dataset.hash": data, "dataset.val.txt.clips": 19881,
    }


def history(val: list[tuple[float, float]], test: tuple[float, float] | None) -> list[dict]:
    """Logged rows as Lightning writes them: train + val per epoch, then test."""
    rows = []
    for epoch, (top1, top5) in enumerate(val):
        rows.append({"train/loss": 3.0 - epoch, "train/top1": top1 / 2, "epoch": epoch,
                     "trainer/global_step": 10 * epoch + 9})
        rows.append({"val/loss": 2.0 - epoch / 10, "val/top1": top1, "val/top5": top5, "epoch": epoch,
                     "trainer/global_step": 10 * epoch + 9})
    if test is not None:
        rows.append({"test/top1": test[0], "test/top5": test[1], "epoch": len(val) - 1})
    return rows


# (norm, batch, frames, rate, seed) -> (val per epoch, test). The best val epoch is not the last one.
GRID = {
    ("bn", 8, 32, 2, 0): ([(0.50, 0.80), (0.70, 0.88), (0.65, 0.90)], (0.733, 0.906)),
    ("bn", 4, 32, 2, 0): ([(0.40, 0.70), (0.60, 0.85), (0.62, 0.86)], (0.700, 0.890)),
    ("bn", 4, 64, 1, 0): ([(0.45, 0.75), (0.66, 0.87), (0.64, 0.89)], (0.730, 0.910)),
    ("gn", 8, 32, 2, 0): ([(0.52, 0.81), (0.69, 0.89), (0.68, 0.90)], (0.731, 0.907)),
    ("gn", 4, 32, 2, 0): ([(0.50, 0.80), (0.68, 0.88), (0.66, 0.90)], (0.728, 0.905)),
    ("gn", 4, 32, 2, 1): ([(0.51, 0.80), (0.69, 0.88), (0.67, 0.90)], (0.734, 0.903)),
    ("gn", 4, 32, 2, 2): ([(0.49, 0.80), (0.67, 0.88), (0.65, 0.90)], (0.722, 0.910)),
    ("gn", 4, 64, 1, 0): ([(0.55, 0.82), (0.70, 0.90), (0.71, 0.91)], (0.745, 0.917)),
}


def run_name(norm: str, batch: int, frames: int, rate: int, seed: int) -> str:
    return f"i3d_r50-{norm}-b{batch}-{frames}x{rate}" + (f"-s{seed}" if seed else "")


@pytest.fixture(scope="module")
def grid_runs(tmp_path_factory) -> Path:
    """The paper's grid (GN b4 32f with 3 seeds) + a run on another dataset copy + one without metrics."""
    root = tmp_path_factory.mktemp("k400_runs")
    for (norm, b, f, r, seed), (val, test) in GRID.items():
        write_record_run(root, run_name(norm, b, f, r, seed), kinetics_config(norm, b, f, r, seed), history(val, test),
                         group="kinetics400", tags=("kinetics400",))
    write_record_run(root, "other-copy", kinetics_config("bn", 8, 32, 2, seed=7, data="k400-b"),
                     history([(0.9, 0.99)], (0.9, 0.99)), group="kinetics400")
    write_record_run(root, "crashed-early", kinetics_config("gn", 8, 32, 2, seed=9),
                     [{"train/loss": 3.0, "epoch": 0}], group="kinetics400")
    return root


def read_csv(path: Path) -> dict[tuple, dict]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {(r["norm"], int(r["batch_size"]), int(r["num_frames"])): r for r in rows}


def assert_valid_png(path: Path, min_bytes: int = 10_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > min_bytes, (path, len(data))
    image = matplotlib.image.imread(path)  # decodes the whole image
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_table_matches_logged_test_metrics(grid_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert videonorm(["compare", str(grid_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = read_csv(out / "compare.csv")
    assert set(rows) == {(n, b, f) for n, b, f, _, _ in GRID}
    for (norm, b, f, rate, seed), (_, test) in GRID.items():
        row = rows[(norm, b, f)]
        assert row["metric"] == "test" and row["dataset_hash"] == "k400-a"
        if (norm, b, f) == ("gn", 4, 32):
            continue  # the seeds, below
        assert int(row["n"]) == 1 and row["top1_se"] == ""
        assert float(row["top1"]) == pytest.approx(100 * test[0]) and float(row["top5"]) == pytest.approx(100 * test[1])
        ref = paper.cell_result(norm, 32, b, f, rate)
        assert float(row["paper_top1"]) == ref.top1 and float(row["paper_top5"]) == ref.top5
        assert float(row["diff_top1"]) == pytest.approx(100 * test[0] - ref.top1)
    seeds = [GRID[("gn", 4, 32, 2, s)][1] for s in range(3)]
    row = rows[("gn", 4, 32)]
    assert int(row["n"]) == 3
    assert float(row["top1"]) == pytest.approx(statistics.fmean(100 * t[0] for t in seeds))
    # standard errors of the mean over the 3 seeds
    assert float(row["top1_se"]) == pytest.approx(statistics.stdev(100 * t[0] for t in seeds) / math.sqrt(3))
    assert float(row["top5_se"]) == pytest.approx(statistics.stdev(100 * t[1] for t in seeds) / math.sqrt(3))
    assert row["runs"].count("i3d_r50-gn-b4-32x2") == 3

    md = (out / "compare.md").read_text()
    assert md.strip() in printed
    # rows = norm, columns = clips per device (frames) with the paper and the difference beside ours
    assert "| norm | 8 (32f) | 8 (32f) paper | 8 (32f) Δ | 4 (32f) | 4 (32f) paper | 4 (32f) Δ | 4 (64f) |" in md
    assert "| BN | 73.3 / 90.6 | 73.3 / 90.7 | +0.0 / -0.1 | 70.0 / 89.0 | 72.1 / 90.0 | -2.1 / -1.0 |" in md
    gn_mean = statistics.fmean(100 * t[0] for t in seeds)
    assert f"| GN (G=32) | 73.1 / 90.7 | 73.0 / 90.6 | +0.1 / +0.1 | {gn_mean:.1f}±" in md and "(n=3)" in md
    assert "comparable only for runs trained and tested on the real Kinetics-400" in md
    assert "dataset fingerprint (dataset.hash): k400-a" in md and "runs compared: 8 in 6 cells" in md
    # left out, with reasons
    assert "dataset fingerprint k400-b differs from the majority k400-a" in md
    assert "crashed-early" in md and "no test/top1 logged" in md
    for name in ("compare.md", "compare.csv", "val_error_curves.png", "top1_vs_batch.png"):
        assert str(out / name) in printed
    assert_valid_png(out / "val_error_curves.png")
    assert_valid_png(out / "top1_vs_batch.png")


def test_val_metric_is_the_best_epoch(grid_runs, tmp_path):
    out = tmp_path / "out"
    assert videonorm(["compare", str(grid_runs), "--out", str(out), "--metric", "val"]) == 0
    rows = read_csv(out / "compare.csv")
    for (norm, b, f, _, seed), (val, _) in GRID.items():
        if seed == 0 and (norm, b, f) != ("gn", 4, 32):
            best = max(val)  # highest top-1, its top-5 from the same epoch
            assert float(rows[(norm, b, f)]["top1"]) == pytest.approx(100 * best[0])
            assert float(rows[(norm, b, f)]["top5"]) == pytest.approx(100 * best[1])
    assert "best validation epoch, single center clip" in (out / "compare.md").read_text()


def test_dataset_option_picks_the_other_copy(grid_runs, tmp_path):
    out = tmp_path / "out"
    assert videonorm(["compare", str(grid_runs), "--out", str(out), "--dataset", "k400-b"]) == 0
    rows = read_csv(out / "compare.csv")
    assert list(rows) == [("bn", 8, 32)] and float(rows[("bn", 8, 32)]["top1"]) == pytest.approx(90.0)
    assert "differs from the chosen k400-b" in (out / "compare.md").read_text()


def test_corrupted_and_truncated_runs(grid_runs, tmp_path, capsys):
    tree = tmp_path / "runs"
    shutil.copytree(grid_runs, tree, symlinks=True)
    files = {p.parent.name: p for p in tree.rglob("record.jsonl")}
    corrupted = files[run_name("bn", 8, 32, 2, 0)]
    lines = corrupted.read_text().splitlines(keepends=True)
    lines[len(lines) // 2] = lines[len(lines) // 2][:25] + "\n"  # a damaged line in the middle
    corrupted.write_text("".join(lines))
    truncated = files[run_name("gn", 4, 64, 1, 0)]
    cut = truncated.read_bytes()
    cut = cut[: cut.index(b"test/top1") + 5]  # killed while writing its test: val rows survive
    truncated.write_bytes(cut)
    cut_line = len(cut.splitlines())

    assert videonorm(["compare", str(tree), "--out", str(tmp_path / "out"), "--metric", "val"]) == 0
    md = (tmp_path / "out" / "compare.md").read_text()
    assert f"unreadable: {corrupted}:{len(lines) // 2 + 1}: not a record entry" in md
    assert f"{truncated}:{cut_line}: the last line is incomplete" in md
    assert f"{truncated}: no end entry" in md
    rows = read_csv(tmp_path / "out" / "compare.csv")
    assert ("bn", 8, 32) not in rows  # the corrupted run is not in the table ...
    assert len(rows) == 5  # ... the others are
    best = max(GRID[("gn", 4, 64, 1, 0)][0])
    assert float(rows[("gn", 4, 64)]["top1"]) == pytest.approx(100 * best[0])  # what the truncated run wrote
    assert "†" in md  # and its cell is marked
    # with --metric test the truncated run lacks its test and is listed as such
    assert videonorm(["compare", str(tree), "--out", str(tmp_path / "out2"), "--metric", "test"]) == 0
    assert "i3d_r50-gn-b4-64x1" in (tmp_path / "out2" / "compare.md").read_text().split("## Not compared")[1]


def test_nothing_to_compare(tmp_path, capsys):
    assert videonorm(["compare", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert "no runs found below it (no record.jsonl, no W&B run-*.wandb file)" in printed
    assert "Nothing written" in printed
    assert not (tmp_path / "out").exists()


def test_a_mistyped_path_never_replaces_an_earlier_report(grid_runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert videonorm(["compare", str(grid_runs), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"compare.md", "compare.csv", "val_error_curves.png", "top1_vs_batch.png"}
    assert videonorm(["compare", str(grid_runs) + "_typo", "--out", str(out)]) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, nothing removed
    assert "Nothing written" in capsys.readouterr().out


def test_out_that_is_a_file_is_a_clear_error(grid_runs, tmp_path, capsys):
    out = tmp_path / "report.md"
    out.write_text("mine")
    with pytest.raises(SystemExit) as info:
        videonorm(["compare", str(grid_runs), "--out", str(out)])
    assert info.value.code == 2 and "is a file" in capsys.readouterr().err and out.read_text() == "mine"


def test_a_figure_without_data_does_not_stay_behind(grid_runs, tmp_path):
    out = tmp_path / "out"
    assert videonorm(["compare", str(grid_runs), "--out", str(out)]) == 0
    assert (out / "val_error_curves.png").is_file()
    # a run with a test result but no validation history: nothing to draw as curves
    bare = tmp_path / "bare"
    write_record_run(bare, "bare", kinetics_config("gn", 8, 32, 2), [{"test/top1": 0.7, "test/top5": 0.9}])
    assert videonorm(["compare", str(bare), "--out", str(out)]) == 0
    assert not (out / "val_error_curves.png").exists() and (out / "top1_vs_batch.png").is_file()


def _run(name: str, config: dict, val: list[tuple[float, float]], test=None) -> RunData:
    return RunData(source=f"/x/{name}", run_id=name, name=name, group="g", config=config, history=history(val, test),
                   complete=True, exit_code=0)


def test_seed_cells_report_other_config_differences_and_no_paper_for_tiny_models():
    tiny = {"model.net.depth": 50, "model.net.width": 8, "data.sampling_rate": 2, "dataset.hash": "d"}
    a = _run("a", {**tiny, "model.net.norm": "bn", "data.batch_size": 4, "data.num_frames": 8, "seed_everything": 0,
                   "model.lr": 0.1, "last_checkpoint.dirpath": "runs/a/checkpoints"}, [(0.5, 0.9)])
    b = _run("b", {**tiny, "model.net.norm": "bn", "data.batch_size": 4, "data.num_frames": 8, "seed_everything": 1,
                   "model.lr": 0.2, "last_checkpoint.dirpath": "runs/b/checkpoints"}, [(0.25, 0.8)])
    comp = comparison.build_comparison([a, b], metric="val")
    (cell,) = comp.cells
    assert cell.n == 2 and cell.top1[0] == pytest.approx(37.5) and cell.top1[1] == pytest.approx(12.5)  # SE of 2
    assert cell.paper is None  # width 8 is not the paper's ResNet-50
    assert any("model.lr (0.1, 0.2)" in w for w in comp.warnings)
    assert not any("seed_everything" in w or "dirpath" in w for w in comp.warnings)  # per-run keys
    md = report.report_markdown(comp)
    assert "| BN | 37.5±12.5 / 85.0±5.0 (n=2) |" in md
    assert "no cell has the paper's setup" in md
    assert "73.0" not in md and "90.6" not in md  # paper numbers only beside runs whose setup is the paper's


def test_repeated_augmentation_is_its_own_column_without_the_papers_numbers():
    plain = kinetics_config("gn", 4, 32, 2)
    ra2 = {**plain, "data.repeat_aug": 2, "seed_everything": 1}
    comp = comparison.build_comparison([_run("plain", plain, [(0.70, 0.90)]), _run("ra2", ra2, [(0.60, 0.85)])],
                                    metric="val")
    cells = {c.setting.column.repeat_aug: c for c in comp.cells}
    assert set(cells) == {1, 2} and cells[1].n == cells[2].n == 1  # not aggregated as seeds of one cell
    assert cells[1].paper is not None and cells[2].paper is None  # the paper has no repeated augmentation
    assert cells[2].top1[0] == pytest.approx(60.0)
    md = report.report_markdown(comp)
    assert "| norm | 4 (32f) | 4 (32f) paper | 4 (32f) Δ | 4 (32f, ra2) |" in md
    assert "| GN (G=32) | 70.0 / 90.0 | 72.8 / 90.6 | -2.8 / -0.6 | 60.0 / 85.0 |" in md
    assert [row["repeat_aug"] for row in report.csv_rows(comp)] == [1, 2]


def test_every_norm_scheme_has_its_row_and_line_and_syncbn_groups_are_their_own(tmp_path):
    from videonorm import identity
    from videonorm.models.norm import NORM_NAMES, uses_groups

    tiny = {"model.net.depth": 50, "model.net.width": 8, "model.net.norm_groups": 4, "data.num_frames": 8,
            "data.sampling_rate": 2, "dataset.hash": "d"}  # fmt: skip
    runs = [_run(f"{norm}-b{b}", {**tiny, "model.net.norm": norm, "data.batch_size": b},
                 [(0.5 + i / 100 - b / 100, 0.9)])
            for i, norm in enumerate(NORM_NAMES) for b in (8, 4)]  # fmt: skip
    synced = {**tiny, "model.net.norm": "syncbn", "model.net.norm_sync_group": 2, "data.batch_size": 4}
    runs.append(_run("syncbn-k2-b4", synced, [(0.3, 0.8)]))  # BN over 2 devices x 4 clips: not syncbn's cell
    comp = comparison.build_comparison(runs, metric="val")
    labels = {c.setting.row.label: c.n for c in comp.cells}
    expected = [n.upper() + (" (G=4)" if uses_groups(n) else "") for n in NORM_NAMES] + ["SYNCBN-K2"]
    assert sorted(labels) == sorted(expected) and set(labels.values()) == {1}
    assert len(comp.cells) == 2 * len(NORM_NAMES) + 1
    md = report.report_markdown(comp)
    for label in expected:
        assert f"| {label} |" in md
    assert "| SYNCBN-K2 |  | 30.0 / 80.0 |" in md  # no 8-clip cell
    assert {p.name for p in report.make_plots(comp, tmp_path)} == {"val_error_curves.png", "top1_vs_batch.png"}
    assert_valid_png(tmp_path / "top1_vs_batch.png")
    # the run names that keep the cells' directories apart (norm_sync_group is ignored for other norms)
    names = [identity.run_name(run_setting({**tiny, "model.net.norm": norm, "model.net.norm_sync_group": k,
                                            "data.batch_size": 4}))
             for norm, k in (("syncbn", 2), ("syncbn", 0), ("bn", 2), ("evonorm_s0", 0))]  # fmt: skip
    assert names == ["i3d_r50-syncbn-k2-w8-b4-8x2", "i3d_r50-syncbn-w8-b4-8x2",
                                    "i3d_r50-bn-w8-b4-8x2", "i3d_r50-evonorm_s0-g4-w8-b4-8x2"]


def test_runs_that_cannot_be_placed_are_listed():
    good = _run("good", {"model.net.norm": "gn", "model.net.norm_groups": 4, "model.net.width": 8, "data.batch_size": 2,
                         "data.num_frames": 8, "dataset.hash": "d"}, [(0.5, 0.9)])
    no_norm = _run("no-norm", {"data.batch_size": 2, "dataset.hash": "d"}, [(0.5, 0.9)])
    percent = _run("percent", {**good.config, "data.batch_size": 4}, [(55.0, 90.0)])
    no_hash = _run("no-hash", {k: v for k, v in good.config.items() if k != "dataset.hash"}, [(0.5, 0.9)])
    twice = _run("good", good.config, [(0.5, 0.9)])
    comp = comparison.build_comparison([good, no_norm, percent, no_hash, twice])
    assert [c.setting.column.batch_size for c in comp.cells] == [2]
    assert comp.cells[0].setting.row.label == "GN (G=4)"
    text = "\n".join(comp.excluded)
    assert "no-norm" in text and "config lacks model.net.norm, data.num_frames" in text
    assert "val/top1 = 55.0 is not a fraction" in text
    assert "no-hash" in text and "no dataset fingerprint" in text
    assert "same run id as /x/good; counted once" in text


def test_paper_table_is_the_papers():
    assert {(r.norm, r.batch_size, r.num_frames): (r.top1, r.top5) for r in paper.KINETICS_RESULTS} == {
        ("bn", 8, 32): (73.3, 90.7), ("bn", 4, 32): (72.1, 90.0), ("bn", 4, 64): (73.3, 90.8),
        ("gn", 8, 32): (73.0, 90.6), ("gn", 4, 32): (72.8, 90.6), ("gn", 4, 64): (74.5, 91.7),
    }
    assert paper.cell_result("gn", 32, 4, 64, 1).top1 == 74.5
    assert paper.cell_result("gn", 16, 4, 64, 1) is None  # other group count
    assert paper.paper_result(run_setting(kinetics_config("gn", 4, 64, 1))).top1 == 74.5
    tiny = run_setting({**kinetics_config("bn", 4, 32, 2), "model.net.width": 8})
    assert paper.paper_result(tiny) is None and paper.setup_gaps(tiny) == [
        "ResNet-50 at width 8 (the paper's: ResNet-50, width 64)"]


def _setup_variants() -> dict[str, dict]:
    base = kinetics_config("gn", 4, 32, 2)
    return {
        "paper": base,
        "scratch": {**base, "model.pretrained_2d": None, "init.source": None, "init.sha256": None,
                    "seed_everything": 1},
        "c2d": {**base, "model.net.arch": "c2d_resnet", "seed_everything": 2},
        "other-2d": {**base, "init.source": "timm:resnet50_gn", "init.sha256": "777777777777", "seed_everything": 3},
        "4-gpus": {**base, "world_size": 4, "seed_everything": 4},
        "600-classes": {**base, "model.net.num_classes": 600, "seed_everything": 5},
        "bf16": {**base, "trainer.precision": "bf16-mixed", "seed_everything": 6},
    }


def test_runs_of_different_setups_are_never_averaged_and_only_the_papers_gets_its_numbers():
    runs = [_run(name, config, [(0.5 + i / 100, 0.8)]) for i, (name, config) in enumerate(_setup_variants().items())]
    comp = comparison.build_comparison(runs, metric="val")
    assert len(comp.cells) == len(runs) and all(c.n == 1 for c in comp.cells)
    by_run = {c.results[0].run.name: c for c in comp.cells}
    assert by_run["paper"].paper is not None
    for name in ("scratch", "c2d", "4-gpus", "600-classes", "bf16"):
        assert by_run[name].paper is None, name
    assert by_run["600-classes"].paper_gaps == ["600 classes (Kinetics-400 has 400)"]
    assert by_run["scratch"].paper_gaps == ["trained from scratch (the paper fine-tunes from ImageNet)"]
    assert by_run["c2d"].paper_gaps == ["architecture c2d_resnet (the paper's: i3d_resnet)"]
    assert by_run["4-gpus"].paper_gaps == ["4 devices (the paper's: 8 GPUs)"]
    assert by_run["bf16"].paper_gaps == ["precision bf16-mixed (the paper's: fp32, 32-true)"]
    assert by_run["other-2d"].paper is not None  # another ImageNet source is still the paper's setup, a cell of its own
    md = report.report_markdown(comp)
    assert "from scratch" in md and "ImageNet init (timm:resnet50_gn 777777777777)" in md
    assert "whose setup is not the paper's" in md and "trained from scratch (the paper fine-tunes from ImageNet)" in md
    assert "x4 dev" in md and "x8 dev" in md


def test_precision_is_one_recipe_under_lightnings_current_names():
    base = kinetics_config("bn", 8, 32, 2)
    missing = {k: v for k, v in base.items() if k != "trainer.precision"}
    fp32 = {run_setting(c) for c in (base, missing, {**base, "trainer.precision": 32},
                                     {**base, "trainer.precision": None})}  # fmt: skip
    assert len(fp32) == 1  # null and 32: Lightning's default, 32-true
    assert dict(fp32.pop().row.recipe.items)["precision"] == "32-true"
    bf16 = run_setting({**base, "trainer.precision": "bf16"})
    assert bf16 == run_setting({**base, "trainer.precision": "bf16-mixed"})
    assert paper.setup_gaps(bf16) == ["precision bf16-mixed (the paper's: fp32, 32-true)"]


# ---------------------------------------------------------------- sweeps and the plain-shell grid

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "videonorm" / "configs"
SWEEPS = sorted((CONFIGS / "sweeps").glob("*.yaml"))


def experiment_cell(path: Path, norm: str | None = None) -> tuple:
    """(norm, clips per device, frames, stride) an experiment file sets (its own keys, not its base's); ``norm``
    when the command line sets it."""
    cfg = yaml.safe_load(path.read_text())
    norm = norm or cfg["model"]["net"]["norm"]
    return norm, cfg["data"]["batch_size"], cfg["data"]["num_frames"], cfg["data"]["sampling_rate"]


def agent_argv(sweep: dict, params: dict) -> list[str]:
    """The command W&B's agent runs for one grid point (its own helpers; the macro loop as in wandb_agent.py)."""
    from wandb.sdk.launch.sweeps.utils import (
        create_sweep_command,
        create_sweep_command_args,
    )

    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros |= {"env": ["/usr/bin/env"], "program": [sweep["program"]], "interpreter": ["python"]}
    argv = []
    for token in map(str, create_sweep_command(list(sweep["command"]))):
        argv += macros.get(token[2:-1], []) if token.startswith("${") and token.endswith("}") else [token]
    return argv


@pytest.mark.parametrize("sweep_file", SWEEPS, ids=lambda p: p.name)
def test_sweep_is_a_grid_of_videonorm_fit_over_the_experiment_files(sweep_file, monkeypatch, tmp_path):
    from videonorm.train.cli import expand_base_configs

    monkeypatch.setenv("DATA_ROOT", "/data/x")
    monkeypatch.chdir(tmp_path)  # shipped config names: the agent can run anywhere
    sweep = yaml.safe_load(sweep_file.read_text())
    assert sweep["method"] == "grid" and sweep["program"] == "videonorm"
    assert sweep["metric"] == {"name": "val/top1", "goal": "maximize"}
    params = sweep["parameters"]
    assert list(params)[0] == "config"
    values = params["config"]["values"]
    norms = params.get("model.net.norm", {}).get("values", [None])
    for value in values:
        argv = agent_argv(sweep, {"config": value})
        assert argv[:3] == ["/usr/bin/env", "videonorm", "fit"] and f"--config={value}" in argv
        assert argv[argv.index("--data.root") + 1] == "/data/x" and argv[-2:] == ["--ckpt_path", "last"]
        chain = expand_base_configs(argv[2:])  # the base: chain resolves from the shipped configs
        assert chain.count("--config") == 2 and chain[chain.index("--config") + 1].endswith("base.yaml")
    grid_dir = CONFIGS / Path(values[0]).parent
    assert grid_dir == CONFIGS / sweep_file.stem.replace("_extra", "/extra")
    # the sweep covers the experiment files of its grid (what scripts/grid.sh runs), each once
    files = sorted(p.relative_to(CONFIGS).as_posix() for p in grid_dir.glob("*.yaml") if p.name != "base.yaml")
    cells = [experiment_cell(CONFIGS / v, n) for v in values for n in norms]
    assert len(set(cells)) == len(cells)
    if sweep_file.stem == "kinetics400":
        assert sorted(values) == files
        assert set(cells) == {(r.norm, r.batch_size, r.num_frames, r.sampling_rate) for r in paper.KINETICS_RESULTS}
    elif sweep_file.stem == "kinetics400_extra":  # beyond the paper: 16 and 2 clips per GPU, no paper cell among them
        assert sorted(values) == files and {c[1] for c in cells} == {16, 2}
        assert not any(paper.cell_result(n, 32, b, f, r) for n, b, f, r in cells)
    else:  # the demo study's default grid: BN and GN at 16, 4 and 2 clips per device, two seeds
        from videonorm import demo

        assert set(values) <= set(files) and params["seed_everything"]["values"] == list(demo.DEFAULT_GRID.seeds)
        assert {c[:2] for c in cells} == {(n, b) for n in demo.DEFAULT_GRID.norms for b in demo.DEFAULT_GRID.batches}


def test_grid_script_runs_every_cell_then_compares(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "GRID": "kinetics400", "DATA_ROOT": "/data/k400", "SEEDS": "0 1",
           "RUNS": str(tmp_path / "runs")}
    result = subprocess.run(["bash", str(REPO / "scripts" / "grid.sh"), "--trainer.devices", "4"], env=env,
                            capture_output=True, text=True, check=True)
    lines = [line[2:].split() for line in result.stdout.splitlines() if line.startswith("+ ")]
    fits = [line for line in lines if line[1] == "fit"]
    tests = [line for line in lines if line[1] == "test"]
    assert len(fits) == len(tests) == 2 * len(paper.KINETICS_RESULTS)
    cells = {(experiment_cell(Path(f[f.index("--config") + 1])), f[f.index("--seed_everything") + 1]) for f in fits}
    paper_cells = {(r.norm, r.batch_size, r.num_frames, r.sampling_rate) for r in paper.KINETICS_RESULTS}
    assert cells == {(c, s) for c in paper_cells for s in ("0", "1")}
    assert all(f[-2:] == ["--trainer.devices", "4"] and "--ckpt_path" in f for f in fits)
    assert all(t[t.index("--ckpt_path") + 1] == "last" for t in tests)
    assert lines[-1] == ["videonorm", "compare", str(tmp_path / "runs" / "kinetics400"), "--group", "kinetics400",
                         "--out", "compare_out/kinetics400"]
    # EXTRA=1 adds the cells beyond the paper (2 and 16 clips per GPU); NORMS runs every config once per norm
    extra = subprocess.run(["bash", str(REPO / "scripts" / "grid.sh")], env={**env, "SEEDS": "0", "EXTRA": "1"},
                           capture_output=True, text=True, check=True).stdout
    extra_cells = {experiment_cell(Path(f.split()[f.split().index("--config") + 1]))
                   for f in extra.splitlines() if f.startswith("+ videonorm fit")}
    assert len(extra_cells) == len(paper.KINETICS_RESULTS) + 4 and {("bn", 2, 32, 2), ("gn", 16, 32, 2)} <= extra_cells
    demo = subprocess.run(["bash", str(REPO / "scripts" / "grid.sh")],
                          env={**env, "GRID": "demo", "SEEDS": "0", "NORMS": "bn gn"}, capture_output=True, text=True,
                          check=True).stdout
    demo_fits = [f.split() for f in demo.splitlines() if f.startswith("+ videonorm fit")]
    assert {(f[f.index("--model.net.norm") + 1], Path(f[f.index("--config") + 1]).name) for f in demo_fits} == {
        (n, f"b{b}_8x2.yaml") for n in ("bn", "gn") for b in (16, 4, 2, 1)}


# ---------------------------------------------------------------- real runs of `videonorm fit`

DEMO = REPO / "videonorm" / "configs" / "demo"
FITS = (("bn", 4, True), ("bn", 2, False), ("gn", 4, True), ("gn", 2, False))  # norm, clips per device, tested


def _cli_args(norm: str, batch: int, data: Path, runs: Path, epochs: int, lr_per_16: float = 0.03) -> list[str]:
    return [
        "--config", str(DEMO / "b4_8x2.yaml"), "--model.net.norm", norm, "--data.root", str(data),
        "--trainer.default_root_dir", str(runs), "--model.lr", str(lr_per_16 * batch / 16),  # linear scaling
        "--trainer.max_epochs", str(epochs), "--data.batch_size", str(batch), "--precise_bn.num_batches", "1",
        "--data.test_clips", "1", "--data.test_crops", "1", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> dict[str, Path]:
    """Tiny real `videonorm fit` runs (demo configs: shallow I3D R14 at width 16, 8 frames, 64 px) on real tiny videos:
    BN and GN at 4 and 2 clips per device, 2 epochs, the 4-clip runs then `videonorm test`ed; plus one GN run
    on another copy of the dataset (other manifests: another fingerprint)."""
    import wandb

    from tests.videos import make_dataset
    from videonorm.cli import main

    root = tmp_path_factory.mktemp("fit")
    make_dataset(root / "data", num_classes=2, per_class=2, num_frames=20)
    make_dataset(root / "data_other", num_classes=2, per_class=3, num_frames=20)
    for norm, batch, tested in FITS:
        args = _cli_args(norm, batch, root / "data", root / "runs", epochs=2)
        assert main(["fit", *args]) == 0
        if tested:
            assert main(["test", *args, "--ckpt_path", "best"]) == 0
    assert main(["fit", *_cli_args("gn", 2, root / "data_other", root / "runs_other", epochs=1)]) == 0
    # the same GN cells as above but for the lr (x 1/3), or the epochs: other recipes, named apart
    for name, lr, epochs in (("gn-lr", 0.01, 2), ("gn-ep", 0.03, 1)):
        for batch in (4, 2):
            named = ["--trainer.logger.init_args.name", f"{name}-b{batch}"]
            assert main(["fit", *_cli_args("gn", batch, root / "data", root / "recipes", epochs, lr), *named]) == 0
    wandb.teardown()  # wait until wandb-core has written every offline run completely (see tests/test_runs.py)
    return {"runs": root / "runs", "other": root / "runs_other", "recipes": root / "recipes"}


def leet_run(run_dir: Path) -> dict:
    """A run as wandb's own reader (`wandb leet inspect --json`) sees it: config, history, over all its files."""
    config, history = {}, []
    for part in map(read_offline_run, sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))):
        config.update(part.config)
        history += part.history
    return {"config": config, "history": history}


def best_val(history: list[dict]) -> tuple[float, float]:
    """Highest val/top1 (percent) over epochs and the val/top5 of that epoch."""
    rows = {row["epoch"]: row for row in history if "val/top1" in row}
    best = max(rows.values(), key=lambda row: row["val/top1"])
    return 100 * best["val/top1"], 100 * best["val/top5"]


def fit_run_dir(runs: Path, norm: str, batch: int) -> Path:
    (run_dir,) = (runs / "demo").glob(f"i3d_r14-{norm}-*b{batch}-8x2")
    return run_dir


def test_real_fit_runs_table_matches_what_they_logged(fitted, tmp_path, capsys):
    out = tmp_path / "out"
    assert videonorm(["compare", str(fitted["runs"]), str(fitted["other"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "compare.md").read_text()
    rows = read_csv(out / "compare.csv")
    assert set(rows) == {(norm, batch, 8) for norm, batch, _ in FITS}
    hashes = set()
    for norm, batch, _ in FITS:
        run_dir = fit_run_dir(fitted["runs"], norm, batch)
        logged = leet_run(run_dir)
        hashes.add(logged["config"]["dataset.hash"])
        top1, top5 = best_val(logged["history"])
        row = rows[(norm, batch, 8)]
        assert row["metric"] == "val"  # auto: the 2-clip runs have no test, so validation for all
        assert (int(row["n"]), row["width"], row["depth"]) == (1, "16", "14")
        assert row["norm_groups"] == ("4" if norm == "gn" else "")
        assert float(row["top1"]) == pytest.approx(top1) and float(row["top5"]) == pytest.approx(top5)
        # Lightning's checkpoint callback kept the same best val/top1 (its best.ckpt)
        ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
        (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint") and "val/top1" in k]
        assert 100 * float(state["best_model_score"]) == pytest.approx(top1, abs=1e-4)
        label = "GN (G=4)" if norm == "gn" else "BN"
        assert f"{top1:.1f} / {top5:.1f}" in next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    assert row["dataset_hash"] in hashes and len(hashes) == 1
    # the run on the other dataset copy is listed, not mixed in
    other = leet_run(fitted["other"] / "demo" / "i3d_r14-gn-g4-w16-b2-8x2")["config"]["dataset.hash"]
    assert other not in hashes
    assert f"dataset fingerprint {other} differs from the majority {row['dataset_hash']}" in md
    assert "| norm | 4 (8f x2) | 2 (8f x2) |" in md and "no cell has the paper's setup" in md
    assert md.strip() in printed
    assert_valid_png(out / "val_error_curves.png")
    assert_valid_png(out / "top1_vs_batch.png")


def test_real_fit_runs_test_metric(fitted, tmp_path):
    out = tmp_path / "out"
    assert videonorm(["compare", str(fitted["runs"]), "--out", str(out), "--metric", "test"]) == 0
    rows = read_csv(out / "compare.csv")
    md = (out / "compare.md").read_text()
    assert set(rows) == {(norm, batch, 8) for norm, batch, tested in FITS if tested}
    for norm, batch, tested in FITS:
        if tested:
            test = [row for row in leet_run(fit_run_dir(fitted["runs"], norm, batch))["history"] if "test/top1" in row]
            assert float(rows[(norm, batch, 8)]["top1"]) == pytest.approx(100 * test[-1]["test/top1"])
            assert float(rows[(norm, batch, 8)]["top5"]) == pytest.approx(100 * test[-1]["test/top5"])
        else:
            assert f"i3d_r14-{norm}" in md and "no test/top1 logged" in md
    assert "test, video level" in md


def test_real_fit_runs_without_records_are_named_not_read(fitted, tmp_path, capsys):
    """Run directories with only W&B's offline files (no record.jsonl): compare does not read W&B's private format;
    it names each such run in one line, says why and how to compare it, and writes nothing."""
    tree = tmp_path / "runs"
    shutil.copytree(fitted["runs"], tree, symlinks=True)
    for record in tree.rglob("record.jsonl"):
        record.unlink()
    out = tmp_path / "out"
    assert videonorm(["compare", str(tree), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    for norm, batch, _ in FITS:
        run_dir = fit_run_dir(tree, norm, batch)
        (line,) = [line for line in printed.splitlines() if f"{run_dir}:" in line]
        assert "W&B offline files only, no record.jsonl" in line and f"wandb sync {run_dir / 'wandb'}" in line
    assert "Nothing written" in printed and not out.exists()


def test_real_fit_runs_are_read_from_their_records(fitted, tmp_path):
    """compare reads local runs from record.jsonl: the same numbers as their W&B files, and a record cut by a kill
    still gives what it holds (marked)."""
    tree = tmp_path / "runs"
    shutil.copytree(fitted["runs"], tree, symlinks=True)
    cut = fit_run_dir(tree, "gn", 2) / "record.jsonl"
    data = cut.read_bytes()
    cut.write_bytes(data[: data.rindex(b'"val/top1"') + 5])  # killed while writing its last validation row
    for run_dir in tree.glob("demo/*"):  # a W&B file damaged beside a record is never read
        for wandb_file in run_dir.glob("wandb/offline-run-*/run-*.wandb"):
            wandb_file.write_bytes(b"junk")
    out = tmp_path / "out"
    assert videonorm(["compare", str(tree), "--out", str(out), "--metric", "val"]) == 0
    md = (out / "compare.md").read_text()
    assert "unreadable" not in md and "junk" not in md
    rows = read_csv(out / "compare.csv")
    assert set(rows) == {(norm, batch, 8) for norm, batch, _ in FITS}
    for norm, batch, _ in FITS:
        run_dir = fit_run_dir(fitted["runs"], norm, batch)
        history = leet_run(run_dir)["history"]  # what W&B's own reader sees in the intact original
        if (norm, batch) == ("gn", 2):
            history = history[: max(i for i, row in enumerate(history) if "val/top1" in row)]  # minus the cut row
        assert float(rows[(norm, batch, 8)]["top1"]) == pytest.approx(best_val(history)[0])
    assert f"{cut}:" in md and "the last line is incomplete" in md
    assert "†" in next(line for line in md.splitlines() if line.startswith("| GN (G=4) |"))


def test_runs_written_before_the_model_spec_are_the_same_cell():
    """A run config with the spec fields at model.* (before model.net existed) names the same setting."""
    from videonorm import identity

    new = {"model.net.norm": "gn", "model.net.norm_groups": 4, "model.net.width": 16, "model.net.depth": 14,
           "data.batch_size": 4, "data.num_frames": 8, "data.sampling_rate": 2}
    old = {k.replace("model.net.", "model."): v for k, v in new.items()}
    assert run_setting(old) == run_setting(new)
    assert identity.run_name(run_setting(old)) == "i3d_r14-gn-g4-w16-b4-8x2"


def test_runs_that_differ_only_in_lr_or_epochs_are_never_averaged(fitted, tmp_path):
    """GN at 4 and 2 clips per device three times over: the fixture's recipe, a third of its lr, half its epochs.
    Each recipe is its own row, named by what differs, with its own verdict; no cell has n > 1."""
    out = tmp_path / "out"
    runs = [str(fitted["runs"]), str(fitted["recipes"])]
    assert videonorm(["compare", *runs, "--out", str(out), "--metric", "val"]) == 0
    md = (out / "compare.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| GN (G=4)")]
    assert len(rows) == 3, md
    assert {r.split(" |")[0] for r in rows} == {
        "| GN (G=4) [epochs 2, lr/clip 0.001875]", "| GN (G=4) [epochs 2, lr/clip 0.000625]",
        "| GN (G=4) [epochs 1, lr/clip 0.001875]"}
    assert "±" not in "".join(rows)  # one seed per cell: nothing averaged
    csv_rows = list(csv.DictReader((out / "compare.csv").open()))
    assert all(row["n"] == "1" for row in csv_rows)
    lines = [line for line in md.splitlines() if line.startswith("- GN (G=4) [")]
    assert len(lines) == 3 and all("4 -> 2 clips/device" in line for line in lines)
