"""Download the annotated part of every YouTube video of an annotation CSV with yt-dlp.

Usage::

    kinetics-prep download ANNOTATIONS.csv --out RAW_DIR [--jobs 4] [--margin 2] [--whole-videos]
        [--yt-dlp PATH] [--retries 3] [--backoff 30] [--timeout 300] [--format FMT]
        [--yt-dlp-args "--cookies cookies.txt"] [--retry-failed]

Needs yt-dlp (``pip install 'videonorm[download]'``) and, for sections, ffmpeg (yt-dlp cuts with it); yt-dlp
runs as a subprocess, so ``--yt-dlp`` can name any compatible executable.

Only the annotated segment plus ``--margin`` seconds on each side is fetched (yt-dlp's ``--download-sections
"*START-END"``; a few MB instead of a whole video), to ``RAW_DIR/{youtube_id}_{START:06d}_{END:06d}.{ext}``
(all segments of a video in one section). ffmpeg copies the stream from the key frame at or before START
without re-encoding; ``-copyts`` (``--downloader-args ffmpeg_o:-copyts``) keeps the video's own timestamps,
so ``trim`` cuts the segment by the same times as from the whole video (without it, where a WebM section
starts in time depends on where its key frame fell). ``--whole-videos`` fetches whole videos instead
(``RAW_DIR/{youtube_id}.{ext}``). See :mod:`data_prep.raw` for the layout.

Resumable: yt-dlp writes into a temporary folder ``RAW_DIR/{name}.partial-<pid>/`` and the finished file is
renamed into place, so an existing file is complete; temporary folders of interrupted runs are deleted. Every
finished video is appended to ``RAW_DIR.download-archive.txt`` in yt-dlp's ``--download-archive`` format
(``youtube {youtube_id}``), so videos whose files were deleted after trimming are not fetched again (pass the
file to ``yt-dlp --download-archive`` to use it elsewhere). A video is skipped when a file in ``RAW_DIR`` holds
its segments, or when it is in the archive and has no file there.

Failures are classified from yt-dlp's error output: ``removed``, ``private``, ``unavailable`` (geo/age/
members-only; permanent, not retried and, on later runs, not tried again unless ``--retry-failed``),
``rate_limited`` (HTTP 429 / bot check: every worker pauses for ``backoff * 2**attempt`` seconds, then
retries), ``other`` (retried with the same backoff) and ``timeout``: a call that gives no result within
``--timeout`` seconds is killed with its children (yt-dlp runs in a process group of its own, see
:mod:`data_prep.process_group`; so is it when the step is interrupted) and not retried in this run (a hung
call would hold a worker ``--timeout`` seconds per try), but on the next run like ``other``. They are listed in
``RAW_DIR.download-failures.csv``, and each timeout is said when it happens. The default format takes video only
(no ffmpeg merge needed; ``trim`` drops audio by default), at most 480p (``trim`` scales to a 256 short side).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data_prep.annotations import Segment, read_annotations
from data_prep.errors import InputError, ItemError
from data_prep.outputs import check_output_folder
from data_prep.parallel import parallel_map
from data_prep.process_group import ProcessGroups
from data_prep.raw import SOURCE_EXTS, RawSource, index_sources, section_name
from data_prep.report import DONE, SKIPPED, Outcome, Summary, attempt, report_path
from data_prep.runner import run_step
from videonorm.commands import float_in, int_in
from videonorm.files import partial_path, remove_stale_partials

DEFAULT_FORMAT = "bv*[height<=480][ext=mp4]/bv*[height<=480]/b[height<=480]/bv*/b"
PERMANENT = ("removed", "private", "unavailable")
TIMEOUT = "timeout"
# A 10 s Kinetics segment with 2 s margins is a 14 s section: at 480p a few MB, and a handful of requests to
# YouTube before it; seconds, or tens of seconds on a slow line. A call silent for 5 minutes is hung, not slow;
# a false timeout costs a retry on the next run, a hang costs this long per try. Whole videos may want more.
DEFAULT_TIMEOUT = 300.0
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
        raise InputError(f"yt-dlp executable {name!r} not found: pip install 'videonorm[download]' "
                         "or pass --yt-dlp PATH")
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

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Sleep (with ``sleep``) until the pause is over."""
        while (delay := self._resume_at - time.monotonic()) > 0:
            sleep(delay)


