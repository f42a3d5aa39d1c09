"""Runs -> a :class:`Comparison`: grid cells of seeds, each aggregated, and every run left out with its reason.

Cells: rows = norm (with its group count), columns = clips per device and frames (``8 (32f)``), values =
top-1 / top-5 in percent: the best validation epoch (single center clip, top-5 from the same epoch) with
``metric="val"``, the video-level test result with ``metric="test"``; ``auto`` takes test when every run that logged
accuracies has it. Runs that differ only in their seed share a cell: mean +- standard error over seeds, with n.
Series of cells that differ only in clips per device get a verdict (:mod:`videonorm.results.verdict`).
Runs are left out, each with its reason, when they cannot be read, lack the metric or identity config keys,
or were trained on another dataset copy than the majority (``dataset.hash``; a chosen hash wins). Runs whose
training diverged (summary ``diverged``, set when a non-finite loss stopped the fit) are listed apart and never
averaged in, whatever they logged before.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from videonorm import metric_keys as keys
from videonorm.identity import Row, Setting, recipe_differences, run_setting
from videonorm.record import diverged_info
from videonorm.results import paper
from videonorm.results.run_data import RunData
from videonorm.results.verdict import Estimate, Verdict, verdicts

METRIC_TEXT = {
    "val": "best validation epoch, single center clip",
    "test": "test, video level (views averaged)",
}
# Keys expected to differ between seeds of one cell; any other difference is reported.
PER_RUN_KEYS = ("seed_everything", "data.seed", "trainer.logger", "trainer.default_root_dir", "checkpoint.dirpath",
                "last_checkpoint.dirpath", "ckpt_path", "dataset.")


@dataclass
class RunResult:
    """One run's numbers, in percent."""

    run: RunData
    setting: Setting
    dataset_hash: str | None
    val: tuple[float, float | None, Any] | None  # best val top-1, top-5 at that epoch, the epoch
    test: tuple[float, float | None] | None
    curve: list[tuple[float, float]]  # (epochs trained, val top-1 %)


@dataclass
class Cell:
    """Runs of one setting (seeds) and their aggregate."""

    setting: Setting
    results: list[RunResult]
    top1: tuple[float, float | None] = (math.nan, None)  # mean, standard error over seeds (None when n == 1)
    top5: tuple[float, float | None] | None = None
    paper: paper.PaperResult | None = None
    paper_gaps: list[str] = field(default_factory=list)  # the paper has this cell, but this setup is not the paper's
    notes: list[str] = field(default_factory=list)
    metric: str = "val"  # which result the numbers are: "val" or "test"

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def top1_values(self) -> list[float]:
        """Each seed's top-1 (percent) in this cell."""
        return [r.val[0] if self.metric == "val" else r.test[0] for r in self.results]


@dataclass
class Comparison:
    """Everything ``compare`` decided: the cells, the metric, and why runs were left out."""

    cells: list[Cell]
    metric: str
    dataset_hash: str | None
    excluded: list[str]  # one message per run (or input) not in the table
    warnings: list[str]  # runs in the table with something to know (partial, killed, config differences)
    verdicts: list[Verdict] = field(default_factory=list)  # per series of batch sizes (see videonorm.results.verdict)
    diverged: list[str] = field(default_factory=list)  # one message per run whose training diverged (not in the table)


def _percent(value: Any, key: str) -> float | None:
    """A logged accuracy fraction as percent; None for missing/NaN; ValueError if it is not a fraction."""
    if value is None or isinstance(value, (str, bool, dict, list)):
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} = {value} is not a fraction in [0, 1]")
    return 100.0 * value


