"""Video decoding: the frames at given indices of a file, as one uint8 tensor, whatever the backend.

Frame ``i`` is the ``i``-th frame in presentation order, counted from 0; ``num_frames`` is the number of frames
in the container's index (decord's ``len``; PyAV counts the packets of the stream, and rejects a file whose
data holds fewer frames than its header announces).
Every backend returns the same frames for the same indices: both convert the decoded picture to RGB with
FFmpeg's swscale, so on the same H.264 stream they agree bit for bit (tests/test_video.py checks this against a
full sequential decode).

Backends:
  * ``"decord"`` (default): ``VideoReader.get_batch`` on the unique sorted indices. If decord fails on a file
    (or is not installed) the same request goes to ``"pyav"``; only when both fail is
    :class:`VideoDecodeError` raised, with both reasons.
  * ``"pyav"``: seek to the keyframe at or before the first wanted frame, decode forward only as far as the
    last one. Frames are identified by their pts through a table built from one demux pass over the file
    (frame ``i`` has the ``i``-th smallest pts, as in decord's index), so variable frame rates are exact. If
    decoding after the seek meets an unknown pts or misses a wanted frame, it decodes again from the start
    and counts frames.

(torchcodec is not offered: its wheels need a system FFmpeg, which this project does not require.)

Nothing here can hang on a file whose header lies about its length: every loop stops at the last wanted frame
or at the end of the data, and a frame that cannot be decoded raises :class:`VideoDecodeError`. Both backends
reject a cut (truncated) file.

Output layout: ``(T, 3, H, W)`` uint8, channel-first per frame, so torchvision v2 transforms apply to it
directly (wrap it in ``tv_tensors.Video``). It is a channels-last *view* of a ``(T, H, W, 3)`` buffer, the
layout torchvision's fast uint8 resize prefers; call ``.contiguous()`` if you need dense strides.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

BACKENDS = ("decord", "pyav")


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


def _to_rgb(frame) -> np.ndarray:
    return rgb_converter()(frame)


class VideoDecodeError(RuntimeError):
    """A video file that cannot be decoded (missing, not a video, truncated, corrupt).

    Args:
        path: The file.
        reason: What went wrong, for the log.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        # args = (path, reason) so the exception pickles across DataLoader worker processes
        super().__init__(str(path), str(reason))
        self.path = str(path)
        self.reason = str(reason)

    def __str__(self) -> str:
        return f"cannot decode {self.path}: {self.reason}"


class _SeekMiss(Exception):
    """PyAV's seek did not land where pts arithmetic said it would: decode from the start instead."""


class _DecordReader:
    def __init__(self, path: str, threads: int):
        import decord

        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def get(self, wanted: list[int]) -> torch.Tensor:
        return torch.from_numpy(self._reader.get_batch(wanted).asnumpy())  # (U, H, W, 3)

    def close(self) -> None:
        del self._reader


class _PyAVReader:
    """PyAV, frame index from an exact pts table.

    Opening demuxes the whole stream once (packets only, no decoding: about as cheap as decord's own index)
    to get every frame's pts; frame ``i`` is the ``i``-th smallest pts. That is exact for constant and
    variable frame rates alike, and it is the real frame count: a file whose data ends before the frame count
    in its header (a cut download) is rejected here, as decord rejects it.
    """

    def __init__(self, path: str, threads: int):
        self._path, self._threads = path, threads
        self._container = self._open()
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        announced = int(stream.frames or 0)
        pts = [packet.pts for packet in self._container.demux(stream) if packet.size]
        self.num_frames = len(pts)
        if announced and self.num_frames < announced:
            raise VideoDecodeError(path, f"truncated: header announces {announced} frames, data holds {len(pts)}")
        # pts -> frame index; None when some packet has no pts (then frames are counted from the start)
        self._index_of = None if None in pts else {p: i for i, p in enumerate(sorted(pts))}
        self._sorted_pts = None if self._index_of is None else sorted(pts)
        # the demux pass left the container at its end: get() seeks, or reopens for a sequential decode

    def _open(self):
        import av

        container = av.open(self._path)
        if not container.streams.video:
            container.close()
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if self._threads > 1 else "SLICE"
        stream.codec_context.thread_count = self._threads
        return container

    def get(self, wanted: list[int]) -> torch.Tensor:
        try:
            if self._index_of is None:
                raise _SeekMiss("packets without pts")
            frames = self._get_seeking(wanted)
        except _SeekMiss as miss:
            log.debug("%s: %s; decoding from the start", self._path, miss)
            self._container.close()
            self._container = self._open()
            frames = self._get_sequential(wanted)
        return torch.from_numpy(np.stack(frames))  # (U, H, W, 3)

    def _get_seeking(self, wanted: list[int]) -> list[np.ndarray]:
        stream = self._container.streams.video[0]
        first, last = wanted[0], wanted[-1]
        # the keyframe at or before the first wanted frame
        self._container.seek(self._sorted_pts[first], stream=stream, backward=True, any_frame=False)
        want, out = set(wanted), []
        for frame in self._container.decode(stream):
            index = self._index_of.get(frame.pts)
            if index is None:
                raise _SeekMiss(f"decoded a frame with unknown pts {frame.pts}")
            if index in want:
                out.append(_to_rgb(frame))
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
                out.append(_to_rgb(frame))
            if index >= last:
                return out
        raise VideoDecodeError(self._path, f"stream has {index + 1} frames, frame {last} was asked for")

    def close(self) -> None:
        self._container.close()


