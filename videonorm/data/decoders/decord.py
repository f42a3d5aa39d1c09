"""decord backend (optional: ``pip install 'videonorm[decord]'``; wheels for Linux x86_64 and Windows only).

Tested exact (tests/test_video.py) on 8-bit H.264, VP8 and VP9 in mp4/mov and mkv/webm without a display matrix.
It declines the rest, which PyAV then decodes: in MPEG-PS/-TS and AVI, and for HEVC and MPEG-4 Part 2 even in
mp4, its seeks land on wrong frames (frame i comes back as i+12 on a 25 fps .mpg); 10-bit pictures come out
converted differently (up to 20 levels); AV1 does not open; a mirrored display matrix comes out rotated; an mp4
whose edit list hides coded frames (``ffmpeg -ss T -c copy`` cuts between key frames) has them counted as frames,
and its last frame returned again in their place. decord tells neither codec nor pixel format nor hidden frames,
so each file is first probed with PyAV (decode the first frame, demux every packet).
"""

from __future__ import annotations

import torch

from videonorm.data.decoders import EIGHT_BIT_FORMATS, DecoderUnavailableError, NotExact, container_family
from videonorm.data.decoders.pyav import probe

EXACT_CODECS = frozenset({"h264", "vp8", "vp9"})


def require() -> None:
    """Raise :class:`DecoderUnavailableError` unless decord imports."""
    try:
        import decord  # noqa: F401
    except ImportError as error:
        raise DecoderUnavailableError(
            f"decord is not installed ({error}): pip install 'videonorm[decord]' (wheels for Linux x86_64 and "
            "Windows only), or use the pyav decoder"
        ) from None


class Reader:
    """decord ``VideoReader``: ``get_batch`` on the wanted indices.

    Args:
        path: Video file.
        threads: Decoder threads.

    Raises:
        NotExact: A file outside what it is tested exact on (see the module docstring).
    """

    def __init__(self, path: str, threads: int):
        import decord

        if container_family(path) is None:
            raise NotExact("a container other than mp4/mov/mkv/webm")
        found = probe(path)
        if found.codec not in EXACT_CODECS:
            raise NotExact(f"the codec {found.codec}")
        if found.pix_fmt not in EIGHT_BIT_FORMATS:
            raise NotExact(f"the pixel format {found.pix_fmt}")
        if found.display_matrix:
            raise NotExact("a display matrix")
        if found.hidden_frames:  # decord counts them as frames and returns the last frame again in their place
            raise NotExact("an edit list that hides coded frames")
        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def get(self, wanted: list[int]) -> torch.Tensor:
        """Frames ``wanted`` (sorted, unique) as (U, H, W, 3) uint8."""
        return torch.from_numpy(self._reader.get_batch(wanted).asnumpy())  # (U, H, W, 3)

    def close(self) -> None:
        del self._reader
