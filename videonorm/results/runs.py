"""Read runs into plain Python data: local records, offline ``.wandb`` files (no network) or the W&B API (online).

A run becomes a :class:`RunData`: flat config, history rows, summary, and a list of ``problems`` (what was
wrong with reading it, e.g. a file that ends inside a record because the run was killed mid-write).

Local runs come from their record first (``<run dir>/record.jsonl``, :mod:`videonorm.record`: written and flushed
by the project itself at every logging call, so a killed run keeps what it logged); the ``.wandb`` files of a run
directory that has a record are not read. Runs without a record (older runs, runs of other tools) are read from
their offline ``.wandb`` files, below.

Offline runs. ``wandb.init(mode="offline")`` writes ``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``,
a transaction log in LevelDB's log format holding protobuf ``Record`` messages
(``wandb.proto.wandb_internal_pb2``). wandb >= 0.2x reads these files only in its Go core
(``wandb leet inspect --json PATH`` prints them as JSON lines, one process per run); the Python reader it
used to ship (``wandb/sdk/internal/datastore.py``) is gone. The log framing is small and stable (it is
LevelDB's), so :func:`iter_records` implements it here and hands each payload to wandb's own protobuf
classes, in-process and without network. ``tests/test_runs.py`` checks it against ``wandb leet inspect``.

Framing (``wandb/core/pkg/leveldb`` in wandb's sources): a 7-byte file header ``":W&B" <u16 0xBEE1>
<u8 version 0>``, then 32 KiB blocks counted from the start of the file. Each chunk has a 7-byte header
``<u32 crc> <u16 length> <u8 type>`` (little endian; crc = CRC-32 (zlib) of the type byte then the data);
type FULL holds a whole record, FIRST/MIDDLE/LAST split one across blocks. A block tail shorter than a
chunk header is zero padding.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videonorm.identity import flatten
from videonorm.record import DIVERGED_TAG, RECORD_FILE, diverged_info, read_entries

_FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, data length, chunk type
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# CRC of each chunk type byte: the chunk's crc continues from it over the data.
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}

# entity/project or entity/project/run_id, optionally as entity/project/runs/run_id or a W&B URL.
_WANDB_PATH = re.compile(r"^(?:https?://[^/]+/)?(?P<entity>[\w.-]+)/(?P<project>[\w.-]+)(?:/(?:runs/)?(?P<run>[\w-]+))?/?$")


class RunReadError(Exception):
    """A run that cannot be read at all (unreadable or corrupted file, run not found online)."""


class TruncatedLog(Exception):
    """The log ends inside a chunk or record: the writer was killed mid-write (or the file was cut)."""

    def __init__(self, path: Path, offset: int, size: int, records: int):
        self.path, self.offset, self.size, self.records = path, offset, size, records
        super().__init__(
            f"{path}: truncated at byte {offset} of {size} (the file ends inside a record); "
            f"the {records} complete records before it were read"
        )


@dataclass
class RunData:
    """One run, as read from W&B.

    Attributes:
        source: where it came from (the ``.wandb`` file, or ``entity/project/run_id``).
        run_id: W&B run id.
        name: display name (``i3d_r50-gn-b4-32x2``).
        group: W&B group ("" if none).
        tags: W&B tags.
        config: flat config, dot-separated keys (``model.norm``); nested dicts are flattened.
        history: logged rows in order, each a dict of key -> value (``_step``, ``epoch``, ``val/top1``...).
        summary: final summary (last value of each key unless the run set it; ``diverged`` when training stopped
            at a non-finite loss, with ``diverged/step``, ``diverged/epoch``, ``diverged/loss``...).
        complete: the run finished (exit record offline, state ``finished`` online).
        exit_code: process exit code if known.
        problems: what went wrong reading or running it; empty for a clean, finished run.
        parts: the files it was read from: its record, or its ``.wandb`` files in order (a resumed fit, or a
            ``videonorm test`` logging into the trained run, writes one more file under the same run id).
        job_type: W&B job type (``train``, ``test``...; "" if unknown).
    """

    source: str
    run_id: str = ""
    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    job_type: str = ""

    @property
    def label(self) -> str:
        """Short human name: ``name (id)``."""
        return f"{self.name or '?'} ({self.run_id or '?'})"


def _read_exact(data: bytes, offset: int, n: int, path: Path, records: int) -> bytes:
    if offset + n > len(data):
        raise TruncatedLog(path, offset, len(data), records)
    return data[offset : offset + n]


def iter_records(path: str | Path) -> Iterator[Any]:
    """Yield the protobuf ``Record`` messages of a ``.wandb`` transaction log, in order.

    Args:
        path: the ``run-<id>.wandb`` file.

    Raises:
        RunReadError: not a W&B log, a bad checksum, a malformed chunk sequence or an undecodable record
            (the message names the file and byte offset). Records before the damage were already yielded.
        TruncatedLog: the file ends inside a chunk or a split record (raised after yielding every
            complete record before that point).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RunReadError(f"{path}: cannot read: {e}") from e
    if len(data) < _FILE_HEADER.size:
        raise TruncatedLog(path, 0, len(data), 0)
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if ident != _IDENT or magic != _MAGIC:
        raise RunReadError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    if version != _VERSION:
        raise RunReadError(f"{path}: unsupported W&B log version {version} (this reader knows {_VERSION})")

    offset, count = _FILE_HEADER.size, 0
    pending: bytearray | None = None  # payload of a split record (FIRST seen, waiting for LAST)
    pending_start = 0
    while offset < len(data):
        left_in_block = _BLOCK - offset % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:  # zero padding at the end of a block
            offset += left_in_block
            continue
        start = offset
        crc, length, kind = _CHUNK_HEADER.unpack(_read_exact(data, offset, _CHUNK_HEADER.size, path, count))
        offset += _CHUNK_HEADER.size
        if kind not in _TYPE_CRC or length > left_in_block - _CHUNK_HEADER.size:
            raise RunReadError(f"{path}: corrupted at byte {start}: invalid chunk header (type {kind}, "
                               f"length {length})")
        payload = _read_exact(data, offset, length, path, count)
        offset += length
        if zlib.crc32(payload, _TYPE_CRC[kind]) != crc:
            raise RunReadError(f"{path}: corrupted at byte {start}: checksum mismatch (data damaged)")
        if kind == _FULL and pending is None:
            record, rec_start = bytes(payload), start
        elif kind == _FIRST and pending is None:
            pending, pending_start = bytearray(payload), start
            continue
        elif kind in (_MIDDLE, _LAST) and pending is not None:
            pending += payload
            if kind == _MIDDLE:
                continue
            record, rec_start, pending = bytes(pending), pending_start, None
        else:
            raise RunReadError(f"{path}: corrupted at byte {start}: chunk type {kind} out of sequence")
        msg = pb.Record()
        try:
            msg.ParseFromString(record)
        except Exception as e:  # protobuf's DecodeError; checksum passed, so this is a writer bug
            raise RunReadError(f"{path}: record at byte {rec_start} does not decode: {e}") from e
        count += 1
        yield msg
    if pending is not None:
        raise TruncatedLog(path, pending_start, len(data), count)


