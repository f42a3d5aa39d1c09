"""The raw folder: what ``download`` fetched from YouTube, one file per video or per section of a video.

``{youtube_id}.{ext}`` is a whole video, its times counted from its start. ``{youtube_id}_{start:06d}_{end:06d}.{ext}``
is the section ``start``-``end`` s of it (``download`` fetches the annotated segments plus a margin, not whole
videos), and keeps the video's own timeline: its frames carry their times in the whole video (yt-dlp's section
download through ffmpeg with ``-copyts``), so a segment is cut from it by the same times as from the whole video.
``ext`` is one of :data:`SOURCE_EXTS` (what yt-dlp produces for YouTube first, then other containers of
own copies). ``download`` fills this folder;
``trim`` reads it. Temporary ``*.partial-<pid>`` entries are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import InputError
from videonorm.files import PARTIAL_TAG

SOURCE_EXTS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".3gp")
_SECTION = re.compile(r"^(?P<id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


@dataclass(frozen=True)
class RawSource:
    """One file of the raw folder.

    Args:
        path: the file.
        start: where the file starts in the video (s).
        end: where it ends (s); None for a whole video.
    """

    path: Path
    start: int = 0
    end: int | None = None

    @property
    def is_section(self) -> bool:
        """A section download (its times are the video's own)."""
        return self.end is not None

    def overlap(self, start: float, end: float) -> float:
        """Seconds of ``[start, end)`` this file holds."""
        return max(0.0, min(end, self.end if self.end is not None else end) - max(start, self.start))


def section_name(youtube_id: str, start: int, end: int) -> str:
    """File stem of a section download: ``{youtube_id}_{start:06d}_{end:06d}``."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def index_sources(raw_dir: Path) -> dict[str, list[RawSource]]:
    """Map youtube id -> its files in ``raw_dir``, whole videos first.

    Of several files with one name, the first extension in :data:`SOURCE_EXTS` wins.

    Args:
        raw_dir: the raw folder.

    Raises:
        InputError: ``raw_dir`` is not a folder.
    """
    if not raw_dir.is_dir():
        raise InputError(f"{raw_dir}: raw video folder not found")
    stems: dict[str, Path] = {}
    for path in sorted(raw_dir.iterdir(), key=lambda p: (SOURCE_EXTS.index(p.suffix) if p.suffix in SOURCE_EXTS
                                                         else len(SOURCE_EXTS), p.name)):
        if path.suffix in SOURCE_EXTS and PARTIAL_TAG not in path.name and path.is_file():
            stems.setdefault(path.stem, path)
    found: dict[str, list[RawSource]] = {}
    for stem, path in sorted(stems.items()):
        section = _SECTION.match(stem)
        if section and int(section["end"]) > int(section["start"]):
            found.setdefault(section["id"], []).append(RawSource(path, int(section["start"]), int(section["end"])))
        else:
            found.setdefault(stem, []).insert(0, RawSource(path))
    return found


def source_for(files: Sequence[RawSource], start: float, end: float) -> RawSource | None:
    """The file to cut ``[start, end)`` from: a whole video, else the section holding most of it (None: none).

    Args:
        files: the video's files (from :func:`index_sources`).
        start: segment start (s).
        end: segment end (s).
    """
    whole = [f for f in files if not f.is_section]
    if whole:
        return whole[0]
    best = max(files, key=lambda f: f.overlap(start, end), default=None)
    return best if best is not None and best.overlap(start, end) > 0 else None
