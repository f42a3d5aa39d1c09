"""The raw folder: one full-length source video per YouTube id, named ``{youtube_id}.{ext}``.

``ext`` is one of :data:`SOURCE_EXTS` (what yt-dlp produces for YouTube). ``download`` fills this folder;
``trim`` reads it. Temporary ``*.partial-<pid>`` entries are ignored.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.errors import InputError
from videonorm.files import PARTIAL_TAG

SOURCE_EXTS = (".mp4", ".webm", ".mkv")


def index_sources(raw_dir: Path) -> dict[str, Path]:
    """Map youtube id -> source file for every ``{youtube_id}.{mp4,webm,mkv}`` in ``raw_dir``.

    If one id has several files, the first extension in :data:`SOURCE_EXTS` wins.

    Args:
        raw_dir: the raw folder.

    Raises:
        InputError: ``raw_dir`` is not a folder.
    """
    if not raw_dir.is_dir():
        raise InputError(f"{raw_dir}: raw video folder not found")
    found: dict[str, Path] = {}
    for path in sorted(raw_dir.iterdir(), key=lambda p: (SOURCE_EXTS.index(p.suffix) if p.suffix in SOURCE_EXTS
                                                         else len(SOURCE_EXTS), p.name)):
        if path.suffix in SOURCE_EXTS and PARTIAL_TAG not in path.name and path.is_file():
            found.setdefault(path.stem, path)
    return found
