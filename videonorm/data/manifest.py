"""The dataset's text files, one set of rules for everyone: manifests and the class list.

Read by the datamodule, written and checked by ``kinetics-prep`` (``manifest``, ``verify``, ``prepare``) and by the
tests, always through this module (standard library only, so ``data_prep`` imports it without torch)::

    classes.txt    one class name per line; line i is label i
    train.txt      one video per line: ``relative/path.mp4 <label>`` (PySlowFast / pytorchvideo format)

Rules of a manifest line: the path and a non-negative integer label, separated by whitespace; the path has no
whitespace of its own (Kinetics file names never do; a path with a space is an error that names the line, not a
silent mis-split). An unlabelled manifest (videos to predict, e.g. Kinetics-700-2020's test split) has the path
alone on its lines; it is read with ``labelled=False``, which accepts both kinds of line. Paths are relative to the
dataset root and stay inside it: an absolute path or one that climbs out with ``..`` is an error unless the
reader opts in (``allow_outside_root=True``, ``--data.allow_outside_root true``), so a manifest cannot silently
train on files from elsewhere. A path listed twice is an error naming both lines (a doubled test manifest counted
every video twice in top-1; one path with two labels trained on both); a train manifest may repeat videos on
purpose, where the reader opts in (``allow_duplicates=True``: ``--data.allow_duplicate_train true``, ``kinetics-prep
verify --allow-duplicates``). Blank lines and whole-line ``#`` comments are ignored (``#`` may appear inside a
file name).
Rules of the class list: names are stripped, trailing blank lines are ignored, a blank line between names (it
would shift every later label) and a name listed twice are errors. Both files are UTF-8; a byte-order mark is
accepted (editors on Windows write one) and bytes that are not UTF-8 are an error naming the file and line.

Every problem raises :class:`ManifestError` naming file and line; all bad lines of a file are listed at once (one
bad line is one line of text).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLASSES_FILE = "classes.txt"
# The mark (the mp4 ``comment`` tag) kinetics-prep writes in videos encoded with every odd frame a non-reference B
# frame and every even one an I or P frame (``data_prep.encode``, layout "stride2"): a reader that wants only even
# frames may skip decoding the odd ones (``videonorm.data.decoders.pyav``).
STRIDE2_LAYOUT = "videonorm-layout: stride2"
_MAX_LISTED = 50
_DUPLICATE_HINT = ("; list each video once (to repeat training videos on purpose: --data.allow_duplicate_train true, "
                   "kinetics-prep verify --allow-duplicates)")


class ManifestError(ValueError):
    """A manifest or class list that cannot be used; the message names the file and line(s)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line.

    Args:
        path: video path relative to the dataset root, as written.
        label: class index (line of ``classes.txt``, from 0); None in an unlabelled manifest.
        line: line number in the manifest (1-based; 0 when the entry was not read from a file).
    """

    path: str
    label: int | None
    line: int = 0


def _lines(path: str | os.PathLike, what: str) -> list[str]:
    """The file's lines, decoded as UTF-8 (a BOM is dropped); undecodable bytes name their line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: {what} not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); save the {what} as UTF-8"
        ) from None
    return text.splitlines()


def _raise_all(path: str | os.PathLike, errors: list[str], hint: str = "") -> None:
    """Raise one ManifestError for ``errors`` (one line for one error), ``hint`` (what to do) said once."""
    if len(errors) == 1:
        raise ManifestError(errors[0] + hint)
    if errors:
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise ManifestError(f"{len(errors)} bad line(s) in {path}:\n  " + "\n  ".join(errors[:_MAX_LISTED]) + more
                            + (f"\n  {hint.lstrip('; ')}" if hint else ""))


def parse_line(text: str, where: str, labelled: bool = True) -> tuple[str, int | None] | None:
    """``(path, label)`` of one manifest line, None for a blank or comment line.

    Args:
        text: the line.
        where: ``file:line`` for the error message.
        labelled: the line must carry a label; with False a path alone is accepted (label None).

    Raises:
        ManifestError: not ``path label``, or a label that is not a non-negative integer.
    """
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    parts = stripped.split()
    if len(parts) == 1 and not labelled:
        return parts[0], None
    if len(parts) != 2:
        hint = " (paths may not contain spaces)" if len(parts) > 2 else ""
        raise ManifestError(f"{where}: expected 'relative/path.mp4 <label>', got {stripped!r}{hint}")
    path, label = parts
    if not label.isdigit() or not label.isascii():
        raise ManifestError(f"{where}: label {label!r} is not a non-negative integer")
    return path, int(label)


