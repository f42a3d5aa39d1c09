"""videonorm.results.runs: reading real offline W&B runs (written here by wandb itself) without network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videonorm.results.runs import (
    RunReadError,
    find_offline_runs,
    flatten,
    iter_records,
    load_runs,
    parse_wandb_path,
    project_filters,
    read_offline_run,
)


def write_offline_run(
    root: Path, name: str, config: dict, rows: list[dict], group: str = "demo", tags: tuple[str, ...] = ("demo",),
    run_id: str | None = None,
) -> Path:
    """Write a real offline W&B run (``wandb.init(mode="offline")``) under ``root/name``; return its ``.wandb`` file.

    Args:
        root: parent directory.
        name: run name (also its directory).
        config: run config (flat keys, as ``videonorm fit`` logs them).
        rows: ``wandb.log`` calls, in order.
        group: W&B group.
        tags: W&B tags.
        run_id: continue this run id (as a resumed fit or a ``videonorm test`` does: a second file, same id).
    """
    import wandb

    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=run_id is not None)
    before = set(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    run = wandb.init(mode="offline", dir=run_dir, project="videonorm", name=name, group=group, tags=list(tags),
                     config=config, id=run_id, resume="allow" if run_id else None)
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


def _user_keys(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def test_reads_what_was_logged(run_file):
    run = read_offline_run(run_file)
    assert run.name == "i3d_r50-gn-g4-w8-b4-8x2" and run.group == "demo" and run.tags == ["demo", "t2"]
    assert run.run_id and run_file.name == f"run-{run.run_id}.wandb"
    expected_config = {k: v for k, v in CONFIG.items() if k != "model"} | {"model.nested.key": 3}
    assert run.config == expected_config
    assert [_user_keys(r) for r in run.history] == ROWS
    assert [r["_step"] for r in run.history] == list(range(len(ROWS)))
    assert run.summary["val/top1"] == 0.5 and run.summary["test/top5"] == 0.875 and run.summary["epoch"] == 1
    assert run.complete and run.exit_code == 0 and run.problems == []


def test_run_directory_and_trees_are_found(run_file):
    run_dir = run_file.parent
    assert read_offline_run(run_dir).run_id == read_offline_run(run_file).run_id
    tree = run_dir.parents[2]  # root/<name>/wandb/offline-run-*/: wandb/latest-run links to the same run
    assert (run_dir.parent / "latest-run").is_symlink()
    assert find_offline_runs(tree) == [run_file]
    assert find_offline_runs(run_dir.parent) == [run_file]
    assert find_offline_runs(run_file) == [run_file]


def test_agrees_with_wandb_leet_inspect(tmp_path):
    """Our framing reader against wandb's own (Go) reader, on a run whose records span several 32 KiB blocks."""
    big = "x" * 70_000  # one config record split FIRST/MIDDLE/LAST over three blocks
    rows = [{"val/top1": i / 400, "epoch": i, "pad": "y" * (i % 50)} for i in range(400)]
    path = write_offline_run(tmp_path, "big", {"model.norm": "bn", "blob": big}, rows)
    assert path.stat().st_size > 3 * 32768
    ours = [(r.num, r.WhichOneof("record_type")) for r in iter_records(path)]
    wandb_bin = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb_bin), "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "WANDB_MODE": "offline"}).stdout
    theirs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert ours == [(r["num"], r["type"]) for r in theirs]
    their_history = [r["history"]["item"] for r in theirs if r["type"] == "history"]
    run = read_offline_run(path)
    assert [_user_keys(h) for h in run.history] == [_user_keys(h) for h in their_history] == rows
    assert run.config["blob"] == big


def _copy(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, dst_dir / src.name))


def test_truncated_file_gives_what_was_written_and_says_so(run_file, tmp_path):
    data = run_file.read_bytes()
    full = read_offline_run(run_file)
    # cut inside the record of the third logged row: rows 1-2 are complete, the exit record is gone
    third = data.index(b"trainer/global_step", data.index(b"1.5"))
    path = _copy(run_file, tmp_path)
    path.write_bytes(data[:third])
    run = read_offline_run(path)
    assert [_user_keys(r) for r in run.history] == [_user_keys(r) for r in full.history[:2]]
    assert not run.complete
    assert any(str(path) in p and "truncated at byte" in p for p in run.problems)
    assert any("no exit record" in p for p in run.problems)


def test_truncated_before_the_run_record_is_an_error(run_file, tmp_path):
    path = _copy(run_file, tmp_path)
    path.write_bytes(run_file.read_bytes()[:40])
    with pytest.raises(RunReadError, match=f"{path}.*truncated"):
        read_offline_run(path)


