"""A real kill: ``videonorm fit`` as a program, SIGKILLed mid-fit (with its DataLoader worker and wandb-core, as a
scheduler kills a job), then resumed; and what a user sees on the terminal of such a fit.

Issue 13.8: the killed part's W&B history used to be lost (a 7-byte .wandb file) and compare showed "? (?)". The
run's local record keeps every row logged before the kill; compare reads it.
Issue 16.6: no ``v_num`` in the progress bar, the precise-BN message on a line of its own, one W&B sync hint,
no FutureWarning of a dependency.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.videos import make_dataset
from tests.wandb_files import find_offline_runs, read_offline_run
from videonorm.cli import main as videonorm
from videonorm.record import RECORD_FILE
from videonorm.results.runs import load_runs

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "videonorm" / "configs" / "demo" / "b4_8x2.yaml"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # W&B as a user sees it
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", WANDB_MODE="offline", PYTHONWARNINGS="default")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        env[var] = str(tmp_path / "wandb_home")
    return env


def _fit(data: Path, runs: Path, *extra: str) -> list[str]:
    # precise BN over 100 batches of a 3-batch loader: it says so, mid-epoch, while the progress bar is drawn
    return [sys.executable, "-m", "videonorm", "fit", "--config", str(CONFIG), "--data.root", str(data),
            "--trainer.default_root_dir", str(runs), "--precise_bn.num_batches", "100",
            "--trainer.check_val_every_n_epoch", "1", *extra]


def _val_rows(record: Path) -> list[dict]:
    if not record.is_file():
        return []
    rows = []
    for line in record.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        if entry.get("kind") == "row" and "val/top1" in entry["values"]:
            rows.append(entry["values"])
    return rows


def _check_terminal(output: str) -> None:
    """What 16.6 asks of a fit's terminal output."""
    assert "v_num" not in output
    assert "FutureWarning" not in output
    i = output.index("PreciseBN: the train loader has 3 batches")
    before = ANSI.sub("", output[:i].rsplit("\n", 1)[-1]).split("\r")[-1]
    assert before.strip() == "", repr(output[i - 200: i])  # nothing visible before it on its line


@pytest.fixture
def data(tmp_path) -> Path:
    make_dataset(tmp_path / "data", num_classes=3, per_class=4, num_frames=24)
    return tmp_path / "data"


def test_killed_fit_keeps_its_history_and_resumes(data, tmp_path):
    runs, env = tmp_path / "runs", _env(tmp_path)
    run_dir = runs / "demo" / "i3d_r14-bn-w16-b4-8x2"
    record = run_dir / RECORD_FILE
    log = tmp_path / "killed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(_fit(data, runs, "--trainer.max_epochs", "50"), stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # its own process group: the kill takes all of it
        try:
            deadline = time.monotonic() + 300
            while len(_val_rows(record)) < 2 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None and len(_val_rows(record)) >= 2, log.read_text(errors="replace")[-3000:]
            time.sleep(2.5)  # W&B's offline file is flushed every second (it used to be every 15 s)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _check_terminal(log.read_text(errors="replace"))

    # the record kept every validation logged before the kill; Lightning's own best score in last.ckpt agrees
    killed_rows = _val_rows(record)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (best_state,) = [v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint") and "val/top1" in k]
    upto_ckpt = [r["val/top1"] for r in killed_rows if r["epoch"] <= last["epoch"]]
    assert len(upto_ckpt) == last["epoch"] + 1 and len(killed_rows) >= last["epoch"] + 1
    assert max(upto_ckpt) == pytest.approx(float(best_state["best_model_score"]))
    (killed_part,) = find_offline_runs(run_dir)
    assert killed_part.stat().st_size > 7  # not a header-only W&B file any more
    assert any("val/top1" in row for row in read_offline_run(killed_part).history)

    # compare reads the killed run from its record: its best epoch, marked as unfinished
    out = tmp_path / "out"
    assert videonorm(["compare", str(runs), "--out", str(out), "--metric", "val"]) == 0
    md = (out / "compare.md").read_text()
    best = max(killed_rows, key=lambda r: r["val/top1"])
    assert f"| BN | {100 * best['val/top1']:.1f} / {100 * best['val/top5']:.1f} †" in md
    assert f"{record}: no end entry: the run is still running or was killed" in md

    # resumed as a user would; this part is printed in full, W&B's own lines included
    epochs = last["epoch"] + 2
    done = subprocess.run(_fit(data, runs, "--trainer.max_epochs", str(epochs), "--ckpt_path", "last"), env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    _check_terminal(done.stdout + done.stderr)
    hints = [line for line in output.splitlines() if "wandb sync" in line]
    assert hints == [f"W&B run saved offline; upload it (all its parts) with: wandb sync {run_dir / 'wandb'}"]

    (run,), errors = load_runs([str(runs)])
    assert errors == [] and run.complete and run.problems == []
    val_epochs = [row["epoch"] for row in run.history if "val/top1" in row]
    assert sorted(set(val_epochs)) == list(range(epochs))  # the whole history: killed part + resumed part
    assert [row["val/top1"] for row in run.history if "val/top1" in row][: len(killed_rows)] == [
        r["val/top1"] for r in killed_rows]

    # the README's sync command for a whole runs/ tree picks up both W&B parts of the run (no upload: --dry-run)
    parts = find_offline_runs(run_dir)
    assert len(parts) == 2
    listed = subprocess.run(["bash", "-c", "wandb sync --dry-run $(find runs -path '*/wandb/offline-run-*' "
                                           "-name 'run-*.wandb' -size +7c)"],
                            cwd=tmp_path, env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
                            capture_output=True, text=True, timeout=120)
    text = listed.stdout + listed.stderr
    assert "Would sync 2 run(s)" in text, text
    assert all(str(p.relative_to(tmp_path)) in text for p in parts), text


def test_dependency_warnings_still_reach_library_users(tmp_path):
    """The FutureWarning that `videonorm fit` no longer prints (see the killed fit's output above, where Python shows
    every warning) is real, and a program importing the library still sees it: the filter is the entry point's."""
    library = subprocess.run([sys.executable, "-c", "import videonorm.models.i3d"], env=_env(tmp_path),
                             capture_output=True, text=True, timeout=300)
    assert "FutureWarning: `torch.jit.script` is deprecated" in library.stderr