def outside_root(path: str) -> bool:
    """Whether a manifest path is absolute or climbs out of the dataset root with ``..``."""
    if os.path.isabs(path) or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return True
    return os.path.normpath(path).replace("\\", "/").split("/")[0] == ".."


def read_manifest(path: str | os.PathLike, num_classes: int | None = None, labelled: bool = True,
                  allow_outside_root: bool = False, allow_duplicates: bool = False) -> list[ManifestEntry]:
    """Read a manifest (rules in the module docstring).

    Args:
        path: manifest file.
        num_classes: when given, every label must lie in ``[0, num_classes)``.
        labelled: every line needs a label; with False, lines may be a path alone (label None).
        allow_outside_root: accept absolute paths and paths that climb out of the root with ``..``.
        allow_duplicates: accept a path listed more than once (a train manifest that repeats videos on purpose).

    Returns:
        The entries in file order.

    Raises:
        ManifestError: a missing file or bad lines (all of them listed, each with file and line).
    """
    entries, errors, duplicates = [], [], False
    first: dict[str, ManifestEntry] = {}  # normalized path -> its first line
    for number, text in enumerate(_lines(path, "manifest"), start=1):
        where = f"{path}:{number}"
        try:
            parsed = parse_line(text, where, labelled)
        except ManifestError as err:
            errors.append(str(err))
            continue
        if parsed is None:
            continue
        if num_classes is not None and parsed[1] is not None and parsed[1] >= num_classes:
            errors.append(f"{where}: label {parsed[1]} outside [0, {num_classes}) ({num_classes} classes)")
            continue
        if not allow_outside_root and outside_root(parsed[0]):
            errors.append(f"{where}: {parsed[0]!r} is outside the dataset root (absolute or '..'); paths are relative "
                          "to the root (data.allow_outside_root / --allow-outside-root accept it on purpose)")
            continue
        entry = ManifestEntry(parsed[0], parsed[1], number)
        earlier = first.setdefault(os.path.normpath(entry.path), entry)  # a/b.mp4 and ./a/b.mp4 are one video
        if earlier is not entry and not allow_duplicates:
            labels = f" with label {earlier.label}" if earlier.label != entry.label else ""
            errors.append(f"{where}: {entry.path!r} is already listed on line {earlier.line}{labels}")
            duplicates = True
            continue
        entries.append(entry)
    _raise_all(path, errors, _DUPLICATE_HINT if duplicates else "")
    return entries


def manifest_text(entries: Iterable[ManifestEntry | tuple[str, int | None]]) -> str:
    """The manifest file contents for ``entries`` (one ``path label`` line each; ``path`` alone for label None).

    Raises:
        ManifestError: a path with whitespace or a negative label (it could not be read back).
    """
    lines = []
    for entry in entries:
        path, label = (entry.path, entry.label) if isinstance(entry, ManifestEntry) else entry
        if not path or any(c.isspace() for c in path) or (label is not None and label < 0):
            raise ManifestError(f"cannot write manifest line {path!r} {label}: paths without whitespace, labels >= 0")
        lines.append(f"{path}\n" if label is None else f"{path} {label}\n")
    return "".join(lines)


def read_classes(path: str | os.PathLike) -> list[str]:
    """Read a class list: one name per line, line i = label i (rules in the module docstring).

    Raises:
        ManifestError: missing file, no names, a blank line between names or a name listed twice.
    """
    names = [line.strip() for line in _lines(path, "class list")]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ManifestError(f"{path}: no class names")
    errors, seen = [], {}
    for number, name in enumerate(names, start=1):
        if not name:
            errors.append(f"{path}:{number}: blank line between class names (line i is label i-1)")
        elif name in seen:
            errors.append(f"{path}:{number}: class {name!r} already on line {seen[name]}")
        else:
            seen[name] = number
    _raise_all(path, errors)
    return names


def classes_text(classes: Sequence[str]) -> str:
    """The class list file contents.

    Raises:
        ManifestError: an empty name, surrounding spaces (they would not read back), or a line break (it would add
            a line and shift every later label).
    """
    for name in classes:
        if not name.strip() or name != name.strip() or len(name.splitlines()) != 1:
            raise ManifestError(f"class name {name!r} is empty, has surrounding spaces or contains a line break")
    return "".join(f"{name}\n" for name in classes)
