"""Kinetics annotation CSVs: parse, validate, and name the trimmed file of each segment.

Official layout (Kinetics-400/600/700-2020; extra columns such as ``is_cc`` are allowed)::

    label,youtube_id,time_start,time_end,split
    abseiling,--07WQ2iBlw,1,11,train

The test CSVs of some releases have no ``label`` column (or empty labels); that is accepted for rows of
split ``test`` only. The split column says ``train``, ``validate`` (``val`` in Kinetics-400's CSVs; read as
``validate``) or ``test``. Times are whole seconds (``14`` or ``14.0``). Each segment's trimmed video is named
``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``, the CVDF mirror's convention.

Every problem is reported with ``file:line``; :func:`read_annotations` collects all of them and raises one
:class:`~data_prep.errors.InputError`, or, with ``skip_bad_rows=True``, keeps the good rows and lists the
bad ones in :attr:`Annotations.errors`.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.errors import InputError

SPLITS = ("train", "validate", "test")
# Kinetics-400's CSVs write "val" in the split column, Kinetics-700-2020's "validate": the same split.
SPLIT_ALIASES = {"val": "validate"}
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end", "split")
# Report columns that identify a segment (used by the trim and manifest reports).
SEGMENT_COLUMNS = ("name", "label", "youtube_id", "time_start", "time_end", "split")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_LISTED = 50


def segment_name(youtube_id: str, time_start: int, time_end: int) -> str:
    """File name of a trimmed segment: ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``.

    Args:
        youtube_id: the video's YouTube id.
        time_start: segment start in whole seconds.
        time_end: segment end in whole seconds.
    """
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


@dataclass(frozen=True)
class Segment:
    """One annotated segment.

    Args:
        label: class name ("" for unlabelled test rows).
        youtube_id: YouTube id of the full source video.
        time_start: start in whole seconds.
        time_end: end in whole seconds (exclusive).
        split: ``train``, ``validate`` or ``test``.
        line: line of the row in its CSV (header is line 1).
    """

    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str
    line: int = 0

    @property
    def name(self) -> str:
        """The trimmed file name."""
        return segment_name(self.youtube_id, self.time_start, self.time_end)

    def fields(self) -> dict[str, object]:
        """Report columns (see ``SEGMENT_COLUMNS``)."""
        return {"name": self.name, "label": self.label, "youtube_id": self.youtube_id,
                "time_start": self.time_start, "time_end": self.time_end, "split": self.split}


@dataclass
class Annotations:
    """A parsed annotation CSV.

    Args:
        path: the CSV file.
        segments: valid rows, in file order.
        errors: ``file:line: problem`` for each skipped row (only with ``skip_bad_rows=True``).
    """

    path: Path
    segments: list[Segment]
    errors: list[str] = field(default_factory=list)

    def labels(self) -> set[str]:
        """The non-empty labels used in this file."""
        return {s.label for s in self.segments if s.label}


def _whole_seconds(text: str, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{column} {text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{column} {text!r} is negative")
    if value != int(value):
        raise ValueError(f"{column} {text!r} is not a whole number of seconds")
    return int(value)


def _parse_row(row: dict[str, str | None], has_label: bool) -> Segment:
    """One CSV row -> Segment; raises ValueError with the problem (without file:line)."""
    if None in row.values() or None in row:
        raise ValueError("wrong number of fields")
    youtube_id = (row["youtube_id"] or "").strip()
    split = (row["split"] or "").strip()
    split = SPLIT_ALIASES.get(split, split)
    label = (row.get("label") or "").strip() if has_label else ""
    if not _YOUTUBE_ID.match(youtube_id):
        raise ValueError(f"bad youtube_id {youtube_id!r} (expected letters, digits, '-' or '_')")
    if len(label.splitlines()) > 1:  # a quoted line break: classes.txt would get a line (and a label) too many
        raise ValueError(f"label {label!r} contains a line break")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)}, or val)")
    if not label and split != "test":
        if not has_label:
            raise ValueError(f"split {split!r} needs a label column (only test rows may be unlabelled)")
        raise ValueError(f"empty label in split {split!r} (only test rows may be unlabelled)")
    start = _whole_seconds((row["time_start"] or "").strip(), "time_start")
    end = _whole_seconds((row["time_end"] or "").strip(), "time_end")
    if end <= start:
        raise ValueError(f"time_end {end} is not after time_start {start}")
    return Segment(label, youtube_id, start, end, split)


def read_annotations(path: Path | str, *, skip_bad_rows: bool = False) -> Annotations:
    """Parse and validate a Kinetics annotation CSV.

    Checks: header has ``youtube_id,time_start,time_end,split`` (and ``label`` unless every row is a
    test row); times are non-negative whole seconds with ``time_end > time_start``; split is one of
    ``train/validate/test``; label is non-empty outside test; no segment appears twice.

    Args:
        path: the CSV file.
        skip_bad_rows: keep going past bad rows and list them in ``errors`` instead of raising.

    Returns:
        The parsed annotations.

    Raises:
        InputError: the file is missing or its header is bad, or (without ``skip_bad_rows``) any row is
            bad; the message lists every problem as ``file:line: problem``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        if not header:
            raise InputError(f"{path}:1: empty file, expected header label,youtube_id,time_start,time_end,split")
        reader.fieldnames = header
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {','.join(header)})")
        has_label = "label" in header
        segments: list[Segment] = []
        errors: list[str] = []
        first_line: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            try:
                seg = _parse_row(row, has_label)
            except ValueError as err:
                errors.append(f"{path}:{line}: {err}")
                continue
            if seg.name in first_line:
                errors.append(f"{path}:{line}: duplicate segment {seg.youtube_id} "
                              f"[{seg.time_start}, {seg.time_end}] (first on line {first_line[seg.name]})")
                continue
            first_line[seg.name] = line
            segments.append(Segment(seg.label, seg.youtube_id, seg.time_start, seg.time_end, seg.split, line))
    if errors and not skip_bad_rows:
        listed = errors[:_MAX_LISTED]
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise InputError(f"{len(errors)} bad row(s) in {path} (use --skip-bad-rows to drop them):\n  "
                         + "\n  ".join(listed) + more)
    if errors:
        print(f"warning: skipped {len(errors)} bad row(s) of {path}:\n  " + "\n  ".join(errors[:_MAX_LISTED]),
              file=sys.stderr)
    return Annotations(path, segments, errors)


def find_split_csv(annotations_dir: Path, split: str) -> Path:
    """The annotation CSV of ``split`` in an official release folder.

    Tries ``{split}.csv`` (K400/K600/K700-2020 releases), then a unique ``*{split}*.csv``; ``validate``
    also matches ``val``.

    Args:
        annotations_dir: folder with the release's CSVs.
        split: ``train``, ``validate`` or ``test``.

    Raises:
        InputError: none or several candidates.
    """
    aliases = [split, "val"] if split == "validate" else [split]
    for alias in aliases:
        exact = annotations_dir / f"{alias}.csv"
        if exact.is_file():
            return exact
    for alias in aliases:
        found = sorted(annotations_dir.glob(f"*{alias}*.csv"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InputError(f"{annotations_dir}: several CSVs for split {split!r}: "
                             f"{', '.join(p.name for p in found)}")
    raise InputError(f"{annotations_dir}: no annotation CSV for split {split!r} (expected {split}.csv)")
