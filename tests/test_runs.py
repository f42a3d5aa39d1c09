"""videonorm.results: local runs read from their records (written here by the real ``RunRecordLogger``), ``load_runs``
over paths (records, run directories with only W&B's offline files, missing paths) and W&B paths (no network)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from videonorm.identity import flatten
from videonorm.record import RECORD_FILE
from videonorm.results.records import find_records, read_record_run
from videonorm.results.run_data import RunReadError
from videonorm.results.runs import load_runs
from videonorm.results.wandb_api import parse_wandb_path, project_filters


def write_offline_run(
    root: Path, name: str, config: dict, rows: list[dict], group: str = "demo", tags: tuple[str, ...] = ("demo",),
) -> Path:
    """Write a real offline W&B run (``wandb.init(mode="offline")``) under ``root/name``; return its ``.wandb`` file.

    Args:
        root: parent directory.
        name: run name (also its directory).
        config: run config (flat keys, as ``videonorm fit`` logs them).
        rows: ``wandb.log`` calls, in order.
        group: W&B group.
        tags: W&B tags.
    """
    import wandb

    run_dir = root / name
    run_dir.mkdir(parents=True)
    before = set(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    run = wandb.init(mode="offline", dir=run_dir, project="videonorm", name=name, group=group, tags=list(tags),
                     config=config)
    for row in rows:
        run.log(row)
    run.finish()
    # wandb 0.31's finish() can return before its core process has written the end of an offline run's file
    # (seen in 2 of 15 runs on a loaded 2-core box); teardown waits for the core to finish every run.
    wandb.teardown()
    (path,) = set(run_dir.glob("wandb/offline-run-*/run-*.wandb")) - before
    return path


@pytest.fixture(scope="module", autouse=True)
def offline_wandb(tmp_path_factory):
    """No network, no output, W&B's files in a temp dir."""
    home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            mp.setenv(var, str(home))
        yield


CONFIG = {"model.norm": "gn", "model.norm_groups": 4, "data.batch_size": 4, "data.num_frames": 8,
          "dataset.hash": "abc123", "model": {"nested": {"key": 3}}}
ROWS = [
    {"train/loss": 2.5, "epoch": 0, "trainer/global_step": 3},
    {"val/top1": 0.25, "val/top5": 0.75, "epoch": 0, "trainer/global_step": 3},
    {"train/loss": 1.5, "epoch": 1, "trainer/global_step": 7},
    {"val/top1": 0.5, "val/top5": 1.0, "epoch": 1, "trainer/global_step": 7, "data/skipped_videos": 0},
    {"test/top1": 0.375, "test/top5": 0.875, "note": "text", "missing": None},
]


@pytest.fixture(scope="module")
def run_file(tmp_path_factory) -> Path:
    return write_offline_run(tmp_path_factory.mktemp("runs"), "i3d_r50-gn-g4-w8-b4-8x2", CONFIG, ROWS,
                             tags=("demo", "t2"))


def record_part(run_dir: Path, stage: str, rows: list[tuple[int | None, dict]], status: str | None,
                config: dict | None = None, summary: dict | None = None, name: str = "i3d_r50-gn-g4-w8-b4-8x2",
                run_id: str = "abcd1234", group: str = "demo", tags: tuple[str, ...] = ("demo",)) -> Path:
    """One part of a run's record, written by the real logger (``status`` None: the process died before its end).

    Args:
        run_dir: the run directory.
        stage: the subcommand (``fit``, ``test``...).
        rows: ``(step, values)`` of each logging call, in order.
        status: the end status, or None for a part killed before its end.
        config: the run config (default ``CONFIG``).
        summary: explicit summary keys, logged after the rows.
        name: run name.
        run_id: run id.
        group: W&B group.
        tags: W&B tags.
    """
    from videonorm.train.logger import RunRecordLogger

    logger = RunRecordLogger(run_dir, run_id, name, stage, group=group, tags=list(tags))
    logger.log_hyperparams(config or CONFIG)
    for step, values in rows:
        logger.log_metrics(values, step)
    if summary:
        logger.log_summary(summary)
    if status is not None:
        logger.finalize(status)
    return run_dir / RECORD_FILE