def _item_key(item: Any) -> str:
    return item.key if item.key else ".".join(item.nested_key)


def _history_value(item: Any) -> Any:
    which = item.WhichOneof("value")  # newer writers type the value; older ones only fill value_json
    if which is None:
        return json.loads(item.value_json) if item.value_json else None
    if which == "none":
        return None
    if which == "json":
        return json.loads(item.json)
    return getattr(item, which)


def _apply_config(config: dict[str, Any], rec: Any) -> None:
    """Apply a config update to ``config`` (top-level keys as W&B stores them; flattened at the end)."""
    for item in rec.update:
        key = _item_key(item)
        if not key.startswith("_"):  # wandb's own bookkeeping (_wandb)
            config[key] = json.loads(item.value_json)
    for item in rec.remove:
        config.pop(_item_key(item), None)


def read_offline_run(path: str | Path) -> RunData:
    """Read one offline run from its ``.wandb`` file (or the run directory holding it), without network.

    A file that ends inside a record (run killed mid-write) gives what was written before, with the
    truncation in ``problems``; a run without an exit record (still running, or killed) is marked incomplete.

    Args:
        path: ``run-<id>.wandb`` or the ``offline-run-*`` directory containing exactly one.

    Raises:
        RunReadError: unreadable or corrupted file (the message names it).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("run-*.wandb"))
        if len(files) != 1:
            raise RunReadError(f"{path}: expected one run-*.wandb file, found {len(files)}")
        path = files[0]
    run = RunData(source=str(path), parts=[str(path)])
    raw_config: dict[str, Any] = {}
    try:
        for rec in iter_records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                r = rec.run
                run.run_id, run.name, run.group, run.job_type = r.run_id, r.display_name, r.run_group, r.job_type
                run.tags = list(r.tags)
                _apply_config(raw_config, r.config)
            elif kind == "config":
                _apply_config(raw_config, rec.config)
            elif kind == "history":
                run.history.append({_item_key(i): _history_value(i) for i in rec.history.item})
            elif kind == "summary":
                for item in rec.summary.update:
                    run.summary[_item_key(item)] = json.loads(item.value_json)
                for item in rec.summary.remove:
                    run.summary.pop(_item_key(item), None)
            elif kind == "exit":
                run.complete, run.exit_code = True, rec.exit.exit_code
    except TruncatedLog as e:
        if not run.run_id:  # nothing usable before the cut: not even the run record
            raise RunReadError(str(e)) from e
        run.problems.append(str(e))
    run.config = flatten(raw_config)
    if not run.complete:
        run.problems.append(f"{path}: {_NO_EXIT}: the run is still running or was killed")
    elif run.exit_code:
        run.problems.append(f"{path}: the run exited with code {run.exit_code}")
    return run


_NO_EXIT = "no exit record"


def merge_parts(parts: list[RunData]) -> RunData:
    """One run from the offline files of one run id, in the order they were written.

    ``videonorm fit --ckpt_path last`` (resume) and ``videonorm test`` continue the trained run's W&B id, and
    each writes a new ``offline-run-<time>-<id>`` directory. History is concatenated, config and summary
    updated part by part (later wins), identity and completion come from the last part. An earlier part without
    an exit record was interrupted and then continued, so that is not reported; everything else is.

    Args:
        parts: runs read by ``read_offline_run`` with the same ``run_id``, in writing order.
    """
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]
    files = [f for p in parts for f in p.parts]
    merged = RunData(
        source=os.path.commonpath(files),
        run_id=last.run_id, name=last.name, group=last.group, tags=list(last.tags),
        complete=last.complete, exit_code=last.exit_code, parts=files, job_type=parts[0].job_type,
    )
    for i, part in enumerate(parts):
        merged.config.update(part.config)
        merged.summary.update(part.summary)
        merged.history.extend(part.history)
        merged.problems.extend(p for p in part.problems if i == len(parts) - 1 or _NO_EXIT not in p)
    return merged


def _writing_order(path: Path) -> tuple:
    # (offline-)run-YYYYMMDD_HHMMSS-<id>: the directory name orders parts to the second; mtime breaks ties
    stamp = re.search(r"\d{8}_\d{6}", path.parent.name)
    return (stamp.group(0) if stamp else ""), path.stat().st_mtime


def _value(value: Any) -> Any:
    # the record writes non-finite floats as strings (JSON has none)
    return float(value) if value in ("nan", "inf", "-inf") else value


def read_record_run(path: str | Path) -> RunData:
    """Read one local run from its record (``record.jsonl``; format in :mod:`videonorm.record`).

    Parts (fit, resumed fits, validate/test) are read in order like the ``.wandb`` parts of one run id (see
    :func:`merge_parts`): config and summary updated part by part, history concatenated; a part without an end
    entry that a later part continued is not reported, the last part's state is. A last line cut by a kill is
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


