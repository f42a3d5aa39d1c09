"""Every run the inputs of ``videonorm compare`` name: local records below paths, or W&B API paths.

A local run is read from its record (:mod:`videonorm.results.records`), an online one through the W&B API
(:mod:`videonorm.results.wandb_api`); each becomes a :class:`~videonorm.results.run_data.RunData`. A local run
directory with W&B's offline files (``wandb/offline-run-*/run-*.wandb``) but no record is not read: that format is
W&B's private one (only its own tools read it); one line says so and how to compare such a run (upload it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from videonorm.record import RECORD_FILE
from videonorm.results.records import find_records, read_record_run
from videonorm.results.run_data import RunData, RunReadError
from videonorm.results.wandb_api import fetch_online_runs, parse_wandb_path


def _wandb_run_dirs(root: Path) -> dict[Path, Path]:
    """The run directories of the W&B offline files at or below ``root``, resolved -> as found.

    W&B writes ``<run dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb`` (and a ``latest-run`` link to the last).
    """
    files = [root] if root.suffix == ".wandb" else root.rglob("run-*.wandb") if root.is_dir() else []
    dirs = {}
    for f in files:
        if f.is_file():
            run_dir = f.parents[2] if f.parent.parent.name == "wandb" else f.parent
            dirs.setdefault(run_dir.resolve(), run_dir)
    return dirs


def load_runs(inputs: Iterable[str], group: str | None = None, tag: str | None = None
              ) -> tuple[list[RunData], list[str]]:
    """Read every run named by ``inputs`` (local paths, searched recursively for records, or W&B paths).

    One broken run never stops the others: its error goes in the returned list of messages.

    Args:
        inputs: paths (file / run dir / any dir above runs) or W&B paths.
        group: keep only runs in this W&B group (applied to local runs too).
        tag: keep only runs with this tag (applied to local runs too).

    Returns:
        (runs, errors): the runs read, and one message per input or run that could not be read.
    """
    online: list[RunData] = []
    errors: list[str] = []
    records: dict[Path, Path] = {}  # resolved -> as found: every local file once, even if two inputs overlap
    unread: dict[Path, Path] = {}  # run directories with W&B files, resolved -> as found
    for spec in inputs:
        path = Path(spec)
        if path.exists():
            found, wandb_dirs = find_records(path), _wandb_run_dirs(path)
            if not found and not wandb_dirs:
                errors.append(f"{spec}: no runs found below it (no {RECORD_FILE}, no W&B run-*.wandb file)")
            records.update((f.resolve(), f) for f in found if f.resolve() not in records)
            unread.update((k, v) for k, v in wandb_dirs.items() if k not in unread)
        elif parse_wandb_path(spec) is not None:
            try:
                online.extend(fetch_online_runs(spec, group, tag))
            except RunReadError as e:  # a mistyped local path looks like entity/project too: say both
                errors.append(f"{e} (read as a W&B path: there is no local file or directory {spec})")
        else:
            errors.append(f"{spec}: no such file or directory, and not a W&B path (entity/project[/run_id])")
    recorded = {r.parent for r in records}
    for resolved, run_dir in sorted(unread.items()):
        if resolved not in recorded:
            files = run_dir / "wandb" if (run_dir / "wandb").is_dir() else run_dir
            errors.append(f"{run_dir}: W&B offline files only, no {RECORD_FILE} (a run of another tool, or from before "
                          "videonorm wrote records): compare reads local runs from their record, not W&B's private "
                          f".wandb format; upload it (wandb sync {files}) and compare the W&B project (entity/project)")
    runs: list[RunData] = []
    for f in sorted(records.values()):
        try:
            runs.append(read_record_run(f))
        except RunReadError as e:
            errors.append(str(e))
    runs += online
    runs = [r for r in runs if (not group or r.group == group) and (not tag or tag in r.tags)]
    return runs, errors