def write_record_run(root: Path, name: str, config: dict, rows: list[dict], group: str = "demo",
                     tags: tuple[str, ...] = ("demo",)) -> Path:
    """A finished run's record under ``root/name`` (one fit part); return the record file.

    Args:
        root: parent directory.
        name: run name (also its directory; its hash the run id).
        config: run config (flat keys, as ``videonorm fit`` logs them).
        rows: logging calls, in order, as Lightning logs them (``trainer/global_step`` is the row's step).
        group: W&B group.
        tags: W&B tags.
    """
    steps = [({k: v for k, v in row.items() if k != "trainer/global_step"}, row.get("trainer/global_step"))
             for row in rows]
    run_id = hashlib.sha256(name.encode()).hexdigest()[:8]
    return record_part(root / name, "fit", [(step, values) for values, step in steps], "success", config=config,
                       name=name, run_id=run_id, group=group, tags=tags)


@pytest.fixture(scope="module")
def record_file(tmp_path_factory) -> Path:
    return write_record_run(tmp_path_factory.mktemp("runs"), "i3d_r50-gn-g4-w8-b4-8x2", CONFIG, ROWS,
                            tags=("demo", "t2"))


def test_reads_what_was_logged(record_file):
    run = read_record_run(record_file)
    assert run.name == "i3d_r50-gn-g4-w8-b4-8x2" and run.group == "demo" and run.tags == ["demo", "t2"]
    assert run.run_id and run.source == str(record_file) and run.job_type == "train"
    expected_config = {k: v for k, v in CONFIG.items() if k != "model"} | {"model.nested.key": 3}
    assert run.config == expected_config
    assert run.history == ROWS
    assert run.summary["val/top1"] == 0.5 and run.summary["test/top5"] == 0.875 and run.summary["epoch"] == 1
    assert run.complete and run.exit_code == 0 and run.problems == []


def test_run_directory_and_trees_are_found(record_file):
    run_dir = record_file.parent
    assert read_record_run(run_dir).run_id == read_record_run(record_file).run_id
    assert find_records(run_dir.parent) == [record_file]
    assert find_records(run_dir) == [record_file]
    assert find_records(record_file) == [record_file]
    assert find_records(run_dir / "config.yaml") == []


def test_load_runs_keeps_good_runs_and_reports_bad_ones(record_file, tmp_path):
    bad = tmp_path / "bad" / "run" / RECORD_FILE
    bad.parent.mkdir(parents=True)
    bad.write_text("hello, this is not a record\n")
    runs, errors = load_runs([str(record_file.parents[1]), str(tmp_path / "bad"), str(tmp_path / "nope")])
    assert [r.source for r in runs] == [str(record_file)]
    assert len(errors) == 2
    assert any(str(bad) in e and "not a record entry" in e for e in errors)
    assert any("nope: no such file or directory, and not a W&B path" in e for e in errors)
    assert load_runs([str(record_file)], group="other")[0] == []
    assert load_runs([str(record_file)], tag="t2")[0][0].name == "i3d_r50-gn-g4-w8-b4-8x2"


def test_wandb_paths_and_filters():
    assert parse_wandb_path("team/videonorm") == ("team", "videonorm", None)
    assert parse_wandb_path("team/videonorm/abc123") == ("team", "videonorm", "abc123")
    assert parse_wandb_path("team/videonorm/runs/abc123") == ("team", "videonorm", "abc123")
    assert parse_wandb_path("https://wandb.ai/team/videonorm/runs/abc123") == ("team", "videonorm", "abc123")
    assert parse_wandb_path("just-a-name") is None
    assert project_filters("kinetics400", "paper") == {"group": "kinetics400", "tags": {"$in": ["paper"]}}
    assert project_filters(None, None) == {}
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": {}}) == {"a.b": 1, "a.c.d": 2, "e": {}}


