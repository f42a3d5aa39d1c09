"""Video decoding: the frames at given indices of a file, as one uint8 tensor, whatever the backend.

Frame ``i`` is the ``i``-th frame a player shows, counted from 0, whether it is read alone or with others:
presentation order; an mp4's edit list applied (a file cut with ``ffmpeg -ss T -c copy`` keeps coded frames
before the cut that are never shown, and they are not frames here); recordings joined end to end, whose timestamps
restart, one after the other. ``num_frames`` counts those frames (a file whose data holds fewer frames than its
header announces is rejected as truncated). tests/test_video_timeline.py checks this on every backend. The
display matrix (rotation, mirroring) is applied, as players apply it. Pixels are FFmpeg's swscale RGB24.

Backends (:mod:`videonorm.data.decoders`, one module each): ``"pyav"`` (default and reference: exact on every
file kind tested, in the base install), ``"torchcodec"`` and ``"decord"`` (optional extras). Every backend returns
the same frames for the same indices: a backend that is not tested exact on a file's container, codec, pixel
format or display matrix declines it, and PyAV decodes that file (logged once per reason); a backend that fails
on a file hands it to PyAV too; only when PyAV also fails is :class:`VideoDecodeError` raised, with both reasons.
A backend that cannot run here (not installed, no FFmpeg libraries) raises :class:`DecoderUnavailableError`,
one line that says what to install. tests/test_video.py checks every backend on every file kind against a full
sequential decode.

Nothing here can hang on a file whose header lies about its length: every loop stops at the last wanted frame
or at the end of the data, and a frame that cannot be decoded raises :class:`VideoDecodeError`.

Output layout: ``(T, 3, H, W)`` uint8, channel-first per frame, so torchvision v2 transforms apply to it
directly (wrap it in ``tv_tensors.Video``). It is a channels-last *view* of a ``(T, H, W, 3)`` buffer, the
layout torchvision's fast uint8 resize prefers; call ``.contiguous()`` if you need dense strides.

This module imports torch and numpy, never Lightning: ``kinetics-prep verify`` decodes through it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import torch

from videonorm.data.decoders import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEVICE_BACKENDS,
    REFERENCE,
    DecoderUnavailableError,
    NotExact,
    VideoDecodeError,
    available_backends,
    backend_module,
)

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "DecoderUnavailableError", "VideoDecodeError", "available_backends", "read_clip",
    "read_frames", "require_backend", "video_info",
]  # fmt: skip

log = logging.getLogger(__name__)
_declined: set[tuple[str, str]] = set()  # (backend, reason) already logged in this process


def require_backend(backend: str) -> None:
    """Check that ``backend`` can run here, before any file is read.

    Raises:
        ValueError: Unknown backend.
        DecoderUnavailableError: Not installed, or its system libraries are missing (one line: what to install).
    """
    backend_module(backend)


def _chain(backend: str) -> list[str]:
    backend_module(backend)
    return [backend] if backend == REFERENCE else [backend, REFERENCE]


def _open(name: str, path: str, threads: int, failures: list[tuple[str, str, str]], device: str | None = None):
    """Backend ``name``'s reader on ``path``, or None (the failure appended to ``failures``, or a decline logged)."""
    try:
        if device is not None and name in DEVICE_BACKENDS:
            return backend_module(name).Reader(path, threads, device=device)
        return backend_module(name).Reader(path, threads)
    except NotExact as decline:
        if (name, str(decline)) not in _declined:
            _declined.add((name, str(decline)))
            log.info("%s is not used for files with %s (not tested exact; %s decodes them), e.g. %s", name, decline,
                     REFERENCE, path)
        return None
    except Exception as error:  # decord/PyAV/torchcodec raise many types (DECORDError, av.error.*, RuntimeError)
        failures.append(_failure(name, error))
        return None


