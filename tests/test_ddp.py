"""Two-process DDP on CPU (gloo) through the real CLI: per-device batches, disjoint shards, per-device BN
statistics, and validation and video-level test metrics that count each video once although the sampler pads.

Each run is ``python -m videonorm ...`` in a subprocess (Lightning's DDP launcher re-runs that command for
rank 1); ``tests/ddp_probe.py`` makes every process write what it saw to a JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.videos import make_dataset

TESTS = Path(__file__).resolve().parent
DEMO = TESTS.parent / "videonorm" / "configs" / "demo"
TRAIN_VIDEOS, BATCH, TEST_VIDEOS, TEST_CROPS = 8, 2, 3, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    info = make_dataset(root, num_classes=2, per_class=TRAIN_VIDEOS // 2, num_frames=24)
    # an odd number of test videos: 3 videos x 3 crops = 9 views, which DistributedSampler pads to 10
    lines = info["manifests"]["val"].read_text().splitlines()
    (root / "test.txt").write_text("\n".join(lines[:2] + lines[-1:]) + "\n")
    return root


def _videonorm(subcommand: str, norm: str, dataset: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    probe = out / "probe.yaml"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("trainer:\n  callbacks:\n    - class_path: ddp_probe.Probe\n"
                     f"      init_args:\n        out_dir: {out}\n")
    accelerator = "gpu" if torch.cuda.device_count() >= 2 else "cpu"
    cmd = [
        sys.executable, "-m", "videonorm", subcommand,
        "--config", str(DEMO / "b4_8x2.yaml"), "--config", str(probe),
        "--model.net.norm", norm,
        "--data.root", str(dataset), "--data.batch_size", str(BATCH), "--data.test_manifest", "test.txt",
        "--trainer.accelerator", accelerator, "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out / "runs"), "--trainer.check_val_every_n_epoch", "1",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _records(out: Path, stage: str) -> list[dict]:
    return [json.loads((out / f"rank{r}_{stage}.json").read_text()) for r in range(2)]


def test_ddp_shards_batches_bn_stats_and_test_dedup(dataset, tmp_path):
    out = tmp_path / "bn"
    # validate on the 3 test videos: DistributedSampler pads them to 4 clips, 2 per rank
    _videonorm("fit", "bn", dataset, out, "--trainer.max_epochs", "1", "--precise_bn.num_batches", "1",
               "--data.val_manifest", "test.txt")
    fit = _records(out, "fit")
    assert [r["world_size"] for r in fit] == [2, 2]
    # each process: batch_size clips per step, TRAIN_VIDEOS / 2 clips per epoch
    for r in fit:
        assert r["train_batch_sizes"] == [BATCH] * (TRAIN_VIDEOS // (2 * BATCH))
    shards = [set(r["train_indices"]) for r in fit]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(TRAIN_VIDEOS))
    # BN statistics are per device: after one step each process's running mean saw only its own clips
    assert fit[0]["bn_type"] == "BatchNorm3d"
    assert not torch.allclose(torch.tensor(fit[0]["bn_running_mean"]), torch.tensor(fit[1]["bn_running_mean"]))
    # ... until precise BN, before the last validation, averaged its statistics over both processes
    torch.testing.assert_close(torch.tensor(fit[0]["bn_final_running_mean"]),
                               torch.tensor(fit[1]["bn_final_running_mean"]))
    # validation: one padded duplicate clip, counted once; the same accuracy on both ranks, in thirds
    val_indices = fit[0]["val_indices"] + fit[1]["val_indices"]
    assert len(val_indices) == TEST_VIDEOS + 1 and len(set(val_indices)) == TEST_VIDEOS
    for r in fit:
        assert r["metrics"]["val/videos"] == TEST_VIDEOS
        assert r["metrics"]["val/top1"] == fit[0]["metrics"]["val/top1"]
        assert TEST_VIDEOS * r["metrics"]["val/top1"] == pytest.approx(round(TEST_VIDEOS * r["metrics"]["val/top1"]))
        assert 0.0 <= r["metrics"]["val/top1"] <= r["metrics"]["val/top5"] <= 1.0

    _videonorm("test", "bn", dataset, out, "--ckpt_path", "last", "--data.test_clips", "1",
               "--data.test_crops", str(TEST_CROPS))
    test = _records(out, "test")
    keys = [tuple(k) for r in test for k in r["test_keys"]]
    assert len(keys) == TEST_VIDEOS * TEST_CROPS + 1  # the sampler padded one view ...
    assert len(set(keys)) == TEST_VIDEOS * TEST_CROPS  # ... which duplicates one already seen
    for r in test:  # ... and is counted once: 3 videos of exactly 3 views, the same on both ranks
        assert r["metrics"]["test/videos"] == TEST_VIDEOS
        assert r["metrics"]["test/views_per_video"] == TEST_CROPS
        assert r["metrics"]["test/top1"] == test[0]["metrics"]["test/top1"]
        assert 0.0 <= r["metrics"]["test/top1"] <= r["metrics"]["test/top5"] <= 1.0


def test_ddp_syncbn_statistics_agree(dataset, tmp_path):
    out = tmp_path / "syncbn"
    _videonorm("fit", "syncbn", dataset, out, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0")
    fit = _records(out, "fit")
    assert fit[0]["bn_type"] == fit[1]["bn_type"] != "BatchNorm3d"
    torch.testing.assert_close(torch.tensor(fit[0]["bn_running_mean"]), torch.tensor(fit[1]["bn_running_mean"]))
    torch.testing.assert_close(torch.tensor(fit[0]["bn_running_var"]), torch.tensor(fit[1]["bn_running_var"]))
