"""The two kinds of failure in data_prep: bad input that stops a step, and one item that fails."""

from __future__ import annotations


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