def _failure(name: str, error: Exception) -> tuple[str, str, str]:
    """(backend, reason, kind) of a failure; the kind is VideoDecodeError's, else ``decode_error``."""
    if isinstance(error, VideoDecodeError):
        return name, error.reason, error.kind
    text = str(error).strip().splitlines()
    return name, f"{type(error).__name__}: {text[-1] if text else ''}"[:300], "decode_error"


def _raise(path: str, failures: list[tuple[str, str, str]]):
    # the reference backend runs last: its kind is the verdict
    raise VideoDecodeError(path, "; ".join(f"{name}: {reason}" for name, reason, _ in failures), failures[-1][2])


def read_clip(
    path: str | os.PathLike,
    choose: Callable[[int], Sequence[int] | torch.Tensor],
    backend: str = DEFAULT_BACKEND,
    threads: int = 1,
    device: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Open a video once, choose frame indices from its frame count, and decode them.

    This is what the dataset uses: sampling needs the frame count, and opening the file once saves a demux.

    Args:
        path: Video file.
        choose: ``choose(num_frames) -> indices`` (1-D ints in ``[0, num_frames)``, any order, repeats allowed).
            Called again with PyAV's frame count if the first backend declines or fails.
        backend: A name of :data:`BACKENDS`; backends other than PyAV hand files they decline or fail on to it.
        threads: Decoder threads.
        device: Decode on this device where the backend can (:data:`DEVICE_BACKENDS`: torchcodec on CUDA); frames
            of a file another backend decodes come back on the CPU.

    Returns:
        ``(frames, indices)``: frames (T, 3, H, W) uint8 (channels-last view), ``indices`` (T,) int64 as chosen.

    Raises:
        VideoDecodeError: Missing file, not a video, or a wanted frame could not be decoded by any backend.
        DecoderUnavailableError: ``backend`` cannot run here.
        IndexError: ``choose`` returned an index outside ``[0, num_frames)``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file", "missing")
    failures: list[tuple[str, str, str]] = []
    for name in _chain(backend):
        if failures:
            log.debug("%s: %s; trying %s", path, failures[-1][1], name)
        reader = _open(name, path, threads, failures, device)
        if reader is None:
            continue
        try:
            if reader.num_frames < 1:
                failures.append((name, "the container announces no frames", "empty"))
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
                failures.append(_failure(name, error))
                continue
            if len(frames) != len(unique):
                failures.append((name, f"returned {len(frames)} frames for {len(unique)} indices", "decode_error"))
                continue
            if len(unique) != len(indices) or not torch.equal(unique, indices):
                frames = frames[inverse]  # (T, H, W, 3): back to the asked order, repeats included
            return frames.permute(0, 3, 1, 2), indices  # (T, 3, H, W), channels-last view
        finally:
            reader.close()
    _raise(path, failures)


def read_frames(
    path: str | os.PathLike, indices: Sequence[int] | torch.Tensor, backend: str = DEFAULT_BACKEND, threads: int = 1
) -> torch.Tensor:
    """Decode exactly the frames at ``indices``.

    Args:
        path: Video file.
        indices: Frame indices (0-based, presentation order); any order, repeats allowed.
        backend: A name of :data:`BACKENDS` (see :func:`read_clip`).
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


def video_info(path: str | os.PathLike, backend: str = DEFAULT_BACKEND) -> tuple[int, float]:
    """Frame count and average frame rate, from the container's packets (no frame is decoded by PyAV).

    Args:
        path: Video file.
        backend: A name of :data:`BACKENDS` (see :func:`read_clip`).

    Returns:
        ``(num_frames, fps)``.

    Raises:
        VideoDecodeError: The file is missing or cannot be opened by any backend.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file", "missing")
    failures: list[tuple[str, str, str]] = []
    for name in _chain(backend):
        reader = _open(name, path, 1, failures)
        if reader is not None:
            reader.close()
            return reader.num_frames, reader.fps
    _raise(path, failures)