def extract(run: RunData) -> RunResult:
    """Pull the numbers ``compare`` needs out of a run.

    Best validation = the history row with the highest ``val/top1`` (top-5 from the same row, i.e. the same
    checkpoint). Test = the last logged ``test/top1`` (summary if the history has none).

    Args:
        run: a run read by ``videonorm.results.runs``.

    Raises:
        KeyError: identity config missing. ValueError: an accuracy that is not a fraction.
    """
    setting = run_setting(run.config)
    top1_key, top5_key = keys.ACCURACY["val"]
    # One validation per epoch; an epoch validated twice (a run killed after validating, before its checkpoint,
    # then resumed) counts with its last result.
    val_rows: dict[Any, dict] = {}
    for i, row in enumerate(run.history):
        if _percent(row.get(top1_key), top1_key) is not None:
            val_rows[row.get("epoch", f"row {i}")] = row
    val, curve = None, []
    for epoch, row in val_rows.items():
        top1 = _percent(row[top1_key], top1_key)
        if isinstance(epoch, (int, float)):
            curve.append((float(epoch) + 1.0, top1))  # Lightning logs the 0-based epoch that just ended
        if val is None or top1 > val[0]:
            val = (top1, _percent(row.get(top5_key), top5_key), epoch)
    curve.sort()
    test = None
    t1_key, t5_key = keys.ACCURACY["test"]
    for row in run.history:  # the last test wins (a later `videonorm test` on the same run)
        top1 = _percent(row.get(t1_key), t1_key)
        if top1 is not None:
            test = (top1, _percent(row.get(t5_key), t5_key))
    if test is None and _percent(run.summary.get(t1_key), t1_key) is not None:  # set in the summary only
        test = (_percent(run.summary[t1_key], t1_key), _percent(run.summary.get(t5_key), t5_key))
    return RunResult(run, setting, run.config.get("dataset.hash"), val, test, curve)


def _mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    estimate = Estimate.of(values)
    return estimate.mean, estimate.se


def _config_differences(results: Sequence[RunResult]) -> list[str]:
    """Config keys (not per-run ones like the seed) whose values differ between the runs of a cell."""
    keys = set().union(*(r.run.config for r in results))
    diffs = []
    for key in sorted(keys):
        if any(key == p or key.startswith(p if p.endswith(".") else p + ".") for p in PER_RUN_KEYS):
            continue
        values = {repr(r.run.config.get(key)) for r in results}
        if len(values) > 1:
            diffs.append(f"{key} ({', '.join(sorted(values))})")
    return diffs


def _choose_metric(results: Sequence[RunResult], metric: str) -> str:
    if metric != "auto":
        return metric
    with_any = [r for r in results if r.val is not None or r.test is not None]  # runs without either: left out anyway
    return "test" if with_any and all(r.test is not None for r in with_any) else "val"


def _choose_dataset(results: Sequence[RunResult], wanted: str | None) -> tuple[str | None, list[str]]:
    """The dataset hash to compare on (``wanted`` or the majority's) and a note if the choice was a tie."""
    if wanted:
        return wanted, []
    counts = Counter(r.dataset_hash for r in results if r.dataset_hash)
    if not counts:
        return None, []
    ranked = counts.most_common()
    notes = []
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        notes.append(
            f"dataset fingerprints tie ({', '.join(f'{h}: {n} runs' for h, n in ranked)}); "
            f"compared {ranked[0][0]}; pick one with --dataset"
        )
    return ranked[0][0], notes


