"""Writing the encoder's output: the settings (:class:`EncodeSettings`), the output size, and the muxer that
opens on the first video frame and writes H.264 (and AAC) at the output's constant frame rate.

Writing: the output is written under a temporary name by the caller (:func:`videonorm.files.atomic_path`). After
any error the muxer is only closed, never written to again: PyAV 18 crashes (SIGSEGV) when a file whose header
could not be written (disk full) is written to again.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType

from videonorm.data.manifest import STRIDE2_LAYOUT


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


def _display_frame(frame: av.VideoFrame, quarters: int, width: int, height: int) -> av.VideoFrame:
    """Rotate for display (only if needed), scale and convert to yuv420p."""
    if quarters:
        rgb = np.rot90(frame.to_ndarray(format="rgb24"), quarters)  # np.rot90 turns counter-clockwise
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")


class Writer:
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
