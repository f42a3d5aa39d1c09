"""torchcodec backend (the PyTorch-maintained decoder), CPU, exact seek mode.

``seek_mode="exact"`` scans the file once at open for every frame's pts (as the PyAV backend does), so frame
``i`` is the ``i``-th in presentation order at constant and variable frame rates. torchcodec needs FFmpeg's
shared libraries (4 to 9) on the system; the pip wheel does not bundle them.

Tested exact (tests/test_video.py) on 8-bit H.264, HEVC, MPEG-4 Part 2, VP8, VP9 and AV1 in mp4/mov and
mkv/webm without a display matrix. It declines the rest, which PyAV then decodes: in MPEG-PS/-TS and AVI its
seeks land on wrong frames (up to 12 frames late on a 25 fps .mpg, and it fails on the last frames), 10-bit
pictures come out converted differently (up to 15 levels), and it reports a mirrored display matrix as a
rotation. It also declines files with fewer frames than their header announces: an mp4 edit list hides some
coded frames (``ffmpeg -ss T -c copy``; torchcodec's frames of such files matched PyAV's when this was written)
or the download was cut, and only PyAV's count tells which.
"""

from __future__ import annotations

import torch

from videonorm.data.decoders import (
    EIGHT_BIT_FORMATS,
    DecoderUnavailableError,
    NotExact,
    container_family,
)

EXACT_CODECS = frozenset({"h264", "hevc", "mpeg4", "vp8", "vp9", "av1"})


def require() -> None:
    """Raise :class:`DecoderUnavailableError` unless torchcodec imports and finds FFmpeg's libraries."""
    try:
        import torchcodec
    except ImportError as error:
        raise DecoderUnavailableError(
            f"torchcodec is not installed ({error}): pip install 'videonorm[torchcodec]', or use the pyav decoder"
        ) from None
    # torchcodec imports without FFmpeg and leaves ffmpeg_major_version None; VideoDecoder would then raise a
    # page-long message
    if getattr(torchcodec, "ffmpeg_major_version", None) is None:
        raise DecoderUnavailableError(
            "torchcodec cannot find FFmpeg's shared libraries (libavcodec, FFmpeg 4-9): install FFmpeg "
            "(Debian/Ubuntu: apt install ffmpeg; macOS: brew install ffmpeg; conda: conda install ffmpeg), "
            "or use the pyav decoder"
        )


class Reader:
    """torchcodec ``VideoDecoder``, exact seek mode, on the CPU (or a CUDA device: NVDEC, for the batch decoder of
    :mod:`videonorm.data.batch_decode`).

    Args:
        path: Video file.
        threads: FFmpeg decoder threads.
        device: ``"cpu"`` or a CUDA device (frames come back on it).

    Raises:
        NotExact: A file outside what it is tested exact on (see the module docstring), or one whose header
            announces more frames than torchcodec finds (an mp4 edit list, or a cut file: PyAV decides which).
    """

    def __init__(self, path: str, threads: int, device: str = "cpu"):
        from torchcodec.decoders import VideoDecoder

        family = container_family(path)
        if family is None:
            raise NotExact("a container other than mp4/mov/mkv/webm")
        self._decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NHWC",
                                     device=str(device))
        meta = self._decoder.metadata
        if meta.codec not in EXACT_CODECS:
            raise NotExact(f"the codec {meta.codec}")
        if meta.pixel_format not in EIGHT_BIT_FORMATS:
            raise NotExact(f"the pixel format {meta.pixel_format}")
        if meta.rotation is not None:  # any display matrix: torchcodec reads a mirror image as a rotation
            raise NotExact("a display matrix")
        announced, held = meta.num_frames_from_header, meta.num_frames_from_content
        if announced and held is not None and held < announced:
            # A cut download, or an mp4 edit list (``ffmpeg -ss T -c copy``): torchcodec shows an edit-listed file
            # as players do (its scan skips the packets flagged discard), but its count cannot tell the two apart:
            # the header counts the samples the edit list hides too. PyAV tells them apart (and rejects the cut).
            raise NotExact("fewer frames than the header announces (an edit list, or a cut file)")
        self.num_frames = int(meta.num_frames or 0)
        self.fps = float(meta.average_fps or 0.0)

    def get(self, wanted: list[int]) -> torch.Tensor:
        """Frames ``wanted`` (sorted, unique) as (U, H, W, 3) uint8."""
        return self._decoder.get_frames_at(wanted).data  # (U, H, W, 3), contiguous

    def close(self) -> None:
        del self._decoder
