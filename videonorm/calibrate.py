"""The demo's calibration protocol (``videonorm demo --calibrate``): written down before looking, the same for every norm.

1. **Where.** At the reference batch, the largest clips per device of the grid (16), with the demo's recipe
   otherwise as shipped (``configs/demo/base.yaml``: 10 epochs, cosine schedule, 0.5 warmup epochs, ...).
2. **What.** The learning rate only, on the half-decade grid 0.003, 0.01, 0.03 per 16 clips, seeds 0 and 1, for
   every norm of the grid.
3. **Score.** Top-1 on the validation split (``val.txt``, one center clip per video) after the last epoch, the
   mean over the seeds. The test split (``test.txt``) is never read.
4. **Choice.** Each norm's own best learning rate (the highest mean; a tie goes to the smaller rate). Each norm its
   own, not one shared rate: the study asks how each norm changes as the batch shrinks, starting from a recipe that
   suits it; a rate shared by all makes one norm's best the others' handicap (which is what made GN look slow in
   the demo before this protocol).
5. **Edges.** When a norm's best rate is an end of the grid, the grid grows by one half-decade step on that side
   for that norm (0.001, or 0.1) and step 4 is repeated, at most twice.
6. **Other batches.** The chosen rate scaled linearly with the clips per device (x clips / 16) for every norm, with
   the same epochs (the same clips seen).

The result is a table (learning rate x norm, mean ± standard error on validation, n) and each norm's rate, written
to ``<out>/calibration/`` (``calibration.md``, ``calibration.csv``, ``lr.yaml``); the rates the demo ships are in
``videonorm/configs/demo/lr.yaml``, copied from such a run (README: "Calibration").
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from videonorm.files import write_text_atomic
from videonorm.results.verdict import Estimate

# Learning rates per 16 clips: the protocol's grid and the half-decade steps it may grow by (step 5).
LR_GRID = (0.003, 0.01, 0.03)
HALF_DECADES = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SEEDS = (0, 1)
MAX_EXTENSIONS = 2
REFERENCE_CLIPS = 16  # the rates are per 16 clips: the demo's reference batch


@dataclass
class Calibration:
    """The sweep's scores and each norm's choice.

    Attributes:
        batch: the reference clips per device the sweep ran at.
        scores: ``(norm, lr per 16 clips)`` -> final validation top-1 (%) of each seed, in seed order.
        chosen: norm -> its chosen lr per 16 clips.
        extended: norm -> the rates the grid grew by for it (step 5).
    """

    batch: int
    scores: dict[tuple[str, float], list[float]] = field(default_factory=dict)
    chosen: dict[str, float] = field(default_factory=dict)
    extended: dict[str, list[float]] = field(default_factory=dict)

    def estimate(self, norm: str, lr: float) -> Estimate | None:
        values = self.scores.get((norm, lr))
        return Estimate.of(values) if values else None

    def choose(self, norm: str) -> tuple[float, float | None]:
        """Step 4 for ``norm``: its best rate so far, and the rate past the grid's end on that side (None: the
        best is inside the grid, or no step is left)."""
        tried = sorted(lr for n, lr in self.scores if n == norm)
        best = max(tried, key=lambda lr: (self.estimate(norm, lr).mean, -lr))  # a tie: the smaller rate
        i = HALF_DECADES.index(best)
        step = None
        if best == tried[0] and i > 0:
            step = HALF_DECADES[i - 1]
        elif best == tried[-1] and i + 1 < len(HALF_DECADES):
            step = HALF_DECADES[i + 1]
        if len(self.extended.get(norm, [])) >= MAX_EXTENSIONS:
            step = None
        return best, step


# run(norm, lr per 16 clips, seed) -> final validation top-1 (%), or None when the run logged none
RunCell = Callable[[Sequence[tuple[str, float, int]]], list[float | None]]


def calibrate(norms: Sequence[str], batch: int, run_cells: RunCell, seeds: Sequence[int] = SEEDS) -> Calibration:
    """Run the protocol (module docstring) for ``norms`` at ``batch`` clips per device.

    Args:
        norms: the grid's norms.
        batch: the reference batch (the grid's largest).
        run_cells: trains the given ``(norm, lr per 16 clips, seed)`` cells (side by side where it can) and returns
            each one's final validation top-1 in percent.
        seeds: seeds per rate.

    Raises:
        RuntimeError: a run that logged no validation top-1 (the message names it).
    """
    result = Calibration(batch)
    todo = {norm: list(LR_GRID) for norm in norms}
    while todo:
        cells = [(norm, lr, seed) for seed in seeds for norm, lrs in todo.items() for lr in lrs]
        for cell, score in zip(cells, run_cells(cells)):
            if score is None:
                raise RuntimeError(f"calibration run {cell} logged no validation top-1")
            result.scores.setdefault(cell[:2], []).append(score)
        todo = {}
        for norm in norms:
            best, step = result.choose(norm)
            result.chosen[norm] = best
            if step is not None and (norm, step) not in result.scores:
                result.extended.setdefault(norm, []).append(step)
                todo[norm] = [step]
    return result


def table_markdown(cal: Calibration) -> str:
    """Learning rate x norm: mean ± standard error (n) of the final validation top-1, the chosen rate in bold."""
    norms = list(cal.chosen)
    lrs = sorted({lr for _, lr in cal.scores})
    lines = [f"| lr per 16 clips (x {cal.batch}/16 at {cal.batch} clips) | " + " | ".join(norms) + " |",
             "|---|" + "---|" * len(norms)]
    for lr in lrs:
        cells = []
        for norm in norms:
            est = cal.estimate(norm, lr)
            text = f"{est.text()}" if est else ""
            cells.append(f"**{text}**" if est and cal.chosen[norm] == lr else text)
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    lines.append("| **chosen** | " + " | ".join(f"{cal.chosen[n]:g}" for n in norms) + " |")
    return "\n".join(lines)


def write(cal: Calibration, out: Path, seconds: float) -> list[Path]:
    """``calibration.md`` (the protocol's table), ``calibration.csv`` (every run's score) and ``lr.yaml`` (the
    chosen rates, in the format of ``configs/demo/lr.yaml``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    grown = "; ".join(f"{n}: grid grown by {', '.join(f'{lr:g}' for lr in lrs)}" for n, lrs in cal.extended.items())
    md = ("# Calibration of the demo's learning rate (videonorm demo --calibrate)\n\n"
          f"Final validation top-1 (%), mean ± standard error over seeds (n), at {cal.batch} clips per device; "
          "the protocol: videonorm/calibrate.py. Bold: each norm's choice.\n\n" + table_markdown(cal) + "\n\n"
          + (f"Edges (protocol step 5): {grown}.\n\n" if grown else "")
          + f"{sum(len(v) for v in cal.scores.values())} runs, {seconds / 60:.1f} min of wall time.\n")
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["norm", "lr_per_16_clips", "seed_index", "val_top1", "chosen"])
    for (norm, lr), values in sorted(cal.scores.items()):
        for i, v in enumerate(values):
            writer.writerow([norm, f"{lr:g}", i, f"{v:.4f}", int(cal.chosen.get(norm) == lr)])
    lr_yaml = ("# chosen by videonorm demo --calibrate (calibration.md beside this file); per 16 clips\n"
               + yaml.safe_dump({n: cal.chosen[n] for n in cal.chosen}, sort_keys=False))
    paths = [out / "calibration.md", out / "calibration.csv", out / "lr.yaml"]
    for path, text in zip(paths, (md, rows.getvalue(), lr_yaml)):
        write_text_atomic(path, text)
    return paths


def read_rates(path: Path) -> dict[str, float]:
    """Norm -> learning rate per 16 clips, from an ``lr.yaml`` (the shipped one or a calibration's).

    Raises:
        ValueError: not a mapping of norm names to positive numbers (the message names the file).
    """
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and v > 0 and math.isfinite(v) for v in data.values()):
        raise ValueError(f"{path}: expected lines 'norm: learning rate per 16 clips' (positive numbers)")
    return {str(k): float(v) for k, v in data.items()}
