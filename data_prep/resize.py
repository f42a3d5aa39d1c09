"""Resize and re-encode videos that are already trimmed (the CVDF mirror's files), keeping their names.

Usage::

    kinetics-prep resize VIDEOS_DIR --out OUT_DIR [--short-side 256] [--gop 16] [--crf 23] [--jobs N]

Every ``*.mp4``/``*.webm``/``*.mkv`` directly in ``VIDEOS_DIR`` becomes ``OUT_DIR/{stem}.mp4``, encoded
exactly like ``trim``'s outputs (see :mod:`data_prep.encode`). Same safety as ``trim``: existing outputs
are skipped (and listed with the flags their records hold), partial files of an interrupted run are deleted,
failures and flags (shorter than ``--min-duration``, a truncated source) go to ``OUT_DIR.resize-failures.csv``.
``OUT_DIR`` must differ from ``VIDEOS_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from data_prep.encode_jobs import EncodeJob, encode_all, remove_interrupted
from data_prep.encode_options import add_encode_arguments, settings_from
from data_prep.errors import InputError
from data_prep.outputs import check_output_folder
from data_prep.raw import SOURCE_EXTS
from data_prep.report import Summary, report_path
from data_prep.runner import run_step
from data_prep.writer import EncodeSettings
from videonorm.files import PARTIAL_TAG


def video_files(folder: Path) -> dict[str, Path]:
    """Output name (``{stem}.mp4``) -> video file, for the videos directly in ``folder``.

    Raises:
        InputError: ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: video folder not found")
    return {f"{p.stem}.mp4": p for p in sorted(folder.iterdir())
            if p.suffix in SOURCE_EXTS and PARTIAL_TAG not in p.name and p.is_file()}


def resize(videos_dir: Path | str, out_dir: Path | str, settings: EncodeSettings = EncodeSettings(), *,
           min_duration: float = 2.0, jobs: int = 1, sources: Mapping[str, Path] | None = None) -> Summary:
    """Re-encode every video of ``videos_dir`` into ``out_dir`` under the same name (``.mp4``).

    Args:
        videos_dir: folder of trimmed videos.
        out_dir: output folder (created; must not be ``videos_dir``).
        settings: encoder settings.
        min_duration: flag outputs shorter than this (seconds).
        jobs: worker processes.
        sources: output name -> source file, instead of the files of ``videos_dir`` (e.g. with replacements
            for corrupt files overlaid).

    Returns:
        The summary (report written to ``out_dir.resize-failures.csv``).
    """
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    check_output_folder(out_dir, beside=True)  # the report and the records go beside it
    if sources is None:
        sources = video_files(videos_dir)
    if out_dir.resolve() == videos_dir.resolve():
        raise InputError(f"{out_dir}: resize writes to a different folder than it reads")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_interrupted(out_dir, "resize")
    summary = Summary("resize", report_path(out_dir, "resize"), ("name", "source"), "flags of finished videos listed")
    todo = [EncodeJob(name, src, out_dir / name, settings, min_duration=min_duration, fields={"source": str(src)})
            for name, src in sorted(sources.items())]
    try:
        encode_all(summary, todo, jobs, "resize")
    finally:
        summary.write()
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``resize``'s arguments to ``parser``."""
    parser.add_argument("videos", type=Path, help="folder of trimmed videos")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_encode_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``resize`` from parsed arguments; prints the summary line."""
    summary = resize(args.videos, args.out, settings_from(args), min_duration=args.min_duration, jobs=args.jobs)
    print(summary.line())
    return 0


if __name__ == "__main__":  # python -m data_prep.resize: the same as kinetics-prep resize
    sys.exit(run_step(sys.modules[__name__]))
