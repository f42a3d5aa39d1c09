"""The encoder shared by ``trim`` and ``resize``: decode a time window, resize, re-encode H.264.

Output: H.264 (libx264) yuv420p in mp4 at the source's frame rate (constant, a rational such as
30000/1001), short side scaled to ``short_side`` (up or down; 0 keeps the size; both sides rounded to even
numbers as yuv420p needs), a key frame every ``gop`` frames exactly (``keyint=min-keyint=gop``,
no scene-cut key frames, so any clip is at most ``gop - 1`` frames of decoding away from a key frame),
the moov atom in front (``faststart``), no audio unless ``keep_audio`` (then AAC).

Sources may be mp4/webm/mkv with any frame rate, size or pixel format. A display-matrix rotation (phone
videos) is applied to the pixels, and non-square pixels are scaled to square, so the output displays the
same without metadata. Timestamps are taken relative to the container start, as ``ffmpeg -ss`` does.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType

from data_prep.errors import ItemError
from data_prep.parallel import parallel_map
from data_prep.report import Flag, Outcome, Summary, attempt
from videonorm.files import atomic_path

_MAX_FPS = 240


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
    """

    short_side: int = 256
    gop: int = 16
    crf: int = 23
    preset: str = "fast"
    keep_audio: bool = False
    threads: int = 0


@dataclass(frozen=True)
class Encoded:
    """What was written: frame count, frame rate, size."""

    frames: int
    fps: Fraction
    width: int
    height: int

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


def frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    """The stream's frame rate as a rational (average rate, else the guessed one).

    Raises:
        ItemError: ``bad_frame_rate`` when neither is plausible.
    """
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and 0 < rate <= _MAX_FPS:
            return Fraction(rate).limit_denominator(1001)
    raise ItemError("bad_frame_rate", f"no plausible frame rate (average {stream.average_rate}, "
                                      f"guessed {stream.guessed_rate})")


def _window(container: av.container.InputContainer, start: float, end: float | None,
            fps: Fraction, audio: bool) -> Iterator[tuple[av.frame.Frame, float]]:
    """Yield (frame, seconds from container start) for video (and audio) frames with start <= t < end.

    Decoding errors become ItemError("corrupt_source").
    """
    video = container.streams.video[0]
    streams = [video] + ([container.streams.audio[0]] if audio else [])
    offset = container.start_time / av.time_base if container.start_time is not None else 0.0
    if start > 0:
        try:  # to the key frame at or before start; if the file cannot seek we decode from the beginning
            container.seek(int((start + offset) / video.time_base), stream=video, backward=True)
        except av.error.FFmpegError:
            pass
    last_t = start - 1.0 / fps
    decoded = 0
    try:
        for packet in container.demux(*streams):
            for frame in packet.decode():
                is_video = packet.stream.index == video.index
                if frame.time is not None:
                    t = float(frame.time) - offset
                elif is_video:
                    t = last_t + 1.0 / float(fps)  # no timestamp: assume constant rate
                else:
                    continue
                if is_video:
                    last_t = t
                    decoded += 1
                    if end is not None and t >= end:
                        return
                if t >= start and (end is None or t < end):
                    yield frame, t
    except av.error.FFmpegError as err:
        raise ItemError("corrupt_source", f"decode error after {decoded} frames: {err}") from None


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
        self.pending_audio: list[tuple[av.AudioFrame, float]] = []

    def _open(self, frame: av.VideoFrame) -> None:
        s = self.settings
        self.quarters = round(frame.rotation / 90) % 4  # frame.rotation: degrees counter-clockwise
        self.width, self.height = output_size(frame.width, frame.height, s.short_side, self.quarters,
                                              self.sample_aspect)
        self.container = av.open(str(self.path), "w", format="mp4", container_options={"movflags": "+faststart"})
        options = {"crf": str(s.crf), "preset": s.preset}
        if s.gop > 0:
            options["x264-params"] = f"keyint={s.gop}:min-keyint={s.gop}:scenecut=0"
        self.video = self.container.add_stream("libx264", rate=self.fps, options=options)
        self.video.width, self.video.height, self.video.pix_fmt = self.width, self.height, "yuv420p"
        self.video.codec_context.thread_count = s.threads
        if s.gop > 0:
            self.video.codec_context.gop_size = s.gop
        self.audio = None
        if self.audio_rate:
            self.audio = self.container.add_stream("aac", rate=self.audio_rate, layout=self.audio_layout)

    def add_video(self, frame: av.VideoFrame) -> None:
        if self.container is None:
            self._open(frame)
            for pending in self.pending_audio:
                self.add_audio(*pending)
            self.pending_audio = []
        out = _display_frame(frame, self.quarters, self.width, self.height)
        out.pts, out.time_base = self.frames, 1 / self.fps
        # the source's frame types travel with the frame, and x264 would honour its key frames: drop them so
        # the GOP is exactly `gop`
        out.pict_type = PictureType.NONE
        self.container.mux(self.video.encode(out))
        self.frames += 1

    def add_audio(self, frame: av.AudioFrame, t: float) -> None:
        if self.container is None:
            self.pending_audio.append((frame, t))
            return
        if self.audio is not None:
            # audio timestamps restart at 0 with the video; time base 1/sample_rate
            frame.pts, frame.time_base = round((t - self.start) * frame.sample_rate), Fraction(1, frame.sample_rate)
            self.container.mux(self.audio.encode(frame))

    def close(self) -> None:
        if self.container is None:
            return
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()


