"""What ``videonorm compare`` writes: the Markdown report, the tidy CSV and the figures of a :class:`Comparison`.

Rows of the table are networks (:class:`~videonorm.identity.Row`: norm, groups, depth, width), columns are what a
device sees per step (:class:`~videonorm.identity.Column`: clips, frames, stride, repeated augmentation); the
paper's numbers and the difference to ours sit beside the columns where the paper has a cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videonorm.files import write_csv_atomic, write_text_atomic
from videonorm.identity import Column, Row, Setting
from videonorm.results import paper
from videonorm.results.comparison import METRIC_TEXT, Cell, Comparison, row_labels_of

# ---------------------------------------------------------------- labels and ordering


def _line_key(s: Setting) -> str:
    """One line of the batch-size plot (ours and the paper's share it, and so its color): all but the batch size."""
    col = s.column
    return f"{s.row}/{col.num_frames}x{col.sampling_rate}/ra{col.repeat_aug}/d{col.world_size}"


def _row_key(row: Row) -> tuple:
    paper_order = {"bn": 0, "gn": 1}  # the paper's rows first, in its order
    return (row.arch, row.depth or 0, row.width or 0, row.init, paper_order.get(row.norm, 2), row.norm,
            row.norm_groups or 0)


def _col_key(col: Column) -> tuple:
    # the paper's order: 8 (32f), 4 (32f), 4 (64f); repeated augmentation after the plain column
    return (-col.batch_size, col.num_frames, -(col.sampling_rate or 0), col.repeat_aug, col.world_size or 0)


def _column_labels(cols: list[Column]) -> dict[Column, str]:
    """Column labels, with the device count when the columns do not all have the same one."""
    several = len({c.world_size for c in cols}) > 1
    return {c: c.label + (f" x{c.world_size if c.world_size is not None else '?'} dev" if several else "")
            for c in cols}


def _cell_key(cell: Cell) -> tuple:
    return (_row_key(cell.setting.row), _col_key(cell.setting.column))


# ---------------------------------------------------------------- the table


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
    by_key = {(c.setting.row, c.setting.column): c for c in comp.cells}
    rows = sorted({row for row, _ in by_key}, key=_row_key)
    cols = sorted({col for _, col in by_key}, key=_col_key)
    col_labels, row_labels = _column_labels(cols), row_labels_of(rows)
    with_paper = {c.setting.column for c in comp.cells if c.paper}
    header = ["norm"]
    for col in cols:
        label = col_labels[col]
        header.append(label)
        if col in with_paper:
            header += [f"{label} paper", f"{label} Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        out = [row_labels[row]]
        for col in cols:
            cell = by_key.get((row, col))
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


def report_markdown(comp: Comparison, title: str = "videonorm compare") -> str:
    """Table + notes + excluded runs, as the Markdown document written to ``compare.md``."""
    n_runs = sum(c.n for c in comp.cells)
    networks = sorted({c.setting.row.network for c in comp.cells})
    world_sizes = sorted({str(c.setting.column.world_size or "?") for c in comp.cells})
    groups = sorted({r.run.group or "(none)" for c in comp.cells for r in c.results})
    parts = [f"# {title}", ""]
    if comp.cells:
        parts += [
            f"Top-1 / top-5 accuracy (%), {METRIC_TEXT[comp.metric]}; mean±standard error over seeds where n > 1.",
            "",
            markdown_table(comp),
            "",
            f"- runs compared: {n_runs} in {len(comp.cells)} cells; W&B groups: {', '.join(groups)}; "
            f"model: {'; '.join(networks)}; devices per run: {', '.join(world_sizes)}",
            f"- dataset fingerprint (dataset.hash): {comp.dataset_hash}",
        ]
        if any(c.paper for c in comp.cells):
            parts.append(
                f"- paper: {paper.CITATION}, video-level on Kinetics-400 val; Δ = ours − paper. Ours and the "
                "paper's are comparable only for runs trained and tested on the real Kinetics-400 with the "
                "paper's recipe" + ("; validation numbers are single-clip, so below the paper's by "
                                    "construction" if comp.metric == "val" else "") + "."
            )
        gaps = {f"{c.setting.label}: " + "; ".join(c.paper_gaps) for c in comp.cells if c.paper_gaps}
        if gaps:
            parts.append("- no paper numbers beside these cells, whose setup is not the paper's: "
                         + " | ".join(sorted(gaps)))
        if not any(c.paper for c in comp.cells):
            parts += [
                "- no cell has the paper's setup (I3D ResNet-50 at width 64, fine-tuned from ImageNet, 400 classes, "
                f"{paper.WORLD_SIZE} GPUs, 32x2 or 64x1 frames, 8 or 4 clips per GPU): the numbers above are ours "
                "alone; the paper's are shown only beside runs with its setup.",
            ]
        if any("†" in format_cell(c) for c in comp.cells):
            parts.append("")
            parts.append("† a run in this cell is partial or had problems (see below).")
    else:
        parts.append("No runs to compare.")
    if comp.verdicts:
        parts += ["", "## Does top-1 change with clips per device?", "",
                  "Largest -> smallest batch of each series, mean ± standard error over seeds (n); a change is called "
                  "only beyond 2 standard errors.", ""]
        parts += [f"- {v.line}" for v in comp.verdicts]
    if comp.warnings:
        parts += ["", "## Warnings", ""] + [f"- {w}" for w in comp.warnings]
    if comp.diverged:
        parts += ["", "## Diverged (not compared)", "",
                  "Training stopped at a non-finite loss; what these runs logged before is not in the table.", ""]
        parts += [f"- {d}" for d in comp.diverged]
    if comp.excluded:
        parts += ["", "## Not compared", ""] + [f"- {e}" for e in comp.excluded]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- CSV

CSV_FIELDS = ("norm", "norm_groups", "depth", "width", "batch_size", "num_frames", "sampling_rate", "repeat_aug",
              "metric", "n",
              "top1", "top1_se", "top5", "top5_se", "paper_top1", "paper_top5", "diff_top1", "diff_top5",
              "dataset_hash", "runs")


def csv_rows(comp: Comparison) -> list[dict[str, Any]]:
    """One dict per cell (the CSV's rows), numbers in percent, sorted like the table."""
    rows = []
    for cell in sorted(comp.cells, key=_cell_key):
        row, col, p = cell.setting.row, cell.setting.column, cell.paper
        top5 = cell.top5 or (None, None)
        rows.append({
            "norm": row.norm, "norm_groups": row.norm_groups, "depth": row.depth, "width": row.width,
            "batch_size": col.batch_size, "num_frames": col.num_frames, "sampling_rate": col.sampling_rate,
            "repeat_aug": col.repeat_aug, "metric": comp.metric, "n": cell.n,
            "top1": cell.top1[0], "top1_se": cell.top1[1], "top5": top5[0], "top5_se": top5[1],
            "paper_top1": p.top1 if p else None, "paper_top5": p.top5 if p else None,
            "diff_top1": cell.top1[0] - p.top1 if p else None,
            "diff_top5": top5[0] - p.top5 if p and top5[0] is not None else None,
            "dataset_hash": comp.dataset_hash,
            "runs": ";".join(f"{r.run.name}:{r.run.run_id}" for r in cell.results),
        })
    return rows


def write_csv(comp: Comparison, path: Path) -> None:
    """Write ``csv_rows`` to ``path`` (atomically)."""
    write_csv_atomic(path, CSV_FIELDS, csv_rows(comp))


def write_markdown(comp: Comparison, path: Path) -> str:
    """Write ``report_markdown`` to ``path`` (atomically) and return it."""
    text = report_markdown(comp)
    write_text_atomic(path, text)
    return text


# ---------------------------------------------------------------- plots


PLOTS = ("val_error_curves.png", "top1_vs_batch.png")


def make_plots(comp: Comparison, out: Path) -> list[Path]:
    """Write the figures of ``PLOTS`` that ``comp`` has data for into ``out``; returns their paths."""
    from videonorm.results import plots

    # One color per table column (clips per device, frames): per batch size when the frames are fixed, as in
    # the paper's Fig. 7, and the 64-frame runs stay apart from the 32-frame ones at the same batch size.
    columns = sorted({c.setting.column for c in comp.cells}, key=_col_key)
    colors = plots.batch_colors(columns)
    rows = sorted({c.setting.row for c in comp.cells}, key=_row_key)
    row_labels = row_labels_of(rows)
    markers = {row: "osD^v<>pPXhd*H8"[i % 15] for i, row in enumerate(rows)}  # one per table row (norm)
    curves = []
    for cell in sorted(comp.cells, key=lambda c: (_col_key(c.setting.column), _row_key(c.setting.row))):
        runs = [[(e, 100.0 - acc) for e, acc in r.curve] for r in cell.results if r.curve]
        if runs:
            row, col = cell.setting.row, cell.setting.column
            label = (f"{row_labels[row]}, {col.batch_size} clips/dev, {col.num_frames}f"
                     + col.repeat_text + (f" (n={len(runs)})" if len(runs) > 1 else ""))
            curves.append(plots.Curve(label, paper.linestyle(row.norm), colors[col], runs, markers[row]))
    points, paper_points = [], []
    for cell in comp.cells:
        row, col = cell.setting.row, cell.setting.column
        series = (f"{row_labels[row]}, {col.num_frames}f" + (f" x{col.sampling_rate}" if col.sampling_rate else "")
                  + col.repeat_text)
        points.append(plots.Point(series, _line_key(cell.setting), col.batch_size, cell.top1[0], cell.top1[1], cell.n))
    # The paper's points for every (norm, frames) line that has at least one cell it can be compared with.
    lines_with_paper = {(c.paper.norm, c.paper.num_frames, c.paper.sampling_rate): c.setting
                        for c in comp.cells if c.paper}
    for r in paper.KINETICS_RESULTS:
        s = lines_with_paper.get((r.norm, r.num_frames, r.sampling_rate))
        if s is not None:
            paper_points.append(plots.Point(f"{s.row.label}, {r.num_frames}f x{r.sampling_rate}, paper",
                                            _line_key(s), r.batch_size, r.top1))
    paths = []
    if curves:
        paths.append(plots.plot_val_error_curves(curves, out / PLOTS[0]))
    if points:
        ylabel = f"top-1 (%), {METRIC_TEXT[comp.metric]}"
        paths.append(plots.plot_top1_vs_batch(points, paper_points, out / PLOTS[1], ylabel=ylabel))
    return paths
