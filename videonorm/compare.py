"""``videonorm compare``: W&B runs side by side with the paper's Kinetics table, as Markdown/CSV + plots.

    videonorm compare runs/kinetics400                        # offline runs below a directory, no network
    videonorm compare my-team/videonorm --group kinetics400   # a W&B project, filtered by group (or --tag)
    videonorm compare my-team/videonorm/1a2b3c4d runs/demo    # single online runs and local ones together

Table: rows = norm (with its group count), columns = clips per device and frames (``8 (32f)``), cells =
top-1 / top-5 in percent: the best validation epoch (single center clip, top-5 from the same epoch) with
``--metric val``, the video-level test result with ``--metric test``; ``auto`` (default) takes test when
every run that logged accuracies has it. Runs that differ only in their seed share a cell: mean +- std (sample std), with n.
Runs are left out, each with its reason, when they cannot be read, lack the metric or identity config keys,
or were trained on another dataset copy than the majority (``dataset.hash``; ``--dataset`` picks one).
Outputs in ``--out``: ``compare.md`` (table + notes), ``compare.csv`` (one row per cell, tidy),
``val_error_curves.png`` (the paper's Fig. 7 style) and ``top1_vs_batch.png``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videonorm import paper
from videonorm.runs import RunData, load_runs

METRIC_KEYS = {"val": ("val/top1", "val/top5"), "test": ("test/top1", "test/top5")}
METRIC_TEXT = {
    "val": "best validation epoch, single center clip",
    "test": "test, video level (views averaged)",
}
# Config keys that say which grid cell a run is (missing ones make the run unplaceable).
REQUIRED_KEYS = ("model.norm", "data.batch_size", "data.num_frames")
# Keys expected to differ between seeds of one cell; any other difference is reported.
PER_RUN_KEYS = ("seed_everything", "data.seed", "trainer.logger", "trainer.default_root_dir", "checkpoint.dirpath",
                "ckpt_path", "dataset.")


@dataclass(frozen=True, order=True)
class Setting:
    """A grid cell: what a run is, apart from its seed."""

    depth: int | None
    width: int | None
    norm: str
    norm_groups: int | None  # None for norms that do not use groups
    batch_size: int
    num_frames: int
    sampling_rate: int | None
    repeat_aug: int = 1  # data.repeat_aug: k clips per decoded window (repeated augmentation)


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
    top1: tuple[float, float | None] = (math.nan, None)  # mean, std (None when n == 1)
    top5: tuple[float, float | None] | None = None
    paper: paper.PaperResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.results)


@dataclass
class Comparison:
    """Everything ``compare`` decided: the cells, the metric, and why runs were left out."""

    cells: list[Cell]
    metric: str
    dataset_hash: str | None
    excluded: list[str]  # one message per run (or input) not in the table
    warnings: list[str]  # runs in the table with something to know (partial, killed, config differences)


def _norm_uses_groups(norm: str, groups: int | None) -> bool:
    if groups is None:
        return False
    from videonorm.norm import uses_groups  # imports torch, so lazily

    try:
        return uses_groups(norm)
    except ValueError:  # a norm this version does not know (an older run): show the groups rather than guess
        return True


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def run_setting(run: RunData) -> Setting:
    """The grid cell of a run, from its config.

    Args:
        run: a run read by ``videonorm.runs``.

    Raises:
        KeyError: a key of ``REQUIRED_KEYS`` is missing (message names it).
    """
    missing = [k for k in REQUIRED_KEYS if run.config.get(k) is None]
    if missing:
        raise KeyError(f"config lacks {', '.join(missing)}")
    c = run.config
    norm = str(c["model.norm"]).lower()
    groups = _int_or_none(c.get("model.norm_groups"))
    return Setting(
        depth=_int_or_none(c.get("model.depth")),
        width=_int_or_none(c.get("model.width")),
        norm=norm,
        norm_groups=groups if _norm_uses_groups(norm, groups) else None,
        batch_size=int(c["data.batch_size"]),
        num_frames=int(c["data.num_frames"]),
        sampling_rate=_int_or_none(c.get("data.sampling_rate")),
        repeat_aug=_int_or_none(c.get("data.repeat_aug")) or 1,
    )


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
        run: a run read by ``videonorm.runs``.

    Raises:
        KeyError: identity config missing. ValueError: an accuracy that is not a fraction.
    """
    setting = run_setting(run)
    top1_key, top5_key = METRIC_KEYS["val"]
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
    t1_key, t5_key = METRIC_KEYS["test"]
    for row in run.history:  # the last test wins (a later `videonorm test` on the same run)
        top1 = _percent(row.get(t1_key), t1_key)
        if top1 is not None:
            test = (top1, _percent(row.get(t5_key), t5_key))
    if test is None and _percent(run.summary.get(t1_key), t1_key) is not None:  # set in the summary only
        test = (_percent(run.summary[t1_key], t1_key), _percent(run.summary.get(t5_key), t5_key))
    return RunResult(run, setting, run.config.get("dataset.hash"), val, test, curve)


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


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
    with_any = [r for r in results if r.val is not None or r.test is not None]  # runs without either are left out anyway
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
        runs: runs from ``videonorm.runs.load_runs``.
        metric: ``val``, ``test`` or ``auto`` (test when every run that logged accuracies has it).
        dataset: compare runs with this ``dataset.hash``; None = the majority's.
        read_errors: messages of runs that could not be read (carried into ``excluded``).
    """
    excluded = [f"unreadable: {e}" for e in read_errors]
    warnings: list[str] = []
    results: list[RunResult] = []
    seen: dict[str, str] = {}
    for run in runs:
        if run.run_id and run.run_id in seen:
            excluded.append(f"{run.label} {run.source}: same run id as {seen[run.run_id]}; counted once")
            continue
        seen[run.run_id] = run.source
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
            excluded.append(f"{r.run.label} {r.run.source}: no {METRIC_KEYS[metric][0]} logged"
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
    return Comparison(cells, metric, chosen, excluded, warnings)


def _aggregate(setting: Setting, results: list[RunResult], metric: str) -> Cell:
    pairs = [r.val[:2] if metric == "val" else r.test for r in results]
    cell = Cell(setting, results, top1=_mean_std([p[0] for p in pairs]))
    if all(p[1] is not None for p in pairs):
        cell.top5 = _mean_std([p[1] for p in pairs])
    cell.paper = None if setting.repeat_aug > 1 else paper.paper_result(
        setting.norm, setting.norm_groups, setting.batch_size, setting.num_frames,
        setting.sampling_rate if setting.sampling_rate is not None else -1,
        depth=setting.depth if setting.depth is not None else -1,
        width=setting.width if setting.width is not None else -1,
    )
    diffs = _config_differences(results)
    if diffs:
        names = ", ".join(r.run.name for r in results)
        cell.notes.append(f"{row_label(setting)} {column_label(setting)}: runs {names} differ in "
                          f"{'; '.join(diffs)} besides the seed; aggregated anyway")
    return cell


# ---------------------------------------------------------------- labels and formatting


def row_label(s: Setting) -> str:
    """``GN (G=32)``, ``BN``."""
    return s.norm.upper() + (f" (G={s.norm_groups})" if s.norm_groups is not None else "")


def column_label(s: Setting) -> str:
    """``8 (32f)``; with the stride when it is not the paper's for that length (``8 (8f x4)``), and the
    repeated augmentation when there is one (``8 (32f, ra2)``)."""
    usual = {32: 2, 64: 1}.get(s.num_frames)
    stride = "" if s.sampling_rate is None or s.sampling_rate == usual else f" x{s.sampling_rate}"
    return f"{s.batch_size} ({s.num_frames}f{stride}{_repeat_text(s)})"


def _repeat_text(s: Setting) -> str:
    """``, ra2`` for repeated augmentation, nothing without it."""
    return f", ra{s.repeat_aug}" if s.repeat_aug > 1 else ""


def _line_key(s: Setting) -> str:
    """One line of the batch-size plot (ours and the paper's share it, and so its color): all but the batch size."""
    return f"{s.norm}/{s.norm_groups}/{s.num_frames}x{s.sampling_rate}/ra{s.repeat_aug}"


def arch_label(depth: int | None, width: int | None) -> str:
    """``ResNet-50, width 64``."""
    return f"ResNet-{depth if depth is not None else '?'}, width {width if width is not None else '?'}"


def _row_key(s: Setting) -> tuple:
    paper_order = {"bn": 0, "gn": 1}  # the paper's rows first, in its order
    return (s.depth or 0, s.width or 0, paper_order.get(s.norm, 2), s.norm, s.norm_groups or 0)


def _col_key(s: Setting) -> tuple:
    # the paper's order: 8 (32f), 4 (32f), 4 (64f); repeated augmentation after the plain column
    return (-s.batch_size, s.num_frames, -(s.sampling_rate or 0), s.repeat_aug)


def _column(s: Setting) -> tuple:
    """The table column of a cell: clips per device, frames, stride, repeated augmentation."""
    return (s.batch_size, s.num_frames, s.sampling_rate, s.repeat_aug)


def _fmt(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.1f}" if std is None else f"{mean:.1f}±{std:.1f}"


def format_cell(cell: Cell) -> str:
    """``73.1±0.2 / 90.5±0.1 (n=3)``."""
    text = f"{_fmt(cell.top1)} / {_fmt(cell.top5)}"
    if cell.n > 1:
        text += f" (n={cell.n})"
    if any(not r.run.complete or r.run.problems for r in cell.results):
        text += " †"
    return text


def _signed(x: float) -> str:
    return f"{x:+.1f}"


def markdown_table(comp: Comparison) -> str:
    """The comparison as a Markdown table (rows: norm; columns: clips per device (frames), paper, Δ)."""
    settings = [c.setting for c in comp.cells]
    archs = sorted({(s.depth or 0, s.width or 0) for s in settings})
    rows = sorted({(s.depth, s.width, s.norm, s.norm_groups) for s in settings},
                  key=lambda r: _row_key(Setting(r[0], r[1], r[2], r[3], 0, 0, 0)))
    cols = sorted({_column(s) for s in settings}, key=lambda c: _col_key(Setting(None, None, "", None, *c)))
    by_key = {(s.depth, s.width, s.norm, s.norm_groups, *_column(s)): c for s, c in zip(settings, comp.cells)}
    with_paper = {_column(c.setting) for c in comp.cells if c.paper}
    header = ["norm"]
    for col in cols:
        label = column_label(Setting(None, None, "", None, *col))
        header.append(label)
        if col in with_paper:
            header += [f"{label} paper", f"{label} Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        label = row_label(Setting(row[0], row[1], row[2], row[3], 0, 0, 0))
        if len(archs) > 1:
            label = f"{arch_label(row[0], row[1])}: {label}"
        out = [label]
        for col in cols:
            cell = by_key.get((*row, *col))
            out.append(format_cell(cell) if cell else "")
            if col in with_paper:
                p = cell.paper if cell else None
                out.append(f"{p.top1:.1f} / {p.top5:.1f}" if p else "")
                if p and cell:
                    d5 = _signed(cell.top5[0] - p.top5) if cell.top5 else "–"
                    out.append(f"{_signed(cell.top1[0] - p.top1)} / {d5}")
                else:
                    out.append("")
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def paper_table() -> str:
    """The paper's table in Markdown (printed when none of our cells matches its setting)."""
    cols = sorted({(r.batch_size, r.num_frames, r.sampling_rate) for r in paper.KINETICS_RESULTS},
                  key=lambda c: (-c[0], c[1]))
    rows = sorted({(r.norm, r.norm_groups) for r in paper.KINETICS_RESULTS}, key=lambda r: r[0])
    labels = [column_label(Setting(None, None, "", None, *c)) for c in cols]
    lines = ["| norm | " + " | ".join(labels) + " |", "|" + "---|" * (len(cols) + 1)]
    for norm, groups in rows:
        cells = []
        for b, f, s in cols:
            p = paper.paper_result(norm, groups, b, f, s)
            cells.append(f"{p.top1:.1f} / {p.top5:.1f}" if p else "")
        lines.append(f"| {row_label(Setting(None, None, norm, groups, 0, 0, 0))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(comp: Comparison, title: str = "videonorm compare") -> str:
    """Table + notes + excluded runs, as the Markdown document written to ``compare.md``."""
    n_runs = sum(c.n for c in comp.cells)
    archs = sorted({arch_label(c.setting.depth, c.setting.width) for c in comp.cells})
    groups = sorted({r.run.group or "(none)" for c in comp.cells for r in c.results})
    parts = [f"# {title}", ""]
    if comp.cells:
        parts += [
            f"Top-1 / top-5 accuracy (%), {METRIC_TEXT[comp.metric]}; mean±std over seeds where n > 1.",
            "",
            markdown_table(comp),
            "",
            f"- runs compared: {n_runs} in {len(comp.cells)} cells; W&B groups: {', '.join(groups)}; "
            f"model: I3D {'; '.join(archs)}",
            f"- dataset fingerprint (dataset.hash): {comp.dataset_hash}",
        ]
        if any(c.paper for c in comp.cells):
            parts.append(
                f"- paper: {paper.CITATION}, video-level on Kinetics-400 val; Δ = ours − paper. Ours and the "
                "paper's are comparable only for runs trained and tested on the real Kinetics-400 with the "
                "paper's recipe" + ("; validation numbers are single-clip, so below the paper's by "
                                    "construction" if comp.metric == "val" else "") + "."
            )
        else:
            parts += [
                f"- no cell matches the paper's setting (I3D {arch_label(paper.MODEL_DEPTH, paper.MODEL_WIDTH)}, "
                "32x2 or 64x1 frames, 8 or 4 clips per GPU, Kinetics-400). For reference, "
                f"{paper.CITATION}:",
                "",
                paper_table(),
            ]
        if any("†" in format_cell(c) for c in comp.cells):
            parts.append("")
            parts.append("† a run in this cell is partial or had problems (see below).")
    else:
        parts.append("No runs to compare.")
    if comp.warnings:
        parts += ["", "## Warnings", ""] + [f"- {w}" for w in comp.warnings]
    if comp.excluded:
        parts += ["", "## Not compared", ""] + [f"- {e}" for e in comp.excluded]
    return "\n".join(parts) + "\n"


CSV_FIELDS = ("norm", "norm_groups", "depth", "width", "batch_size", "num_frames", "sampling_rate", "repeat_aug",
              "metric", "n",
              "top1", "top1_std", "top5", "top5_std", "paper_top1", "paper_top5", "diff_top1", "diff_top5",
              "dataset_hash", "runs")


def csv_rows(comp: Comparison) -> list[dict[str, Any]]:
    """One dict per cell (the CSV's rows), numbers in percent, sorted like the table."""
    rows = []
    for cell in sorted(comp.cells, key=lambda c: (_row_key(c.setting), _col_key(c.setting))):
        s, p = cell.setting, cell.paper
        top5 = cell.top5 or (None, None)
        rows.append({
            "norm": s.norm, "norm_groups": s.norm_groups, "depth": s.depth, "width": s.width,
            "batch_size": s.batch_size, "num_frames": s.num_frames, "sampling_rate": s.sampling_rate,
            "repeat_aug": s.repeat_aug, "metric": comp.metric, "n": cell.n,
            "top1": cell.top1[0], "top1_std": cell.top1[1], "top5": top5[0], "top5_std": top5[1],
            "paper_top1": p.top1 if p else None, "paper_top5": p.top5 if p else None,
            "diff_top1": cell.top1[0] - p.top1 if p else None,
            "diff_top5": top5[0] - p.top5 if p and top5[0] is not None else None,
            "dataset_hash": comp.dataset_hash,
            "runs": ";".join(f"{r.run.name}:{r.run.run_id}" for r in cell.results),
        })
    return rows


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_csv(comp: Comparison, path: Path) -> None:
    """Write ``csv_rows`` to ``path`` (via a temp file)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in csv_rows(comp):
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    os.replace(tmp, path)


# ---------------------------------------------------------------- plots


def make_plots(comp: Comparison, out: Path) -> list[Path]:
    """Write the two figures for ``comp`` into ``out``; returns their paths."""
    from videonorm import plots

    # One color per table column (clips per device, frames): per batch size when the frames are fixed, as in
    # the paper's Fig. 7, and the 64-frame runs stay apart from the 32-frame ones at the same batch size.
    columns = sorted({_col_key(c.setting) for c in comp.cells})
    colors = plots.batch_colors(columns)
    rows = sorted({(_row_key(c.setting), row_label(c.setting)) for c in comp.cells})
    markers = {label: "osD^v<>p"[i % 8] for i, (_, label) in enumerate(rows)}  # one per table row (norm)
    curves = []
    for cell in sorted(comp.cells, key=lambda c: (_col_key(c.setting), _row_key(c.setting))):
        runs = [[(e, 100.0 - acc) for e, acc in r.curve] for r in cell.results if r.curve]
        if runs:
            s = cell.setting
            label = (f"{row_label(s)}, {s.batch_size} clips/dev, {s.num_frames}f"
                     + _repeat_text(s) + (f" (n={len(runs)})" if len(runs) > 1 else ""))
            curves.append(plots.Curve(label, paper.linestyle(s.norm), colors[_col_key(s)], runs, markers[row_label(s)]))
    points, paper_points = [], []
    for cell in comp.cells:
        s = cell.setting
        series = (f"{row_label(s)}, {s.num_frames}f" + (f" x{s.sampling_rate}" if s.sampling_rate else "")
                  + _repeat_text(s))
        points.append(plots.Point(series, _line_key(s), s.batch_size, cell.top1[0], cell.top1[1], cell.n))
    # The paper's points for every (norm, frames) line that has at least one cell it can be compared with.
    lines_with_paper = {(c.paper.norm, c.paper.num_frames, c.paper.sampling_rate): c.setting for c in comp.cells if c.paper}
    for r in paper.KINETICS_RESULTS:
        s = lines_with_paper.get((r.norm, r.num_frames, r.sampling_rate))
        if s is not None:
            paper_points.append(plots.Point(f"{row_label(s)}, {r.num_frames}f x{r.sampling_rate}, paper", _line_key(s),
                                            r.batch_size, r.top1))
    paths = []
    if curves:
        paths.append(plots.plot_val_error_curves(curves, out / "val_error_curves.png"))
    if points:
        ylabel = f"top-1 (%), {METRIC_TEXT[comp.metric]}"
        paths.append(plots.plot_top1_vs_batch(points, paper_points, out / "top1_vs_batch.png", ylabel=ylabel))
    return paths


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The ``videonorm compare`` argument parser."""
    p = argparse.ArgumentParser(
        prog="videonorm compare",
        description="Put W&B runs side by side with the paper's Kinetics table: Markdown + CSV + plots.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "INPUTS: local paths (a run-*.wandb file, a run directory, or any directory above runs, searched "
            "recursively; read offline, no network) or W&B paths: entity/project (all runs, filtered by --group/"
            "--tag) or entity/project/run_id (uses wandb.Api: needs credentials and network)."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUTS", help="local run files/directories or W&B paths")
    p.add_argument("--out", default="compare_out", help="output directory (default: compare_out)")
    p.add_argument("--group", help="only runs in this W&B group")
    p.add_argument("--tag", help="only runs with this W&B tag")
    p.add_argument("--metric", choices=("auto", "val", "test"), default="auto",
                   help="val: best validation epoch (single clip); test: video-level test; auto: test if every "
                        "run has it, else val")
    p.add_argument("--dataset", metavar="HASH", help="compare runs with this dataset.hash (default: the majority's)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``videonorm compare``; returns 0 when a table was written, 1 when no run could be compared.

    Args:
        argv: arguments after ``compare`` (``sys.argv[2:]`` when None).
    """
    args = build_parser().parse_args(sys.argv[2:] if argv is None else argv)
    runs, errors = load_runs(args.inputs, group=args.group, tag=args.tag)
    comp = build_comparison(runs, metric=args.metric, dataset=args.dataset, read_errors=errors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out / "compare.md", out / "compare.csv"
    report = report_markdown(comp)
    _write_atomic(md_path, report)
    write_csv(comp, csv_path)
    pngs = make_plots(comp, out) if comp.cells else []
    print(report)
    print("Written:")
    for path in (md_path, csv_path, *pngs):
        print(f"  {path}")
    return 0 if comp.cells else 1
