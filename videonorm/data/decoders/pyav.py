"""PyAV backend (the reference): exact on every file kind tested, in the base install.

Opening demuxes the whole stream once (packets only, no decoding: about as cheap as decord's or torchcodec's own
index) to get every shown frame's pts; frame ``i`` has the ``i``-th smallest pts. That is exact for constant and
variable frame rates alike, and it is the real frame count: a file whose data ends before the frame count in
its header (a cut download) is rejected here.

Edit lists (mp4/mov; what ``ffmpeg -ss T -i src.mp4 -c copy`` writes, and how many mirrored Kinetics clips were
cut): the packets before the cut stay in the file, from the key frame the first shown frame needs, and the edit
list starts the presentation at the cut. FFmpeg's mov demuxer applies it by default, as players do: it drops the
samples nothing shown needs, shifts timestamps so that the first shown frame is at ``start_time``, and flags the
packets before the cut ``discard`` (``packet.is_discard``; their pts lie before ``start_time``). The decoder
decodes those, for the frames that refer to them, and outputs no frame for them (PyAV's ``frame.pts`` are the
shifted ones). So frame ``i`` is the ``i``-th frame a player shows, in a seek as in a decode from the start, and
the count is the shown frames. Counting every packet, as this module once did, mixed the two definitions (87
frames decoded of "100"; frame 20 read alone was source frame 20, read with frame 0 it was 33).
``av.open(path, options={"ignore_editlist": "1"})`` would give the coded stream from its first sample instead,
which no player shows. The header's frame count (``stream.frames``, the mp4 sample count) includes the samples
the edit list drops, so a file that seems to hold fewer packets than that is counted again with
``ignore_editlist`` before it is called truncated.

``get`` seeks to the key frame at or before the first wanted frame and decodes forward only as far as the last one,
seeking again across a gap that holds a key frame well past the previous wanted frame (a start/middle/end check,
clips spread over a video); if decoding after a seek meets an unknown pts or misses a wanted frame (MPEG-PS and -TS
seek by byte position and can land late), it decodes again from the start and counts frames. Files whose
timestamps restart (recordings joined end to end) are always decoded from the start: frame ``i`` is then the
``i``-th frame of the stream (see ``Reader``).

The display matrix of the stream (rotation by multiples of 90 degrees, mirroring) is applied as FFmpeg's
``ffmpeg`` program and players apply it.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from videonorm.data.decoders import DecoderUnavailableError, VideoDecodeError
from videonorm.data.manifest import STRIDE2_LAYOUT

log = logging.getLogger(__name__)

# Seek again for the next wanted frame when that skips decoding more than this many frames (a seek flushes the
# decoder and refills its delay: not worth it for the key frames inside one clip's window)
SEEK_SAVES = 16


def require() -> None:
    """Raise :class:`DecoderUnavailableError` unless PyAV imports."""
    try:
        import av  # noqa: F401
    except ImportError as error:
        raise DecoderUnavailableError(f"PyAV is not installed ({error}): pip install av") from None


@functools.lru_cache(maxsize=1)
def rgb_converter() -> Callable:
    """``av.VideoFrame -> (H, W, 3) uint8``, as fast as the installed PyAV allows.

    Since PyAV 17, ``to_ndarray`` converts on one swscale thread per core by default, which on Kinetics-size
    frames costs more than the conversion (``videonorm bench data``: 8 ms less CPU per 32-frame clip with one
    thread, bit-identical output); DataLoader workers give the parallelism instead. Older PyAV has no
    ``threads`` option and converts on one thread anyway.
    """
    import av

    try:
        av.VideoFrame(16, 16, "yuv420p").to_ndarray(format="rgb24", threads=1)
        return lambda frame: frame.to_ndarray(format="rgb24", threads=1)
    except TypeError:
        return lambda frame: frame.to_ndarray(format="rgb24")


# ---- the display matrix -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Orientation:
    """How to turn a decoded (H, W, 3) picture into the displayed one: transpose first, then flip."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, picture: np.ndarray) -> np.ndarray:
        """A view of ``picture`` (H, W, 3) as displayed."""
        if self.transpose:
            picture = picture.transpose(1, 0, 2)
        if self.flip_rows:
            picture = picture[::-1]
        if self.flip_cols:
            picture = picture[:, ::-1]
        return picture


