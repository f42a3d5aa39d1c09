"""Cut each annotated segment out of its full source video, resize and re-encode it.

Usage::

    kinetics-prep trim ANNOTATIONS.csv --raw RAW_DIR --out VIDEOS_DIR \\
        [--short-side 256] [--gop 16] [--crf 23] [--keep-audio] [--min-duration 2.0] [--jobs N]

For every row ``label,youtube_id,time_start,time_end,split`` the source (``RAW_DIR/{youtube_id}.{mp4,webm,
mkv,...}``, or a section download ``RAW_DIR/{youtube_id}_{start:06d}_{end:06d}.{ext}`` holding the segment, see
:mod:`data_prep.raw`) is decoded from a seek to ``time_start``, and ``[time_start, time_end)`` is resampled to
a constant frame rate by time, resized and encoded (see :mod:`data_prep.encode`) to
``VIDEOS_DIR/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``.

- Reruns skip outputs that exist (they are complete: every output is written under a temporary name and
  renamed), retry failures, and delete temporary files left by an interrupted run. Each output has a record
  (:mod:`data_prep.records`), so the report lists the flags of outputs made by earlier runs, killed or not.
- A segment that runs past the end of its source keeps what exists. An output that starts later or ends
  earlier than asked (by more than 0.1 s) or is shorter than ``--min-duration`` seconds is *flagged* (kept,
  and listed in the report with the cause: ``short``, ``truncated_source``, ``late_start``,
  ``past_source_end``).
- Missing and undecodable sources are failures (for a missing source, the reason ``download`` recorded in
  ``RAW_DIR.download-failures.csv`` is quoted). All failures and flags go to
  ``VIDEOS_DIR.trim-failures.csv`` next to the output folder.
- A full disk stops the step (exit status 3); the partial file is removed and a rerun resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.annotations import SEGMENT_COLUMNS, read_annotations
from data_prep.encode_jobs import EncodeJob, encode_all, remove_interrupted
from data_prep.encode_options import add_encode_arguments, settings_from
from data_prep.outputs import check_output_folder
from data_prep.raw import index_sources, source_for
from data_prep.report import FAILED, Outcome, Summary, read_report, report_path
from data_prep.runner import run_step
from data_prep.writer import EncodeSettings


def trim(annotations: Path | str, raw_dir: Path | str, out_dir: Path | str,
         settings: EncodeSettings = EncodeSettings(), *, min_duration: float = 2.0, jobs: int = 1,
         split: str | None = None, skip_bad_rows: bool = False) -> Summary:
    """Trim every segment of an annotation CSV from its raw source.

    Args:
        annotations: Kinetics annotation CSV.
        raw_dir: folder of sources ``{youtube_id}.{mp4,webm,mkv,...}`` or sections (see :mod:`data_prep.raw`).
        out_dir: output folder (created).
        settings: encoder settings.
        min_duration: flag outputs shorter than this (seconds).
        jobs: worker processes.
        split: only rows of this split (None: all rows).
        skip_bad_rows: skip malformed CSV rows instead of stopping.

    Returns:
        The summary (report already written to ``out_dir.trim-failures.csv``).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    check_output_folder(out_dir, beside=True)  # the report and the records go beside it
    segments = [s for s in read_annotations(annotations, skip_bad_rows=skip_bad_rows).segments
                if split is None or s.split == split]
    sources = index_sources(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_interrupted(out_dir, "trim")
    summary = Summary("trim", report_path(out_dir, "trim"), SEGMENT_COLUMNS, "flags of finished videos listed")
    downloads = read_report(report_path(raw_dir, "download"))  # why a source is missing, if download knows
    todo = []
    for seg in segments:
        source = source_for(sources.get(seg.youtube_id, ()), seg.time_start, seg.time_end)
        if source is None and (out_dir / seg.name).is_file():
            # made before its raw file was deleted (the download archive keeps it from being fetched again): done
            todo.append(EncodeJob(seg.name, None, out_dir / seg.name, settings, float(seg.time_start),
                                  float(seg.time_end), min_duration, seg.fields()))
        elif source is None:
            known = downloads.get(seg.youtube_id)
            message = (f"download failed ({known['reason']}): {known['message']}" if known else
                       f"no video {seg.youtube_id}.* (nor a section of it holding {seg.time_start}-"
                       f"{seg.time_end} s) in {raw_dir}")
            summary.add(Outcome(seg.name, FAILED, "missing_source", message, seg.fields()))
        else:
            todo.append(EncodeJob(seg.name, source.path, out_dir / seg.name, settings, float(seg.time_start),
                                  float(seg.time_end), min_duration, seg.fields(), absolute_time=source.is_section))
    try:
        encode_all(summary, todo, jobs, "trim")
    finally:
        summary.write()  # also when interrupted: the report then covers what finished
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``trim``'s arguments to ``parser``."""
    parser.add_argument("annotations", type=Path, help="Kinetics annotation CSV")
    parser.add_argument("--raw", type=Path, required=True, help="folder of sources {youtube_id}.{mp4,webm,mkv,...}")
    parser.add_argument("--out", type=Path, required=True, help="output folder for trimmed videos")
    parser.add_argument("--split", choices=("train", "validate", "test"), help="only rows of this split")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="skip malformed CSV rows (listed) instead of stopping")
    add_encode_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``trim`` from parsed arguments; prints the summary line."""
    summary = trim(args.annotations, args.raw, args.out, settings_from(args), min_duration=args.min_duration,
                   jobs=args.jobs, split=args.split, skip_bad_rows=args.skip_bad_rows)
    print(summary.line())
    return 0


if __name__ == "__main__":  # python -m data_prep.trim: the same as kinetics-prep trim
    sys.exit(run_step(sys.modules[__name__]))