def find_offline_runs(root: str | Path) -> list[Path]:
    """All ``run-*.wandb`` files at or below ``root`` (a file, a run dir, a ``wandb/`` dir or a tree), sorted.

    Args:
        root: file or directory.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    found = {p.resolve(): p for p in root.rglob("run-*.wandb") if p.is_file()}  # latest-run symlink: dedupe
    return sorted(found.values())


def parse_wandb_path(text: str) -> tuple[str, str, str | None] | None:
    """Split ``entity/project[/run_id]`` (or ``.../runs/run_id``, or a W&B URL) into parts; None if not one.

    Args:
        text: the string given on the command line.
    """
    m = _WANDB_PATH.match(text)
    if m is None:
        return None
    return m["entity"], m["project"], m["run"]


def project_filters(group: str | None, tag: str | None) -> dict[str, Any]:
    """W&B API ``runs()`` filters (MongoDB syntax) for a group and/or a tag.

    Args:
        group: W&B group name, or None.
        tag: a tag the runs must carry, or None.
    """
    filters: dict[str, Any] = {}
    if group:
        filters["group"] = group
    if tag:
        filters["tags"] = {"$in": [tag]}
    return filters


def _from_api_run(api_run: Any) -> RunData:
    """Convert a ``wandb.apis.public.Run`` (this downloads its full history)."""
    run = RunData(
        source="/".join(api_run.path),
        run_id=api_run.id,
        name=api_run.name or "",
        group=api_run.group or "",
        tags=list(api_run.tags or []),
        config=flatten({k: v for k, v in api_run.config.items() if not k.startswith("_")}),
        history=[dict(row) for row in api_run.scan_history()],
        summary=dict(api_run.summary_metrics),
        complete=api_run.state == "finished",
    )
    if not run.complete:
        run.problems.append(f"{run.source}: state is {api_run.state!r}, not 'finished'")
    return run


def fetch_online_runs(spec: str, group: str | None = None, tag: str | None = None) -> list[RunData]:
    """Read runs through the W&B API: one run (``entity/project/run_id``) or a project filtered by group/tag.

    Args:
        spec: ``entity/project`` or ``entity/project/run_id`` (URLs too).
        group: only runs in this group (projects only).
        tag: only runs with this tag (projects only).

    Raises:
        RunReadError: bad path, or the API failed (no credentials, no network, run not found).
    """
    parts = parse_wandb_path(spec)
    if parts is None:
        raise RunReadError(f"{spec}: not a W&B path (entity/project or entity/project/run_id)")
    entity, project, run_id = parts
    import wandb

    try:
        api = wandb.Api(timeout=60)
        if run_id:
            return [_from_api_run(api.run(f"{entity}/{project}/{run_id}"))]
        return [_from_api_run(r) for r in api.runs(f"{entity}/{project}", filters=project_filters(group, tag))]
    except Exception as e:  # the API raises many types (CommError, HTTPError, UsageError, ValueError)
        raise RunReadError(f"{spec}: W&B API failed: {type(e).__name__}: {e}") from e


def load_runs(inputs: Iterable[str], group: str | None = None, tag: str | None = None
              ) -> tuple[list[RunData], list[str]]:
    """Read every run named by ``inputs`` (local paths, searched recursively, or W&B paths).

    Local runs come from their records; the ``.wandb`` files of a run directory with a record (and any other
    ``.wandb`` files of a run id that has a record) are skipped. One broken run never stops the others: its error
    goes in the returned list of messages. Local ``.wandb`` files with the same run id (a resumed fit, a test
    logged into the trained run) become one run (``merge_parts``).

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
    local: dict[Path, Path] = {}
    for spec in inputs:
        if Path(spec).exists():
            found, files = find_records(spec), find_offline_runs(spec)
            if not found and not files:
                errors.append(f"{spec}: no runs found below it (no {RECORD_FILE}, no W&B run-*.wandb file)")
            records.update((f.resolve(), f) for f in found if f.resolve() not in records)
            local.update((f.resolve(), f) for f in files if f.resolve() not in local)
        elif parse_wandb_path(spec) is not None:
            try:
                online.extend(fetch_online_runs(spec, group, tag))
            except RunReadError as e:  # a mistyped local path looks like entity/project too: say both
                errors.append(f"{e} (read as a W&B path: there is no local file or directory {spec})")
        else:
            errors.append(f"{spec}: no such file or directory, and not a W&B path (entity/project[/run_id])")
    runs: list[RunData] = []
    for f in sorted(records.values()):
        try:
            runs.append(read_record_run(f))
        except RunReadError as e:
            errors.append(str(e))
    recorded_dirs = {r.parent for r in records}
    recorded_ids = {r.run_id for r in runs}
    by_id: dict[str, list[RunData]] = {}
    for f in sorted(local.values(), key=_writing_order):
        if recorded_dirs.intersection(f.resolve().parents):
            continue  # its run directory has a record
        try:
            part = read_offline_run(f)
        except RunReadError as e:
            errors.append(str(e))
            continue
        if part.run_id not in recorded_ids:
            by_id.setdefault(part.run_id, []).append(part)
    runs += [merge_parts(parts) for parts in by_id.values()] + online
    runs = [r for r in runs if (not group or r.group == group) and (not tag or tag in r.tags)]
    return runs, errors