@dataclass(frozen=True)
class DownloadSettings:
    """How yt-dlp is called.

    Args:
        executable: yt-dlp path.
        format: yt-dlp format selector.
        retries: extra attempts after a rate-limited or ``other`` failure.
        backoff: first pause in seconds; doubles with every retry.
        extra_args: more yt-dlp arguments (cookies, proxy, ...).
        timeout: seconds before one yt-dlp call is killed, with its children (a ``timeout`` failure).
        margin: seconds fetched before and after the annotated segments.
        whole_videos: fetch whole videos instead of sections.
    """

    executable: str = "yt-dlp"
    format: str = DEFAULT_FORMAT
    retries: int = 3
    backoff: float = 30.0
    extra_args: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    margin: int = 2
    whole_videos: bool = False


@dataclass(frozen=True)
class Wanted:
    """What to fetch of one video: the span of its annotated segments, and the section around it.

    Args:
        youtube_id: the video.
        start: first segment start (s).
        end: last segment end (s).
        margin: seconds added on each side (None: the whole video).
    """

    youtube_id: str
    start: int
    end: int
    margin: int | None

    @property
    def section(self) -> tuple[int, int] | None:
        """(start, end) of the section to fetch, None for the whole video."""
        if self.margin is None:
            return None
        return max(0, self.start - self.margin), self.end + self.margin

    @property
    def stem(self) -> str:
        """The downloaded file's name without extension."""
        section = self.section
        return self.youtube_id if section is None else section_name(self.youtube_id, *section)


def wanted(segments: list[Segment], settings: DownloadSettings) -> list[Wanted]:
    """One :class:`Wanted` per video, in CSV order, covering all its segments."""
    spans: dict[str, tuple[int, int]] = {}
    for seg in segments:
        start, end = spans.get(seg.youtube_id, (seg.time_start, seg.time_end))
        spans[seg.youtube_id] = (min(start, seg.time_start), max(end, seg.time_end))
    margin = None if settings.whole_videos else settings.margin
    return [Wanted(youtube_id, start, end, margin) for youtube_id, (start, end) in spans.items()]


ARCHIVE_SUFFIX = ".download-archive.txt"
_NEEDS_FFMPEG = "requested downloading the video partially, but ffmpeg is not installed"


def archive_path(out_dir: Path) -> Path:
    """The download archive of a raw folder: ``<RAW_DIR>.download-archive.txt`` beside it."""
    out_dir = out_dir.resolve()
    return out_dir.with_name(out_dir.name + ARCHIVE_SUFFIX)


def read_archive(path: Path) -> set[str]:
    """YouTube ids listed in a download archive (lines ``youtube <id>``; other lines are ignored)."""
    if not path.is_file():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "youtube":
            ids.add(parts[1])
    return ids


def _run_yt_dlp(want: Wanted, folder: Path, settings: DownloadSettings,
                groups: ProcessGroups) -> tuple[int | None, str]:
    cmd = [settings.executable, "-f", settings.format, "--no-playlist", "--no-progress"]
    if want.section is not None:
        start, end = want.section
        cmd += ["--download-sections", f"*{start}-{end}", "--downloader-args", "ffmpeg_o:-copyts"]
    cmd += ["-o", str(folder / f"{want.stem}.%(ext)s"), *settings.extra_args, "--",
            f"https://www.youtube.com/watch?v={want.youtube_id}"]
    done = groups.run(cmd, settings.timeout)
    return done.returncode, done.stderr


