"""What W&B wrote offline, read by W&B's own reader (``wandb leet inspect --json``, one process per file).

videonorm never reads these files (``compare`` reads a run's local record); the tests read them to check what W&B
was given: config, history, summary, tags, job type, exit code and artifacts of each part of a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videonorm.identity import flatten

_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


@dataclass
class OfflineRun:
    """One ``run-<id>.wandb`` file: one part of a W&B run (a resumed fit or a test writes one more)."""

    source: str
    run_id: str = ""
    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # flattened, W&B's own keys (_wandb) left out
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None  # None: no exit record (the process was killed)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """The part has an exit record (whatever its code): its process ended, it was not killed."""
        return self.exit_code is not None


def find_offline_runs(root: str | Path) -> list[Path]:
    """All ``run-*.wandb`` files at or below ``root`` (a file, a run dir, a ``wandb/`` dir or a tree), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    found = {p.resolve(): p for p in root.rglob("run-*.wandb") if p.is_file()}  # latest-run symlink: dedupe
    return sorted(found.values())


def inspect_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of one ``.wandb`` file as W&B's reader prints them (a file cut by a kill: those before the cut)."""
    wandb_bin = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb_bin), "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "WANDB_MODE": "offline"}).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _values(update: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: W&B's reader prints non-finite floats as strings
    return {k: _NON_FINITE.get(v, v) if isinstance(v, str) else v for k, v in update.items()}


def read_offline_run(path: str | Path) -> OfflineRun:
    """One ``.wandb`` file (or the ``offline-run-*`` directory holding it) as an :class:`OfflineRun`."""
    path = Path(path)
    if path.is_dir():
        (path,) = path.glob("run-*.wandb")
    run = OfflineRun(source=str(path))
    config: dict[str, Any] = {}
    for record in inspect_records(path):
        kind, body = record["type"], record.get(record["type"], {})
        if kind == "run":
            run.run_id, run.name, run.tags = body.get("run_id", ""), body.get("display_name", ""), body.get("tags", [])
            run.group, run.job_type = body.get("run_group", ""), body.get("job_type", "")
            config.update(body.get("config", {}).get("update", {}))
        elif kind == "config":
            config.update(body.get("update", {}))
        elif kind == "history":
            run.history.append(_values(body["item"]))
        elif kind == "summary":
            run.summary.update(_values(body.get("update", {})))
        elif kind == "exit":
            run.exit_code = body.get("exit_code", 0)
        elif kind == "artifact":
            run.artifacts.append(body)
    run.config = flatten({k: v for k, v in config.items() if not k.startswith("_")})
    return run
