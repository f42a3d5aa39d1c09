"""``videonorm demo``: the suite's question, asked end to end on built-in synthetic data (CPU, about 5 minutes).

    videonorm demo [--out demo_out] [--full] [--jobs 2]

Which normalization, at which batch size? The demo trains BN and GN at 16, 4 and 2 clips per device, two seeds
each (``--full``: also LN, IN and the small-batch family: Batch Renorm, GN + weight standardization, FRN, EvoNorm
S0/B0; 1 clip per device too; three seeds), and answers with mean +- standard error over the seeds and a verdict per
norm that calls a change only beyond two standard errors.

1. ``kinetics-prep synth``: six motion classes (shapes moving left/right/up/down, turning either way; opposite
   classes are exact time reverses, so no single frame tells them apart) as full-length "raw" videos plus
   annotation CSVs in the official Kinetics layout; ``kinetics-prep prepare``: trim, resize, manifests, verify.
   Skipped when the prepared dataset already exists. 324 training and 204 held-out videos: one held-out video is
   0.49 point of top-1.
2. Real training runs through the same CLI and configs users use (``videonorm/configs/demo/b{16,4,2,1}_8x2.yaml``:
   a shallow width-16 I3D, ``--model.norm`` per run), the same epochs (clips seen) for every cell and the learning
   rate scaled linearly with the batch, each followed by a video-level test of its final checkpoint, logged to W&B
   (offline unless you are logged in). ``--jobs`` runs go side by side, each on one core; each run's output goes
   to ``<out>/runs/demo/<run>.log``.
3. ``videonorm compare`` on the runs: the table (mean +- SE, n), the verdict per norm, and the plots (top-1 vs clips
   per device with error bars; validation curves).

Every step is an ordinary command; the demo only chains them, so what it shows is what users run. Re-running reuses
the prepared data and resumes (or, when complete, just re-tests) the runs; delete ``--out`` to start over.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import yaml

from videonorm import metric_keys as keys
from videonorm.data.manifest import read_manifest

# The synthetic task, calibrated on the largest-batch BN cell only (README: how): six motion classes (moving left /
# right / up / down, turning either way) at three times the synth default speed (4-6 px per sampled frame in 64 px
# crops), 88 videos per class: 54 train + 34 held out (204 held-out videos: one is 0.49 point of top-1).
DEMO_CLASSES = 6
DEMO_PER_CLASS = 88
DEMO_VAL_FRACTION = 34 / 88
DEMO_SPEED = 3.0
# The demo videos are tiny (short side <= 120 px): prepare them at a short side that the demo crops fit.
DEMO_SHORT_SIDE = 80


@dataclass(frozen=True)
class Grid:
    """Which cells the demo trains: every norm at every batch size, each with every seed."""

    norms: tuple[str, ...]
    batches: tuple[int, ...]
    seeds: tuple[int, ...]

    def cells(self) -> list[tuple[str, int, int]]:
        """``(norm, batch, seed)``, seeds outermost (every cell gets its first seed before any gets a second)."""
        return [(n, b, s) for s, b, n in itertools.product(self.seeds, self.batches, self.norms)]


DEFAULT_GRID = Grid(norms=("bn", "gn"), batches=(16, 4, 2), seeds=(0, 1))
FULL_GRID = Grid(norms=("bn", "gn", "ln", "in", "brn", "gn_ws", "frn", "evonorm_s0", "evonorm_b0"),
                 batches=(16, 4, 2, 1), seeds=(0, 1, 2))


def norm_options(norm: str, steps: int) -> dict[str, int]:
    """Scheme options a short run needs: Batch Renorm's relaxation schedule is in steps (the paper: plain BN for
    5k steps, r_max 3 at 40k, d_max 5 at 25k), which a demo run of a few hundred steps never reaches. Kept in the
    paper's proportions, with r_max fully relaxed at half of this run's ``steps``."""
    if norm != "brn":
        return {}
    half = steps / 2
    return {"warmup_steps": round(half * 5 / 40), "r_max_steps": round(half), "d_max_steps": round(half * 25 / 40)}


def config_dir() -> Path:
    """The shipped demo configs."""
    return Path(__file__).resolve().parent / "configs" / "demo"


def prepare_data(out: Path, seed: int, jobs: int, classes: int = DEMO_CLASSES, per_class: int = DEMO_PER_CLASS,
                 speed: float = DEMO_SPEED) -> Path:
    """Synthesize and prepare the demo dataset under ``out`` (reused when already prepared)."""
    from data_prep.cli import main as prep

    data = out / "data"
    if all((data / name).is_file() for name in ("train.txt", "val.txt", "classes.txt")):
        print(f"[demo] reusing prepared data in {data} (delete it to rebuild)")
        return data
    source = out / "source"
    steps = [
        ["synth", str(source), "--classes", str(classes), "--per-class", str(per_class),
         "--val-fraction", f"{DEMO_VAL_FRACTION:.6f}", "--seed", str(seed), "--speed", str(speed),
         "--jobs", str(jobs)],
        # ultrafast: the demo wants its tiny files fast, not small
        ["prepare", str(source / "annotations"), "--raw", str(source / "raw"), "--out", str(data),
         "--short-side", str(DEMO_SHORT_SIDE), "--preset", "ultrafast", "--jobs", str(jobs)],
    ]
    for step in steps:
        print(f"[demo] kinetics-prep {' '.join(step)}", flush=True)
        if prep(step) != 0:
            raise SystemExit(f"error: kinetics-prep {step[0]} failed (see above)")
    return data


def _cli_args(norm: str, batch: int, seed: int, data: Path, runs: Path, extra: list[str]) -> list[str]:
    config = config_dir() / f"b{batch}_8x2.yaml"
    if not config.is_file():
        raise SystemExit(f"error: no demo config for {batch} clips per device ({config})")
    args = ["--config", str(config), "--model.norm", norm, "--seed_everything", str(seed), "--data.root", str(data),
            "--trainer.default_root_dir", str(runs)]
    if norm == "brn":
        args += ["--model.norm_options", json.dumps(norm_options(norm, _steps(config, data, batch, extra)))]
    return args + extra


def _steps(config: Path, data: Path, batch: int, extra: list[str]) -> int:
    """Optimizer steps of a run: epochs x full batches of the training manifest."""
    epochs = int(extra[extra.index("--trainer.max_epochs") + 1]) if "--trainer.max_epochs" in extra else None
    if epochs is None:
        base = yaml.safe_load((config.parent / "base.yaml").read_text())
        epochs = int(base["trainer"]["max_epochs"])
    return epochs * (len(read_manifest(data / "train.txt")) // batch)


def train_and_test(norm: str, batch: int, seed: int, data: Path, runs: Path, extra: list[str],
                   log_dir: Path | None = None) -> tuple[str, str, float]:
    """``videonorm fit --ckpt_path last`` then ``videonorm test --ckpt_path last`` for one cell.

    Args:
        norm: ``model.norm``.
        batch: clips per device (picks the config).
        seed: ``seed_everything``.
        data: the prepared dataset.
        runs: ``trainer.default_root_dir``.
        extra: more CLI overrides for both.
        log_dir: send this run's output to ``<log_dir>/<run>.log`` (for runs side by side).

    Returns:
        ``(run directory, "top-1 / top-5" of its test, seconds)``.
    """
    from videonorm.train.cli import run_lightning_cli

    start = time.perf_counter()
    common = _cli_args(norm, batch, seed, data, runs, extra)
    with _output_to(log_dir / f"{norm}-b{batch}-s{seed}.log" if log_dir is not None else None):
        # --ckpt_path last: a rerun of the demo resumes an interrupted run and finishes a complete one at once
        run_dir = Path(run_lightning_cli(["fit", *common, "--ckpt_path", "last"]).run_dir)
        # the final model, as the paper reports: best.ckpt was chosen on these same held-out videos
        run_lightning_cli(["test", *common, "--ckpt_path", "last"])
    return str(run_dir), _metric(run_dir, "test"), time.perf_counter() - start


@contextlib.contextmanager
def _output_to(path: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors: Lightning's and W&B's too) to ``path``."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _worker_init() -> None:
    # one core per run when runs go side by side; torch reads this when it starts its thread pool
    os.environ["OMP_NUM_THREADS"] = "1"
    # a spawned worker starts without the entry point's warning filters, and imports pytorchvideo before a run
    from videonorm.cli import ignore_dependency_warnings

    ignore_dependency_warnings()


def _metric(run_dir: Path, stage: str) -> str:
    """``top-1 / top-5`` (percent) of a finished run, read back from its local record (what compare sees)."""
    from videonorm.results.runs import load_runs

    runs, _ = load_runs([str(run_dir)])
    if not runs:
        return "no metrics"
    summary = runs[-1].summary  # a resumed or re-tested run appends a part to the same record
    top1, top5 = (summary.get(key) for key in keys.ACCURACY[stage])
    if top1 is None or top5 is None:
        return "no metrics"
    return f"{100 * top1:.1f} / {100 * top5:.1f}"


def run_grid(grid: Grid, data: Path, runs: Path, extra: list[str], jobs: int) -> list[str]:
    """Train and test every cell of ``grid``, ``jobs`` at a time; returns the run directories."""
    cells = grid.cells()
    done: list[str] = []

    def report(cell: tuple[str, int, int], result: tuple[str, str, float]) -> None:
        run_dir, metric, seconds = result
        done.append(run_dir)
        print(f"[demo] {len(done)}/{len(cells)} {Path(run_dir).name}: test top-1 / top-5 = {metric} "
              f"({seconds:.0f} s)", flush=True)

    if jobs <= 1:
        for cell in cells:
            report(cell, train_and_test(*cell, data, runs, extra))
        return done
    log_dir = runs / "demo"
    os.environ.setdefault("WANDB_SILENT", "true")
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        futures = {pool.submit(train_and_test, *cell, data, runs, extra, log_dir): cell for cell in cells}
        for future in as_completed(futures):
            report(futures[future], future.result())
    return done


def run(args: argparse.Namespace) -> int:
    """Run ``videonorm demo`` with parsed ``args``: data, the grid of runs, then compare; returns compare's status."""
    start = time.perf_counter()
    os.environ.setdefault("WANDB_SILENT", "true")
    out = args.out.resolve()
    grid = FULL_GRID if args.full else DEFAULT_GRID
    if args.norms:
        grid = Grid(tuple(args.norms), grid.batches, grid.seeds)
    if args.batches:
        grid = Grid(grid.norms, tuple(args.batches), grid.seeds)
    if args.seeds:
        grid = Grid(grid.norms, grid.batches, tuple(args.seeds))
    data = prepare_data(out, args.data_seed, args.jobs, args.classes, args.per_class, args.speed)
    print(f"[demo] data ready in {time.perf_counter() - start:.0f} s; {len(grid.cells())} runs: norms "
          f"{', '.join(grid.norms)} x clips per device {', '.join(map(str, grid.batches))} x seeds "
          f"{', '.join(map(str, grid.seeds))}; {args.jobs} run(s) at a time", flush=True)
    runs_dir = out / "runs"
    extra = [] if args.epochs is None else ["--trainer.max_epochs", str(args.epochs)]
    run_grid(grid, data, runs_dir, extra + args.extra, args.jobs)
    from videonorm.cli import main as videonorm

    status = videonorm(["compare", str(runs_dir), "--out", str(out / "compare")])
    print(f"[demo] done in {time.perf_counter() - start:.0f} s; runs in {runs_dir}, comparison in {out / 'compare'}")
    return status


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``videonorm demo`` options to ``parser``."""
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="where data, runs and plots go")
    parser.add_argument("--full", action="store_true",
                        help=f"the fuller grid: norms {', '.join(FULL_GRID.norms)}, clips per device "
                             f"{', '.join(map(str, FULL_GRID.batches))}, {len(FULL_GRID.seeds)} seeds")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="runs side by side (one core each) and data-prep workers")
    parser.add_argument("--norms", nargs="+", help="override the grid's norms")
    parser.add_argument("--batches", nargs="+", type=int, help="override the grid's clips per device")
    parser.add_argument("--seeds", nargs="+", type=int, help="override the grid's seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo configs' max_epochs")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--classes", type=int, default=DEMO_CLASSES, help="synthetic motion classes (a smaller task)")
    parser.add_argument("--speed", type=float, default=DEMO_SPEED,
                        help="motion speed, x the synth default (the task's difficulty; calibrated on BN at 16 clips)")
    parser.add_argument("--per-class", type=int, default=DEMO_PER_CLASS,
                        help=f"videos per class, {DEMO_VAL_FRACTION:.0%}% held out (a smaller task)")
    parser.add_argument("extra", nargs="*", help="extra Lightning CLI overrides after --, e.g. -- --data.decoder pyav")
