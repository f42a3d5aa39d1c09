"""The whole chain for each split: (download) -> trim (or resize) -> manifest -> verify, dropping bad videos.

Usage::

    # official CSVs + your own YouTube copies (add --download to fetch the annotated sections first)
    kinetics-prep prepare ANNOTATIONS_DIR --raw RAW_DIR --out DATASET_DIR \\
        [--splits train,validate,test] [--short-side 256] [--gop 16] [--jobs N] [--download]
    # CVDF mirror (github.com/cvdfoundation/kinetics-dataset, k400_downloader.sh + k400_extractor.sh):
    # k400/{train,val,test}/{youtube_id}_{start:06d}_{end:06d}.mp4, k400/annotations/*.csv, k400/replacement/
    kinetics-prep prepare k400/annotations --trimmed k400 --out DATASET_DIR [--splits train,validate,test]

``ANNOTATIONS_DIR`` holds the release's ``train.csv``, ``validate.csv`` (or ``val.csv``), ``test.csv``.
Result, which videonorm's data module reads with ``root=DATASET_DIR``, ``train_manifest="train.txt"``,
``val_manifest="val.txt"``, ``test_manifest="test.txt"``, ``classes_file="classes.txt"``::

    DATASET_DIR/classes.txt                   sorted train labels (or --classes), line i = label i
    DATASET_DIR/videos/{train,val,test}/*.mp4
    DATASET_DIR/{train,val,test}.txt          videos/<split>/<name>.mp4 <label>, verified videos only
    DATASET_DIR/{split}.txt.missing.csv       annotated segments without a video, with the reason
    DATASET_DIR/{split}.txt.bad.csv           videos that failed verification (left out of the manifest)
    DATASET_DIR/videos/{split}.trim-failures.csv (or .resize-failures.csv): failures and flagged videos

The test split is prepared like the others: labelled (Kinetics-400's and -600's test labels are public) it is
a manifest to test on; without any label (Kinetics-700-2020's test split) its manifest lists paths alone, for
``videonorm predict``. With ``--trimmed``, the mirror's replacement files for its known corrupt videos
(``TRIMMED_DIR/replacement/**/*.mp4``, matched by file name, else by YouTube id) are used instead of the
originals; a video already made from an original is made again from its replacement.

All CSVs are read and every label is checked against the class list before any video work starts.
Every step is resumable and a rerun of a finished ``prepare`` rewrites nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from data_prep.annotations import SEGMENT_COLUMNS, SPLITS, Segment, find_split_csv, read_annotations
from data_prep.download import DownloadSettings, add_yt_dlp_arguments, download
from data_prep.download import settings_from as download_settings_from
from data_prep.encode_options import add_encode_arguments, settings_from
from data_prep.errors import InputError
from data_prep.manifest import build_manifest, check_labels, write_classes
from data_prep.outputs import check_output_folder
from data_prep.report import FAILED, FLAGGED, Summary
from data_prep.resize import resize, video_files
from data_prep.runner import run_step
from data_prep.trim import trim
from data_prep.verify import check_entries
from data_prep.writer import EncodeSettings
from videonorm.commands import int_in
from videonorm.data.manifest import CLASSES_FILE, manifest_text, read_classes
from videonorm.files import remove_stale_partials, write_text_atomic

# Split -> name of its video folder and manifest (videonorm reads train.txt and val.txt).
SPLIT_NAMES = {"train": "train", "validate": "val", "test": "test"}
_WORDS = {"manifest": {"done": "listed", "failed": "missing", "skipped": False},
          "verify": {"done": "ok", "failed": "bad", "skipped": False}}


def _trimmed_split_dir(trimmed_dir: Path, split: str) -> Path:
    for name in dict.fromkeys((split, SPLIT_NAMES[split])):
        if (trimmed_dir / name).is_dir():
            return trimmed_dir / name
    raise InputError(f"{trimmed_dir}: no folder {SPLIT_NAMES[split]}/ (or {split}/) of trimmed videos")


REPLACEMENT_DIR = "replacement"  # the CVDF mirror's replacements for corrupt Kinetics-400 videos


def replacements(trimmed_dir: Path, segments: Sequence[Segment]) -> dict[str, Path]:
    """Output name -> the mirror's replacement file, for the segments that have one.

    The mirror's ``k400_extractor.sh`` unpacks ``replacement_for_corrupted_k400.tgz`` into
    ``k400/replacement/replacement_for_corrupted_k400/``; any video under ``TRIMMED_DIR/replacement/`` counts.
    A replacement matches the segment of the same file name, else the one segment of its YouTube id (the
    mirror's own ``arrange_by_classes.py`` matches by id).

    Args:
        trimmed_dir: the mirror's folder (with ``train/``, ``val/``, ...).
        segments: the split's annotated segments.
    """
    folder = trimmed_dir / REPLACEMENT_DIR
    if not folder.is_dir():
        return {}
    names = {seg.name for seg in segments}
    by_id: dict[str, list[str]] = {}
    for seg in segments:
        by_id.setdefault(seg.youtube_id, []).append(seg.name)
    found = {}
    for path in sorted(folder.rglob("*.mp4")):
        id_match = by_id.get(path.stem.rsplit("_", 2)[0], [])
        if path.name in names:
            found[path.name] = path
        elif len(id_match) == 1:
            found.setdefault(id_match[0], path)
    return found


def _class_list(out_dir: Path, segments: dict[str, list[Segment]], classes_file: Path | None) -> list[str]:
    if classes_file is not None:
        return read_classes(classes_file)
    if "train" in segments:
        return sorted({s.label for s in segments["train"] if s.label})
    if (out_dir / CLASSES_FILE).is_file():
        return read_classes(out_dir / CLASSES_FILE)
    raise InputError("without the train split, pass --classes (or run prepare with train first)")


def prepare(annotations_dir: Path | str, out_dir: Path | str, *, raw_dir: Path | str | None = None,
            trimmed_dir: Path | str | None = None, splits: Sequence[str] = ("train", "validate"),
            settings: EncodeSettings = EncodeSettings(), min_duration: float = 2.0, jobs: int = 1,
            download_settings: DownloadSettings | None = None, download_jobs: int = 4,
            classes_file: Path | str | None = None, skip_bad_rows: bool = False) -> dict[str, dict[str, Summary]]:
    """Prepare a dataset folder from official annotations (see the module docstring).

    Args:
        annotations_dir: folder with the release's CSVs.
        out_dir: dataset folder to fill.
        raw_dir: full source videos ``{youtube_id}.{ext}`` (trim route).
        trimmed_dir: pre-trimmed videos in ``{train,val,test}/``, replacements in ``replacement/`` (CVDF route);
            exclusive with ``raw_dir``.
        splits: splits to prepare, among ``train``, ``validate``, ``test``.
        settings: encoder settings.
        min_duration: flag videos shorter than this (seconds).
        jobs: worker processes for encoding and verification.
        download_settings: download missing sources first with these yt-dlp settings (trim route only).
        download_jobs: parallel downloads.
        classes_file: fixed class list (default: sorted train labels).
        skip_bad_rows: skip malformed CSV rows instead of stopping.

    Returns:
        split -> step name -> summary.
    """
    annotations_dir, out_dir = Path(annotations_dir), Path(out_dir)
    if (raw_dir is None) == (trimmed_dir is None):
        raise InputError("pass exactly one of --raw (trim full sources) or --trimmed (resize CVDF files)")
    if download_settings is not None and raw_dir is None:
        raise InputError("--download needs --raw (where the sources go)")
    check_output_folder(out_dir)
    if download_settings is not None:
        check_output_folder(raw_dir, "--raw", beside=True)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise InputError(f"unknown split(s) {unknown} (choose from {', '.join(SPLITS)})")
    csvs = {split: find_split_csv(annotations_dir, split) for split in splits}
    segments = {split: [s for s in read_annotations(csv, skip_bad_rows=skip_bad_rows).segments if s.split == split]
                for split, csv in csvs.items()}
    any_label = any(s.label for segs in segments.values() for s in segs)
    classes = _class_list(out_dir, segments, Path(classes_file) if classes_file else None) if any_label else []
    for split in splits:  # fail before hours of encoding, not after
        check_labels(segments[split], classes, csvs[split])
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)
    if classes:
        write_classes(out_dir / CLASSES_FILE, classes)
    results = {}
    for split in splits:
        results[split] = _prepare_split(split, csvs[split], segments[split], classes, out_dir, raw_dir, trimmed_dir,
                                        settings, min_duration, jobs, download_settings, download_jobs, skip_bad_rows)
        for step, summary in results[split].items():
            print(f"[{split}] " + summary.line(**_WORDS.get(step, {})), file=sys.stderr)
    return results


def _prepare_split(split: str, csv: Path, segments: list[Segment], classes: list[str], out_dir: Path,
                   raw_dir: Path | str | None, trimmed_dir: Path | str | None, settings: EncodeSettings,
                   min_duration: float, jobs: int, download_settings: DownloadSettings | None, download_jobs: int,
                   skip_bad_rows: bool) -> dict[str, Summary]:
    """One split: (download) -> trim or resize -> manifest entries -> verify -> write the verified manifest."""
    name = SPLIT_NAMES[split]
    videos = out_dir / "videos" / name
    steps: dict[str, Summary] = {}
    if download_settings is not None:
        steps["download"] = download(csv, raw_dir, download_settings, jobs=download_jobs, split=split,
                                     skip_bad_rows=skip_bad_rows)
    if raw_dir is not None:
        steps["trim"] = trim(csv, raw_dir, videos, settings, min_duration=min_duration, jobs=jobs, split=split,
                             skip_bad_rows=skip_bad_rows)
    else:
        split_dir = _trimmed_split_dir(Path(trimmed_dir), split)
        names = {s.name for s in segments}
        sources = {name: path for name, path in video_files(split_dir).items() if name in names}
        replaced = replacements(Path(trimmed_dir), segments)
        if replaced:
            print(f"[{split}] {len(replaced)} video(s) from the mirror's {REPLACEMENT_DIR}/ folder", file=sys.stderr)
        steps["resize"] = resize(split_dir, videos, settings, min_duration=min_duration, jobs=jobs,
                                 sources={**sources, **replaced})
    manifest = out_dir / f"{name}.txt"
    steps["manifest"] = Summary("manifest", manifest.with_name(manifest.name + ".missing.csv"), SEGMENT_COLUMNS)
    entries = build_manifest(segments, videos, out_dir, classes, steps["manifest"])
    steps["manifest"].write()
    # verified in memory and written once: a rerun of a finished prepare rewrites nothing
    steps["verify"] = check_entries(entries, out_dir, manifest.with_name(manifest.name + ".bad.csv"), jobs)
    bad = {o.key for o in steps["verify"].outcomes if o.status == FAILED}
    write_text_atomic(manifest, manifest_text(e for e in entries if e.path not in bad))
    return steps


def table(results: dict[str, dict[str, Summary]], out_dir: Path) -> str:
    """Final per-split table: annotated segments, videos in the manifest, missing, bad, flagged."""
    lines = [f"prepare: {out_dir}", f"  {'split':<9}{'annotated':>10}{'in manifest':>12}{'missing':>9}{'bad':>6}"
             f"{'flagged':>9}  manifest"]
    for split, steps in results.items():
        missing, bad = steps["manifest"].count(FAILED), steps["verify"].count(FAILED)
        annotated = len(steps["manifest"].outcomes)
        encode = steps.get("trim") or steps["resize"]
        flagged = encode.listed(FLAGGED)
        lines.append(f"  {split:<9}{annotated:>10}{annotated - missing - bad:>12}{missing:>9}{bad:>6}{flagged:>9}"
                     f"  {SPLIT_NAMES[split]}.txt")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``prepare``'s arguments to ``parser``."""
    parser.add_argument("annotations", type=Path, help="folder with train.csv, validate.csv (or val.csv), test.csv")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", type=Path, help="folder of sources {youtube_id}.{mp4,webm,mkv,...} (trim route)")
    source.add_argument("--trimmed", type=Path,
                        help="CVDF mirror folder: {train,val,test}/ and replacement/ (resize route)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to fill")
    parser.add_argument("--splits", default="train,validate",
                        help="comma-separated splits (train,validate,test); an unlabelled test split gives paths alone")
    parser.add_argument("--classes", type=Path, help="fixed class list (default: sorted train labels)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="skip malformed CSV rows (listed) instead of stopping")
    add_encode_arguments(parser)
    group = parser.add_argument_group("download (trim route)")
    group.add_argument("--download", action="store_true", help="download missing sources with yt-dlp first")
    group.add_argument("--download-jobs", type=int_in(1), default=4, help="parallel downloads")
    add_yt_dlp_arguments(group)


def run(args: argparse.Namespace) -> int:
    """Run ``prepare`` from parsed arguments; prints the final table."""
    download_settings = download_settings_from(args) if args.download else None
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    results = prepare(args.annotations, args.out, raw_dir=args.raw, trimmed_dir=args.trimmed, splits=splits,
                      settings=settings_from(args), min_duration=args.min_duration, jobs=args.jobs,
                      download_settings=download_settings, download_jobs=args.download_jobs,
                      classes_file=args.classes, skip_bad_rows=args.skip_bad_rows)
    print(table(results, args.out))
    return 0


if __name__ == "__main__":  # python -m data_prep.prepare: the same as kinetics-prep prepare
    sys.exit(run_step(sys.modules[__name__]))
