"""The encoder shared by ``trim`` and ``resize``: decode a time window, resize, re-encode H.264.

Output: H.264 (libx264) yuv420p in mp4 at a constant frame rate, short side scaled to ``short_side`` (up or
down; 0 keeps the size; both sides rounded to even numbers as yuv420p needs), a key frame every ``gop`` frames
exactly (``keyint=min-keyint=gop``, no scene-cut key frames, so any clip is at most ``gop - 1`` frames of
decoding away from a key frame), the moov atom in front (``faststart``), no audio unless ``keep_audio``
(then AAC). Sources may be any container FFmpeg reads, with any frame rate, size or pixel format. A
display-matrix rotation (phone videos) is applied to the pixels, and non-square pixels are scaled to square,
so the output displays the same without metadata.

Timing: output frame ``k`` shows the source at time ``start + k / fps``. Each source frame goes to the output
slot nearest its timestamp and a slot shows the last frame placed at or before it (what FFmpeg's ``fps``
filter does), so across the gaps of a variable-frame-rate source frames are repeated, where it runs faster
they are dropped, and the output keeps the source's duration and timing. ``fps`` is the stream's nominal
rate when it agrees with its average rate within 1% (a constant-rate stream: the exact rational, e.g.
30000/1001, and every frame kept once), else its average rate. Times are relative to the container start,
as ``ffmpeg -ss`` counts them, or as stored with ``absolute_time`` (section downloads that keep the video's
own timeline, see :mod:`data_prep.raw`).

Seeking: in an indexed container a seek lands on the key frame at or before the target, but in an MPEG
program stream (``.mpg``) and other unindexed files it can land after it, and the frames in between would be
lost. So when the first frame decoded after a seek comes later than the window start, the seek is retried
1, 2, 4, ... s earlier, and at last the file is decoded from its beginning.

What was kept is measured (:class:`Encoded`) and an output that starts later or ends earlier than asked by
more than :data:`TOLERANCE` seconds, or is shorter than ``min_duration``, is flagged with the cause
(:func:`coverage_flag`). A decoding error ends the window where it happens (a truncated file): what was
decoded is kept and flagged, the same with or without decoder threads.

Writing: the output is written under a temporary name (:func:`videonorm.files.atomic_path`). After any
error the muxer is only closed, never written to again: PyAV 18 crashes (SIGSEGV) when a file whose header
could not be written (disk full) is written to again. A full disk (``ENOSPC``, ``EDQUOT``, ``EFBIG``) stops
the step (:data:`data_prep.errors.NO_SPACE`); the partial file is removed.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType

from data_prep.errors import ItemError
from data_prep.parallel import parallel_map
from data_prep.records import read_record, records_dir, write_record
from data_prep.report import FLAGGED, SKIPPED, Flag, Outcome, Summary, attempt
from videonorm.data.manifest import STRIDE2_LAYOUT
from videonorm.files import atomic_path, remove_stale_partials

TOLERANCE = 0.1  # seconds an output may start late or end early before it is flagged
_MAX_FPS = 240
_SAME_RATE = 0.01  # nominal and average rate this close: a constant-rate stream


@dataclass(frozen=True)
class EncodeSettings:
    """How outputs are encoded.

    Args:
        short_side: target short side in pixels (0 keeps the source size).
        gop: frames between key frames (0: libx264's default, keyint 250 with scene cuts).
        crf: libx264 constant rate factor (lower is better quality and bigger files).
        preset: libx264 preset.
        keep_audio: re-encode the audio track to AAC instead of dropping it.
        threads: codec threads per file (0: automatic; use 1 when running several jobs).
        layout: ``"stride2"`` (with a fixed GOP): every odd frame is a non-reference B frame and every even one an
            I or P frame (libx264 ``bframes=1:b-adapt=0:b-pyramid=none``), marked in the file, so a reader that
            wants only even frames (32x2 clips on even windows) skips decoding the odd ones with no change to the
            even ones; ``"x264"``: libx264's own frame types.
    """

    short_side: int = 256
    gop: int = 16
    crf: int = 23
    preset: str = "fast"
    keep_audio: bool = False
    threads: int = 0
    layout: str = "stride2"


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


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def output_size(width: int, height: int, short_side: int, rotation_quarters: int = 0,
                sample_aspect: Fraction | None = None) -> tuple[int, int]:
    """Output (width, height) for a stored frame size.

    Args:
        width: stored width.
        height: stored height.
        short_side: target short side (0 keeps the displayed size).
        rotation_quarters: quarter turns applied for display (odd swaps width and height).
        sample_aspect: pixel aspect ratio (None or 0 means square pixels).

    Returns:
        Even (width, height) of the displayed, scaled frame.
    """
    w, h = float(width), float(height)
    if sample_aspect:
        w *= float(sample_aspect)
    if rotation_quarters % 2:
        w, h = h, w
    if short_side > 0:
        scale = short_side / min(w, h)
        w, h = w * scale, h * scale
    return _even(w), _even(h)


def _plausible(rate: Fraction | None) -> Fraction | None:
    return Fraction(rate).limit_denominator(1001) if rate and 0 < rate <= _MAX_FPS else None


def frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    """The output frame rate for a source stream (see the module docstring).

    Raises:
        ItemError: ``bad_frame_rate`` when neither the average nor the nominal rate is plausible.
    """
    average, nominal = _plausible(stream.average_rate), _plausible(stream.guessed_rate)
    if average and nominal and abs(nominal / average - 1) <= _SAME_RATE:
        return nominal
    rate = average or nominal
    if rate is None:
        raise ItemError("bad_frame_rate", f"no plausible frame rate (average {stream.average_rate}, "
                                          f"guessed {stream.guessed_rate})")
    return rate


def _open(src: Path, threads: int) -> av.container.InputContainer:
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as err:
        raise ItemError("corrupt_source", f"cannot open {src.name}: {err}") from None
    if not container.streams.video:
        container.close()
        raise ItemError("no_video_stream", f"{src.name} has no video stream")
    video = container.streams.video[0]
    video.thread_type = "AUTO"
    video.thread_count = threads
    return container


@dataclass
class _Source:
    """How to read one source: its file, time origin and frame rate, and how the last pass over it ended."""

    path: Path
    threads: int
    absolute_time: bool
    fps: Fraction
    audio: bool
    error: str = ""  # decoding error that ended the last pass

    def offset(self, container: av.container.InputContainer) -> float:
        if self.absolute_time or container.start_time is None:
            return 0.0
        return container.start_time / av.time_base

    def frames(self, container: av.container.InputContainer,
               seek_to: float | None) -> Iterator[tuple[av.frame.Frame, float, bool]]:
        """Yield (frame, seconds, is_video) from a seek to ``seek_to`` (None: from where the container is).

        A decoding error ends the pass (recorded in ``error``).
        """
        video = container.streams.video[0]
        streams = [video] + ([container.streams.audio[0]] if self.audio else [])
        offset = self.offset(container)
        if seek_to is not None:
            try:  # to the key frame at or before seek_to, in principle (see the module docstring)
                container.seek(int((seek_to + offset) / video.time_base), stream=video, backward=True)
            except av.error.FFmpegError:
                pass  # cannot seek: decode from where it is
        self.error = ""
        last_t = (seek_to or 0.0) - 1 / self.fps
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    is_video = packet.stream.index == video.index
                    if frame.time is not None:
                        t = float(frame.time) - offset
                    elif is_video:
                        t = last_t + 1 / self.fps  # no timestamp: assume the constant rate
                    else:
                        continue
                    if is_video:
                        last_t = t
                    yield frame, t, is_video
        except av.error.FFmpegError as err:
            self.error = str(err)

    def from_time(self, container: av.container.InputContainer,
                  start: float) -> Iterator[tuple[av.frame.Frame, float, bool]]:
        """Frames from (at the latest) the one shown at ``start`` on, seeking earlier while a seek lands late."""
        late = start + 0.5 / self.fps  # a first frame after this misses the window's first output slot
        margin = 0.0
        while start - margin > 0:
            frames = self.frames(container, start - margin)
            before: list[tuple[av.frame.Frame, float, bool]] = []  # audio ahead of the first video frame
            for item in frames:
                before.append(item)
                if item[2]:
                    break
            if before and before[-1][2] and before[-1][1] <= late:
                yield from before
                yield from frames
                return
            margin = 2 * margin if margin else 1.0
        # from the very beginning, in a fresh container: a seek to 0 can land late too
        with closing(container if start <= 0 else _open(self.path, self.threads)) as fresh:
            yield from self.frames(fresh, None)


class _Grid:
    """Places source frames on the output's constant-rate grid ``start + k / fps`` (see the module docstring).

    Args:
        start: window start (s).
        end: window end (s, exclusive), None for no end.
        fps: output frame rate.
    """

    def __init__(self, start: float, end: float | None, fps: Fraction) -> None:
        self.start, self.fps = start, float(fps)
        self.slots = math.ceil((end - start) * self.fps - 1e-6) if end is not None else None
        self.held: tuple[av.VideoFrame, int, float, float] | None = None  # frame, slot, time, duration
        self.used = False  # the held frame was written at least once
        self.next: int | None = None  # next slot to write
        self.duplicated = self.dropped = 0

    def slot(self, t: float) -> int:
        return math.floor((t - self.start) * self.fps + 0.5)  # nearest slot, halves up (FFmpeg's "near")

    @property
    def full(self) -> bool:
        return self.slots is not None and self.next is not None and self.next >= self.slots

    def _fill(self, until: int) -> Iterator[tuple[av.VideoFrame, int]]:
        """Write the held frame into the slots before ``until``."""
        frame, slot = self.held[0], self.held[1]
        if self.slots is not None:
            until = min(until, self.slots)
        if self.next is None:
            if until <= max(slot, 0):
                return
            self.next = max(slot, 0)
        while self.next < until:
            self.duplicated += self.used
            self.used = True
            yield frame, self.next
            self.next += 1

    def push(self, frame: av.VideoFrame, t: float, duration: float) -> Iterator[tuple[av.VideoFrame, int]]:
        """Take the next source frame; yield (frame, slot) for the slots the frame before it fills."""
        slot = self.slot(t)
        if self.held is not None:
            yield from self._fill(slot)
            if not self.used and self.held[1] >= 0:
                self.dropped += 1  # two frames for one slot: the later one shows
        if not self.full:
            self.held, self.used = (frame, slot, t, duration), False

    def finish(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """The last frame fills the slots of its display time."""
        if self.held is not None:
            frame, slot, t, duration = self.held
            yield from self._fill(max(slot + 1, self.slot(t + duration)))

    def source_end(self) -> float | None:
        """Where the frames seen ended, if before the window's end."""
        if self.full or self.held is None:
            return None
        return self.held[2] + self.held[3]


def _display_frame(frame: av.VideoFrame, quarters: int, width: int, height: int) -> av.VideoFrame:
    """Rotate for display (only if needed), scale and convert to yuv420p."""
    if quarters:
        rgb = np.rot90(frame.to_ndarray(format="rgb24"), quarters)  # np.rot90 turns counter-clockwise
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")


class _Writer:
    """Opens the output on the first video frame (its size and rotation decide the output size)."""

    def __init__(self, path: Path, settings: EncodeSettings, fps: Fraction, start: float,
                 sample_aspect: Fraction | None, audio_rate: int | None, audio_layout: str | None) -> None:
        self.path, self.settings, self.fps, self.start = path, settings, fps, start
        self.sample_aspect = sample_aspect
        self.audio_rate, self.audio_layout = audio_rate, audio_layout
        self.container: av.container.OutputContainer | None = None
        self.frames = 0
        self.first_slot = 0
        self.pending_audio: list[tuple[av.AudioFrame, float]] = []
        self.last: tuple[av.VideoFrame, av.VideoFrame] | None = None  # (source frame, its converted picture)

    @property
    def origin(self) -> float:
        """Source time of output frame 0."""
        return float(self.start + self.first_slot / self.fps)

    def _open(self, frame: av.VideoFrame) -> None:
        s = self.settings
        self.quarters = round(frame.rotation / 90) % 4  # frame.rotation: degrees counter-clockwise
        self.width, self.height = output_size(frame.width, frame.height, s.short_side, self.quarters,
                                              self.sample_aspect)
        self.container = av.open(str(self.path), "w", format="mp4", container_options={"movflags": "+faststart"})
        options = {"crf": str(s.crf), "preset": s.preset}
        if s.gop > 0:
            options["x264-params"] = f"keyint={s.gop}:min-keyint={s.gop}:scenecut=0"
            if s.layout == "stride2":  # odd frames: B frames nothing refers to (even ones: I and P); see EncodeSettings
                options["x264-params"] += ":bframes=1:b-adapt=0:b-pyramid=none"
                self.container.metadata["comment"] = STRIDE2_LAYOUT
        self.video = self.container.add_stream("libx264", rate=self.fps, options=options)
        self.video.width, self.video.height, self.video.pix_fmt = self.width, self.height, "yuv420p"
        self.video.codec_context.thread_count = s.threads
        if s.gop > 0:
            self.video.codec_context.gop_size = s.gop
        self.audio = None
        if self.audio_rate:
            self.audio = self.container.add_stream("aac", rate=self.audio_rate, layout=self.audio_layout)

    def add_video(self, frame: av.VideoFrame, slot: int) -> None:
        """Write ``frame`` as the output frame of grid slot ``slot`` (slots arrive in order)."""
        if self.container is None:
            self.first_slot = slot
            self._open(frame)
            for pending in self.pending_audio:
                self.add_audio(*pending)
            self.pending_audio = []
        if self.last is None or self.last[0] is not frame:
            out = _display_frame(frame, self.quarters, self.width, self.height)
            # the source's frame types travel with the frame, and x264 would honour its key frames: drop them so
            # the GOP is exactly `gop`
            out.pict_type = PictureType.NONE
            self.last = (frame, out)
        out = self.last[1]  # a repeated frame is the same picture again
        out.pts, out.time_base = slot - self.first_slot, 1 / self.fps
        self.container.mux(self.video.encode(out))
        self.frames += 1

    def add_audio(self, frame: av.AudioFrame, t: float) -> None:
        if self.container is None:
            self.pending_audio.append((frame, t))
        elif self.audio is not None and t >= self.origin:
            # audio timestamps start at 0 with the video; time base 1/sample_rate
            frame.pts = round((t - self.origin) * frame.sample_rate)
            frame.time_base = Fraction(1, frame.sample_rate)
            self.container.mux(self.audio.encode(frame))

    def close(self) -> None:
        """Flush the encoders and write the trailer."""
        if self.container is None:
            return
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()

    def abort(self) -> None:
        """Release the output after an error without writing to it again (see the module docstring)."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - already failing; the caller removes the partial file
                pass


def _encode(src: Path, dst: Path, settings: EncodeSettings, start: float, end: float | None,
            absolute_time: bool) -> Encoded:
    """Write ``[start, end)`` of ``src`` to ``dst`` (not atomically: see :func:`transcode`)."""
    with closing(_open(src, settings.threads)) as container:
        video = container.streams.video[0]
        fps = frame_rate(video)
        audio = container.streams.audio[0] if settings.keep_audio and container.streams.audio else None
        source = _Source(src, settings.threads, absolute_time, fps, audio is not None)
        header_end = None
        if container.duration:
            header_end = container.duration / av.time_base
            if absolute_time and container.start_time is not None:
                header_end += container.start_time / av.time_base
        writer = _Writer(dst, settings, fps, start, video.sample_aspect_ratio,
                         audio.rate if audio else None, audio.layout.name if audio else None)
        grid = _Grid(start, end, fps)
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
        return _encode(src, tmp, settings, start, end, absolute_time)


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


@dataclass(frozen=True)
class EncodeJob:
    """One file for :func:`run_encode_job` (picklable, for worker processes).

    Args:
        key: report key (the output name).
        src: source video; None when it is gone and ``dst`` exists (kept as it is, never remade).
        dst: output path.
        settings: encoder settings.
        start: window start (seconds).
        end: window end (seconds, exclusive) or None for the whole file.
        min_duration: flag outputs shorter than this many seconds.
        fields: extra report columns.
        absolute_time: the source's times as stored (see :func:`transcode`).
    """

    key: str
    src: Path | None
    dst: Path
    settings: EncodeSettings
    start: float = 0.0
    end: float | None = None
    min_duration: float = 0.0
    fields: dict[str, object] = field(default_factory=dict)
    absolute_time: bool = False

    def record(self, encoded: Encoded, flag: Flag | None, size: int) -> dict[str, object]:
        """The output's record (see :mod:`data_prep.records`)."""
        return {"bytes": size, "source": self.src.name, "source_bytes": self.src.stat().st_size,
                "start": self.start, "end": self.end, "frames": encoded.frames, "fps": str(encoded.fps),
                "width": encoded.width, "height": encoded.height, "first": round(encoded.first, 6),
                "duplicated": encoded.duplicated, "dropped": encoded.dropped,
                "reason": flag.reason if flag else "", "message": flag.message if flag else ""}


def _encode_job(job: EncodeJob) -> Flag | None:
    with atomic_path(job.dst) as tmp:
        encoded = _encode(job.src, tmp, job.settings, job.start, job.end, job.absolute_time)
        flag = coverage_flag(encoded, job.start, job.end, job.min_duration)
        write_record(job.dst, job.record(encoded, flag, tmp.stat().st_size))  # before the output appears
    return flag


def run_encode_job(job: EncodeJob) -> Outcome:
    """Encode one file and report the outcome (worker function of ``trim`` and ``resize``)."""
    return attempt(job.key, job.fields, functools.partial(_encode_job, job))


def _probe(job: EncodeJob) -> dict[str, object]:
    """A record for an output made without one (an older version): its length against the asked window."""
    try:
        with av.open(str(job.dst)) as container:
            stream = container.streams.video[0]
            frames, fps = stream.frames, Fraction(stream.average_rate)
    except (av.error.FFmpegError, OSError, IndexError, TypeError, ZeroDivisionError) as err:
        return {"reason": "unreadable_output", "message": f"made without a record and cannot be read: {err}"}
    duration = float(frames / fps) if fps else 0.0
    asked = job.end - job.start if job.end is not None else None
    reason = message = ""
    if duration < job.min_duration or (asked is not None and duration < asked - TOLERANCE):
        reason = "short" if duration < job.min_duration else "incomplete"
        message = f"{duration:.2f} s" + (f" of {asked:g} s requested" if asked is not None else "") + \
            " (made without a record: the cause is unknown)"
    return {"bytes": job.dst.stat().st_size, "frames": frames, "fps": str(fps), "reason": reason, "message": message}


def finished(job: EncodeJob) -> Flag | None | bool:
    """What an existing output of ``job`` is, from its record: False if it must be (re)made, else its flag.

    An output that is absent, or whose record names another source (e.g. a replacement file appeared), is
    (re)made. An output without a record (made by an older version) is measured once and its record written.

    Args:
        job: the job that would make the output.

    Returns:
        False (encode it), None (done, complete) or the :class:`Flag` it was given.
    """
    if not job.dst.is_file():
        return False
    record = read_record(job.dst)
    if record is None:
        record = _probe(job)
        write_record(job.dst, record)
    elif (job.src is not None and "source" in record
          and (record["source"], record["source_bytes"]) != (job.src.name, job.src.stat().st_size)):
        return False
    return Flag(str(record["reason"]), str(record["message"])) if record.get("reason") else None


def remove_interrupted(out_dir: Path, step: str) -> None:
    """Delete the partial videos and partial records a killed ``trim``/``resize`` left in ``out_dir``."""
    removed = remove_stale_partials(out_dir) + remove_stale_partials(records_dir(out_dir))
    if removed:
        print(f"{step}: removed {len(removed)} partial file(s) left by an interrupted run", file=sys.stderr)


def encode_all(summary: Summary, jobs_list: list[EncodeJob], jobs: int, desc: str) -> None:
    """Encode what is not finished yet and record every outcome (shared by ``trim`` and ``resize``).

    Finished outputs are skipped, and listed with the flag their record holds: the report is rebuilt from
    what is on disk, whatever happened to the run that made them.
    """
    todo = []
    for job in jobs_list:
        state = finished(job)
        if state is False:
            todo.append(job)
            continue
        summary.add(Outcome(job.key, SKIPPED, fields=job.fields))
        if state is not None:
            summary.keep(job.key, job.fields, FLAGGED, state.reason, state.message)
    for outcome in parallel_map(run_encode_job, todo, jobs=jobs, desc=desc):
        summary.add(outcome)


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Encoder and parallelism options shared by ``trim``, ``resize`` and ``prepare``."""
    parser.add_argument("--short-side", type=int, default=256, help="output short side in pixels; 0 keeps the size")
    parser.add_argument("--gop", type=int, default=16, help="frames between key frames; 0 = libx264 default (250)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality (lower = better, bigger)")
    parser.add_argument("--preset", default="fast", help="libx264 preset")
    parser.add_argument("--layout", choices=("stride2", "x264"), default="stride2",
                        help="frame types: stride2 = odd frames non-reference (32x2 clips decode half the frames; "
                             "the default), x264 = libx264's own")
    parser.add_argument("--keep-audio", action="store_true", help="keep the audio (AAC); dropped by default")
    parser.add_argument("--min-duration", type=float, default=2.0,
                        help="flag outputs shorter than this many seconds")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    """EncodeSettings from parsed ``add_encode_arguments`` options (one codec thread per job if jobs > 1)."""
    return EncodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                          keep_audio=args.keep_audio, threads=1 if args.jobs > 1 else 0, layout=args.layout)
