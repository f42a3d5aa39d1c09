"""Per-step bookkeeping: what was done, skipped, failed or flagged, and a CSV of the problems.

Each step feeds one :class:`Outcome` per item into a :class:`Summary`, prints :meth:`Summary.line` at the
end and writes :meth:`Summary.write`: a CSV with one row per failed or flagged item (sorted by key, so the
file does not depend on the order in which parallel workers finish). Items a rerun skips keep their rows,
from what is on disk (:meth:`Summary.keep`: ``trim`` and ``resize`` read each video's record) or from the
previous report (:meth:`Summary.keep_previous`), so a rerun reproduces the report exactly.
"""

from __future__ import annotations

import csv
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.errors import NO_SPACE, InputError, ItemError
from videonorm.files import write_csv_atomic

DONE, SKIPPED, FAILED, FLAGGED = "done", "skipped", "failed", "flagged"
REPORT_COLUMNS = ("status", "reason", "message")


@dataclass
class Outcome:
    """What happened to one item.

    Args:
        key: the item's name in the report (output file name, youtube id, manifest path).
        status: ``done``, ``skipped``, ``failed`` or ``flagged`` (done, but with a warning).
        reason: slug for failed/flagged items, e.g. ``missing_source`` or ``short``.
        message: detail for failed/flagged items.
        fields: extra report columns (e.g. ``youtube_id``, ``time_start``).
    """

    key: str
    status: str
    reason: str = ""
    message: str = ""
    fields: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Flag:
    """Returned by an item's work function when it succeeded with a warning (e.g. a short segment)."""

    reason: str
    message: str


def attempt(key: str, fields: dict[str, object], work: Callable[[], object]) -> Outcome:
    """Run one item's work and turn its result or exception into an :class:`Outcome`.

    An :class:`ItemError` becomes a failure with its reason; any other exception becomes a failure with
    reason ``error`` (one odd file must not stop a run over 240k videos), except a full disk
    (:data:`~data_prep.errors.NO_SPACE`), which is raised again as a plain :class:`OSError` (picklable, so it
    reaches the parent of a worker process) to stop the step, and an :class:`InputError` (e.g. a missing tool
    that every item needs), which stops it too.

    Args:
        key: report key of the item.
        fields: extra report columns.
        work: does the work; a :class:`Flag` it returns marks the item flagged (other results are ignored).
    """
    try:
        flag = work()
    except ItemError as err:
        return Outcome(key, FAILED, err.reason, err.message, fields)
    except InputError:
        raise
    except OSError as err:
        if err.errno in NO_SPACE:
            raise OSError(err.errno, err.strerror, str(err.filename or "")) from None
        return _error(key, fields, err)
    except Exception as err:  # noqa: BLE001 - reported, with the frame where it happened
        return _error(key, fields, err)
    if isinstance(flag, Flag):
        return Outcome(key, FLAGGED, flag.reason, flag.message, fields)
    return Outcome(key, DONE, fields=fields)


def _error(key: str, fields: dict[str, object], err: Exception) -> Outcome:
    """A failure with reason ``error``, naming the exception and where it happened."""
    where = traceback.extract_tb(err.__traceback__)[-1]
    message = f"{type(err).__name__}: {err} (at {Path(where.filename).name}:{where.lineno})"
    return Outcome(key, FAILED, "error", message, fields)


def report_path(output: Path, step: str) -> Path:
    """Where a step that fills the folder ``output`` writes its report: ``<output>.<step>-failures.csv``.

    The report sits next to the folder (not inside it), so it never mixes with the videos.

    Args:
        output: the step's output folder.
        step: step name, e.g. ``trim``.
    """
    output = output.resolve()
    return output.with_name(f"{output.name}.{step}-failures.csv")


def read_report(path: Path | None) -> dict[str, dict[str, str]]:
    """Rows of an earlier report keyed by its first column ({} if there is none)."""
    if path is None or not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            return {}
        key = reader.fieldnames[0]
        return {row[key]: row for row in reader}


