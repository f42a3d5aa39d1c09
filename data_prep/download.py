"""Download the full source video of every youtube id of an annotation CSV with yt-dlp.

Usage::

    kinetics-prep download ANNOTATIONS.csv --out RAW_DIR [--jobs 4] [--yt-dlp PATH] [--retries 3]
        [--backoff 30] [--format FMT] [--yt-dlp-args "--cookies cookies.txt"] [--retry-failed]

Needs yt-dlp (``pip install 'videonorm[download]'``); it runs as a subprocess, so ``--yt-dlp`` can name
any compatible executable. Each video goes to ``RAW_DIR/{youtube_id}.{ext}`` (``mp4``/``webm``/``mkv``):
yt-dlp writes into a temporary folder ``RAW_DIR/{youtube_id}.partial-<pid>/`` and the finished file is
renamed into place, so an existing file is complete and is skipped on reruns; temporary folders of
interrupted runs are deleted.

Failures are classified from yt-dlp's error output: ``removed``, ``private``, ``unavailable`` (geo/age/
members-only; permanent, not retried and, on later runs, not tried again unless ``--retry-failed``),
``rate_limited`` (HTTP 429 / bot check: every worker pauses for ``backoff * 2**attempt`` seconds, then
retries) and ``other`` (retried with the same backoff). They are listed in
``RAW_DIR.download-failures.csv``. The default format takes video only (no ffmpeg merge needed; ``trim``
drops audio by default), at most 480p (``trim`` scales to a 256 short side).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from data_prep.annotations import read_annotations
from data_prep.errors import InputError, ItemError
from data_prep.parallel import parallel_map
from data_prep.raw import SOURCE_EXTS, index_sources
from data_prep.report import SKIPPED, Outcome, Summary, attempt, report_path
from data_prep.runner import run_step
from videonorm.files import partial_path, remove_stale_partials

DEFAULT_FORMAT = "bv*[height<=480][ext=mp4]/bv*[height<=480]/b[height<=480]/bv*/b"
PERMANENT = ("removed", "private", "unavailable")
# Checked in order; the first reason with a matching (lower-cased) phrase wins.
_PATTERNS = (
    ("rate_limited", ("http error 429", "too many requests", "rate-limit", "rate limit",
                      "confirm you're not a bot", "confirm you’re not a bot")),
    ("private", ("private video", "video is private")),
    ("removed", ("has been removed", "account associated with this video has been terminated",
                 "no longer available", "copyright claim", "violating youtube's")),
    ("unavailable", ("video unavailable", "not available", "unavailable", "confirm your age",
                     "members-only", "members only", "premieres in", "live event will begin")),
)


def classify(stderr: str) -> tuple[str, str]:
    """Failure reason and the most telling line of yt-dlp's error output.

    Args:
        stderr: yt-dlp's stderr.

    Returns:
        (reason, message) with reason in ``rate_limited, private, removed, unavailable, other``.
    """
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:] or ["no error output"]
    message = errors[-1]
    text = "\n".join(errors).lower()
    for reason, phrases in _PATTERNS:
        if any(p in text for p in phrases):
            return reason, message
    return "other", message


def resolve_executable(name: str) -> str:
    """Path of the yt-dlp executable: ``name`` on PATH, or next to this Python (an unactivated venv).

    Raises:
        InputError: not found.
    """
    found = shutil.which(name) or shutil.which(Path(sys.executable).with_name(Path(name).name).as_posix())
    if found is None:
        raise InputError(f"yt-dlp executable {name!r} not found: pip install 'videonorm[download]' or pass --yt-dlp PATH")
    return found


class RateGate:
    """Shared pause for all download threads after a rate-limit answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        """Make every worker wait at least ``seconds`` from now before its next request."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def wait(self) -> None:
        """Sleep until the pause is over."""
        while (delay := self._resume_at - time.monotonic()) > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class DownloadSettings:
    """How yt-dlp is called.

    Args:
        executable: yt-dlp path.
        format: yt-dlp format selector.
        retries: extra attempts after a rate-limited or ``other`` failure.
        backoff: first pause in seconds; doubles with every retry.
        extra_args: more yt-dlp arguments (cookies, proxy, ...).
        timeout: seconds before one yt-dlp call is abandoned.
    """

    executable: str = "yt-dlp"
    format: str = DEFAULT_FORMAT
    retries: int = 3
    backoff: float = 30.0
    extra_args: tuple[str, ...] = ()
    timeout: float = 1800.0


def _run_yt_dlp(youtube_id: str, folder: Path, settings: DownloadSettings) -> tuple[int, str]:
    cmd = [settings.executable, "-f", settings.format, "--no-playlist", "--no-progress",
           "-o", str(folder / f"{youtube_id}.%(ext)s"), *settings.extra_args, "--",
           f"https://www.youtube.com/watch?v={youtube_id}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.timeout)
    except subprocess.TimeoutExpired:
        return -1, f"ERROR: yt-dlp timed out after {settings.timeout:g} s"
    return done.returncode, done.stderr


def _try_once(youtube_id: str, out_dir: Path, settings: DownloadSettings) -> Path | tuple[str, str]:
    """One yt-dlp call in a temporary folder; the finished file is renamed into ``out_dir``.

    Returns:
        The file, or (reason, message) of the failure.
    """
    tmp = partial_path(out_dir / youtube_id)  # a folder: yt-dlp's .part/.ytdl files stay inside it
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        code, stderr = _run_yt_dlp(youtube_id, tmp, settings)
        if code != 0:
            return classify(stderr)
        files = [p for p in tmp.iterdir() if p.stem == youtube_id and p.suffix in SOURCE_EXTS]
        if len(files) != 1:
            return "other", f"yt-dlp succeeded but left {sorted(p.name for p in tmp.iterdir())}"
        target = out_dir / files[0].name
        os.replace(files[0], target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_one(youtube_id: str, out_dir: Path, settings: DownloadSettings, gate: RateGate) -> Path:
    """Download one video to ``out_dir/{youtube_id}.{ext}`` with retries and backoff.

    Args:
        youtube_id: the id.
        out_dir: raw folder.
        settings: yt-dlp call settings.
        gate: pause shared by all threads.

    Returns:
        The downloaded file.

    Raises:
        ItemError: classified failure (see :func:`classify`).
    """
    for attempt_no in range(settings.retries + 1):
        gate.wait()
        result = _try_once(youtube_id, out_dir, settings)
        if isinstance(result, Path):
            return result
        reason, message = result
        if reason in PERMANENT or attempt_no == settings.retries:
            raise ItemError(reason, message)
        delay = settings.backoff * 2**attempt_no
        if reason == "rate_limited":
            gate.pause(delay)  # everyone waits: hammering a rate limit only extends it
        else:
            time.sleep(delay)
    raise AssertionError("unreachable")


def _download_item(out_dir: Path, settings: DownloadSettings, gate: RateGate, youtube_id: str) -> Outcome:
    return attempt(youtube_id, {}, functools.partial(download_one, youtube_id, out_dir, settings, gate))


def download(annotations: Path | str, out_dir: Path | str, settings: DownloadSettings = DownloadSettings(), *,
             jobs: int = 4, retry_failed: bool = False, split: str | None = None,
             skip_bad_rows: bool = False) -> Summary:
    """Download the source video of every youtube id in ``annotations`` that is not in ``out_dir`` yet.

    Args:
        annotations: Kinetics annotation CSV.
        out_dir: raw folder (created).
        settings: yt-dlp call settings.
        jobs: parallel downloads (threads).
        retry_failed: also try ids that failed permanently in an earlier run.
        split: only rows of this split.
        skip_bad_rows: skip malformed CSV rows instead of stopping.

    Returns:
        The summary (report written to ``out_dir.download-failures.csv``).
    """
    out_dir = Path(out_dir)
    segments = [s for s in read_annotations(annotations, skip_bad_rows=skip_bad_rows).segments
                if split is None or s.split == split]
    ids = list(dict.fromkeys(s.youtube_id for s in segments))  # unique, in CSV order
    settings = DownloadSettings(**{**settings.__dict__, "executable": resolve_executable(settings.executable)})
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_partials(out_dir)
    if removed:
        print(f"download: removed {len(removed)} partial download(s) of an interrupted run", file=sys.stderr)
    existing = index_sources(out_dir)
    summary = Summary("download", report_path(out_dir, "download"), ("youtube_id",),
                      "known failures not retried (--retry-failed)")
    todo = []
    for youtube_id in ids:
        if youtube_id in existing:
            summary.add(Outcome(youtube_id, SKIPPED))
        elif not retry_failed and summary.previous.get(youtube_id, {}).get("reason") in PERMANENT:
            summary.keep_previous(youtube_id)  # known dead: asking again only feeds the rate limiter
        else:
            todo.append(youtube_id)
    work = functools.partial(_download_item, out_dir, settings, RateGate())
    try:
        for outcome in parallel_map(work, todo, jobs=jobs, desc="download", threads=True, unit="video"):
            summary.add(outcome)
    finally:
        summary.write()
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``download``'s arguments to ``parser``."""
    parser.add_argument("annotations", type=Path, help="Kinetics annotation CSV")
    parser.add_argument("--out", type=Path, required=True, help="raw folder for full source videos")
    parser.add_argument("--jobs", type=int, default=4, help="parallel downloads")
    parser.add_argument("--yt-dlp", dest="yt_dlp", default="yt-dlp", help="yt-dlp executable")
    parser.add_argument("--retries", type=int, default=3, help="retries after rate limits and unknown errors")
    parser.add_argument("--backoff", type=float, default=30.0, help="first retry pause (s); doubles each retry")
    parser.add_argument("--format", default=DEFAULT_FORMAT, help="yt-dlp format selector")
    parser.add_argument("--yt-dlp-args", dest="yt_dlp_args", default="", help="extra yt-dlp arguments (one string)")
    parser.add_argument("--retry-failed", action="store_true", help="retry ids that failed permanently before")
    parser.add_argument("--split", choices=("train", "validate", "test"), help="only rows of this split")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip malformed CSV rows (listed) instead of stopping")


def settings_from(args: argparse.Namespace) -> DownloadSettings:
    """DownloadSettings from parsed ``configure`` options."""
    return DownloadSettings(executable=args.yt_dlp, format=args.format, retries=args.retries,
                            backoff=args.backoff, extra_args=tuple(shlex.split(args.yt_dlp_args)))


def run(args: argparse.Namespace) -> int:
    """Run ``download`` from parsed arguments; prints the summary line."""
    summary = download(args.annotations, args.out, settings_from(args), jobs=args.jobs,
                       retry_failed=args.retry_failed, split=args.split, skip_bad_rows=args.skip_bad_rows)
    print(summary.line())
    return 0


if __name__ == "__main__":  # python -m data_prep.download: the same as kinetics-prep download
    sys.exit(run_step(sys.modules[__name__]))
