"""DataWait: the training loop's wait for data, measured through a real Trainer fit."""

from __future__ import annotations

import time

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from videonorm.models import ModelSpec
from videonorm.train.data_wait import DataWait
from videonorm.train.module import VideoClassifier

TINY = dict(depth=50, width=8, norm="gn", norm_groups=4, num_classes=3, dropout=0.0)


class _Clips(Dataset):
    """uint8 clips in the datamodule's format; each item takes ``delay`` seconds to make (a slow decoder)."""

    def __init__(self, n: int, delay: float) -> None:
        self.n, self.delay = n, delay

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        time.sleep(self.delay)
        g = torch.Generator().manual_seed(i)
        return {"video": torch.randint(0, 256, (3, 8, 32, 32), dtype=torch.uint8, generator=g),
                "label": torch.tensor(i % 3), "index": torch.tensor(i), "view": torch.tensor(0),
                "skipped": torch.tensor(0)}


def _fit(tmp_path, delay: float, epochs: int = 2) -> tuple[DataWait, pl.Trainer]:
    pl.seed_everything(0)
    wait = DataWait(warn_above=0.5)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[wait])
    trainer.fit(VideoClassifier(ModelSpec(**TINY)), DataLoader(_Clips(8, delay), batch_size=2))
    return wait, trainer


def test_wait_fraction_and_clips_per_second_are_logged_per_epoch(tmp_path):
    wait, trainer = _fit(tmp_path, delay=0.0)
    assert len(wait.history) == 2
    for epoch in wait.history:
        assert 0.0 <= epoch["wait_fraction"] < 1.0 and epoch["clips_per_s"] > 0
    assert trainer.callback_metrics["data/wait_fraction"] == pytest.approx(wait.history[-1]["wait_fraction"])
    assert trainer.callback_metrics["data/clips_per_s"] == pytest.approx(wait.history[-1]["clips_per_s"], rel=1e-6)


def test_a_slow_loader_is_measured_and_warned_about_once(tmp_path):
    # 2 clips of 0.15 s each per batch: 0.3 s of waiting per step of a tiny model (tens of ms)
    with pytest.warns(UserWarning, match=r"waited for data \d+% .*data.num_workers.*repeat_aug") as record:
        wait, _ = _fit(tmp_path, delay=0.15)
    assert sum("waited for data" in str(w.message) for w in record) == 1  # once, not per epoch
    assert all(epoch["wait_fraction"] > 0.5 for epoch in wait.history)
    fast, _ = _fit(tmp_path, delay=0.0)
    assert wait.history[-1]["clips_per_s"] < fast.history[-1]["clips_per_s"]
