"""videonorm.results.verdict on constructed metric tables: a clear drop, no drop, one seed, missing cells."""

from __future__ import annotations

import math

import pytest

from tests.test_compare import _run
from videonorm.identity import Column, Row
from videonorm.results import comparison, report
from videonorm.results.verdict import Estimate, judge, verdicts

BN, GN = Row(50, 16, "bn", None), Row(50, 16, "gn", 4)


def col(batch: int) -> Column:
    return Column(batch, 8, 2, world_size=1)


def test_estimate_is_mean_standard_error_and_n():
    e = Estimate.of([70.0, 72.0, 74.0])
    assert (e.mean, e.n) == (72.0, 3) and e.se == pytest.approx(2 / math.sqrt(3))
    assert e.text() == "72.0 ± 1.2 (n=3)" and Estimate.of([50.0]).se is None


def test_a_clear_drop_is_called_and_a_small_change_is_inconclusive():
    cells = [(BN, col(16), [80.0, 81.0, 79.0]), (BN, col(4), [78.0, 80.0, 79.0]), (BN, col(2), [60.0, 62.0, 61.0]),
             (GN, col(16), [75.0, 76.0, 74.0]), (GN, col(2), [74.5, 75.5, 76.0])]
    bn, gn = verdicts(cells)
    assert (bn.large_batch, bn.small_batch, bn.call) == (16, 2, "drops")
    assert bn.change == pytest.approx(-19.0) and bn.change_se == pytest.approx(math.hypot(1 / math.sqrt(3),
                                                                                        1 / math.sqrt(3)))
    assert "16 -> 2 clips/device" in bn.line and "drops (beyond 2 SE)" in bn.line
    assert gn.call == "inconclusive" and "within 2 SE" in gn.line
    assert judge(+3.0, 1.0) == "rises" and judge(-2.0, 1.0) == "inconclusive"  # exactly 2 SE is not beyond


def test_one_seed_is_inconclusive_whatever_the_change():
    (v,) = verdicts([(BN, col(16), [90.0]), (BN, col(2), [10.0])])
    assert v.call == "inconclusive" and v.change_se is None and "one seed" in v.line


def test_missing_cells_and_other_shapes_make_separate_or_no_series():
    cells = [(BN, col(16), [80.0, 81.0]), (GN, col(2), [70.0, 71.0]),  # one batch size each: no series
             (BN, Column(16, 32, 2, world_size=1), [50.0, 52.0]), (BN, col(4), [])]  # another clip shape; empty
    assert verdicts(cells) == []


def test_compare_prints_the_verdict_for_any_runs_that_span_batch_sizes():
    def config(norm, batch, seed):
        return {"model.net.depth": 50, "model.net.width": 16, "model.net.norm": norm, "model.net.norm_groups": 4,
                "data.batch_size": batch, "data.num_frames": 8, "data.sampling_rate": 2, "world_size": 1,
                "seed_everything": seed, "dataset.hash": "d"}
    runs = [_run(f"{n}-{b}-{s}", config(n, b, s), [(top1, 0.99)])
            for n, b, s, top1 in [("bn", 8, 0, 0.80), ("bn", 8, 1, 0.82), ("bn", 2, 0, 0.50), ("bn", 2, 1, 0.53),
                                  ("gn", 8, 0, 0.70), ("gn", 2, 0, 0.69)]]
    comp = comparison.build_comparison(runs, metric="val")
    lines = {v.row.norm: v.line for v in comp.verdicts}
    assert "drops (beyond 2 SE)" in lines["bn"] and "81.0 ± 1.0 (n=2) -> 51.5 ± 1.5 (n=2)" in lines["bn"]
    assert "inconclusive" in lines["gn"]
    md = report.report_markdown(comp)
    assert "## Does top-1 change with clips per device?" in md and lines["bn"] in md
