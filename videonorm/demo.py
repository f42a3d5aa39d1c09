"""``videonorm demo``: the whole suite, end to end, on built-in synthetic data (CPU, a few minutes).

    videonorm demo [--out demo_out] [--classes 4] [--per-class 75] [--epochs N]

1. ``kinetics-prep synth``: motion classes (shapes moving left/right/up/down...) as full-length "raw" videos
   plus annotation CSVs in the official Kinetics layout; ``kinetics-prep prepare``: trim, resize, manifests,
   verify. Skipped when the prepared dataset already exists.
2. Four real training runs through the same CLI and configs users use (``configs/demo/``: the small-width
   I3D R50, BN and GN at 8 and 4 clips per device), each followed by a multi-view test of its final checkpoint,
   logged to W&B (offline unless you are logged in).
3. ``videonorm compare`` on those runs: the table (beside the paper's) and the plots.

Every step is an ordinary command; the demo only chains them, so what it shows is what users run. Re-running
reuses the prepared data and resumes (or, when complete, just re-tests) the runs; delete ``--out`` to start over.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DEMO_RUNS = ("bn_b8_8x2", "gn_b8_8x2", "bn_b4_8x2", "gn_b4_8x2")
# The demo videos are tiny (short side <= 160 px): prepare them at a short side that the demo crops fit.
DEMO_SHORT_SIDE = 80
# Motion 2x the synth default: 3-4 px per sampled frame in the 64 px crops, where the stem's 5x7x7 kernels
# see it. With it the four demo runs reach 62-97% test top-1 in 10 epochs (chance 25%; README).
DEMO_SPEED = 2.0


def default_config_dir() -> Path:
    """``configs/demo`` of the checkout this package runs from (editable install) or of the working dir."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = root / "configs" / "demo"
        if (candidate / "base.yaml").is_file():
            return candidate
    raise SystemExit("error: configs/demo not found; run from a videonorm checkout or pass --configs DIR")


def prepare_data(out: Path, classes: int, per_class: int, seed: int, jobs: int) -> Path:
    """Synthesize and prepare the demo dataset under ``out`` (reused when already prepared)."""
    from data_prep.cli import main as prep

    data = out / "data"
    if all((data / name).is_file() for name in ("train.txt", "val.txt", "classes.txt")):
        print(f"[demo] reusing prepared data in {data} (delete it to rebuild)")
        return data
    source = out / "source"
    steps = [
        ["synth", str(source), "--classes", str(classes), "--per-class", str(per_class), "--seed", str(seed),
         "--speed", str(DEMO_SPEED), "--jobs", str(jobs)],
        # ultrafast: the demo wants its tiny files fast, not small
        ["prepare", str(source / "annotations"), "--raw", str(source / "raw"), "--out", str(data),
         "--short-side", str(DEMO_SHORT_SIDE), "--preset", "ultrafast", "--jobs", str(jobs)],
    ]
    for step in steps:
        print(f"[demo] kinetics-prep {' '.join(step)}")
        if prep(step) != 0:
            raise SystemExit(f"error: kinetics-prep {step[0]} failed (see above)")
    return data


def train_and_test(config: Path, data: Path, runs: Path, extra: list[str]) -> Path:
    """``videonorm fit`` then ``videonorm test --ckpt_path last`` for one config; returns the run dir."""
    from videonorm.train.cli import run_lightning_cli

    common = ["--config", str(config), "--data.root", str(data), "--trainer.default_root_dir", str(runs), *extra]
    # --ckpt_path last: a rerun of the demo resumes an interrupted run and finishes a complete one at once
    cli = run_lightning_cli(["fit", *common, "--ckpt_path", "last"])
    run_dir = Path(cli.run_dir)
    # the final model, as the paper reports: best.ckpt was chosen on these same held-out videos (the test
    # manifest is val.txt, as on Kinetics, whose test labels are not public), so its test would be optimistic
    run_lightning_cli(["test", *common, "--ckpt_path", "last"])
    return run_dir


def _metric(run_dir: Path, stage: str) -> str:
    """``top-1 / top-5`` (percent) of a finished run, read back from its W&B run (what compare sees)."""
    from videonorm.results.runs import load_runs

    runs, _ = load_runs([str(run_dir)])
    if not runs:
        return "no metrics"
    # the last-written run of this directory (a resumed or re-tested run appends to the same W&B run)
    summary = runs[-1].summary
    top1, top5 = summary.get(f"{stage}/top1"), summary.get(f"{stage}/top5")
    if top1 is None or top5 is None:
        return "no metrics"
    return f"{100 * top1:.1f} / {100 * top5:.1f}"


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    os.environ.setdefault("WANDB_SILENT", "true")
    out = args.out.resolve()
    config_dir = args.configs or default_config_dir()
    data = prepare_data(out, args.classes, args.per_class, args.seed, args.jobs)
    print(f"[demo] data ready in {time.perf_counter() - start:.0f} s")
    runs_dir = out / "runs"
    extra = [] if args.epochs is None else ["--trainer.max_epochs", str(args.epochs)]
    extra += args.extra
    finished = []
    for name in args.runs:
        t0 = time.perf_counter()
        run_dir = train_and_test(config_dir / f"{name}.yaml", data, runs_dir, extra)
        finished.append(run_dir)
        print(f"[demo] {run_dir.name}: test top-1 / top-5 = {_metric(run_dir, 'test')} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    from videonorm.results.compare import main as compare

    status = compare([str(runs_dir), "--out", str(out / "compare")])
    print(f"[demo] done in {time.perf_counter() - start:.0f} s; runs in {runs_dir}, comparison in {out / 'compare'}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="videonorm demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="where data, runs and plots go")
    # Four classes (move_left/right/up/down: pairs of exact time reverses, so only motion tells them apart),
    # 75 videos each (56 train + 19 val): the four runs then fit the 5-minute budget of a 2-core CPU.
    parser.add_argument("--classes", type=int, default=4, help="number of synthetic motion classes")
    parser.add_argument("--per-class", type=int, default=75, help="videos per class (train + val)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel data-prep workers")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo configs' max_epochs")
    parser.add_argument("--runs", nargs="+", default=list(DEMO_RUNS), choices=DEMO_RUNS, help="which runs")
    parser.add_argument("--configs", type=Path, default=None, help="folder of the demo configs")
    parser.add_argument("extra", nargs="*", help="extra Lightning CLI overrides after --, e.g. -- --data.num_workers 2")
    return run(parser.parse_args(argv))
