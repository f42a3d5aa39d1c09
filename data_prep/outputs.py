"""Where a step writes, checked before any work: an output that exists as the wrong kind (a file where a folder goes,
a folder where a file goes, a file where a folder on the way goes) or a place where nothing can be written stops the
step with one line naming the path (:class:`~data_prep.errors.InputError`, exit status 2), with nothing created.

Writability is tried, not read from permission bits (root ignores them; a read-only mount or an ACL does not show
in them): a file is made in the folder and removed (``tempfile.TemporaryFile``: on Linux an ``O_TMPFILE``, which
never has a name, so nothing is ever seen there). A folder that does not exist yet is tried in its nearest existing
parent, where the step will create it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from data_prep.errors import NO_SPACE, InputError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest parent that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _unwritable(folder: Path) -> str | None:
    """Why no file can be made in the existing folder ``folder``; None if one can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        if err.errno in NO_SPACE:
            raise  # a full disk, not a bad path: exit status 3, as when it fills during the work
        return err.strerror or str(err)
    return None


def _check_can_hold(folder: Path, what: str, named: Path) -> None:
    """Every existing part of ``folder`` (a folder to create or fill) is a folder, and the nearest one takes files."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputError(f"{what} {named}: {existing} is a file, not a folder")
    why = _unwritable(existing)
    if why is not None:
        raise InputError(f"{what} {named}: cannot write " + ("there" if existing == named else f"in {existing}")
                         + f" ({why})")


def check_output_folder(path: Path | str, what: str = "--out", *, beside: bool = False) -> None:
    """Stop unless ``path`` can be the folder a step fills.

    Args:
        path: the output folder (created by the step if missing).
        what: how the command line names it (``--out``, ``--raw``), for the message.
        beside: the step also writes next to the folder (its report ``<path>.<step>-failures.csv``, the records,
            the download archive): the folder that holds ``path`` must take files too.

    Raises:
        InputError: ``path``, or a part of it, is a file, or nothing can be written there (or beside it).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path}: is a file, not a folder")
    _check_can_hold(path, what, path)
    if beside and path.exists():  # a folder still to be made goes where _check_can_hold just wrote
        parent = path.resolve().parent
        why = _unwritable(parent)
        if why is not None:
            raise InputError(f"{what} {path}: cannot write beside it in {parent}, where its report goes ({why})")


def check_output_file(path: Path | str, what: str = "--out") -> None:
    """Stop unless ``path`` can be a file a step writes (its folder is created by the step if missing).

    Args:
        path: the file.
        what: how the command line names it, for the message.

    Raises:
        InputError: ``path`` is a folder, a part of its folder is a file, or nothing can be written there.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder, not a file")
    _check_can_hold(path.parent, what, path)
