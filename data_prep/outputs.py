"""Where a step writes, checked before any work: an output that exists as the wrong kind (a file where a folder goes,
a folder where a file goes, a file where a folder on the way goes) stops the step with one line naming the path
(:class:`~data_prep.errors.InputError`, exit status 2), with nothing created.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.errors import InputError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest parent that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _check_can_hold(folder: Path, what: str, named: Path) -> None:
    """Every existing part of ``folder`` (a folder to create or fill) is a folder."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputError(f"{what} {named}: {existing} is a file, not a folder")


def check_output_folder(path: Path | str, what: str = "--out") -> None:
    """Stop unless ``path`` can be the folder a step fills.

    Args:
        path: the output folder (created by the step if missing).
        what: how the command line names it (``--out``, ``--raw``), for the message.

    Raises:
        InputError: ``path``, or a part of it, is a file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path}: is a file, not a folder")
    _check_can_hold(path, what, path)


def check_output_file(path: Path | str, what: str = "--out") -> None:
    """Stop unless ``path`` can be a file a step writes (its folder is created by the step if missing).

    Args:
        path: the file.
        what: how the command line names it, for the message.

    Raises:
        InputError: ``path`` is a folder, or a part of its folder is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder, not a file")
    _check_can_hold(path.parent, what, path)