def test_corrupted_file_is_an_error_naming_file_and_offset(run_file, tmp_path):
    data = bytearray(run_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = _copy(run_file, tmp_path)
    path.write_bytes(bytes(data))
    with pytest.raises(RunReadError, match=rf"{path}: corrupted at byte \d+: checksum mismatch"):
        read_offline_run(path)


def test_not_a_wandb_file(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"hello, this is not a transaction log")
    with pytest.raises(RunReadError, match="not a W&B transaction log"):
        read_offline_run(path)


def test_load_runs_keeps_good_runs_and_reports_bad_ones(run_file, tmp_path):
    bad = _copy(run_file, tmp_path / "bad" / "offline-run-x")
    bad.write_bytes(b":W&B" + b"\x00" * 20)
    runs, errors = load_runs([str(run_file.parents[2]), str(tmp_path / "bad"), str(tmp_path / "nope")])
    assert [r.source for r in runs] == [str(run_file)]
    assert len(errors) == 2
    assert any(str(bad) in e and "not a W&B transaction log" in e for e in errors)
    assert any("nope: no such file or directory, and not a W&B path" in e for e in errors)
    assert load_runs([str(run_file)], group="other")[0] == []
    assert load_runs([str(run_file)], tag="t2")[0][0].name == "i3d_r50-gn-g4-w8-b4-8x2"


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


def test_parts_of_one_run_id_are_merged_in_order(tmp_path):
    """A fit, its resumption and a test logged into the same run id: three files, one run."""
    fit = write_offline_run(tmp_path, "r", {"model.norm": "bn", "data.batch_size": 4}, ROWS[:2])
    run_id = read_offline_run(fit).run_id
    # the first part was killed before its exit record: cut it off
    data = fit.read_bytes()
    fit.write_bytes(data[: data.rindex(b"val/top1") + 40])
    resumed = write_offline_run(tmp_path, "r", {"model.norm": "bn", "data.batch_size": 4}, ROWS[2:4], run_id=run_id)
    tested = write_offline_run(tmp_path, "r", {"ckpt_path": "best.ckpt"}, ROWS[4:], run_id=run_id)
    assert len({fit.parent, resumed.parent, tested.parent}) == 3

    (run,), errors = load_runs([str(tmp_path)])
    assert errors == []
    assert run.run_id == run_id and run.parts == [str(fit), str(resumed), str(tested)]
    survived = [_user_keys(r) for r in read_offline_run(fit).history]  # what the cut first part still holds
    assert survived == ROWS[: len(survived)] and len(survived) >= 1
    assert [_user_keys(r) for r in run.history] == survived + ROWS[2:]
    assert {k: run.config[k] for k in ("model.norm", "data.batch_size", "ckpt_path")} == {
        "model.norm": "bn", "data.batch_size": 4, "ckpt_path": "best.ckpt"}
    assert run.summary["test/top1"] == 0.375 and run.complete
    # the cut first part: its truncation is reported, its missing exit record is not (the run went on)
    assert len(run.problems) == 1 and str(fit) in run.problems[0] and "truncated" in run.problems[0]


# ---------------------------------------------------------------- the local record (record.jsonl)


def _record_part(run_dir: Path, stage: str, rows: list[tuple[int, dict]], status: str | None,
                 config: dict | None = None, summary: dict | None = None) -> None:
    """One part of a run's record, written by the real logger (``status`` None: the process died before its end)."""
    from videonorm.train.logger import RunRecordLogger

    logger = RunRecordLogger(run_dir, "abcd1234", "i3d_r50-gn-g4-w8-b4-8x2", stage, group="demo", tags=["demo"])
    logger.log_hyperparams(config or CONFIG)
    for step, values in rows:
        logger.log_metrics(values, step)
    if summary:
        logger.log_summary(summary)
    if status is not None:
        logger.finalize(status)


def test_record_parts_are_one_run_and_a_cut_last_line_is_reported(tmp_path):
    """A fit killed mid-write (no end, a cut last line), resumed to the end, then tested: one run, in order."""
    import math

    from videonorm.record import RECORD_FILE
    from videonorm.results.runs import read_record_run

    killed = [(3, {"train/loss": 2.5, "epoch": 0}), (3, {"val/top1": 0.25, "val/top5": 0.75, "epoch": 0})]
    _record_part(tmp_path, "fit", killed, status=None)
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
    _record_part(tmp_path, "fit", resumed, status="success", summary={"val/best_epoch": 1})
    _record_part(tmp_path, "test", [(7, {"test/top1": 0.375, "test/top5": 0.875})], status="success",
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
    from videonorm.record import RECORD_FILE
    from videonorm.results.runs import read_record_run

    _record_part(tmp_path, "fit", [(3, {"val/top1": 0.25, "epoch": 0})], status="success")
    path = tmp_path / RECORD_FILE
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(RunReadError, match=f"{path}:2: not a record entry"):
        read_record_run(path)


def test_load_runs_reads_the_record_instead_of_the_wandb_files_of_its_run(run_file, tmp_path):
    """A run directory with a record is read from it; .wandb files elsewhere are read as before."""
    run_dir = tmp_path / "runs" / "demo" / "recorded"
    shutil.copytree(run_file.parents[2], run_dir, symlinks=True)  # the W&B files of another run id ...
    _record_part(run_dir, "fit", [(3, {"val/top1": 0.625, "val/top5": 1.0, "epoch": 0})], status="success")
    shutil.copytree(run_file.parents[2], tmp_path / "runs" / "demo" / "wandb_only", symlinks=True)
    runs, errors = load_runs([str(tmp_path / "runs")])
    assert errors == []
    by_source = {Path(r.source).name: r for r in runs}
    assert set(by_source) == {"record.jsonl", run_file.name}  # ... are ignored beside the record
    assert by_source["record.jsonl"].summary["val/top1"] == 0.625
    assert by_source[run_file.name].summary["test/top5"] == 0.875
