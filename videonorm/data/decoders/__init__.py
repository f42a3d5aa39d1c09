"""Video decoder backends: one module per backend, registered by name in :data:`BACKENDS`.

A backend module (``pyav.py``, ``torchcodec.py``, ``decord.py``) defines

  * ``require()``: import its library, or raise :class:`DecoderUnavailableError` with one line that says what
    to install (libraries are imported only when a backend is first used, so optional ones stay optional);
  * ``Reader(path, threads)``: opens one file; ``num_frames``, ``fps``, ``get(sorted unique indices) -> (U, H,
    W, 3) uint8 tensor`` in presentation order with the display matrix applied, ``close()``. It raises
    :class:`NotExact` for a file outside what the backend is tested exact on (the caller then uses the reference
    backend for that file) and :class:`VideoDecodeError` for a broken file. A backend that can decode on a GPU
    (listed in :data:`DEVICE_BACKENDS`) also takes ``Reader(path, threads, device=...)`` and returns the frames on
    that device; ``read_clip`` passes ``device`` to those backends only.

:func:`videonorm.data.video.read_clip` is the only caller. Adding a decoder = one module + its name in
:data:`BACKENDS`; ``tests/test_video.py`` runs every name on every file kind (give it the kinds the new backend
serves itself in ``SERVED`` there).

Exactness: frame ``i`` is the ``i``-th frame a player shows (:mod:`videonorm.data.video`); pixels are FFmpeg's
swscale RGB24 of the decoded picture; the display matrix (rotation, mirroring) is applied as players apply it.
:data:`REFERENCE` (PyAV) does all of this on every file kind tested; other backends are tested exact on fewer kinds
(``tests/test_video.py``, ``FILE_KINDS``) and decline the rest, so every backend returns the same frames.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

# Each name is a module of this package. Order: the reference first, then the optional ones.
BACKENDS = ("pyav", "torchcodec", "decord")
REFERENCE = "pyav"
# The backends whose Reader also takes device= (decoding on a GPU: torchcodec with NVDEC, the batch decoder's path).
DEVICE_BACKENDS = ("torchcodec",)
# Chosen by exactness first (PyAV is exact on every file kind of tests/test_video.py, the others on a subset),
# then by clips/s (README "Decoders"); PyAV is also the only one in the base install.
DEFAULT_BACKEND = "pyav"


class VideoDecodeError(RuntimeError):
    """A video file that cannot be decoded (missing, not a video, truncated, corrupt).

    Args:
        path: The file.
        reason: What went wrong, for the log.
        kind: One word for reports: ``missing``, ``unreadable`` (does not open as a video container),
            ``no_video_stream``, ``empty``, ``truncated`` (less data than the header announces, or a read
            error), ``unsupported`` or ``decode_error``.
    """

    def __init__(self, path: str | os.PathLike, reason: str, kind: str = "decode_error"):
        # args = (path, reason, kind) so the exception pickles across DataLoader worker processes
        super().__init__(str(path), str(reason), str(kind))
        self.path, self.reason, self.kind = str(path), str(reason), str(kind)

    def __str__(self) -> str:
        return f"cannot decode {self.path}: {self.reason}"


class DecoderUnavailableError(RuntimeError):
    """A backend that cannot run here (library not installed, FFmpeg's shared libraries missing): one line that
    says what to install."""


class NotExact(Exception):
    """A backend declines a file it is not tested exact on (the reason names the container, codec or format)."""


def backend_module(name: str) -> ModuleType:
    """The module of backend ``name``, its library loaded.

    Raises:
        ValueError: Unknown name.
        DecoderUnavailableError: The backend cannot run here (the message says what to install).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown video backend {name!r}; available: {', '.join(BACKENDS)}")
    return _load(name)


@functools.cache
def _load(name: str) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{name}")
    module.require()  # raises DecoderUnavailableError; failures are not cached (functools.cache keeps returns)
    return module


def available_backends() -> list[str]:
    """The backends that can run here, in :data:`BACKENDS` order."""
    out = []
    for name in BACKENDS:
        try:
            backend_module(name)
        except DecoderUnavailableError:
            continue
        out.append(name)
    return out


# ---- what the non-reference backends are tested exact on (tests/test_video.py, FILE_KINDS) ----------------------
# 8-bit pictures: swscale converts them the same in every backend. Higher bit depths (10-bit H.264/HEVC/VP9/AV1)
# differ by up to 20 levels between backends (each configures swscale differently), so PyAV decodes them.
EIGHT_BIT_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuv444p"})


def container_family(path: str) -> str | None:
    """``"iso-bmff"`` (mp4, mov, m4v, 3gp), ``"matroska"`` (mkv, webm) or None, from the file's first bytes.

    decord and torchcodec seek exactly in these indexed containers only (in MPEG-PS/TS and AVI they return
    wrong frames: tests/test_video.py). Sniffed from 12 bytes because neither library names the container and
    opening the file with PyAV to ask costs about 2 ms per clip.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML magic
        return "matroska"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "iso-bmff"
    return None
