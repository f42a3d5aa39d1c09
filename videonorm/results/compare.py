"""``videonorm compare``: runs side by side with the paper's Kinetics table, as Markdown/CSV + plots.

    videonorm compare runs/kinetics400                        # local runs (their records) below a directory
    videonorm compare my-team/videonorm --group kinetics400   # a W&B project, filtered by group (or --tag)
    videonorm compare my-team/videonorm/1a2b3c4d runs/demo    # single online runs and local ones together

Runs are read by :mod:`videonorm.results.runs`, placed in cells by :mod:`videonorm.results.comparison` (``--metric``
and ``--dataset`` choose what is compared) and written by :mod:`videonorm.results.report`.
Outputs in ``--out``: ``compare.md`` (table + notes), ``compare.csv`` (one row per cell, tidy),
``val_error_curves.png`` (the paper's Fig. 7 style) and ``top1_vs_batch.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from videonorm.commands import UsageError
from videonorm.results.comparison import build_comparison
from videonorm.results.report import PLOTS, make_plots, report_markdown, write_csv, write_markdown
from videonorm.results.runs import load_runs


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``videonorm compare`` options to ``p`` (and its one-line description and the inputs' epilog)."""
    p.description = ("Put runs (local records or W&B) side by side with the paper's Kinetics table: Markdown + CSV "
                     "+ plots.")
    p.epilog = ("INPUTS: local paths (a record.jsonl, a run directory, or any directory above runs, searched "
                "recursively; read from the runs' records, no network) or W&B paths: entity/project (all runs, "
                "filtered by --group/--tag) or entity/project/run_id (uses wandb.Api: needs credentials and network).")
    p.add_argument("inputs", nargs="+", metavar="INPUTS", help="local run files/directories or W&B paths")
    p.add_argument("--out", default="compare_out", help="output directory (default: compare_out)")
    p.add_argument("--group", help="only runs in this W&B group")
    p.add_argument("--tag", help="only runs with this W&B tag")
    p.add_argument("--metric", choices=("auto", "val", "test"), default="auto",
                   help="val: best validation epoch (single clip); test: video-level test; auto: test if every "
                        "run has it, else val")
    p.add_argument("--dataset", metavar="HASH", help="compare runs with this dataset.hash (default: the majority's)")


def run(args: argparse.Namespace) -> int:
    """Run ``videonorm compare`` with parsed ``args``; 0 when a table was written, 1 when no run could be compared.

    Raises:
        UsageError: ``--out`` is a file.
    """
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory for compare.md, compare.csv and the plots")
    runs, errors = load_runs(args.inputs, group=args.group, tag=args.tag)
    comp = build_comparison(runs, metric=args.metric, dataset=args.dataset, read_errors=errors)
    if not comp.cells:  # a mistyped path must not replace an earlier report with an empty one
        print(report_markdown(comp))
        print(f"Nothing written to {out}: no run could be compared (see above).")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out / "compare.md", out / "compare.csv"
    report = write_markdown(comp, md_path)
    write_csv(comp, csv_path)
    pngs = make_plots(comp, out)
    for stale in (out / name for name in PLOTS):  # a figure this comparison has no data for must not stay behind
        if stale not in pngs:
            stale.unlink(missing_ok=True)
    print(report)
    print("Written:")
    for path in (md_path, csv_path, *pngs):
        print(f"  {path}")
    return 0
