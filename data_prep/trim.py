"""Cut each annotated segment out of its full source video, resize and re-encode it.

Usage::

    kinetics-prep trim ANNOTATIONS.csv --raw RAW_DIR --out VIDEOS_DIR \\
        [--short-side 256] [--gop 16] [--crf 23] [--keep-audio] [--min-duration 2.0] [--jobs N]

For every row ``label,youtube_id,time_start,time_end,split`` the source ``RAW_DIR/{youtube_id}.{mp4,webm,
mkv}`` is decoded from a seek to ``time_start``; frames with ``time_start <= t < time_end`` are resized and
encoded (see :mod:`data_prep.encode`) to ``VIDEOS_DIR/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``.

- Reruns skip outputs that exist (they are complete: every output is written under a temporary name and
  renamed), retry failures, and delete temporary files left by an interrupted run.
- A segment that runs past the end of its source keeps what exists; if that is shorter than
  ``--min-duration`` seconds it is *flagged* (kept, and listed in the report).
- Missing and undecodable sources are failures (for a missing source, the reason ``download`` recorded in
  ``RAW_DIR.download-failures.csv`` is quoted). All failures and flags go to
  ``VIDEOS_DIR.trim-failures.csv`` next to the output folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.annotations import SEGMENT_COLUMNS, read_annotations
from data_prep.encode import EncodeJob, EncodeSettings, run_encode_job
from data_prep.io import remove_stale_partials
from data_prep.parallel import parallel_map
from data_prep.raw import SOURCE_EXTS, index_sources
from data_prep.report import FAILED, FLAGGED, SKIPPED, Outcome, Summary, read_report, report_path


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Encoder and parallelism options shared by ``trim``, ``resize`` and ``prepare``."""
    parser.add_argument("--short-side", type=int, default=256, help="output short side in pixels; 0 keeps the size")
    parser.add_argument("--gop", type=int, default=16, help="frames between key frames; 0 = libx264 default (250)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality (lower = better, bigger)")
    parser.add_argument("--preset", default="fast", help="libx264 preset")
    parser.add_argument("--keep-audio", action="store_true", help="keep the audio (AAC); dropped by default")
    parser.add_argument("--min-duration", type=float, default=2.0,
                        help="flag outputs shorter than this many seconds")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    """EncodeSettings from parsed ``add_encode_arguments`` options (one codec thread per job if jobs > 1)."""
    return EncodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                          keep_audio=args.keep_audio, threads=1 if args.jobs > 1 else 0)


def encode_all(summary: Summary, jobs_list: list[EncodeJob], jobs: int, desc: str) -> None:
    """Run encode jobs in parallel and record their outcomes (shared by ``trim`` and ``resize``)."""
    for outcome in parallel_map(run_encode_job, jobs_list, jobs=jobs, desc=desc):
        summary.add(outcome)


def trim(annotations: Path | str, raw_dir: Path | str, out_dir: Path | str,
         settings: EncodeSettings = EncodeSettings(), *, min_duration: float = 2.0, jobs: int = 1,
         split: str | None = None, skip_bad_rows: bool = False) -> Summary:
    """Trim every segment of an annotation CSV from its raw source.

    Args:
        annotations: Kinetics annotation CSV.
        raw_dir: folder of full sources ``{youtube_id}.{mp4,webm,mkv}``.
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
    segments = [s for s in read_annotations(annotations, skip_bad_rows=skip_bad_rows).segments
                if split is None or s.split == split]
    sources = index_sources(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_partials(out_dir)
    if removed:
        print(f"trim: removed {len(removed)} partial file(s) left by an interrupted run", file=sys.stderr)
    summary = Summary("trim", report_path(out_dir, "trim"), SEGMENT_COLUMNS, "flags of earlier runs kept")
    downloads = read_report(report_path(raw_dir, "download"))  # why a source is missing, if download knows
    todo = []
    for seg in segments:
        dst = out_dir / seg.name
        if dst.exists():
            summary.add(Outcome(seg.name, SKIPPED, fields=seg.fields()))
            summary.keep_previous(seg.name, (FLAGGED,))  # a flag ("short") from the run that made it
        elif seg.youtube_id not in sources:
            known = downloads.get(seg.youtube_id)
            message = (f"download failed ({known['reason']}): {known['message']}" if known else
                       f"no {seg.youtube_id}{{{'/'.join(SOURCE_EXTS)}}} in {raw_dir}")
            summary.add(Outcome(seg.name, FAILED, "missing_source", message, seg.fields()))
        else:
            todo.append(EncodeJob(seg.name, sources[seg.youtube_id], dst, settings, float(seg.time_start),
                                  float(seg.time_end), min_duration, seg.fields()))
    try:
        encode_all(summary, todo, jobs, "trim")
    finally:
        summary.write()  # also when interrupted: the report then covers what finished
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``trim``'s arguments to ``parser``."""
    parser.add_argument("annotations", type=Path, help="Kinetics annotation CSV")
    parser.add_argument("--raw", type=Path, required=True, help="folder of full sources {youtube_id}.{mp4,webm,mkv}")
    parser.add_argument("--out", type=Path, required=True, help="output folder for trimmed videos")
    parser.add_argument("--split", choices=("train", "validate", "test"), help="only rows of this split")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip malformed CSV rows (listed) instead of stopping")
    add_encode_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``trim`` from parsed arguments; prints the summary line."""
    summary = trim(args.annotations, args.raw, args.out, settings_from(args), min_duration=args.min_duration,
                   jobs=args.jobs, split=args.split, skip_bad_rows=args.skip_bad_rows)
    print(summary.line())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m data_prep.trim``: same as ``kinetics-prep trim``."""
    from data_prep.cli import run_step

    return run_step("trim", argv)


if __name__ == "__main__":
    sys.exit(main())