def transcode(src: Path, dst: Path, settings: EncodeSettings, start: float = 0.0,
              end: float | None = None) -> Encoded:
    """Write ``[start, end)`` seconds of ``src`` to ``dst`` (atomically), resized and re-encoded.

    Args:
        src: source video (any container/codec FFmpeg reads).
        dst: output mp4 path; written as ``dst.partial-<pid>`` and renamed when complete.
        settings: encoder settings.
        start: window start in seconds from the container start.
        end: window end (exclusive); None for the whole file. A window past the end of the source keeps
            what exists.

    Returns:
        Frame count, frame rate and size written.

    Raises:
        ItemError: ``corrupt_source`` (cannot open or decode), ``no_video_stream``, ``bad_frame_rate``,
            ``empty_segment`` (no frame in the window).
    """
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as err:
        raise ItemError("corrupt_source", f"cannot open {src.name}: {err}") from None
    with container:
        if not container.streams.video:
            raise ItemError("no_video_stream", f"{src.name} has no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        video.thread_count = settings.threads
        fps = frame_rate(video)
        audio = container.streams.audio[0] if settings.keep_audio and container.streams.audio else None
        with atomic_path(dst) as tmp:
            writer = _Writer(tmp, settings, fps, start, video.sample_aspect_ratio,
                             audio.rate if audio else None, audio.layout.name if audio else None)
            try:
                for frame, t in _window(container, start, end, fps, audio is not None):
                    if isinstance(frame, av.VideoFrame):
                        writer.add_video(frame)
                    else:
                        writer.add_audio(frame, t)
            finally:
                writer.close()
            if writer.frames == 0:
                length = float(container.duration / av.time_base) if container.duration else float("nan")
                raise ItemError("empty_segment", f"no frames in [{start:g}, {end:g}) s of {src.name} "
                                                 f"({length:.1f} s long)")
    return Encoded(writer.frames, fps, writer.width, writer.height)


@dataclass(frozen=True)
class EncodeJob:
    """One file for :func:`run_encode_job` (picklable, for worker processes).

    Args:
        key: report key (the output name).
        src: source video.
        dst: output path.
        settings: encoder settings.
        start: window start (seconds).
        end: window end (seconds, exclusive) or None for the whole file.
        min_duration: flag outputs shorter than this many seconds.
        fields: extra report columns.
    """

    key: str
    src: Path
    dst: Path
    settings: EncodeSettings
    start: float = 0.0
    end: float | None = None
    min_duration: float = 0.0
    fields: dict[str, object] = field(default_factory=dict)


def _encode_and_check(job: EncodeJob) -> Flag | None:
    encoded = transcode(job.src, job.dst, job.settings, job.start, job.end)
    if encoded.duration < job.min_duration:
        wanted = f" of {job.end - job.start:g} s requested" if job.end is not None else ""
        return Flag("short", f"{encoded.duration:.2f} s kept{wanted} (shorter than {job.min_duration:g} s)")
    return None


def run_encode_job(job: EncodeJob) -> Outcome:
    """Encode one file and report the outcome (worker function of ``trim`` and ``resize``)."""
    return attempt(job.key, job.fields, functools.partial(_encode_and_check, job))


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Encoder and parallelism options shared by ``trim``, ``resize`` and ``prepare``."""
    parser.add_argument("--short-side", type=int, default=256, help="output short side in pixels; 0 keeps the size")
    parser.add_argument("--gop", type=int, default=16, help="frames between key frames; 0 = libx264 default (250)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality (lower = better, bigger)")
    parser.add_argument("--preset", default="fast", help="libx264 preset")
    parser.add_argument("--keep-audio", action="store_true", help="keep the audio (AAC); dropped by default")
    parser.add_argument("--min-duration", type=float, default=2.0,
                        help="flag outputs shorter than this many seconds")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    """EncodeSettings from parsed ``add_encode_arguments`` options (one codec thread per job if jobs > 1)."""
    return EncodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                          keep_audio=args.keep_audio, threads=1 if args.jobs > 1 else 0)


def encode_all(summary: Summary, jobs_list: list[EncodeJob], jobs: int, desc: str) -> None:
    """Run encode jobs in parallel and record their outcomes (shared by ``trim`` and ``resize``)."""
    for outcome in parallel_map(run_encode_job, jobs_list, jobs=jobs, desc=desc):
        summary.add(outcome)
