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
   a shallow width-16 I3D, ``--model.net.norm`` per run), the same epochs (clips seen) for every cell and the learning
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
import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from videonorm import metric_keys as keys
from videonorm.calibrate import LR_GRID, SEEDS, calibrate, read_rates, table_markdown, write
from videonorm.data.manifest import read_manifest
from videonorm.files import write_text_atomic
from videonorm.identity import flatten, run_name, run_setting

# The synthetic task: six motion classes (moving left / right / up / down, turning either way) at three times the
# synth default speed (4-6 px per sampled frame in 64 px crops), 122 videos per class: 54 train, 34 validation (every
# choice is made there: the learning rate, README "Calibration") and 34 test (what the study reports, never looked
# at to choose); 204 videos in each held-out split, so one video is 0.49 point of top-1.
DEMO_CLASSES = 6
DEMO_PER_CLASS = 122
DEMO_VAL_FRACTION = 34 / 122
DEMO_TEST_FRACTION = 34 / 122
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


@dataclass(frozen=True)
class Job:
    """One run of the demo: a norm at a batch with a seed, its learning rate per 16 clips (scaled linearly with the
    batch), tested on the test split or (calibration) only validated."""

    norm: str
    batch: int
    seed: int
    lr: float
    test: bool = True

    @property
    def log_name(self) -> str:
        return f"{self.norm}-b{self.batch}-lr{self.lr:g}-s{self.seed}"


def prepare_data(out: Path, seed: int, jobs: int, classes: int = DEMO_CLASSES, per_class: int = DEMO_PER_CLASS,
                 speed: float = DEMO_SPEED) -> Path:
    """Synthesize and prepare the demo dataset under ``out`` (reused when already prepared with the same settings).

    Raises:
        SystemExit: ``out`` holds demo data made with other settings (the message says which).
    """
    from data_prep.cli import main as prep

    data = out / "data"
    settings = {"classes": classes, "per_class": per_class, "speed": speed, "seed": seed,
                "val_fraction": round(DEMO_VAL_FRACTION, 6), "test_fraction": round(DEMO_TEST_FRACTION, 6)}
    stamp = data / "demo.json"
    if all((data / name).is_file() for name in ("train.txt", "val.txt", "test.txt", "classes.txt", "demo.json")):
        made = json.loads(stamp.read_text())
        if made != settings:
            differ = ", ".join(f"{k} {made.get(k)} (asked: {v})" for k, v in settings.items() if made.get(k) != v)
            raise SystemExit(f"error: {data} holds demo data made with {differ}; delete it or use another --out")
        print(f"[demo] reusing prepared data in {data} (delete it to rebuild)")
        return data
    source = out / "source"
    steps = [
        ["synth", str(source), "--classes", str(classes), "--per-class", str(per_class),
         "--val-fraction", f"{DEMO_VAL_FRACTION:.6f}", "--test-fraction", f"{DEMO_TEST_FRACTION:.6f}",
         "--seed", str(seed), "--speed", str(speed), "--jobs", str(jobs)],
        # ultrafast: the demo wants its tiny files fast, not small
        ["prepare", str(source / "annotations"), "--raw", str(source / "raw"), "--out", str(data),
         "--splits", "train,validate,test", "--short-side", str(DEMO_SHORT_SIDE), "--preset", "ultrafast",
         "--jobs", str(jobs)],
    ]
    for step in steps:
        print(f"[demo] kinetics-prep {' '.join(step)}", flush=True)
        if prep(step) != 0:
            raise SystemExit(f"error: kinetics-prep {step[0]} failed (see above)")
    write_text_atomic(stamp, json.dumps(settings, sort_keys=True) + "\n")  # last: the data is complete
    return data


def _demo_config(batch: int, extra: list[str]) -> dict[str, Any]:
    """The flattened config of a demo run at ``batch`` (base.yaml, the batch file, then the ``--key value``
    overrides in ``extra``), as far as naming a run and checking its recipe need it."""
    config = config_dir() / f"b{batch}_8x2.yaml"
    if not config.is_file():
        raise SystemExit(f"error: no demo config for {batch} clips per device ({config})")
    flat = {**flatten(yaml.safe_load((config.parent / "base.yaml").read_text())),
            **flatten(yaml.safe_load(config.read_text()))}
    return {**flat, **_overrides(extra)}


