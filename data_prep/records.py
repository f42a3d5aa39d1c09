"""One small JSON record per encoded video, so that a rerun rebuilds its report from what is on disk.

``trim`` and ``resize`` write ``<out_dir>.records/<name>.json`` for every output ``<out_dir>/<name>``: its source
(name and size), the asked window, frames, frame rate, size, frames repeated or dropped, and the flag it was given
(``short``, ``truncated_source``, ...), if any. The record is written atomically *before* the output is renamed
into place, so an output that exists has its record, also when the run that made it was killed before writing
its report. A rerun lists each skipped output with the flag its record holds, and redoes an output whose
record names another source (a replacement file appeared, a source was downloaded again).

Why a record per file: one atomic rename per record is safe on every filesystem (NFS, Lustre) and from any
number of worker processes, where appends to one shared journal are not; and re-reading the outputs instead
would be slower (a video's header against a 300-byte file) and could not tell the cause of a flag, which needs
the source. The records sit beside the video folder, not in it, so the folder holds only videos.
"""

from __future__ import annotations

import json
from pathlib import Path

from videonorm.files import write_text_atomic


def records_dir(out_dir: Path) -> Path:
    """The folder of the records of the videos in ``out_dir``: ``<out_dir>.records``."""
    return out_dir.with_name(f"{out_dir.name}.records")


def record_path(output: Path) -> Path:
    """Where the record of ``output`` lives: ``<its folder>.records/<its name>.json``."""
    return records_dir(output.parent) / f"{output.name}.json"


def write_record(output: Path, record: dict[str, object]) -> None:
    """Write the record of ``output`` atomically (untouched if unchanged).

    Args:
        output: the output video (it need not exist yet).
        record: JSON-serialisable fields; ``bytes`` (the output's size) ties the record to its file.
    """
    write_text_atomic(record_path(output), json.dumps(record, sort_keys=True) + "\n")


def read_record(output: Path) -> dict[str, object] | None:
    """The record of ``output``; None if there is none, it cannot be read, or it describes another file.

    Args:
        output: an existing output video.
    """
    path = record_path(output)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("bytes") != output.stat().st_size:
        return None  # the video was replaced by hand after its record was written
    return record