_READERS = {"decord": _DecordReader, "pyav": _PyAVReader}


def _chain(backend: str) -> list[str]:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; available: {', '.join(BACKENDS)}")
    return ["decord", "pyav"] if backend == "decord" else [backend]


def read_clip(
    path: str | os.PathLike,
    choose: Callable[[int], Sequence[int] | torch.Tensor],
    backend: str = "decord",
    threads: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Open a video once, choose frame indices from its frame count, and decode them.

    This is what the dataset uses: sampling needs the frame count, and opening the file once saves a demux.

    Args:
        path: Video file.
        choose: ``choose(num_frames) -> indices`` (1-D ints in ``[0, num_frames)``, any order, repeats allowed).
            Called again with the fallback backend's frame count if the first backend fails.
        backend: ``"decord"`` (falls back to ``"pyav"``) or ``"pyav"``.
        threads: Decoder threads.

    Returns:
        ``(frames, indices)``: frames (T, 3, H, W) uint8 (channels-last view), ``indices`` (T,) int64 as chosen.

    Raises:
        VideoDecodeError: Missing file, not a video, or a wanted frame could not be decoded by any backend.
        IndexError: ``choose`` returned an index outside ``[0, num_frames)``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file")
    errors: list[str] = []
    for name in _chain(backend):
        if errors:
            log.debug("%s: %s; trying %s", path, errors[-1], name)
        try:
            reader = _READERS[name](path, threads)
        except Exception as error:  # decord/PyAV raise many types (DECORDError, av.error.*, RuntimeError, ...)
            errors.append(f"{name}: {_reason(error)}")
            continue
        try:
            if reader.num_frames < 1:
                errors.append(f"{name}: the container announces no frames")
                continue
            indices = torch.as_tensor(choose(reader.num_frames), dtype=torch.long).reshape(-1)
            if len(indices) and (indices.min() < 0 or indices.max() >= reader.num_frames):
                raise IndexError(
                    f"{path}: frame indices must lie in [0, {reader.num_frames}), got "
                    f"[{int(indices.min())}, {int(indices.max())}]"
                )
            if len(indices) == 0:
                raise IndexError(f"{path}: no frame indices asked for")
            unique, inverse = torch.unique(indices, sorted=True, return_inverse=True)
            try:
                frames = reader.get(unique.tolist())  # (U, H, W, 3)
            except Exception as error:
                errors.append(f"{name}: {_reason(error)}")
                continue
            if len(frames) != len(unique):
                errors.append(f"{name}: returned {len(frames)} frames for {len(unique)} indices")
                continue
            if len(unique) != len(indices) or not torch.equal(unique, indices):
                frames = frames[inverse]  # (T, H, W, 3): back to the asked order, repeats included
            return frames.permute(0, 3, 1, 2), indices  # (T, 3, H, W), channels-last view
        finally:
            reader.close()
    raise VideoDecodeError(path, "; ".join(errors))


def _reason(error: Exception) -> str:
    if isinstance(error, VideoDecodeError):
        return error.reason
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"[:300]


def read_frames(
    path: str | os.PathLike, indices: Sequence[int] | torch.Tensor, backend: str = "decord", threads: int = 1
) -> torch.Tensor:
    """Decode exactly the frames at ``indices``.

    Args:
        path: Video file.
        indices: Frame indices (0-based, presentation order); any order, repeats allowed.
        backend: ``"decord"`` (default; falls back to ``"pyav"`` when decord fails on the file) or ``"pyav"``.
        threads: Decoder threads.

    Returns:
        (T, 3, H, W) uint8 tensor, frame ``t`` = frame ``indices[t]`` of the video. Channel-first per frame
        (ready for ``tv_tensors.Video``); a channels-last view, see the module docstring.

    Raises:
        VideoDecodeError: The file is missing, not a video, or a wanted frame cannot be decoded.
        IndexError: An index is outside the video.
    """
    fixed = torch.as_tensor(indices, dtype=torch.long)
    frames, _ = read_clip(path, lambda num_frames: fixed, backend, threads)
    return frames


def video_info(path: str | os.PathLike, backend: str = "decord") -> tuple[int, float]:
    """Frame count and average frame rate, from the container (no frame is decoded).

    The count is decord's ``len`` (its packet index) or, with PyAV, the number of video packets in the data;
    PyAV raises for a file whose data holds fewer frames than its header announces.

    Args:
        path: Video file.
        backend: ``"decord"`` (falls back to ``"pyav"``) or ``"pyav"``.

    Returns:
        ``(num_frames, fps)``.

    Raises:
        VideoDecodeError: The file is missing or cannot be opened by any backend.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file")
    errors = []
    for name in _chain(backend):
        try:
            reader = _READERS[name](path, 1)
        except Exception as error:
            errors.append(f"{name}: {_reason(error)}")
            continue
        reader.close()
        return reader.num_frames, reader.fps
    raise VideoDecodeError(path, "; ".join(errors))
