"""Runs read through the W&B API (online: needs credentials and network): one run, or a project by group/tag."""

from __future__ import annotations

import re
from typing import Any

from videonorm.identity import flatten
from videonorm.results.run_data import RunData, RunReadError

# entity/project or entity/project/run_id, optionally as entity/project/runs/run_id or a W&B URL.
_WANDB_PATH = re.compile(
    r"^(?:https?://[^/]+/)?(?P<entity>[\w.-]+)/(?P<project>[\w.-]+)(?:/(?:runs/)?(?P<run>[\w-]+))?/?$")


def parse_wandb_path(text: str) -> tuple[str, str, str | None] | None:
    """Split ``entity/project[/run_id]`` (or ``.../runs/run_id``, or a W&B URL) into parts; None if not one.

    Args:
        text: the string given on the command line.
    """
    m = _WANDB_PATH.match(text)
    if m is None:
        return None
    return m["entity"], m["project"], m["run"]


def project_filters(group: str | None, tag: str | None) -> dict[str, Any]:
    """W&B API ``runs()`` filters (MongoDB syntax) for a group and/or a tag.

    Args:
        group: W&B group name, or None.
        tag: a tag the runs must carry, or None.
    """
    filters: dict[str, Any] = {}
    if group:
        filters["group"] = group
    if tag:
        filters["tags"] = {"$in": [tag]}
    return filters


def _from_api_run(api_run: Any) -> RunData:
    """Convert a ``wandb.apis.public.Run`` (this downloads its full history)."""
    run = RunData(
        source="/".join(api_run.path),
        run_id=api_run.id,
        name=api_run.name or "",
        group=api_run.group or "",
        tags=list(api_run.tags or []),
        config=flatten({k: v for k, v in api_run.config.items() if not k.startswith("_")}),
        history=[dict(row) for row in api_run.scan_history()],
        summary=dict(api_run.summary_metrics),
        complete=api_run.state == "finished",
    )
    if not run.complete:
        run.problems.append(f"{run.source}: state is {api_run.state!r}, not 'finished'")
    return run


def fetch_online_runs(spec: str, group: str | None = None, tag: str | None = None) -> list[RunData]:
    """Read runs through the W&B API: one run (``entity/project/run_id``) or a project filtered by group/tag.

    Args:
        spec: ``entity/project`` or ``entity/project/run_id`` (URLs too).
        group: only runs in this group (projects only).
        tag: only runs with this tag (projects only).

    Raises:
        RunReadError: bad path, or the API failed (no credentials, no network, run not found).
    """
    parts = parse_wandb_path(spec)
    if parts is None:
        raise RunReadError(f"{spec}: not a W&B path (entity/project or entity/project/run_id)")
    entity, project, run_id = parts
    import wandb

    try:
        api = wandb.Api(timeout=60)
        if run_id:
            return [_from_api_run(api.run(f"{entity}/{project}/{run_id}"))]
        return [_from_api_run(r) for r in api.runs(f"{entity}/{project}", filters=project_filters(group, tag))]
    except Exception as e:  # the API raises many types (CommError, HTTPError, UsageError, ValueError)
        raise RunReadError(f"{spec}: W&B API failed: {type(e).__name__}: {e}") from e