def build_comparison(
    runs: Sequence[RunData], metric: str = "auto", dataset: str | None = None, read_errors: Sequence[str] = ()
) -> Comparison:
    """Place runs in grid cells, leave out (with reasons) those that cannot be compared, aggregate seeds.

    Args:
        runs: runs from ``videonorm.results.runs.load_runs``.
        metric: ``val``, ``test`` or ``auto`` (test when every run that logged accuracies has it).
        dataset: compare runs with this ``dataset.hash``; None = the majority's.
        read_errors: messages of runs that could not be read (carried into ``excluded``).
    """
    excluded = [f"unreadable: {e}" for e in read_errors]
    warnings: list[str] = []
    results: list[RunResult] = []
    seen: dict[str, str] = {}
    diverged: list[str] = []
    for run in runs:
        if run.run_id and run.run_id in seen:
            excluded.append(f"{run.label} {run.source}: same run id as {seen[run.run_id]}; counted once")
            continue
        seen[run.run_id] = run.source
        if diverged_info(run.summary) is not None:
            diverged.append(_diverged_text(run))
            continue
        try:
            results.append(extract(run))
        except (KeyError, ValueError) as e:
            why = e.args[0] if e.args else str(e)
            excluded.append(f"{run.label} {run.source}: {why}" + "".join(f"; {p}" for p in run.problems))

    chosen, notes = _choose_dataset(results, dataset)
    warnings.extend(notes)
    kept = []
    for r in results:
        if r.dataset_hash is None:
            excluded.append(f"{r.run.label} {r.run.source}: no dataset fingerprint (dataset.hash) in its config")
        elif r.dataset_hash != chosen:
            excluded.append(
                f"{r.run.label} {r.run.source}: dataset fingerprint {r.dataset_hash} differs from "
                f"{'the chosen' if dataset else 'the majority'} {chosen} (trained/evaluated on other data)"
            )
        else:
            kept.append(r)

    metric = _choose_metric(kept, metric)
    with_metric = []
    for r in kept:
        if (r.val if metric == "val" else r.test) is None:
            excluded.append(f"{r.run.label} {r.run.source}: no {keys.ACCURACY[metric][0]} logged"
                            + "".join(f"; {p}" for p in r.run.problems))
        else:
            with_metric.append(r)
            warnings.extend(f"{r.run.label}: {p}" for p in r.run.problems)  # in the table, marked †

    by_setting: dict[Setting, list[RunResult]] = defaultdict(list)
    for r in with_metric:
        by_setting[r.setting].append(r)
    cells = [_aggregate(s, rs, metric) for s, rs in by_setting.items()]
    for cell in cells:
        warnings.extend(cell.notes)
    labels = row_labels_of([c.setting.row for c in cells])
    judged = verdicts([(c.setting.row, c.setting.column, c.top1_values) for c in cells], labels)
    return Comparison(cells, metric, chosen, excluded, warnings, judged, diverged)


def _sharing_a_label(labels: dict[Row, str]) -> list[list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row, label in labels.items():
        groups[label].append(row)
    return [rows for rows in groups.values() if len(rows) > 1]


def row_labels_of(rows: Sequence[Row]) -> dict[Row, str]:
    """Row labels: the norm (``GN (G=4)``); prefixed with the whole network where rows of one norm differ in it (the
    paper's BN and GN rows differ in their ImageNet source too, but their norms already name them); and where one
    network and norm was trained with several recipes, each row followed by its values of what differs
    (``GN (G=4) [epochs 10, lr/clip 0.000625]``): different recipes are never averaged, and never unnamed."""
    labels = {row: row.label for row in dict.fromkeys(rows)}
    for same in _sharing_a_label(labels):
        if len({row.network for row in same}) > 1:
            labels.update({row: f"{row.network}: {labels[row]}" for row in same})
    for same in _sharing_a_label(labels):
        differ = recipe_differences(row.recipe for row in same)
        if differ:
            labels.update({row: f"{labels[row]} [{row.recipe.text(differ)}]" for row in same})
    return labels


def _diverged_text(run: RunData) -> str:
    """``name (id) source: training diverged: loss nan at step 12 (epoch 1); last finite loss 9.8e+09 at step 11``."""
    info = diverged_info(run.summary) or {}
    text = f"{run.label} {run.source}: training diverged"
    if "step" in info:
        text += f": loss {info.get('loss')} at step {info['step']} (epoch {info.get('epoch')})"
    if "last_finite_loss" in info:
        text += f"; last finite loss {info['last_finite_loss']:.4g} at step {info.get('last_finite_step')}"
    return text


def _aggregate(setting: Setting, results: list[RunResult], metric: str) -> Cell:
    pairs = [r.val[:2] if metric == "val" else r.test for r in results]
    cell = Cell(setting, results, top1=_mean_se([p[0] for p in pairs]), metric=metric)
    if all(p[1] is not None for p in pairs):
        cell.top5 = _mean_se([p[1] for p in pairs])
    cell.paper = paper.paper_result(setting)
    row, col = setting.row, setting.column
    if cell.paper is None and paper.cell_result(row.norm, row.norm_groups, col.batch_size, col.num_frames,
                                                col.sampling_rate):
        cell.paper_gaps = paper.setup_gaps(setting)
    diffs = _config_differences(results)
    if diffs:
        names = ", ".join(r.run.name for r in results)
        cell.notes.append(f"{setting.label}: runs {names} differ in "
                          f"{'; '.join(diffs)} besides the seed; aggregated anyway")
    return cell
