"""Local runs read from their record (``<run dir>/record.jsonl``; the format is :mod:`videonorm.record`).

The record is written and flushed by the project itself at every logging call, so a killed run keeps what it
logged; a run's W&B files are never read (W&B's own reader for them is ``wandb leet inspect``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videonorm.identity import flatten
from videonorm.record import DIVERGED_TAG, RECORD_FILE, diverged_info, read_entries
from videonorm.results.run_data import RunData, RunReadError


def _value(value: Any) -> Any:
    # the record writes non-finite floats as strings (JSON has none)
    return float(value) if value in ("nan", "inf", "-inf") else value


def read_record_run(path: str | Path) -> RunData:
    """Read one local run from its record (``record.jsonl``; format in :mod:`videonorm.record`).

    Parts (fit, resumed fits, validate/test: each starts with a ``start`` entry) are read in order: config and
    summary updated part by part (later wins), history concatenated; a part without an end entry that a later part
    continued (a killed, then resumed fit) is not reported, the last part's state is. A last line cut by a kill is
    reported and skipped.

    Args:
        path: the ``record.jsonl`` file (or the run directory holding it).

    Raises:
        RunReadError: unreadable, a damaged line other than the last, or no run in it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    try:
        entries, problems = read_entries(path)
    except (OSError, ValueError) as e:
        raise RunReadError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from e
    if not any(e["kind"] == "start" for e in entries):
        raise RunReadError(f"{path}: no start entry: not a run record")
    run = RunData(source=str(path), parts=[str(path)], problems=problems)
    status = None  # the current part's end status; None while it has no end
    for entry in entries:
        kind = entry["kind"]
        if kind == "start":
            run.run_id, run.name, run.group = entry.get("run_id", ""), entry.get("name", ""), entry.get("group", "")
            run.tags, status = list(entry.get("tags", [])), None
            run.job_type = run.job_type or ("train" if entry.get("stage") == "fit" else entry.get("stage", ""))
        elif kind == "config":
            run.config.update(flatten(entry.get("config", {})))
        elif kind == "row":
            row = {k: _value(v) for k, v in entry.get("values", {}).items()}
            if entry.get("step") is not None:
                row["trainer/global_step"] = entry["step"]
            run.history.append(row)
            run.summary.update(row)
        elif kind == "summary":
            run.summary.update({k: _value(v) for k, v in entry.get("values", {}).items()})
        elif kind == "end":
            status = entry.get("status")
    if diverged_info(run.summary) is not None and DIVERGED_TAG not in run.tags:
        run.tags.append(DIVERGED_TAG)  # as W&B tags it
    run.complete = status == "success"
    run.exit_code = None if status is None else 0 if run.complete else 1
    if status is None:
        run.problems.append(f"{path}: no end entry: the run is still running or was killed")
    elif not run.complete:
        run.problems.append(f"{path}: the run ended with status {status!r}")
    return run


def find_records(root: str | Path) -> list[Path]:
    """All run records (``record.jsonl``) at or below ``root`` (the file itself, a run dir or a tree), sorted.

    Args:
        root: file or directory.
    """
    root = Path(root)
    if root.is_file():
        return [root] if root.name == RECORD_FILE else []
    return sorted(p for p in root.rglob(RECORD_FILE) if p.is_file())
