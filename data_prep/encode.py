"""The encoder shared by ``trim`` and ``resize``: decode a time window, resize, re-encode H.264.

Output: H.264 (libx264) yuv420p in mp4 at a constant frame rate, short side scaled to ``short_side`` (up or
down; 0 keeps the size; both sides rounded to even numbers as yuv420p needs), a key frame every ``gop`` frames
exactly (``keyint=min-keyint=gop``, no scene-cut key frames, so any clip is at most ``gop - 1`` frames of
decoding away from a key frame), the moov atom in front (``faststart``), no audio unless ``keep_audio``
(then AAC). Sources may be any container FFmpeg reads, with any frame rate, size or pixel format. A
display-matrix rotation (phone videos) is applied to the pixels, and non-square pixels are scaled to square,
so the output displays the same without metadata.

Which source frame each output frame shows (variable frame rates, unindexed files that seek late):
:mod:`data_prep.source`; the settings and the muxer: :mod:`data_prep.writer`; many files in parallel, with their
records: :mod:`data_prep.encode_jobs`; the command-line options: :mod:`data_prep.encode_options`.

What was kept is measured (:class:`Encoded`) and an output that starts later or ends earlier than asked by
more than :data:`TOLERANCE` seconds, or is shorter than ``min_duration``, is flagged with the cause
(:func:`coverage_flag`). A decoding error ends the window where it happens (a truncated file): what was
decoded is kept and flagged, the same with or without decoder threads.

Writing: the output is written under a temporary name (:func:`videonorm.files.atomic_path`); after an error the
muxer is only closed (see :mod:`data_prep.writer`). A full disk (``ENOSPC``, ``EDQUOT``, ``EFBIG``) stops
the step (:data:`data_prep.errors.NO_SPACE`); the partial file is removed.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from data_prep.errors import ItemError
from data_prep.report import Flag
from data_prep.source import Grid, Source, frame_rate, open_source
from data_prep.writer import EncodeSettings, Writer
from videonorm.files import atomic_path

TOLERANCE = 0.1  # seconds an output may start late or end early before it is flagged


@dataclass(frozen=True)
class Encoded:
    """What was written and how it covers the asked window.

    Args:
        frames: frames written.
        fps: output frame rate.
        width: output width.
        height: output height.
        first: source time (s) shown by output frame 0.
        source_end: source time (s) where its readable frames ended; None when they went on past the window.
        header_end: the source's length (s) according to its header; None when it does not say.
        duplicated: output frames that repeat the one before (gaps in a variable-frame-rate source).
        dropped: source frames of the window left out (where the source runs faster than ``fps``).
        stop: the decoding error that ended the source early ("" if none).
    """

    frames: int
    fps: Fraction
    width: int
    height: int
    first: float = 0.0
    source_end: float | None = None
    header_end: float | None = None
    duplicated: int = 0
    dropped: int = 0
    stop: str = ""

    @property
    def duration(self) -> float:
        """Seconds of video written."""
        return float(self.frames / self.fps)


def encode_window(src: Path, dst: Path, settings: EncodeSettings, start: float, end: float | None,
            absolute_time: bool) -> Encoded:
    """Write ``[start, end)`` of ``src`` to ``dst`` (not atomically: see :func:`transcode`)."""
    with closing(open_source(src, settings.threads)) as container:
        video = container.streams.video[0]
        fps = frame_rate(video)
        audio = container.streams.audio[0] if settings.keep_audio and container.streams.audio else None
        source = Source(src, settings.threads, absolute_time, fps, audio is not None)
        header_end = None
        if container.duration:
            header_end = container.duration / av.time_base
            if absolute_time and container.start_time is not None:
                header_end += container.start_time / av.time_base
        writer = Writer(dst, settings, fps, start, video.sample_aspect_ratio,
                         audio.rate if audio else None, audio.layout.name if audio else None)
        grid = Grid(start, end, fps)
        try:
            with closing(source.from_time(container, start)) as frames:
                for frame, t, is_video in frames:
                    if not is_video:
                        if t >= start and (end is None or t < end):
                            writer.add_audio(frame, t)
                        continue
                    duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
                    for out, slot in grid.push(frame, t, duration or 1 / float(fps)):
                        writer.add_video(out, slot)
                    if grid.full:
                        break
            for out, slot in grid.finish():
                writer.add_video(out, slot)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    if writer.frames == 0:
        if source.error:
            raise ItemError("corrupt_source", f"decode error before the window [{start:g}, {end}) s of {src.name}: "
                                              f"{source.error}")
        length = f"{header_end:.1f} s long" if header_end is not None else "length unknown"
        raise ItemError("empty_segment", f"no frames in [{start:g}, {end:g}) s of {src.name} ({length})"
                        if end is not None else f"no frames in {src.name}")
    return Encoded(writer.frames, fps, writer.width, writer.height, writer.origin, grid.source_end(), header_end,
                   grid.duplicated, grid.dropped, source.error)


def transcode(src: Path, dst: Path, settings: EncodeSettings, start: float = 0.0,
              end: float | None = None, *, absolute_time: bool = False) -> Encoded:
    """Write ``[start, end)`` seconds of ``src`` to ``dst`` (atomically), resized and re-encoded.

    Args:
        src: source video (any container/codec FFmpeg reads).
        dst: output mp4 path; written as ``dst.partial-<pid>`` and renamed when complete.
        settings: encoder settings.
        start: window start in seconds from the container start.
        end: window end (exclusive); None for the whole file. A window past the end of the source keeps
            what exists.
        absolute_time: times as stored in the file, not from the container start.

    Returns:
        What was written and how it covers the window.

    Raises:
        ItemError: ``corrupt_source`` (cannot open or decode), ``no_video_stream``, ``bad_frame_rate``,
            ``empty_segment`` (no frame in the window).
    """
    with atomic_path(dst) as tmp:
        return encode_window(src, tmp, settings, start, end, absolute_time)


def coverage_flag(encoded: Encoded, start: float, end: float | None, min_duration: float) -> Flag | None:
    """The flag of an output that is shorter or later than asked, with the cause; None if it is complete.

    Reasons: ``short`` (shorter than ``min_duration``, whatever the cause), else ``truncated_source`` (the
    source's frames end before its header says, or a decoding error ended them), ``late_start`` (the source
    has no frame at the window start), ``past_source_end`` (the window runs past the end of the source).
    Gaps up to :data:`TOLERANCE` seconds are not flagged.

    Args:
        encoded: what was written.
        start: window start (s).
        end: window end (s), None for a whole file.
        min_duration: shortest acceptable output (s).
    """
    causes = []
    source_end = encoded.source_end
    truncated = source_end is not None and (
        bool(encoded.stop) or (encoded.header_end is not None and source_end < encoded.header_end - TOLERANCE))
    if truncated and (end is None or source_end < end - TOLERANCE):
        said = f", its header says {encoded.header_end:.2f} s" if encoded.header_end is not None else ""
        stop = f" ({encoded.stop})" if encoded.stop else ""
        causes.append(("truncated_source", f"the source's frames end at {source_end:.2f} s{said}{stop}"))
    if encoded.first - start > TOLERANCE:
        causes.append(("late_start", f"the source's first frame at or after {start:g} s is at {encoded.first:.2f} s"))
    if not truncated and end is not None and source_end is not None and source_end < end - TOLERANCE:
        causes.append(("past_source_end", f"the source ends at {source_end:.2f} s"))
    kept = f"{encoded.duration:.2f} s kept"
    if end is not None:
        kept += f" ({encoded.first:.2f}-{encoded.first + encoded.duration:.2f} s) of {start:g}-{end:g} s requested"
    detail = "; ".join(message for _, message in causes)
    if encoded.duration < min_duration:
        return Flag("short", f"{kept}, shorter than {min_duration:g} s" + (f": {detail}" if detail else ""))
    if causes:
        return Flag(causes[0][0], f"{kept}: {detail}")
    return None