def _timed_out(settings: DownloadSettings, stderr: str) -> tuple[str, str]:
    """The ``timeout`` failure: how long, and the last thing yt-dlp said."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = f"; its last line: {lines[-1]}" if lines else "; it wrote nothing"
    return TIMEOUT, f"no result within {settings.timeout:g} s (--timeout): killed with its children{last}"


def _try_once(want: Wanted, out_dir: Path, settings: DownloadSettings,
              groups: ProcessGroups) -> Path | tuple[str, str]:
    """One yt-dlp call in a temporary folder; the finished file is renamed into ``out_dir``.

    Returns:
        The file, or (reason, message) of the failure.

    Raises:
        InputError: yt-dlp cannot cut sections without ffmpeg (every video would fail the same way).
    """
    tmp = partial_path(out_dir / want.stem)  # a folder: yt-dlp's .part/.ytdl files stay inside it
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        code, stderr = _run_yt_dlp(want, tmp, settings, groups)
        if code is None:
            return _timed_out(settings, stderr)
        if code != 0:
            if _NEEDS_FFMPEG in stderr:
                raise InputError("yt-dlp needs ffmpeg to download sections: install ffmpeg (e.g. apt-get install "
                                 "ffmpeg) or pass --whole-videos")
            return classify(stderr)
        files = [p for p in tmp.iterdir() if p.stem == want.stem and p.suffix in SOURCE_EXTS]
        if len(files) != 1:
            return "other", f"yt-dlp succeeded but left {sorted(p.name for p in tmp.iterdir())}"
        target = out_dir / files[0].name
        os.replace(files[0], target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_one(want: Wanted, out_dir: Path, settings: DownloadSettings, gate: RateGate,
                 groups: ProcessGroups) -> Path:
    """Download one video (or its section) into ``out_dir`` with retries and backoff.

    Args:
        want: what to fetch.
        out_dir: raw folder.
        settings: yt-dlp call settings.
        gate: pause shared by all threads.
        groups: runs yt-dlp (and ends it when the step stops).

    Returns:
        The downloaded file.

    Raises:
        ItemError: classified failure (see :func:`classify`).
    """
    for attempt_no in range(settings.retries + 1):
        gate.wait(groups.sleep)
        result = _try_once(want, out_dir, settings, groups)
        if isinstance(result, Path):
            return result
        reason, message = result
        if reason in PERMANENT or reason == TIMEOUT or attempt_no == settings.retries:
            raise ItemError(reason, message)
        delay = settings.backoff * 2**attempt_no
        if reason == "rate_limited":
            gate.pause(delay)  # everyone waits: hammering a rate limit only extends it
        else:
            groups.sleep(delay)
    raise AssertionError("unreachable")


def _download_item(out_dir: Path, settings: DownloadSettings, gate: RateGate, groups: ProcessGroups,
                   want: Wanted) -> Outcome:
    outcome = attempt(want.youtube_id, {}, functools.partial(download_one, want, out_dir, settings, gate, groups))
    if outcome.reason == TIMEOUT:  # said at once: a stall of several minutes gets its explanation
        tqdm.write(f"download: {want.youtube_id}: {outcome.message}", file=sys.stderr)
    return outcome


def _held(files: list[RawSource], want: Wanted) -> bool:
    """Whether a file of the raw folder holds all of the video's segments."""
    return any(f.overlap(want.start, want.end) >= want.end - want.start for f in files)


