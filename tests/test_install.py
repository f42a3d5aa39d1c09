"""The built wheel, installed (not editable) into a fresh venv and used from a directory outside the checkout: every
config of the checkout is in it and found by name, a fit and a predict run on real tiny videos.

The fresh venv gets the wheel alone (``pip install --no-deps``); its dependencies come from the test's own
environment through a ``.pth`` line (a plain path: the checkout's editable hook in that environment is not run), so
the test does not download or copy gigabytes of torch. ``videonorm`` itself must come from the wheel, and the test
checks that it does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.videos import make_dataset, write_not_a_video

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout on the path
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout installed in it; returns its bin directory."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the checkout's files")
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # the files a clone would have (uncommitted edits included), no local build leftovers
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    for rel in listed:
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
          str(source)], cwd=tmp)
    (wheel,) = dist.glob("videonorm-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)
    Path(purelib.stdout.strip(), "test_env_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_the_wheel_runs_the_shipped_configs_and_predict_outside_the_checkout(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(installed / "python"), "-c", "import videonorm; print(videonorm.__file__)"], cwd=elsewhere)
    assert str(installed.parent) in where.stdout and str(REPO) not in where.stdout  # the wheel, not the checkout
    printed = _run([str(installed / "videonorm"), "fit", "--config", "demo/b4_8x2", "--model.net.norm", "gn",
                    "--data.root", str(elsewhere / "data"), "--print_config"], cwd=elsewhere).stdout
    assert "depth: 14" in printed and "batch_size: 4" in printed and "norm: gn" in printed
    assert "base: null" in printed  # the printed config is complete on its own
    data = elsewhere / "data"
    make_dataset(data, num_classes=2, per_class=2, num_frames=24)
    _run([str(installed / "videonorm"), "fit", "--config", "demo/b4_8x2", "--data.root", str(data),
          "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--precise_bn.num_batches", "1",
          "--trainer.default_root_dir", "runs"], cwd=elsewhere)
    (ckpt,) = (elsewhere / "runs" / "demo").glob("*/checkpoints/last.ckpt")
    video = data / "videos" / "val" / "class_1" / "000.mp4"
    junk = write_not_a_video(elsewhere / "notes.mp4")
    out = _run([str(installed / "videonorm"), "predict", str(ckpt), str(video), str(junk), "--out", "preds",
                "--workers", "0"], cwd=elsewhere).stdout
    assert "1 video(s) predicted" in out and "not decodable" in out
    rows = (elsewhere / "preds" / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("path,") and len(rows) == 3
    assert any(row.startswith(str(video)) and "class_" in row for row in rows[1:])


def test_every_config_of_the_checkout_is_in_the_wheel_and_resolves_by_name(installed, tmp_path):
    """configs/ at any depth (kinetics400/extra/ too): `--config NAME` finds each in the installed package."""
    configs = REPO / "videonorm" / "configs"
    names = sorted(p.relative_to(configs).as_posix() for p in configs.rglob("*.yaml"))
    assert "kinetics400/extra/i3d_r50_gn_b2_32x2.yaml" in names  # the tree has nested folders
    code = ("import json, sys; from videonorm.train.cli import resolve_config; "
            "print(json.dumps({n: resolve_config(n.removesuffix('.yaml')) for n in json.loads(sys.argv[1])}))")
    out = _run([str(installed / "python"), "-c", code, json.dumps(names)], cwd=tmp_path).stdout
    resolved = json.loads(out.strip().splitlines()[-1])
    assert sorted(resolved) == names
    for name, path in resolved.items():
        assert Path(path).is_file() and Path(path).is_relative_to(installed.parent), (name, path)  # the wheel's copy
        assert Path(path).read_bytes() == (configs / name).read_bytes(), name
