"""The answer to "does this norm degrade as the batch shrinks?", computed from the runs, with its uncertainty.

For each network (a table row: norm, groups, architecture, width, init) and each clip shape (frames, stride,
repeated augmentation, devices), the cells that differ only in clips per device form a *series*. A series that
spans at least two batch sizes gets one verdict line: top-1 at its largest and smallest batch as mean +- standard
error over seeds (n), the change between them with its standard error (the two cells' errors in quadrature: the
seeds are independent runs), and the call:

* ``drops`` / ``rises`` when the change is beyond 2 standard errors;
* ``inconclusive`` when it is within 2 standard errors, or when a cell has a single seed (no error to judge by).

Nothing here claims more than the seeds support: an effect inside two standard errors is never called one.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from videonorm.identity import Column, Row

SIGNIFICANCE = 2.0  # standard errors an effect must exceed to be called one


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its standard error (None for one seed) and n."""

    mean: float
    se: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        """Mean, standard error of the mean (sample std / sqrt(n)) and n of ``values``."""
        n = len(values)
        se = statistics.stdev(values) / math.sqrt(n) if n > 1 else None
        return cls(statistics.fmean(values), se, n)

    def text(self, digits: int = 1) -> str:
        """``72.3 ± 0.4 (n=3)``, or ``72.3 (n=1)``."""
        spread = f" ± {self.se:.{digits}f}" if self.se is not None else ""
        return f"{self.mean:.{digits}f}{spread} (n={self.n})"


@dataclass(frozen=True)
class Verdict:
    """One series' answer: the largest and smallest batch, the change, and the call."""

    row: Row
    shape: Column  # the series' clip shape (its batch_size is the largest batch's)
    large_batch: int
    small_batch: int
    large: Estimate
    small: Estimate
    change: float  # small - large, points of top-1
    change_se: float | None
    call: str  # "drops", "rises" or "inconclusive"
    label: str = ""  # the row as the table names it (default: the norm)

    @property
    def line(self) -> str:
        """``GN (G=4), 8f x2: top-1 16 -> 2 clips/device 71.0 ± 0.5 (n=2) -> 70.1 ± 0.6 (n=2), change -0.9 ± 0.8:
        inconclusive (within 2 SE)``."""
        change = f"{self.change:+.1f}" + (f" ± {self.change_se:.1f}" if self.change_se is not None else "")
        if self.call == "inconclusive":
            one_seed = self.change_se is None
            why = "a cell has one seed, no error to judge by" if one_seed else f"within {SIGNIFICANCE:g} SE"
            call = f"inconclusive ({why})"
        else:
            call = f"{self.call} (beyond {SIGNIFICANCE:g} SE)"
        shape = f"{self.shape.num_frames}f x{self.shape.sampling_rate}{self.shape.repeat_text}"
        return (f"{self.label or self.row.label}, {shape}: top-1 at {self.large_batch} -> {self.small_batch} clips/device "
                f"{self.large.text()} -> {self.small.text()}, change {change}: {call}")


def judge(change: float, change_se: float | None) -> str:
    """``drops``, ``rises`` or ``inconclusive`` for a change and its standard error."""
    if change_se is None or abs(change) <= SIGNIFICANCE * change_se:
        return "inconclusive"
    return "drops" if change < 0 else "rises"


def verdicts(cells: Sequence[tuple[Row, Column, Sequence[float]]], labels: Mapping[Row, str] | None = None
             ) -> list[Verdict]:
    """One verdict per series of cells that spans at least two batch sizes.

    Args:
        cells: ``(row, column, per-seed top-1 values)`` per cell.
        labels: how the table names each row (default: its norm).

    Returns:
        The verdicts, in the order of the series' first cell.
    """
    series: dict[tuple, dict[int, tuple[Column, Sequence[float]]]] = defaultdict(dict)
    for row, col, values in cells:
        if values:
            key = (row, col.num_frames, col.sampling_rate, col.repeat_aug, col.world_size)
            series[key][col.batch_size] = (col, values)
    out = []
    for (row, *_), by_batch in series.items():
        if len(by_batch) < 2:
            continue
        large_b, small_b = max(by_batch), min(by_batch)
        large, small = Estimate.of(by_batch[large_b][1]), Estimate.of(by_batch[small_b][1])
        change = small.mean - large.mean
        change_se = math.hypot(large.se, small.se) if large.se is not None and small.se is not None else None
        out.append(Verdict(row, by_batch[large_b][0], large_b, small_b, large, small, change, change_se,
                           judge(change, change_se), (labels or {}).get(row, "")))
    return out