class Summary:
    """Counts and problem report of one step.

    Args:
        step: step name used in the summary line.
        report: CSV path for failed and flagged items (None: no report file).
        columns: report columns before ``status,reason,message``; the first is the key.
        kept_note: how the summary line describes rows carried from the previous report.
    """

    def __init__(self, step: str, report: Path | None, columns: Sequence[str],
                 kept_note: str = "problem rows of earlier runs kept") -> None:
        self.step = step
        self.kept_note = kept_note
        self.report = report
        self.columns = tuple(columns)
        self.outcomes: list[Outcome] = []
        self.previous = read_report(report)
        self.kept: list[dict[str, str]] = []

    def add(self, outcome: Outcome) -> None:
        """Record one item's outcome."""
        self.outcomes.append(outcome)

    def keep_previous(self, key: str) -> None:
        """Carry the previous report's row for ``key`` into this report when it failed or was flagged (items not
        redone keep their reason)."""
        row = self.previous.get(key)
        if row is not None and row.get("status") in (FAILED, FLAGGED):
            self.kept.append(row)

    def keep(self, key: str, fields: dict[str, object], status: str, reason: str, message: str) -> None:
        """List an item that was not redone with what is known of it (e.g. the flag its record holds).

        Args:
            key: item key.
            fields: its report columns.
            status: its status, e.g. ``flagged``.
            reason: reason slug.
            message: detail.
        """
        self.kept.append({**{k: "" if v is None else str(v) for k, v in fields.items()}, self.columns[0]: key,
                          "status": status, "reason": reason, "message": message})

    def count(self, status: str) -> int:
        """Number of items of this run with ``status``."""
        return sum(o.status == status for o in self.outcomes)

    def reasons(self, status: str) -> Counter[str]:
        """Reason counts among this run's items with ``status``."""
        return Counter(o.reason for o in self.outcomes if o.status == status)

    def rows(self) -> list[list[object]]:
        """Report rows (this run's failed/flagged items plus carried rows), sorted by key."""
        rows: dict[str, list[object]] = {}
        header = (*self.columns, *REPORT_COLUMNS)
        for row in self.kept:
            rows[row.get(self.columns[0], "")] = [row.get(c, "") for c in header]
        for o in self.outcomes:
            if o.status in (FAILED, FLAGGED):
                values = {**o.fields, self.columns[0]: o.key, "status": o.status, "reason": o.reason,
                          "message": o.message}
                rows[o.key] = [values.get(c, "") for c in header]
        return [rows[k] for k in sorted(rows)]

    def listed(self, status: str) -> int:
        """Number of report rows with ``status``, carried rows included (e.g. all flagged videos)."""
        position = len(self.columns)  # the status column follows the step's own columns
        return sum(row[position] == status for row in self.rows())

    def write(self) -> None:
        """Write the report CSV (header only when there is nothing to report; untouched if unchanged)."""
        if self.report is not None:
            write_csv_atomic(self.report, (*self.columns, *REPORT_COLUMNS), self.rows())

    def line(self, done: str = "done", failed: str = "failed", skipped: bool = True) -> str:
        """One-line summary, e.g. ``trim: 7 done, 2 skipped, 1 failed (missing_source 1); 1 flagged (short 1)``.

        Args:
            done: word for done items (e.g. ``ok``).
            failed: word for failed items (e.g. ``bad``, ``missing``).
            skipped: include the skipped count.
        """

        def with_reasons(n: int, word: str, status: str) -> str:
            reasons = self.reasons(status)
            detail = ", ".join(f"{r} {c}" for r, c in sorted(reasons.items()))
            return f"{n} {word}" + (f" ({detail})" if detail else "")

        parts = [f"{self.count(DONE) + self.count(FLAGGED)} {done}"]
        if skipped:
            parts.append(f"{self.count(SKIPPED)} skipped")
        parts.append(with_reasons(self.count(FAILED), failed, FAILED))
        text = f"{self.step}: " + ", ".join(parts)
        if self.count(FLAGGED):
            text += "; " + with_reasons(self.count(FLAGGED), "flagged", FLAGGED)
        if self.kept:
            text += f"; {len(self.kept)} {self.kept_note}"
        if self.report is not None and self.rows():
            text += f" -> {self.report}"
        return text
