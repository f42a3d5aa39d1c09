"""Reading a source for the encoder: opening it, its frame rate, seeking to a window, and placing its frames on the
output's constant-rate time grid (:mod:`data_prep.encode` writes what this yields).

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
1, 2, 4, ... s earlier, and at last the file is decoded from its beginning. A decoding error ends the pass
where it happens (a truncated file), the same with or without decoder threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from data_prep.errors import ItemError

_MAX_FPS = 240
_SAME_RATE = 0.01  # nominal and average rate this close: a constant-rate stream


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


def open_source(src: Path, threads: int) -> av.container.InputContainer:
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
class Source:
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
        with closing(container if start <= 0 else open_source(self.path, self.threads)) as fresh:
            yield from self.frames(fresh, None)


class Grid:
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
