"""Atomic file writes and cleanup of what interrupted runs left behind: the one place videonorm and data_prep
write files that others read (prepared videos, manifests, reports, comparison tables, plots, benchmark tables).

Every such file is first written as ``NAME.partial-<pid>`` in the same directory and then
renamed to ``NAME`` with :func:`os.replace`, which is atomic on one filesystem. So an existing ``NAME`` is
always complete, and a rerun can skip it; a ``*.partial-<pid>`` whose process is gone is garbage from a
run that was killed, and :func:`remove_stale_partials` deletes it.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

PARTIAL_TAG = ".partial-"


def partial_path(path: Path) -> Path:
    """The temporary name under which ``path`` is written by this process.

    Args:
        path: final output path.
    """
    return path.with_name(f"{path.name}{PARTIAL_TAG}{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file or directory is removed.

    Args:
        path: final output path.
    """
    tmp = partial_path(path)
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically, leaving the file untouched if it already holds ``text``.

    Not touching unchanged files keeps reruns idempotent down to modification times.

    Args:
        path: output file.
        text: full new contents.

    Returns:
        True if the file was written, False if it already had this content.
    """
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object] | Mapping[str, object]]) -> str:
    """Render rows as CSV text (``\\n`` line ends).

    Args:
        header: column names.
        rows: sequences in column order, or mappings by column name (missing keys and None print empty).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        if isinstance(row, Mapping):
            row = ["" if row.get(c) is None else row.get(c) for c in header]
        writer.writerow(row)
    return buf.getvalue()


def write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> bool:
    """Write a CSV atomically (see :func:`write_text_atomic`).

    Args:
        path: output file.
        header: column names.
        rows: one sequence per row.

    Returns:
        True if the file was written, False if unchanged.
    """
    return write_text_atomic(path, csv_text(header, rows))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers: nothing of this process is writing yet when a step starts
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, ValueError):
        return False
    try:  # a zombie (exited, its parent has not reaped it yet) writes nothing more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete ``*.partial-<pid>`` files and folders left in ``directory`` by runs that no longer exist.

    Partials of a process that is still alive (a concurrent run) are left alone.

    Args:
        directory: folder to clean (not recursive); missing folders are fine.

    Returns:
        The removed paths.
    """
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.glob(f"*{PARTIAL_TAG}*"):
        pid = path.name.rsplit(PARTIAL_TAG, 1)[1]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        _remove(path)
        removed.append(path)
    return removed
