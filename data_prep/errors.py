"""The kinds of failure in data_prep: bad input that stops a step, one item that fails, and a full disk."""

from __future__ import annotations

import errno

# Write errors that stop a step instead of failing one file: every following file would fail the same way.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class InputError(ValueError):
    """Bad input that stops a step before any work (malformed CSV or manifest, missing directory).

    The message names the file and, where there is one, the line.
    """


class ItemError(Exception):
    """One item (a video, a download) failed; the step goes on and reports it.

    Args:
        reason: short slug that groups failures in the summary, e.g. ``"missing_source"``.
        message: human-readable detail (which file, what the decoder said).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
