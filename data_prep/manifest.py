"""Write the manifest (``relative/path.mp4 <label>`` lines) and class list for one annotation CSV.

Usage::

    kinetics-prep manifest ANNOTATIONS.csv --videos VIDEOS_DIR --out MANIFEST \\
        [--root ROOT] [--classes CLASSES.txt] [--split NAME]

Formats and their rules: :mod:`videonorm.data.manifest` (one parser for ``kinetics-prep`` and training).

- One line per annotated segment whose video ``VIDEOS_DIR/{youtube_id}_{start:06d}_{end:06d}.mp4``
  exists, in CSV order: its path relative to ``ROOT`` (default: the manifest's folder, the dataset root
  that videonorm's data module takes) and its class index. ``VIDEOS_DIR`` must lie under ``ROOT``.
- Classes: without ``--classes``, the sorted labels of the CSV (all rows, present or not, so indices do
  not depend on what downloaded) are written to ``classes.txt`` next to the manifest; an existing
  ``classes.txt`` with different content is an error (use ``--classes`` to reuse it). With
  ``--classes FILE`` that list is used as is (train and val agree) and a label not in it is an error
  naming the label, file and line.
- A CSV without any label (Kinetics-700-2020's test split) gives a manifest of paths alone (read with
  ``read_manifest(path, labelled=False)``, e.g. by ``videonorm predict``) and no ``classes.txt``; a CSV
  where some rows have a label and others not is an error naming the lines.
- Annotated segments without a video go to ``MANIFEST.missing.csv`` with the reason recorded by
  ``trim``/``resize`` when there is one (e.g. ``missing_source``, ``corrupt_source``), else ``no_video``.
- Unchanged outputs are not rewritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from data_prep.annotations import SEGMENT_COLUMNS, Segment, read_annotations
from data_prep.errors import InputError
from data_prep.outputs import check_output_file
from data_prep.report import DONE, FAILED, Outcome, Summary, read_report, report_path
from data_prep.runner import run_step
from videonorm.data.manifest import CLASSES_FILE, ManifestEntry, classes_text, manifest_text, read_classes
from videonorm.files import remove_stale_partials, write_text_atomic


def write_classes(path: Path, classes: Sequence[str]) -> None:
    """Write ``classes.txt``; refuses to replace a different existing list (labels would silently shift).

    Raises:
        InputError: ``path`` exists with other classes.
        ManifestError: a class name that could not be read back (empty, a line break).
    """
    text = classes_text(classes)
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise InputError(f"{path} exists with a different class list; pass it with --classes to reuse it, "
                         "or delete it to start over")
    write_text_atomic(path, text)


def check_labels(segments: Iterable[Segment], classes: Sequence[str], source: Path | str) -> bool:
    """Every labelled segment's label must be in ``classes``; a split is labelled throughout or not at all.

    Returns:
        True for a labelled split, False for one without any label (e.g. Kinetics-700-2020's test split): its
        manifest lists paths alone, for ``videonorm predict``.

    Raises:
        InputError: listing each unknown label, and each unlabelled row of a split whose other rows have labels,
            with file and line.
    """
    segments = list(segments)
    if segments and not any(seg.label for seg in segments):
        return False
    known = set(classes)
    errors = []
    for seg in segments:
        if not seg.label:
            errors.append(f"{source}:{seg.line}: no label ({seg.split} row) where other rows have one")
        elif seg.label not in known:
            errors.append(f"{source}:{seg.line}: label {seg.label!r} is not in the class list")
    if errors:
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise InputError(f"{len(errors)} row(s) of {source} cannot be labelled:\n  " + "\n  ".join(errors[:50]) + more)
    return True


def _known_failures(videos_dir: Path) -> dict[str, tuple[str, str]]:
    """name -> (reason, message) from the trim/resize reports next to ``videos_dir``."""
    reasons: dict[str, tuple[str, str]] = {}
    for step in ("trim", "resize"):
        for name, row in read_report(report_path(videos_dir, step)).items():
            if row.get("status") == FAILED:
                reasons[name] = (row.get("reason", ""), f"{step}: {row.get('message', '')}")
    return reasons


def build_manifest(segments: Sequence[Segment], videos_dir: Path, root: Path, classes: Sequence[str],
                   summary: Summary) -> list[ManifestEntry]:
    """Manifest entries for the segments whose video exists; the others are recorded in ``summary``.

    Args:
        segments: annotated segments (labels already checked with :func:`check_labels`).
        videos_dir: folder of trimmed videos.
        root: dataset root the paths are relative to; must contain ``videos_dir``.
        classes: class list (index = label); unlabelled segments get label None.
        summary: receives ``done`` per entry and ``failed`` per absent video, with the reason ``trim`` or
            ``resize`` recorded for it (``no_video`` when there is none).

    Raises:
        InputError: ``videos_dir`` is not under ``root``.
    """
    videos_dir, root = videos_dir.resolve(), root.resolve()
    if not videos_dir.is_relative_to(root):
        raise InputError(f"{videos_dir} is not inside the dataset root {root}; pass --root")
    prefix = Path(os.path.relpath(videos_dir, root)).as_posix()
    index = {name: i for i, name in enumerate(classes)}
    present = {p.name for p in videos_dir.iterdir()} if videos_dir.is_dir() else set()
    failures = _known_failures(videos_dir)
    entries = []
    for seg in segments:
        if seg.name in present:
            path = seg.name if prefix == "." else f"{prefix}/{seg.name}"
            entries.append(ManifestEntry(path, index[seg.label] if seg.label else None, seg.line))
            summary.add(Outcome(seg.name, DONE, fields=seg.fields()))
        else:
            reason, message = failures.get(seg.name, ("no_video", f"no {seg.name} in {videos_dir}"))
            summary.add(Outcome(seg.name, FAILED, reason, message, seg.fields()))
    return entries


def write_manifest(annotations: Path | str, videos_dir: Path | str, out: Path | str, *,
                   root: Path | str | None = None, classes_file: Path | str | None = None,
                   split: str | None = None, skip_bad_rows: bool = False) -> Summary:
    """Write ``out`` (manifest), ``out.missing.csv`` and, without ``classes_file``, ``classes.txt``.

    Args:
        annotations: Kinetics annotation CSV.
        videos_dir: folder of trimmed videos.
        out: manifest path.
        root: dataset root for relative paths (default: the manifest's folder).
        classes_file: fixed class list to use (default: sorted CSV labels, written to classes.txt).
        split: only rows of this split.
        skip_bad_rows: skip malformed CSV rows instead of stopping.

    Returns:
        The summary: ``done`` = lines written, ``failed`` = segments without video.
    """
    out = Path(out)
    check_output_file(out)
    ann = read_annotations(annotations, skip_bad_rows=skip_bad_rows)
    segments = [s for s in ann.segments if split is None or s.split == split]
    if classes_file is not None:
        classes = read_classes(Path(classes_file))
    else:
        classes = sorted({s.label for s in segments if s.label})
    labelled = check_labels(segments, classes, ann.path)
    root = Path(root) if root is not None else out.parent
    remove_stale_partials(out.parent)
    summary = Summary("manifest", out.with_name(out.name + ".missing.csv"), SEGMENT_COLUMNS)
    entries = build_manifest(segments, Path(videos_dir), root, classes, summary)
    if classes_file is None and labelled:
        write_classes(out.parent / CLASSES_FILE, classes)
    write_text_atomic(out, manifest_text(entries))
    summary.write()
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``manifest``'s arguments to ``parser``."""
    parser.add_argument("annotations", type=Path, help="Kinetics annotation CSV")
    parser.add_argument("--videos", type=Path, required=True, help="folder of trimmed videos")
    parser.add_argument("--out", type=Path, required=True, help="manifest file to write, e.g. DATASET/train.txt")
    parser.add_argument("--root", type=Path,
                        help="dataset root the paths are relative to (default: the manifest's folder)")
    parser.add_argument("--classes", type=Path,
                        help="fixed class list to reuse (default: sorted labels -> classes.txt)")
    parser.add_argument("--split", choices=("train", "validate", "test"), help="only rows of this split")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="skip malformed CSV rows (listed) instead of stopping")


def run(args: argparse.Namespace) -> int:
    """Run ``manifest`` from parsed arguments; prints the summary line."""
    summary = write_manifest(args.annotations, args.videos, args.out, root=args.root, classes_file=args.classes,
                             split=args.split, skip_bad_rows=args.skip_bad_rows)
    print(summary.line(done=f"lines in {args.out}", failed="missing", skipped=False))
    return 0


if __name__ == "__main__":  # python -m data_prep.manifest: the same as kinetics-prep manifest
    sys.exit(run_step(sys.modules[__name__]))
