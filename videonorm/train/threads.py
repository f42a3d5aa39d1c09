"""CPU threads beside data workers: torch leaves one core to each DataLoader worker on CPU."""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.utilities import rank_zero_info


class CpuThreads(pl.Callback):
    """On CPU, leave one core to each DataLoader worker: torch's threads = its current count - workers (>= 1).

    torch starts as many intra-op threads as the process may use cores. Decoding workers need cores too, and
    torch's OpenMP threads spin-wait at every parallel region, so sharing cores with a worker costs more than
    its share: a 4-epoch demo fit on the 2-core dev box with 1 worker took 22.8 s with 2 torch threads and
    17.3 s with 1. Nothing is changed on GPUs (the main process there mostly waits), when the loader has no
    workers, or when ``OMP_NUM_THREADS`` is set: by the user, or by Lightning's DDP launchers, which already
    divide the cores among a node's processes. The previous count is restored at teardown.

    Args:
        enabled: ``False`` leaves torch's thread count alone.
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self._restore: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        workers = getattr(trainer.datamodule, "num_workers", 0) or 0
        if (not self.enabled or workers == 0 or not isinstance(trainer.accelerator, CPUAccelerator)
                or os.environ.get("OMP_NUM_THREADS")):
            return
        self._restore = torch.get_num_threads()
        threads = max(1, self._restore - workers)
        torch.set_num_threads(threads)
        rank_zero_info(f"CpuThreads: {threads} torch thread(s) beside {workers} data worker(s) on CPU")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._restore is not None:
            torch.set_num_threads(self._restore)
            self._restore = None

