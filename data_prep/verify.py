"""Open and decode every video of a manifest; report (and optionally drop) the broken ones.

Usage::

    kinetics-prep verify MANIFEST [--root ROOT] [--jobs N] [--drop] [--decoder pyav] [--allow-duplicates]

For each line the video ``ROOT/path`` (``ROOT`` defaults to the manifest's folder) is checked through the
decoding training uses (:func:`videonorm.data.video.read_clip`, with the same ``--decoder`` as
``data.decoder``, PyAV by default): it opens, has a video stream, its packets can all be read and their count
matches the header's frame count (a truncated file fails here), and the frames at the start, middle and end
decode. So a video that training can read is never reported bad, and one it cannot read is. Problems go to
``MANIFEST.bad.csv`` (``path,label,status,reason,message``).

A video listed twice is an error naming both lines (exit status 2), unless ``--allow-duplicates`` (a train
manifest that repeats videos on purpose, as ``data.allow_duplicate_train``; each video is checked once).

``--drop`` rewrites ``MANIFEST`` without the bad lines, first saving the manifest as it was to
``MANIFEST.orig``; the dropped lines stay listed (with labels) in ``MANIFEST.bad.csv`` on later runs too,
so nothing is lost and a rerun changes nothing. Exit status 1 if bad videos remain in the manifest.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import InputError, ItemError
from data_prep.outputs import check_output_file
from data_prep.parallel import parallel_map
from data_prep.report import FAILED, Outcome, Summary, attempt
from data_prep.runner import run_step
from videonorm.commands import int_in
from videonorm.data.decoders import BACKENDS, DEFAULT_BACKEND
from videonorm.data.manifest import ManifestEntry, manifest_text, read_manifest
from videonorm.files import atomic_path, remove_stale_partials, write_text_atomic

# videonorm.data.video is imported where it is used: it loads torch (a second or more), which the other steps
# of kinetics-prep and their worker processes do not need (videonorm.data.decoders alone imports no torch).


@dataclass(frozen=True)
class VideoCheck:
    """What a successful check saw."""

    frames: int
    width: int
    height: int


def check_video(path: Path, decoder: str = DEFAULT_BACKEND) -> VideoCheck:
    """Check that one video opens, is complete and decodes at its start, middle and end, as training decodes it.

    Args:
        path: the video file.
        decoder: the video backend training uses (``data.decoder``).

    Raises:
        ItemError: ``missing``, ``unreadable`` (cannot open), ``no_video_stream``, ``empty``,
            ``truncated`` (fewer packets than the header says, or a read error), ``unsupported``,
            ``decode_error``.
    """
    from videonorm.data.video import VideoDecodeError, read_clip

    counts: list[int] = []

    def start_middle_end(num_frames: int) -> list[int]:
        counts.append(num_frames)  # the last call is the backend that decoded
        return sorted({0, num_frames // 2, num_frames - 1})

    try:
        frames, _ = read_clip(path, start_middle_end, decoder)  # (T, 3, H, W)
    except VideoDecodeError as err:
        raise ItemError(err.kind, err.reason) from None
    return VideoCheck(counts[-1], frames.shape[3], frames.shape[2])


def _check_entry(root: Path, decoder: str, entry: ManifestEntry) -> Outcome:
    return attempt(entry.path, {"label": entry.label}, functools.partial(check_video, root / entry.path, decoder))


def require_decoder(decoder: str) -> None:
    """Stop before any work if ``decoder`` cannot run here.

    Raises:
        InputError: Unknown decoder, or one that cannot run here (the message says what to install).
    """
    from videonorm.data.video import DecoderUnavailableError, require_backend

    try:
        require_backend(decoder)
    except (DecoderUnavailableError, ValueError) as err:
        raise InputError(f"--decoder {decoder}: {err}") from None


def check_entries(
    entries: Sequence[ManifestEntry], root: Path, report: Path, jobs: int = 1, decoder: str = DEFAULT_BACKEND
) -> Summary:
    """Check the videos of ``entries`` in parallel and write the bad ones to ``report``.

    Rows of an earlier report whose path is no longer in ``entries`` (lines dropped before) are kept.

    Args:
        entries: manifest entries.
        root: dataset root the paths are relative to.
        report: CSV for bad videos.
        jobs: worker processes.
        decoder: the video backend training uses (``data.decoder``).

    Returns:
        The summary: ``done`` = good videos, ``failed`` = bad ones.

    Raises:
        InputError: ``decoder`` cannot run here.
    """
    require_decoder(decoder)
    summary = Summary("verify", report, ("path", "label"), "lines dropped earlier still listed")
    for outcome in parallel_map(functools.partial(_check_entry, root, decoder), entries, jobs=jobs, desc="verify"):
        summary.add(outcome)
    listed = {e.path for e in entries}
    for path in summary.previous:
        if path not in listed:
            summary.keep_previous(path)
    summary.write()
    return summary


def verify(
    manifest: Path | str, root: Path | str | None = None, *, jobs: int = 1, drop: bool = False,
    decoder: str = DEFAULT_BACKEND, allow_duplicates: bool = False,
) -> Summary:
    """Verify every video of a manifest; with ``drop``, remove the bad lines (see the module docstring).

    Args:
        manifest: manifest file.
        root: dataset root (default: the manifest's folder).
        jobs: worker processes.
        drop: rewrite the manifest without bad lines, saving the previous version as ``MANIFEST.orig``.
        decoder: the video backend training uses (``data.decoder``).
        allow_duplicates: accept a video listed more than once (``data.allow_duplicate_train``).

    Returns:
        The summary.

    Raises:
        ManifestError: a bad line, e.g. a video listed twice (without ``allow_duplicates``).
    """
    manifest = Path(manifest)
    root = Path(root) if root is not None else manifest.parent
    entries = read_manifest(manifest, allow_duplicates=allow_duplicates)
    check_output_file(manifest, "MANIFEST")  # MANIFEST.bad.csv goes beside it; --drop rewrites it
    remove_stale_partials(manifest.parent)
    unique = list({entry.path: entry for entry in entries}.values())  # a repeated video is checked and counted once
    summary = check_entries(unique, root, manifest.with_name(manifest.name + ".bad.csv"), jobs, decoder)
    bad = {o.key for o in summary.outcomes if o.status == FAILED}
    if drop and bad:
        with atomic_path(manifest.with_name(manifest.name + ".orig")) as tmp:
            shutil.copy2(manifest, tmp)
        write_text_atomic(manifest, manifest_text(e for e in entries if e.path not in bad))
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``verify``'s arguments to ``parser``."""
    parser.add_argument("manifest", type=Path, help="manifest file (relative/path.mp4 <label> lines)")
    parser.add_argument("--root", type=Path, help="dataset root (default: the manifest's folder)")
    parser.add_argument("--jobs", type=int_in(1), default=1, help="parallel worker processes")
    parser.add_argument("--drop", action="store_true",
                        help="rewrite MANIFEST without bad lines (previous version kept as MANIFEST.orig)")
    parser.add_argument("--decoder", default=DEFAULT_BACKEND, choices=BACKENDS,
                        help="video backend, as training's data.decoder (default %(default)s)")
    parser.add_argument("--allow-duplicates", action="store_true",
                        help="accept a video listed more than once (a train manifest that repeats videos on purpose, "
                             "as data.allow_duplicate_train); an error otherwise")


def run(args: argparse.Namespace) -> int:
    """Run ``verify`` from parsed arguments; prints the summary; 1 if bad videos remain listed."""
    summary = verify(args.manifest, args.root, jobs=args.jobs, drop=args.drop, decoder=args.decoder,
                     allow_duplicates=args.allow_duplicates)
    bad = summary.count(FAILED)
    action = f"; dropped from {args.manifest} (was saved to {args.manifest}.orig)" if args.drop and bad else ""
    print(summary.line(done="ok", failed="bad", skipped=False) + action)
    return 1 if bad and not args.drop else 0


if __name__ == "__main__":  # python -m data_prep.verify: the same as kinetics-prep verify
    sys.exit(run_step(sys.modules[__name__]))
