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
from videonorm.results.comparison import METRIC_TEXT, Cell, Comparison

# ---------------------------------------------------------------- labels and ordering


def _line_key(s: Setting) -> str:
    """One line of the batch-size plot (ours and the paper's share it, and so its color): all but the batch size."""
    return f"{s.row.norm}/{s.row.norm_groups}/{s.column.num_frames}x{s.column.sampling_rate}/ra{s.column.repeat_aug}"


def arch_label(depth: int | None, width: int | None) -> str:
    """``ResNet-50, width 64``."""
    return f"ResNet-{depth if depth is not None else '?'}, width {width if width is not None else '?'}"


def _row_key(row: Row) -> tuple:
    paper_order = {"bn": 0, "gn": 1}  # the paper's rows first, in its order
    return (row.depth or 0, row.width or 0, paper_order.get(row.norm, 2), row.norm, row.norm_groups or 0)


def _col_key(col: Column) -> tuple:
    # the paper's order: 8 (32f), 4 (32f), 4 (64f); repeated augmentation after the plain column
    return (-col.batch_size, col.num_frames, -(col.sampling_rate or 0), col.repeat_aug)


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
    archs = {(row.depth, row.width) for row in rows}
    with_paper = {c.setting.column for c in comp.cells if c.paper}
    header = ["norm"]
    for col in cols:
        label = col.label
        header.append(label)
        if col in with_paper:
            header += [f"{label} paper", f"{label} Δ"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        label = row.label
        if len(archs) > 1:
            label = f"{arch_label(row.depth, row.width)}: {label}"
        out = [label]
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


def paper_table() -> str:
    """The paper's table in Markdown (printed when none of our cells matches its setting)."""
    cols = sorted({Column(r.batch_size, r.num_frames, r.sampling_rate) for r in paper.KINETICS_RESULTS}, key=_col_key)
    rows = sorted({(r.norm, r.norm_groups) for r in paper.KINETICS_RESULTS}, key=lambda r: r[0])
    lines = ["| norm | " + " | ".join(c.label for c in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for norm, groups in rows:
        cells = []
        for col in cols:
            p = paper.paper_result(norm, groups, col.batch_size, col.num_frames, col.sampling_rate)
            cells.append(f"{p.top1:.1f} / {p.top5:.1f}" if p else "")
        lines.append(f"| {Row(None, None, norm, groups).label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(comp: Comparison, title: str = "videonorm compare") -> str:
    """Table + notes + excluded runs, as the Markdown document written to ``compare.md``."""
    n_runs = sum(c.n for c in comp.cells)
    archs = sorted({arch_label(c.setting.row.depth, c.setting.row.width) for c in comp.cells})
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
              "top1", "top1_std", "top5", "top5_std", "paper_top1", "paper_top5", "diff_top1", "diff_top5",
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
            "top1": cell.top1[0], "top1_std": cell.top1[1], "top5": top5[0], "top5_std": top5[1],
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


def make_plots(comp: Comparison, out: Path) -> list[Path]:
    """Write the two figures for ``comp`` into ``out``; returns their paths."""
    from videonorm.results import plots

    # One color per table column (clips per device, frames): per batch size when the frames are fixed, as in
    # the paper's Fig. 7, and the 64-frame runs stay apart from the 32-frame ones at the same batch size.
    columns = sorted({c.setting.column for c in comp.cells}, key=_col_key)
    colors = plots.batch_colors(columns)
    rows = sorted({c.setting.row for c in comp.cells}, key=_row_key)
    markers = {row.label: "osD^v<>p"[i % 8] for i, row in enumerate(rows)}  # one per table row (norm)
    curves = []
    for cell in sorted(comp.cells, key=lambda c: (_col_key(c.setting.column), _row_key(c.setting.row))):
        runs = [[(e, 100.0 - acc) for e, acc in r.curve] for r in cell.results if r.curve]
        if runs:
            row, col = cell.setting.row, cell.setting.column
            label = (f"{row.label}, {col.batch_size} clips/dev, {col.num_frames}f"
                     + col.repeat_text + (f" (n={len(runs)})" if len(runs) > 1 else ""))
            curves.append(plots.Curve(label, paper.linestyle(row.norm), colors[col], runs, markers[row.label]))
    points, paper_points = [], []
    for cell in comp.cells:
        row, col = cell.setting.row, cell.setting.column
        series = (f"{row.label}, {col.num_frames}f" + (f" x{col.sampling_rate}" if col.sampling_rate else "")
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
        paths.append(plots.plot_val_error_curves(curves, out / "val_error_curves.png"))
    if points:
        ylabel = f"top-1 (%), {METRIC_TEXT[comp.metric]}"
        paths.append(plots.plot_top1_vs_batch(points, paper_points, out / "top1_vs_batch.png", ylabel=ylabel))
    return paths