def _overrides(args: list[str]) -> dict[str, Any]:
    """``--key value`` pairs as config keys and YAML values (``["--trainer.max_epochs", "3"]`` -> ``{...: 3}``)."""
    out = {}
    for key, value in zip(args, args[1:]):
        if key.startswith("--") and not value.startswith("--"):
            out[key[2:]] = yaml.safe_load(value)
    return out


def _cli_args(job: Job, data: Path, runs: Path, extra: list[str]) -> list[str]:
    """The CLI arguments of ``job``: its batch's config, norm, seed and scaled learning rate (and Batch Renorm's
    schedule for the run's length), then ``extra``; the run's name, when a run of another recipe holds the usual
    one."""
    config = config_dir() / f"b{job.batch}_8x2.yaml"
    own = ["--model.net.norm", job.norm, "--seed_everything", str(job.seed),
           "--model.lr", f"{job.lr * job.batch / 16:.8g}"]  # linear scaling from the rate per 16 clips
    if job.norm == "brn":
        own += ["--model.net.norm_options", json.dumps(norm_options(job.norm, _steps(job, data, extra)))]
    args = ["--config", str(config), *own, "--data.root", str(data), "--trainer.default_root_dir", str(runs)]
    name = _run_name(job, runs, flatten(_overrides(own + extra)), extra)
    return args + (["--trainer.logger.init_args.name", name] if name else []) + extra


def _run_name(job: Job, runs: Path, asked: dict[str, Any], extra: list[str]) -> str | None:
    """None (the CLI's usual name; calibration runs add their rate) unless that run exists with another recipe: then
    the usual name plus ``-r`` and a digest of what this job asks, so that a finished run is reused only when it is
    the run asked for."""
    config = _demo_config(job.batch, extra)
    flat = {**config, **asked}
    usual = run_name(run_setting(flat), seed=job.seed)
    if not job.test:  # a calibration run: one per rate
        usual += f"-lr{job.lr:g}"
    saved = runs / str(config.get("trainer.logger.init_args.group")) / usual / "config.yaml"
    if not saved.is_file():
        return None if job.test else usual
    held = flatten(yaml.safe_load(saved.read_text()) or {})
    differ = {k: (held.get(k), v) for k, v in flat.items() if _differs(held.get(k), v) and k in _RECIPE_OWNED}
    differ.update({k: (held.get(k), v) for k, v in asked.items() if _differs(held.get(k), v)})
    if not differ:
        return None if job.test else usual
    digest = hashlib.sha1(json.dumps(sorted(asked.items()), default=str).encode()).hexdigest()[:6]
    name = f"{usual}-r{digest}"
    what = "; ".join(f"{k} {a} (asked: {b})" for k, (a, b) in sorted(differ.items()))
    print(f"[demo] {saved.parent} holds a run of another recipe ({what}): this run is {name}", flush=True)
    return name


# Keys of the shipped demo configs that are part of a run's recipe: a run saved with other values is not reused.
_RECIPE_OWNED = ("model.lr", "trainer.max_epochs", "trainer.precision", "model.schedule", "model.warmup_epochs",
                 "model.weight_decay", "model.momentum", "data.test_manifest", "data.val_manifest",
                 "data.test_clips", "data.train_flip", "model.net.norm_groups", "model.net.depth", "model.net.width")


def _differs(held: Any, asked: Any) -> bool:
    if isinstance(held, (int, float)) and isinstance(asked, (int, float)) and not isinstance(held, bool):
        return not math.isclose(held, asked, rel_tol=1e-6)
    return held != asked


