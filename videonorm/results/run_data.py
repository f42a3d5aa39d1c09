"""A run as plain Python data (:class:`RunData`), whatever it was read from, and the error of a run not readable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RunReadError(Exception):
    """A run that cannot be read at all (unreadable or damaged record, run not found online)."""


@dataclass
class RunData:
    """One run, as read from its local record or from the W&B API.

    Attributes:
        source: where it came from (the ``record.jsonl`` file, or ``entity/project/run_id``).
        run_id: W&B run id.
        name: display name (``i3d_r50-gn-b4-32x2``).
        group: W&B group ("" if none).
        tags: W&B tags.
        config: flat config, dot-separated keys (``model.norm``); nested dicts are flattened.
        history: logged rows in order, each a dict of key -> value (``epoch``, ``val/top1``...).
        summary: final summary (last value of each key unless the run set it; ``diverged`` when training stopped
            at a non-finite loss, with ``diverged/step``, ``diverged/epoch``, ``diverged/loss``...).
        complete: the run finished (its record's last part ended with success, state ``finished`` online).
        exit_code: process exit code if known.
        problems: what went wrong reading or running it; empty for a clean, finished run.
        parts: the files it was read from (its record).
        job_type: W&B job type (``train``, ``test``...; "" if unknown).
    """

    source: str
    run_id: str = ""
    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    job_type: str = ""

    @property
    def label(self) -> str:
        """Short human name: ``name (id)``."""
        return f"{self.name or '?'} ({self.run_id or '?'})"
