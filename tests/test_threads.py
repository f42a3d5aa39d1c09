"""CpuThreads: on CPU, torch leaves one core to each data worker, through a real Trainer fit."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from videonorm.models import ModelSpec
from videonorm.train.module import VideoClassifier
from videonorm.train.threads import CpuThreads


class _Clips(pl.LightningDataModule):
    def __init__(self, num_workers: int) -> None:
        super().__init__()
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(3)
        clips = [{"video": torch.randn(3, 8, 64, 64, generator=g) + i % 3, "label": torch.tensor(i % 3),
                  "index": torch.tensor(i), "view": torch.tensor(0), "skipped": torch.tensor(0)} for i in range(4)]
        return DataLoader(clips, batch_size=2, num_workers=self.num_workers)


class _ThreadProbe(pl.Callback):
    def __init__(self) -> None:
        self.seen: set[int] = set()

    def on_train_batch_start(self, *args) -> None:
        self.seen.add(torch.get_num_threads())


@pytest.mark.parametrize(("workers", "omp", "enabled", "during"), [
    (1, None, True, 1),  # 2 threads - 1 worker
    (0, None, True, 2),  # no workers: nothing to make room for
    (1, "2", True, 2),  # the user (or Lightning's DDP launcher) chose
    (1, None, False, 2),
])
def test_cpu_threads_leave_cores_to_data_workers(tmp_path, monkeypatch, workers, omp, enabled, during):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probe = _ThreadProbe()
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[CpuThreads(enabled=enabled), probe], default_root_dir=tmp_path,
        )
        module = VideoClassifier(ModelSpec(norm="gn", norm_groups=4, depth=50, width=8, num_classes=3, dropout=0.0))
        trainer.fit(module, datamodule=_Clips(workers))
        assert probe.seen == {during}
        assert torch.get_num_threads() == 2  # restored after the fit
    finally:
        torch.set_num_threads(before)