def download(annotations: Path | str, out_dir: Path | str, settings: DownloadSettings = DownloadSettings(), *,
             jobs: int = 4, retry_failed: bool = False, split: str | None = None,
             skip_bad_rows: bool = False) -> Summary:
    """Download the annotated section of every video in ``annotations`` that is not in ``out_dir`` yet.

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
    check_output_folder(out_dir, beside=True)  # the report and the archive go beside it
    segments = [s for s in read_annotations(annotations, skip_bad_rows=skip_bad_rows).segments
                if split is None or s.split == split]
    videos = wanted(segments, settings)
    settings = DownloadSettings(**{**settings.__dict__, "executable": resolve_executable(settings.executable)})
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_partials(out_dir)
    if removed:
        print(f"download: removed {len(removed)} partial download(s) of an interrupted run", file=sys.stderr)
    existing = index_sources(out_dir)
    archive = archive_path(out_dir)
    archived = read_archive(archive)
    summary = Summary("download", report_path(out_dir, "download"), ("youtube_id",),
                      "known failures not retried (--retry-failed)")
    todo = []
    for want in videos:
        files = existing.get(want.youtube_id, [])
        # the archive stands for files deleted after trimming; a file that is there but misses a segment (a new
        # annotation row) is fetched again
        if _held(files, want) or (not files and want.youtube_id in archived):
            summary.add(Outcome(want.youtube_id, SKIPPED))
        elif not retry_failed and summary.previous.get(want.youtube_id, {}).get("reason") in PERMANENT:
            summary.keep_previous(want.youtube_id)  # known dead: asking again only feeds the rate limiter
        else:
            todo.append(want)
    groups = ProcessGroups()
    work = functools.partial(_download_item, out_dir, settings, RateGate(), groups)
    print(f"download: {len(todo)} video(s) to fetch, {min(jobs, len(todo))} at a time ({len(videos) - len(todo)} "
          f"there or known); a yt-dlp call is stopped after {settings.timeout:g} s (--timeout)", file=sys.stderr)
    try:
        with archive.open("a", encoding="utf-8") as record:
            for outcome in parallel_map(work, todo, jobs=jobs, desc="download", threads=True, unit="video"):
                summary.add(outcome)
                if outcome.status == DONE:  # the file is in place: record it at once
                    record.write(f"youtube {outcome.key}\n")
                    record.flush()
    finally:
        groups.stop()  # Ctrl-C or kill: every yt-dlp still running is ended with its children
        summary.write()
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``download``'s arguments to ``parser``."""
    parser.add_argument("annotations", type=Path, help="Kinetics annotation CSV")
    parser.add_argument("--out", type=Path, required=True, help="raw folder for full source videos")
    parser.add_argument("--jobs", type=int_in(1), default=4, help="parallel downloads")
    add_yt_dlp_arguments(parser)
    parser.add_argument("--retry-failed", action="store_true", help="retry ids that failed permanently before")
    parser.add_argument("--split", choices=("train", "validate", "test"), help="only rows of this split")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="skip malformed CSV rows (listed) instead of stopping")


def add_yt_dlp_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How videos are fetched (shared by ``download`` and ``prepare --download``): sections, yt-dlp and its calls."""
    parser.add_argument("--margin", type=int_in(0), default=2, help="seconds fetched before and after each segment")
    parser.add_argument("--whole-videos", action="store_true", help="fetch whole videos instead of sections")
    parser.add_argument("--yt-dlp", dest="yt_dlp", default="yt-dlp", help="yt-dlp executable")
    parser.add_argument("--retries", type=int_in(0), default=3, help="retries after rate limits and unknown errors")
    parser.add_argument("--backoff", type=float_in(0), default=30.0,
                        help="first retry pause (s); doubles each retry")
    parser.add_argument("--timeout", type=float_in(0, include_low=False), default=DEFAULT_TIMEOUT,
                        help="seconds before a yt-dlp call is killed with its children and the video listed as "
                             "'timeout' (retried on the next run; default %(default)g: a 14 s section takes seconds)")
    parser.add_argument("--format", default=DEFAULT_FORMAT, help="yt-dlp format selector")
    parser.add_argument("--yt-dlp-args", dest="yt_dlp_args", default="", help="extra yt-dlp arguments (one string)")


def settings_from(args: argparse.Namespace) -> DownloadSettings:
    """DownloadSettings from parsed :func:`add_yt_dlp_arguments` options."""
    return DownloadSettings(executable=args.yt_dlp, format=args.format, retries=args.retries,
                            backoff=args.backoff, extra_args=tuple(shlex.split(args.yt_dlp_args)),
                            timeout=args.timeout, margin=args.margin, whole_videos=args.whole_videos)


def run(args: argparse.Namespace) -> int:
    """Run ``download`` from parsed arguments; prints the summary line."""
    summary = download(args.annotations, args.out, settings_from(args), jobs=args.jobs,
                       retry_failed=args.retry_failed, split=args.split, skip_bad_rows=args.skip_bad_rows)
    print(summary.line())
    return 0


if __name__ == "__main__":  # python -m data_prep.download: the same as kinetics-prep download
    sys.exit(run_step(sys.modules[__name__]))
