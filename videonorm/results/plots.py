"""The comparison figures (matplotlib, Agg backend: no display needed).

``plot_val_error_curves``: validation error vs epoch, one line per grid cell, in the style of the paper's
Fig. 7 (BN dashed, GN solid, one color per batch size). ``plot_top1_vs_batch``: top-1 vs clips per device,
one line per norm, the paper's points hollow and dotted (its batch-sensitivity figure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from videonorm.files import atomic_path  # noqa: E402
from videonorm.results.verdict import Estimate  # noqa: E402

_PALETTE = plt.get_cmap("tab10").colors


@dataclass
class Curve:
    """One line of the error-curve plot: a grid cell, possibly several seeds.

    Attributes:
        label: legend text.
        linestyle: matplotlib line style (the norm's).
        color: matplotlib color (the batch size's; see ``batch_colors``).
        runs: per run, (epoch, error %) points in order.
        marker: matplotlib marker (the norm's), drawn hollow so that curves lying on top of each other
            (e.g. all runs at chance level) still show which are there.
    """

    label: str
    linestyle: Any
    color: Any
    runs: list[list[tuple[float, float]]]
    marker: str = "o"


@dataclass
class Point:
    """One point of the batch-size plot.

    Attributes:
        series: legend text of the line it belongs to.
        key: lines with the same key share a color (ours and the paper's for the same norm and frames).
        batch_size: clips per device (x).
        top1: top-1 % (y).
        se: standard error over seeds (the error bar), None if n == 1.
        n: number of runs.
    """

    series: str
    key: str
    batch_size: int
    top1: float
    se: float | None = None
    n: int = 1


def batch_colors(columns: Sequence[Any]) -> dict[Any, Any]:
    """A distinct color per batch size (or per any hashable column key, e.g. (batch size, frames)), in order.

    Args:
        columns: batch sizes or column keys, e.g. sorted large batch first.
    """
    return {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(columns)}


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:  # a reader never sees a half-written PNG
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_val_error_curves(curves: Sequence[Curve], path: str | Path) -> Path:
    """Validation error (%) vs epoch; seeds of a cell drawn as their mean with a +- standard error band.

    Args:
        curves: one per grid cell.
        path: PNG to write.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in curves:
        by_epoch: dict[float, list[float]] = defaultdict(list)
        for run in curve.runs:
            for epoch, err in run:
                by_epoch[epoch].append(err)
        epochs = np.array(sorted(by_epoch))
        mean = np.array([np.mean(by_epoch[e]) for e in epochs])
        ax.plot(epochs, mean, linestyle=curve.linestyle, color=curve.color, linewidth=1.8, label=curve.label,
                marker=curve.marker if len(epochs) <= 40 else None, markersize=7, markerfacecolor="none",
                markeredgewidth=1.5)
        if len(curve.runs) > 1:
            se = np.array([Estimate.of(by_epoch[e]).se or 0.0 for e in epochs])
            # the band is clipped to what an error rate can be; the table gives the exact errors
            ax.fill_between(epochs, np.clip(mean - se, 0, 100), np.clip(mean + se, 0, 100), color=curve.color,
                            alpha=0.15, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("validation error (%), single center clip")
    ax.set_title("Validation error vs epoch (BN dashed, GN solid; color = clips per device, frames)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never hides a line
    return _save(fig, path)


def plot_top1_vs_batch(
    points: Sequence[Point], paper_points: Sequence[Point], path: str | Path, ylabel: str = "top-1 (%)"
) -> Path:
    """Top-1 vs clips per device, one line per series; ours filled with error bars, the paper's hollow and dotted.

    Args:
        points: our cells.
        paper_points: the paper's cells to show next to them (same ``key`` -> same color).
        path: PNG to write.
        ylabel: y axis text (which metric).
    """
    keys = list(dict.fromkeys(p.key for p in [*points, *paper_points]))
    color = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(keys)}
    marker = {k: "osD^v"[i // len(_PALETTE) % 5] for i, k in enumerate(keys)}  # past 10 lines the colors repeat
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for hollow, group in ((False, points), (True, paper_points)):
        series: dict[str, list[Point]] = defaultdict(list)
        for p in group:
            series[p.series].append(p)
        for label, pts in series.items():
            pts = sorted(pts, key=lambda p: -p.batch_size)
            c, m = color[pts[0].key], marker[pts[0].key]
            x = [p.batch_size for p in pts]
            y = [p.top1 for p in pts]
            se = [p.se or 0.0 for p in pts]
            # bars clipped to [0, 100] % (a mean of 83 +- 24 would otherwise reach 107 %)
            yerr = [[min(e, v) for e, v in zip(se, y)], [min(e, 100.0 - v) for e, v in zip(se, y)]]
            ax.errorbar(x, y, yerr=None if hollow or not any(se) else yerr, color=c, marker=m, markersize=7,
                        linestyle=":" if hollow else "-", markerfacecolor="none" if hollow else c, capsize=3,
                        label=label)
            for p in pts:
                if p.n > 1:
                    ax.annotate(f"n={p.n}", (p.batch_size, p.top1), textcoords="offset points", xytext=(6, 4),
                                fontsize="x-small", color=c)
    batch_sizes = sorted({p.batch_size for p in [*points, *paper_points]}, reverse=True)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.minorticks_off()
    if len(batch_sizes) > 1:
        ax.set_xlim(batch_sizes[0] * 1.3, batch_sizes[-1] / 1.3)  # large batch left, as in the paper
    else:
        ax.invert_xaxis()
    ax.set_xlabel("clips per device (batch size)")
    ax.set_ylabel(ylabel)
    ax.set_title("Top-1 vs batch size" + (" (ours filled, paper hollow/dotted)" if paper_points else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never hides a line
    return _save(fig, path)