def _steps(job: Job, data: Path, extra: list[str]) -> int:
    """Optimizer steps of a run: epochs x full batches of the training manifest."""
    epochs = int(_demo_config(job.batch, extra)["trainer.max_epochs"])
    return epochs * (len(read_manifest(data / "train.txt")) // job.batch)


def train_and_test(job: Job, data: Path, runs: Path, extra: list[str],
                   log_dir: Path | None = None) -> tuple[str, str, float]:
    """``videonorm fit --ckpt_path last`` then, unless it is a calibration run, ``videonorm test --ckpt_path last``.

    Args:
        job: the run.
        data: the prepared dataset.
        runs: ``trainer.default_root_dir``.
        extra: more CLI overrides for both.
        log_dir: send this run's output to ``<log_dir>/<job.log_name>.log`` (for runs side by side).

    Returns:
        ``(run directory, "top-1 / top-5" of its test (or its final validation), seconds)``.
    """
    from videonorm.train.cli import run_lightning_cli

    start = time.perf_counter()
    common = _cli_args(job, data, runs, extra)
    with _output_to(log_dir / f"{job.log_name}.log" if log_dir is not None else None):
        # --ckpt_path last: a rerun of the demo resumes an interrupted run and finishes a complete one at once
        run_dir = Path(run_lightning_cli(["fit", *common, "--ckpt_path", "last"]).run_dir)
        if job.test:  # the final model on the test split, which no choice looked at
            run_lightning_cli(["test", *common, "--ckpt_path", "last"])
    return str(run_dir), _metric(run_dir, "test" if job.test else "val"), time.perf_counter() - start


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


def final_scores(run_dir: Path) -> tuple[float, float] | None:
    """(top-1, top-5) in percent of a finished run's last validation epoch (what calibration scores)."""
    from videonorm.results.runs import load_runs

    runs, _ = load_runs([str(run_dir)])
    top1, top5 = keys.ACCURACY["val"]
    rows = [row for run in runs for row in run.history if row.get(top1) is not None]
    if not rows:
        return None
    last = max(rows, key=lambda row: row.get("epoch", -1))
    return 100 * last[top1], 100 * last.get(top5, math.nan)


def _metric(run_dir: Path, stage: str) -> str:
    """``top-1 / top-5`` (percent) of a finished run, read back from its record (what compare sees): the test, or
    the last validation epoch."""
    from videonorm.results.runs import load_runs

    if stage == "val":
        scores = final_scores(run_dir)
        return "no metrics" if scores is None else f"{scores[0]:.1f} / {scores[1]:.1f}"
    runs, _ = load_runs([str(run_dir)])
    if not runs:
        return "no metrics"
    summary = runs[-1].summary  # a resumed or re-tested run appends a part to the same record
    top1, top5 = (summary.get(key) for key in keys.ACCURACY[stage])
    if top1 is None or top5 is None:
        return "no metrics"
    return f"{100 * top1:.1f} / {100 * top5:.1f}"


def run_jobs(jobs_list: list[Job], data: Path, runs: Path, extra: list[str], jobs: int) -> list[str]:
    """Train (and test) every job, ``jobs`` at a time; returns the run directories in the order of ``jobs_list``."""
    done: dict[int, str] = {}

    def report(i: int, result: tuple[str, str, float]) -> None:
        run_dir, metric, seconds = result
        done[i] = run_dir
        what = "test" if jobs_list[i].test else "final validation"
        print(f"[demo] {len(done)}/{len(jobs_list)} {Path(run_dir).name}: {what} top-1 / top-5 = {metric} "
              f"({seconds:.0f} s)", flush=True)

    if jobs <= 1:
        for i, job in enumerate(jobs_list):
            report(i, train_and_test(job, data, runs, extra))
    else:
        os.environ.setdefault("WANDB_SILENT", "true")
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
            futures = {pool.submit(train_and_test, job, data, runs, extra, runs / "logs"): i
                       for i, job in enumerate(jobs_list)}
            for future in as_completed(futures):
                report(futures[future], future.result())
    return [done[i] for i in range(len(jobs_list))]


def shipped_rates() -> Path:
    """The learning rates per 16 clips the demo uses (chosen by ``--calibrate``: README "Calibration")."""
    return config_dir() / "lr.yaml"


def _rates(args: argparse.Namespace, norms: tuple[str, ...]) -> dict[str, float]:
    """Each norm's learning rate per 16 clips: ``--lr`` for all, else the table (``--lr-table``, default the shipped
    one). Raises SystemExit naming the norms the table lacks."""
    if args.lr is not None:
        return {norm: args.lr for norm in norms}
    try:
        table = read_rates(args.lr_table)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: --lr-table: {err}") from None
    missing = [n for n in norms if n not in table]
    if missing:
        raise SystemExit(f"error: {args.lr_table} has no learning rate for {', '.join(missing)}: calibrate them "
                         f"(videonorm demo --calibrate --norms {' '.join(missing)}) or give one with --lr")
    return {norm: table[norm] for norm in norms}


def run_calibration(grid: Grid, data: Path, out: Path, extra: list[str], jobs: int) -> int:
    """The calibration protocol (:mod:`videonorm.calibrate`) for the grid's norms at its largest batch.

    Raises:
        SystemExit: the runs would not validate their last epoch (the protocol's score).
    """
    start = time.perf_counter()
    batch = max(grid.batches)
    config = _demo_config(batch, extra)
    epochs, every = int(config["trainer.max_epochs"]), int(config.get("trainer.check_val_every_n_epoch") or 1)
    if epochs % every:
        raise SystemExit(f"error: calibration scores the last epoch's validation, but a run of {epochs} epochs that "
                         f"validates every {every} does not validate its last: give --epochs a multiple of {every}, "
                         "or -- --trainer.check_val_every_n_epoch N")
    runs = out / "calibration" / "runs"
    group = ["--trainer.logger.init_args.group", "demo-calibration"]

    def run_cells(cells: list[tuple[str, float, int]]) -> list[float | None]:
        jobs_list = [Job(norm, batch, seed, lr, test=False) for norm, lr, seed in cells]
        dirs = run_jobs(jobs_list, data, runs, group + extra, jobs)
        return [None if (s := final_scores(Path(d))) is None else s[0] for d in dirs]

    print(f"[demo] calibration (videonorm/calibrate.py): norms {', '.join(grid.norms)} at {batch} clips per device, "
          f"lr per 16 clips {', '.join(f'{lr:g}' for lr in LR_GRID)}, seeds {', '.join(map(str, SEEDS))}; scored "
          "on the validation split", flush=True)
    cal = calibrate(grid.norms, batch, run_cells)
    paths = write(cal, out / "calibration", time.perf_counter() - start)
    print("\n" + table_markdown(cal) + "\n")
    print(f"[demo] calibration done in {time.perf_counter() - start:.0f} s: {paths[0]}; the rates: {paths[2]} "
          f"(use them with --lr-table {paths[2]}; the shipped ones: {shipped_rates()})")
    return 0


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
    rates = None if args.calibrate else _rates(args, grid.norms)
    data = prepare_data(out, args.data_seed, args.jobs, args.classes, args.per_class, args.speed)
    extra = [] if args.epochs is None else ["--trainer.max_epochs", str(args.epochs)]
    if args.calibrate:
        return run_calibration(grid, data, out, extra + args.extra, args.jobs)
    print(f"[demo] data ready in {time.perf_counter() - start:.0f} s; {len(grid.cells())} runs: norms "
          f"{', '.join(grid.norms)} x clips per device {', '.join(map(str, grid.batches))} x seeds "
          f"{', '.join(map(str, grid.seeds))}; {args.jobs} run(s) at a time; lr per 16 clips "
          f"{', '.join(f'{n} {lr:g}' for n, lr in rates.items())} ({'--lr' if args.lr else args.lr_table})",
          flush=True)
    runs_dir = out / "runs"
    run_jobs([Job(norm, batch, seed, rates[norm]) for norm, batch, seed in grid.cells()], data, runs_dir,
             extra + args.extra, args.jobs)
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
    parser.add_argument("--calibrate", action="store_true",
                        help="run the calibration protocol (videonorm/calibrate.py) for the grid's norms instead of "
                             "the study: an lr sweep at the largest batch, scored on the validation split")
    parser.add_argument("--lr-table", type=Path, default=shipped_rates(),
                        help="learning rate per 16 clips for each norm (default: the shipped, calibrated one)")
    parser.add_argument("--lr", type=float, help="one learning rate per 16 clips for every norm (not calibrated)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--classes", type=int, default=DEMO_CLASSES, help="synthetic motion classes (a smaller task)")
    parser.add_argument("--speed", type=float, default=DEMO_SPEED,
                        help="motion speed, x the synth default (the task's difficulty; calibrated on BN at 16 clips)")
    parser.add_argument("--per-class", type=int, default=DEMO_PER_CLASS,
                        help=f"videos per class, {DEMO_VAL_FRACTION:.0%}% held out (a smaller task)")
    parser.add_argument("extra", nargs="*", help="extra Lightning CLI overrides after --, e.g. -- --data.decoder pyav")
