"""A run's local record: ``<run dir>/record.jsonl``, every logged metric flushed as it is logged.

Written by training (:class:`videonorm.train.logger.RunRecordLogger`), read by ``videonorm compare``
(:mod:`videonorm.results.records`), so the format lives here, between the two (standard library only).

One JSON object per line, appended and never rewritten, so a killed process loses at most the line it was
writing (which the reader reports and skips) and the metrics it had not logged yet: nothing logged before.
Each ``videonorm fit|validate|test`` of a run (and each resumed fit) appends one *part*::

    {"kind": "start", "stage": "fit", "run_id": "1a2b3c4d", "name": "i3d_r50-gn-b4-32x2", "group": "kinetics400",
     "tags": ["kinetics400"], "time": 1764590000.0}
    {"kind": "config", "config": {"model.norm": "gn", ..., "dataset.hash": "..."}}   the same flat config as W&B's
    {"kind": "row", "step": 7, "values": {"train/loss": 2.31, "epoch": 0}}          one per logging call
    {"kind": "summary", "values": {"diverged": true, ...}}                           explicit summary keys
    {"kind": "end", "status": "success"}                                             or "failed"; none if killed

Why not Lightning's ``CSVLogger``: it buffers rows (100 steps by default), rewrites the whole file in place when
a new metric appears (validation keys after the first epoch, test keys later: a kill then loses the history),
deletes ``metrics.csv`` when a resumed fit reuses its folder (or starts a ``version_N`` folder per part), and
records neither the run config nor whether the run ended.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RECORD_FILE = "record.jsonl"
DIVERGED_TAG = "diverged"  # the W&B tag of a run whose training diverged (the summary keys: diverged_summary)


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf: a diverged loss is written as the string "nan" / "inf" / "-inf"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def append_entries(path: str | os.PathLike, entries: list[dict[str, Any]], sync: bool = False) -> None:
    """Append entries to a record, each as one line, in one ``write`` (so a kill never splits two entries).

    Args:
        path: the record file (created with its folder when missing).
        entries: JSON-serializable dicts with a ``kind`` key.
        sync: ``fsync`` afterwards (the end of a part): a kill of the process loses nothing written either way,
            a crash of the machine loses what the OS had not yet written to disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(_json_safe(e), allow_nan=False, default=str) + "\n" for e in entries).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_entries(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries of a record in order, and the problems found (an unfinished last line: the writer was killed).

    Args:
        path: the record file.

    Raises:
        OSError: the file cannot be read.
        ValueError: a line other than the last is not a JSON object (the file was edited or damaged); the
            message names the file and line.
    """
    lines = Path(path).read_bytes().split(b"\n")
    entries, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or "kind" not in entry:
                raise ValueError("not a record entry")
        except ValueError as err:
            if number == len(lines):  # no newline after it: the write was cut
                problems.append(f"{path}:{number}: the last line is incomplete (the run was killed while writing "
                                f"it); the {len(entries)} entries before it were read")
                break
            raise ValueError(f"{path}:{number}: not a record entry ({err})") from None
        entries.append(entry)
    return entries, problems


def diverged_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The summary keys that mark a run diverged (W&B summary and record alike): ``diverged`` and ``diverged/<key>``.

    Args:
        info: what the divergence guard knows (``step``, ``epoch``, ``loss``, ``last_finite_loss``...).
    """
    return {"diverged": True, **{f"diverged/{k}": v for k, v in info.items()}}


def diverged_info(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The divergence details of a run summary (``step``, ``epoch``, ``loss``...), or None if it did not diverge.

    Args:
        summary: a run's summary (W&B's or the record's).
    """
    if not summary.get("diverged"):
        return None
    return {k.split("/", 1)[1]: v for k, v in summary.items() if k.startswith("diverged/")}


def diverged(path: str | os.PathLike) -> dict[str, Any] | None:
    """The divergence details a record holds, or None (no record, or it never diverged).

    Args:
        path: the record file.
    """
    if not Path(path).is_file():
        return None
    summary: dict[str, Any] = {}
    for entry in read_entries(path)[0]:
        if entry["kind"] == "summary":
            summary.update(entry.get("values", {}))
    return diverged_info(summary)