def test_online_path_without_credentials_is_a_clear_error(tmp_path, monkeypatch):
    """The W&B API path fails cleanly (no prompt, no hang) when there are no credentials; nothing leaves the box."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # should anything try to connect: refused at once
    runs, errors = load_runs(["my-team/videonorm/abc123", "my-team/videonorm"], group="kinetics400")
    assert runs == []
    assert len(errors) == 2
    assert errors[0].startswith("my-team/videonorm/abc123: W&B API failed:")
    assert errors[1].startswith("my-team/videonorm: W&B API failed:")


# ---------------------------------------------------------------- parts of a record, damage, W&B files beside it


def test_record_parts_are_one_run_and_a_cut_last_line_is_reported(tmp_path):
    """A fit killed mid-write (no end, a cut last line), resumed to the end, then tested: one run, in order."""
    import math

    killed = [(3, {"train/loss": 2.5, "epoch": 0}), (3, {"val/top1": 0.25, "val/top5": 0.75, "epoch": 0})]
    record_part(tmp_path, "fit", killed, status=None)
    path = tmp_path / RECORD_FILE
    with path.open("ab") as f:
        f.write(b'{"kind": "row", "step": 5, "values": {"train/lo')  # the kill cut this line
    run = read_record_run(path)
    assert [r.get("val/top1") for r in run.history] == [None, 0.25]
    assert not run.complete and run.exit_code is None
    assert any(f"{path}:5: the last line is incomplete" in p for p in run.problems)
    assert any("no end entry" in p for p in run.problems)

    path.write_bytes(path.read_bytes()[: path.read_bytes().rindex(b"\n") + 1])  # what a resume finds on disk
    resumed = [(7, {"train/loss": float("nan"), "epoch": 1}), (7, {"val/top1": 0.5, "val/top5": 1.0, "epoch": 1})]
    record_part(tmp_path, "fit", resumed, status="success", summary={"val/best_epoch": 1})
    record_part(tmp_path, "test", [(7, {"test/top1": 0.375, "test/top5": 0.875})], status="success",
                config={"ckpt_path": "last.ckpt"})
    run = read_record_run(tmp_path)  # the run directory works too
    assert (run.run_id, run.name, run.group, run.tags, run.job_type) == (
        "abcd1234", "i3d_r50-gn-g4-w8-b4-8x2", "demo", ["demo"], "train")
    assert [r.get("val/top1") for r in run.history if "val/top1" in r] == [0.25, 0.5]
    assert [r["trainer/global_step"] for r in run.history] == [3, 3, 7, 7, 7]
    assert math.isnan(run.history[2]["train/loss"])  # non-finite values survive JSON
    assert run.summary["test/top1"] == 0.375 and run.summary["val/best_epoch"] == 1
    assert run.config["model.norm"] == "gn" and run.config["ckpt_path"] == "last.ckpt"
    assert run.complete and run.exit_code == 0 and run.problems == []  # the continued first part is not reported


def test_damaged_record_line_is_an_error_naming_file_and_line(tmp_path):
    record_part(tmp_path, "fit", [(3, {"val/top1": 0.25, "epoch": 0})], status="success")
    path = tmp_path / RECORD_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(RunReadError, match=f"{path}:2: not a record entry"):
        read_record_run(path)


def test_load_runs_reads_the_record_and_names_run_dirs_with_only_wandb_files(tmp_path):
    """A run directory with a record is read from it (W&B files beside it are not read); one with only W&B's
    offline files is not read: one line names it, says why and how to compare it (upload it)."""
    recorded = tmp_path / "runs" / "demo" / "recorded"
    write_offline_run(recorded.parent, recorded.name, CONFIG, ROWS[:2])
    record_part(recorded, "fit", [(3, {"val/top1": 0.625, "val/top5": 1.0, "epoch": 0})], status="success")
    wandb_only = tmp_path / "runs" / "demo" / "wandb_only"
    run_file = write_offline_run(wandb_only.parent, wandb_only.name, CONFIG, ROWS)
    (run,), errors = load_runs([str(tmp_path / "runs")])
    assert run.source == str(recorded / RECORD_FILE) and run.summary["val/top1"] == 0.625
    assert errors == [
        f"{wandb_only}: W&B offline files only, no record.jsonl (a run of another tool, or from before videonorm "
        "wrote records): compare reads local runs from their record, not W&B's private .wandb format; upload it "
        f"(wandb sync {wandb_only / 'wandb'}) and compare the W&B project (entity/project)"]
    assert load_runs([str(run_file)])[1] == errors  # the .wandb file itself: the same line
    assert load_runs([str(recorded)]) == ([run], [])
    shutil.rmtree(wandb_only)
    assert load_runs([str(tmp_path / "runs")]) == ([run], [])
