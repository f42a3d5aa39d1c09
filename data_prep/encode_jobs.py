"""Running the encoder over many files for ``trim`` and ``resize``: one picklable job per output, its record
(written before the output appears), what an existing output already is, and the parallel run that skips the
finished ones.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from data_prep.encode import TOLERANCE, Encoded, coverage_flag, encode_window
from data_prep.parallel import parallel_map
from data_prep.records import read_record, records_dir, write_record
from data_prep.report import FLAGGED, SKIPPED, Flag, Outcome, Summary, attempt
from data_prep.writer import EncodeSettings
from videonorm.files import atomic_path, remove_stale_partials


@dataclass(frozen=True)
class EncodeJob:
    """One file for :func:`run_encode_job` (picklable, for worker processes).

    Args:
        key: report key (the output name).
        src: source video; None when it is gone and ``dst`` exists (kept as it is, never remade).
        dst: output path.
        settings: encoder settings.
        start: window start (seconds).
        end: window end (seconds, exclusive) or None for the whole file.
        min_duration: flag outputs shorter than this many seconds.
        fields: extra report columns.
        absolute_time: the source's times as stored (see :func:`transcode`).
    """

    key: str
    src: Path | None
    dst: Path
    settings: EncodeSettings
    start: float = 0.0
    end: float | None = None
    min_duration: float = 0.0
    fields: dict[str, object] = field(default_factory=dict)
    absolute_time: bool = False

    def record(self, encoded: Encoded, flag: Flag | None, size: int) -> dict[str, object]:
        """The output's record (see :mod:`data_prep.records`)."""
        return {"bytes": size, "source": self.src.name, "source_bytes": self.src.stat().st_size,
                "start": self.start, "end": self.end, "frames": encoded.frames, "fps": str(encoded.fps),
                "width": encoded.width, "height": encoded.height, "first": round(encoded.first, 6),
                "duplicated": encoded.duplicated, "dropped": encoded.dropped,
                "reason": flag.reason if flag else "", "message": flag.message if flag else ""}


def _encode_job(job: EncodeJob) -> Flag | None:
    with atomic_path(job.dst) as tmp:
        encoded = encode_window(job.src, tmp, job.settings, job.start, job.end, job.absolute_time)
        flag = coverage_flag(encoded, job.start, job.end, job.min_duration)
        write_record(job.dst, job.record(encoded, flag, tmp.stat().st_size))  # before the output appears
    return flag


def run_encode_job(job: EncodeJob) -> Outcome:
    """Encode one file and report the outcome (worker function of ``trim`` and ``resize``)."""
    return attempt(job.key, job.fields, functools.partial(_encode_job, job))


def _probe(job: EncodeJob) -> dict[str, object]:
    """A record for an output made without one (an older version): its length against the asked window."""
    try:
        with av.open(str(job.dst)) as container:
            stream = container.streams.video[0]
            frames, fps = stream.frames, Fraction(stream.average_rate)
    except (av.error.FFmpegError, OSError, IndexError, TypeError, ZeroDivisionError) as err:
        return {"reason": "unreadable_output", "message": f"made without a record and cannot be read: {err}"}
    duration = float(frames / fps) if fps else 0.0
    asked = job.end - job.start if job.end is not None else None
    reason = message = ""
    if duration < job.min_duration or (asked is not None and duration < asked - TOLERANCE):
        reason = "short" if duration < job.min_duration else "incomplete"
        message = f"{duration:.2f} s" + (f" of {asked:g} s requested" if asked is not None else "") + \
            " (made without a record: the cause is unknown)"
    return {"bytes": job.dst.stat().st_size, "frames": frames, "fps": str(fps), "reason": reason, "message": message}


def finished(job: EncodeJob) -> Flag | None | bool:
    """What an existing output of ``job`` is, from its record: False if it must be (re)made, else its flag.

    An output that is absent, or whose record names another source (e.g. a replacement file appeared), is
    (re)made. An output without a record (made by an older version) is measured once and its record written.

    Args:
        job: the job that would make the output.

    Returns:
        False (encode it), None (done, complete) or the :class:`Flag` it was given.
    """
    if not job.dst.is_file():
        return False
    record = read_record(job.dst)
    if record is None:
        record = _probe(job)
        write_record(job.dst, record)
    elif (job.src is not None and "source" in record
          and (record["source"], record["source_bytes"]) != (job.src.name, job.src.stat().st_size)):
        return False
    return Flag(str(record["reason"]), str(record["message"])) if record.get("reason") else None


def remove_interrupted(out_dir: Path, step: str) -> None:
    """Delete the partial videos and partial records a killed ``trim``/``resize`` left in ``out_dir``."""
    removed = remove_stale_partials(out_dir) + remove_stale_partials(records_dir(out_dir))
    if removed:
        print(f"{step}: removed {len(removed)} partial file(s) left by an interrupted run", file=sys.stderr)


def encode_all(summary: Summary, jobs_list: list[EncodeJob], jobs: int, desc: str) -> None:
    """Encode what is not finished yet and record every outcome (shared by ``trim`` and ``resize``).

    Finished outputs are skipped, and listed with the flag their record holds: the report is rebuilt from
    what is on disk, whatever happened to the run that made them.
    """
    todo = []
    for job in jobs_list:
        state = finished(job)
        if state is False:
            todo.append(job)
            continue
        summary.add(Outcome(job.key, SKIPPED, fields=job.fields))
        if state is not None:
            summary.keep(job.key, job.fields, FLAGGED, state.reason, state.message)
    for outcome in parallel_map(run_encode_job, todo, jobs=jobs, desc=desc):
        summary.add(outcome)