UPRIGHT = Orientation()


def display_matrix(frame) -> np.ndarray | None:
    """The frame's display matrix (FFmpeg's 9 int32, 16.16 fixed point for a, b, c, d), or None.

    ``frame.rotation`` (PyAV >= 14.2) reads the matrix without making Python objects; ``frame.side_data`` makes a
    reference cycle in PyAV (the frame caches a container that points back at it), so a frame read that way, and
    the decoder buffers it holds, wait for the cyclic garbage collector: +20 to +50 MB of RSS over 2000 clips
    (scripts/decode_memory.py). So the side data is read only where there is a rotation, that is in rotated
    files alone; a vertical mirror without rotation (no camera writes one) reads as upright.
    """
    if not frame.rotation:
        return None
    for side_data in frame.side_data:
        if getattr(side_data.type, "name", str(side_data.type)).upper().endswith("DISPLAYMATRIX"):
            return np.frombuffer(bytes(side_data), dtype=np.int32, count=9)
    return None


def orientation(matrix: np.ndarray | None) -> Orientation:
    """The :class:`Orientation` of a display matrix.

    FFmpeg's matrix maps a source pixel (x, y) to ``(a x + c y, b x + d y)`` plus a translation (libavutil's
    display.h); with entries in {-1, 0, 1} that is one of the 8 rotations / mirror images of the picture, the
    ones ``ffmpeg`` applies with its ``transpose``, ``hflip`` and ``vflip`` filters.

    Raises:
        ValueError: A rotation that is not a multiple of 90 degrees.
    """
    if matrix is None:
        return UPRIGHT
    a, b, c, d = (float(v) / 65536 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if abs(a) < 0.01 and abs(d) < 0.01 and abs(abs(b) - 1) < 0.01 and abs(abs(c) - 1) < 0.01:
        # display column = c * source row, display row = b * source column
        return Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    if abs(b) < 0.01 and abs(c) < 0.01 and abs(abs(a) - 1) < 0.01 and abs(abs(d) - 1) < 0.01:
        return Orientation(flip_rows=d < 0, flip_cols=a < 0)
    degrees = float(np.degrees(np.arctan2(b, a)))
    raise ValueError(f"display matrix rotates by {degrees:.1f} degrees (only multiples of 90 are supported)")


# ---- probing (for backends that cannot tell codec, pixel format or display matrix themselves) ---------------------
@dataclass(frozen=True)
class Probe:
    """What decides whether a backend is exact on a file."""

    codec: str
    pix_fmt: str
    display_matrix: bool
    hidden_frames: int  # packets an edit list hides (decoded for later frames, never shown): see Reader


def probe(path: str) -> Probe:
    """Codec, pixel format and display matrix of the first video stream (decodes the first frame), and how many
    coded frames an edit list hides (demuxes every packet: they can be at the start and at the end).

    Raises:
        VideoDecodeError: The file does not open or has no frame.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        first, hidden = None, 0
        for packet in container.demux(stream):  # ends with an empty packet, whose decode() flushes the decoder
            hidden += packet.is_discard
            if first is None:
                first = next(iter(packet.decode()), None)
        if first is None:
            raise VideoDecodeError(path, "no frame decoded", "empty")
        codec = stream.codec_context.codec
        # the codec's name (av1), not the decoder's (libdav1d); frame.rotation, not side data: see display_matrix
        name = getattr(codec, "canonical_name", None) or codec.name
        return Probe(name, first.format.name, bool(first.rotation), hidden)


def _open(path: str, options: dict[str, str] | None = None):
    import av

    try:
        container = av.open(path, options=options or {})
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"does not open as a video: {error}", "unreadable") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream", "no_video_stream")
    return container


def _count_packets(path: str, options: dict[str, str]) -> int:
    """The number of video packets with data, demuxed with the given demuxer options."""
    with _open(path, options) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


class _SeekMiss(Exception):
    """PyAV's seek did not land where pts arithmetic said it would: decode from the start instead."""


class Reader:
    """PyAV, frame index from an exact pts table (see the module docstring).

    Args:
        path: Video file.
        threads: Decoder threads.
    """

    def __init__(self, path: str, threads: int):
        import av

        self._path, self._threads = path, threads
        self._container = self._open()
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        announced = int(stream.frames or 0)
        try:
            packets = [(packet.pts, packet.dts, packet.is_keyframe, packet.is_discard)
                       for packet in self._container.demux(stream) if packet.size]
            # shown frames only: a discarded packet (before an edit list's start) is decoded but never output
            shown = [(pts, key) for pts, _, key, discard in packets if not discard]
            if announced and len(packets) < announced:  # fewer samples than the header counts: cut download, or
                held = _count_packets(path, {"ignore_editlist": "1"})  # samples an edit list dropped (see above)
                if held < announced:
                    raise VideoDecodeError(path, f"truncated: header announces {announced} frames, data holds "
                                                 f"{held}", "truncated")
        except av.error.FFmpegError as error:
            self._container.close()
            raise VideoDecodeError(path, f"read error: {error}", "truncated") from None
        except VideoDecodeError:
            self._container.close()
            raise
        pts = [p for p, _ in shown]
        self.num_frames = len(pts)
        if not pts:
            self._container.close()
            raise VideoDecodeError(path, "no video frames", "empty")
        # Frames are counted in a decode from the start, not looked up by pts, when a pts cannot name one frame:
        # a packet without pts, or timestamps that go back in decode order. The latter are MPEG-TS recordings
        # joined end to end (``cat a.ts b.ts``: capture tools, some mirrors), each with its clock starting again.
        # Sorting their pts would interleave the recordings, and a seek to a pts could land in either (frames 0-7
        # read together were 0..7, each alone [0, 8, 2, 9, ...]). Such a file plays: players show the recordings
        # one after the other (ffmpeg too, which mends timestamp jumps of formats that allow them), and so
        # does the decode from the start, presentation order within each recording. So frame k is the k-th frame
        # of the stream, alone or with others; only slower to reach (every read decodes from the start). That
        # keeps a playable video, where declining it would have training skip it and verify --drop delete it.
        dts = [d for _, d, _, _ in packets if d is not None]
        restart = next((i + 1 for i in range(len(dts) - 1) if dts[i + 1] < dts[i]), None)
        self._sequential = ("packets without pts" if None in pts else
                            None if restart is None else f"timestamps restart at packet {restart}")
        # pts -> frame index; None when frames are counted from the start
        self._index_of = None if self._sequential else {p: i for i, p in enumerate(sorted(pts))}
        self._sorted_pts = None if self._index_of is None else sorted(pts)
        self._keyframes = [] if self._index_of is None else sorted(self._index_of[p] for p, key in shown if key)
        self._to_rgb = rgb_converter()
        self._orientation: Orientation | None = None  # read from the first decoded frame's display matrix
        # kinetics-prep's stride-2 layout: odd frames are non-reference B frames (videonorm.data.manifest)
        self._odd_nonref = self._container.metadata.get("comment") == STRIDE2_LAYOUT
        # the demux pass left the container at its end: get() seeks, or reopens for a sequential decode

    def _open(self):
        container = _open(self._path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if self._threads > 1 else "SLICE"
        stream.codec_context.thread_count = self._threads
        return container

    def _picture(self, frame) -> np.ndarray:
        if self._orientation is None:
            try:
                self._orientation = orientation(display_matrix(frame))
            except ValueError as error:
                raise VideoDecodeError(self._path, str(error), "unsupported") from None
        return self._orientation.apply(self._to_rgb(frame))

    def get(self, wanted: list[int]) -> torch.Tensor:
        """Frames ``wanted`` (sorted, unique) as (U, H, W, 3) uint8."""
        import av

        try:
            try:
                if self._sequential:
                    raise _SeekMiss(self._sequential)
                frames = self._get_seeking(wanted)
            except _SeekMiss as miss:
                log.debug("%s: %s; decoding from the start", self._path, miss)
                self._container.close()
                self._container = self._open()
                frames = self._get_sequential(wanted)
        except av.error.FFmpegError as error:
            raise VideoDecodeError(self._path, f"{type(error).__name__}: {error}") from None
        if any(frame.shape != frames[0].shape for frame in frames):  # a clip is one tensor: one frame size
            raise VideoDecodeError(self._path, self._size_change(), "unsupported")
        return torch.from_numpy(np.stack(frames))  # (U, H, W, 3)

    def _size_change(self) -> str:
        """Where the frame size first changes, e.g. ``frame size changes from 64x48 to 96x72 at frame 8``.

        Recordings of different sizes joined end to end (``cat a.ts b.ts``), or a stream whose encoder changed
        resolution. Found by a decode from the start: the frames asked for only bracket the change, and this runs
        once per such file (the dataset then skips it; ``kinetics-prep verify``, which reads the first and the
        last frame, lists it).
        """
        with self._open() as container:
            first = None
            for index, frame in enumerate(container.decode(video=0)):
                size = f"{frame.width}x{frame.height}"
                if first is not None and size != first:
                    return f"frame size changes from {first} to {size} at frame {index}"
                first = first or size
        return "frame size changes mid-stream"  # the decode from the start did not meet the change again

    def _runs(self, wanted: list[int]) -> list[list[int]]:
        """``wanted`` cut where seeking to a key frame skips more than ``SEEK_SAVES`` frames of decoding."""
        runs = [[wanted[0]]]
        for previous, index in zip(wanted, wanted[1:]):
            key = bisect.bisect_right(self._keyframes, index) - 1  # the key frame a seek to ``index`` lands on
            if key >= 0 and self._keyframes[key] - previous > SEEK_SAVES:
                runs.append([index])
            else:
                runs[-1].append(index)
        return runs

    def _get_seeking(self, wanted: list[int]) -> list[np.ndarray]:
        stream = self._container.streams.video[0]
        # only even frames wanted from a stride-2 file: the decoder skips the odd (non-reference) frames, which
        # nothing decoded here refers to, so the even frames are the same pixels; should a file carry the mark
        # without the layout, a wanted frame goes missing and the sequential decode below (no skipping) takes over
        skip = self._odd_nonref and all(i % 2 == 0 for i in wanted)
        stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
        return [frame for run in self._runs(wanted) for frame in self._decode_run(stream, run)]

    def _decode_run(self, stream, wanted: list[int]) -> list[np.ndarray]:
        first, last = wanted[0], wanted[-1]
        # the keyframe at or before the first wanted frame
        self._container.seek(self._sorted_pts[first], stream=stream, backward=True, any_frame=False)
        want, out = set(wanted), []
        for frame in self._container.decode(stream):
            index = self._index_of.get(frame.pts)
            if index is None:
                raise _SeekMiss(f"decoded a frame with unknown pts {frame.pts}")
            if index in want:
                out.append(self._picture(frame))
                want.discard(index)
            if index >= last:
                break
        if want:
            raise _SeekMiss(f"frames {sorted(want)[:5]} not met after seeking")
        return out

    def _get_sequential(self, wanted: list[int]) -> list[np.ndarray]:
        want, last = set(wanted), wanted[-1]
        out, index = [], -1
        for index, frame in enumerate(self._container.decode(video=0)):
            if index in want:
                out.append(self._picture(frame))
            if index >= last:
                return out
        raise VideoDecodeError(self._path, f"stream has {index + 1} frames, frame {last} was asked for")

    def close(self) -> None:
        self._container.close()
