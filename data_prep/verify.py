"""Open and decode every video of a manifest; report (and optionally drop) the broken ones.

Usage::

    kinetics-prep verify MANIFEST [--root ROOT] [--jobs N] [--drop]

For each line the video ``ROOT/path`` (``ROOT`` defaults to the manifest's folder) is checked: it opens,
has a video stream, its packets can all be read and their count matches the header's frame count (a
truncated file fails here), and the frames at the start, middle and end decode. Problems go to
``MANIFEST.bad.csv`` (``path,label,status,reason,message``).

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

import av

from data_prep.errors import ItemError
from data_prep.parallel import parallel_map
from data_prep.report import FAILED, Outcome, Summary, attempt
from data_prep.runner import run_step
from videonorm.data.manifest import ManifestEntry, manifest_text, read_manifest
from videonorm.files import atomic_path, remove_stale_partials, write_text_atomic


@dataclass(frozen=True)
class VideoCheck:
    """What a successful check saw."""

    frames: int
    width: int
    height: int


def _decode_at(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int) -> None:
    """Seek to the key frame before ``pts`` and decode up to the frame at ``pts``."""
    container.seek(pts, stream=stream, backward=True)
    for frame in container.decode(stream):
        if frame.pts is not None and frame.pts >= pts:
            if frame.width <= 0 or frame.height <= 0:
                raise ItemError("decode_error", f"frame at pts {pts} has size {frame.width}x{frame.height}")
            return
    raise ItemError("decode_error", f"no frame decoded at pts {pts}")


def check_video(path: Path) -> VideoCheck:
    """Check that one video opens, is complete and decodes at its start, middle and end.

    Args:
        path: the video file.

    Raises:
        ItemError: ``missing``, ``unreadable`` (cannot open), ``no_video_stream``, ``empty``,
            ``truncated`` (fewer packets than the header says, or a read error), ``decode_error``.
    """
    if not path.is_file():
        raise ItemError("missing", f"{path} does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise ItemError("unreadable", str(err)) from None
    with container:
        if not container.streams.video:
            raise ItemError("no_video_stream", "no video stream")
        stream = container.streams.video[0]
        header_frames = stream.frames
        try:  # demux only (cheap): every packet must be readable
            pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        except av.error.FFmpegError as err:
            raise ItemError("truncated", f"read error: {err}") from None
        if not pts:
            raise ItemError("empty", "no video frames")
        if header_frames and len(pts) < header_frames:
            raise ItemError("truncated", f"header says {header_frames} frames, {len(pts)} readable")
        try:
            for i in sorted({0, len(pts) // 2, len(pts) - 1}):
                _decode_at(container, stream, pts[i])
        except av.error.FFmpegError as err:
            raise ItemError("decode_error", str(err)) from None
        return VideoCheck(len(pts), stream.codec_context.width, stream.codec_context.height)


def _check_entry(root: Path, entry: ManifestEntry) -> Outcome:
    return attempt(entry.path, {"label": entry.label}, functools.partial(check_video, root / entry.path))


def check_entries(entries: Sequence[ManifestEntry], root: Path, report: Path, jobs: int = 1) -> Summary:
    """Check the videos of ``entries`` in parallel and write the bad ones to ``report``.

    Rows of an earlier report whose path is no longer in ``entries`` (lines dropped before) are kept.

    Args:
        entries: manifest entries.
        root: dataset root the paths are relative to.
        report: CSV for bad videos.
        jobs: worker processes.

    Returns:
        The summary: ``done`` = good videos, ``failed`` = bad ones.
    """
    summary = Summary("verify", report, ("path", "label"), "lines dropped earlier still listed")
    for outcome in parallel_map(functools.partial(_check_entry, root), entries, jobs=jobs, desc="verify"):
        summary.add(outcome)
    listed = {e.path for e in entries}
    for path in summary.previous:
        if path not in listed:
            summary.keep_previous(path)
    summary.write()
    return summary


def verify(manifest: Path | str, root: Path | str | None = None, *, jobs: int = 1, drop: bool = False) -> Summary:
    """Verify every video of a manifest; with ``drop``, remove the bad lines (see the module docstring).

    Args:
        manifest: manifest file.
        root: dataset root (default: the manifest's folder).
        jobs: worker processes.
        drop: rewrite the manifest without bad lines, saving the previous version as ``MANIFEST.orig``.

    Returns:
        The summary.
    """
    manifest = Path(manifest)
    root = Path(root) if root is not None else manifest.parent
    entries = read_manifest(manifest)
    remove_stale_partials(manifest.parent)
    summary = check_entries(entries, root, manifest.with_name(manifest.name + ".bad.csv"), jobs)
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
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--drop", action="store_true",
                        help="rewrite MANIFEST without bad lines (previous version kept as MANIFEST.orig)")


def run(args: argparse.Namespace) -> int:
    """Run ``verify`` from parsed arguments; prints the summary; 1 if bad videos remain listed."""
    summary = verify(args.manifest, args.root, jobs=args.jobs, drop=args.drop)
    bad = summary.count(FAILED)
    action = f"; dropped from {args.manifest} (was saved to {args.manifest}.orig)" if args.drop and bad else ""
    print(summary.line(done="ok", failed="bad", skipped=False) + action)
    return 1 if bad and not args.drop else 0


if __name__ == "__main__":  # python -m data_prep.verify: the same as kinetics-prep verify
    sys.exit(run_step(sys.modules[__name__]))
