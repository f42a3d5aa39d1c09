"""Training callbacks: precise BN, and CPU threads beside data workers.

BN's running statistics are an exponential average of per-iteration batch statistics taken while the weights
were still changing; precise BN (PySlowFast's default, 200 batches) replaces them, before each validation,
with the plain average of per-batch statistics of the current weights over N training batches, averaged
across devices. The computation follows fvcore's ``update_bn_stats``: set each BN's momentum to 1 so its
running buffers hold the last batch's mean and unbiased variance, and average those over the batches.

It touches only BN layers that track running statistics and can change (BN, SyncBN); frozen BN and the
batch-independent norms (GN, LN, IN) have nothing to recompute, so for them the callback says so once and
does nothing. That is why the CLI adds it to every run (``--precise_bn.num_batches 0`` turns it off).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import DataLoader

from videonorm.models.norm import bn_modules


@torch.no_grad()
def update_bn_stats(
    model: nn.Module,
    inputs: Iterable[Tensor],
    num_batches: int,
    forward: Callable[[Tensor], object] | None = None,
    average: Callable[[Tensor], Tensor] | None = None,
) -> int:
    """Set BN running statistics to the average of per-batch statistics over ``num_batches`` batches.

    The model runs in train mode (frozen BN layers keep their own semantics) without gradients; its
    training flag is restored afterwards.

    Args:
        model: Model holding the BN layers.
        inputs: Iterable of model inputs, e.g. (N, 3, T, H, W) clips already on the model's device.
        num_batches: Number of batches to average over (fewer if ``inputs`` runs out).
        forward: Called on each input (default ``model``).
        average: Averages a tensor across processes (default: identity, one process).

    Returns:
        The number of batches used.
    """
    layers = bn_modules(model)
    if not layers:
        return 0
    forward = forward or model
    was_training = model.training
    momenta = [bn.momentum for bn in layers]
    mean_sums = [torch.zeros_like(bn.running_mean) for bn in layers]
    var_sums = [torch.zeros_like(bn.running_var) for bn in layers]
    used = 0
    model.train()
    try:
        for bn in layers:
            bn.momentum = 1.0  # running buffers := this batch's statistics
        for batch in itertools.islice(inputs, num_batches):
            forward(batch)
            used += 1
            for i, bn in enumerate(layers):
                mean_sums[i] += bn.running_mean
                var_sums[i] += bn.running_var
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        model.train(was_training)
    if used == 0:
        raise ValueError("precise BN: the data gave no batches")
    average = average or (lambda t: t)
    for bn, mean_sum, var_sum in zip(layers, mean_sums, var_sums):
        # copy_ into the existing buffers (never rebind): they stay ordinary tensors owned by the module
        bn.running_mean.copy_(average(mean_sum / used))
        bn.running_var.copy_(average(var_sum / used))
    return used


def _separate_iteration(loader: object) -> object:
    """A DataLoader that iterates like ``loader`` without touching its persistent worker iterator.

    With ``persistent_workers``, ``iter(loader)`` resets the loader's one live iterator, which would disturb
    the training epoch when validation runs mid-epoch. Same dataset, batch sampler (and so the same
    distributed shard), collate and worker seeding; fresh workers that end with the pass.
    """
    if not isinstance(loader, DataLoader) or not loader.persistent_workers:
        return loader
    return DataLoader(
        loader.dataset,
        batch_sampler=loader.batch_sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        persistent_workers=False,
    )


class PreciseBN(pl.Callback):
    """Recompute BN running statistics on ``num_batches`` training batches before each validation of a fit.

    Skipped during the sanity check and in ``validate``/``test`` (stats come from the checkpoint there).
    A no-op, announced once, for models without trainable BN (GN, LN, IN, frozen BN).

    Args:
        num_batches: Training batches per device to average over (PySlowFast: 200); 0 disables.
        input_key: Key of the clip tensor in the batch dicts.
    """

    def __init__(self, num_batches: int = 200, input_key: str = "video") -> None:
        super().__init__()
        if num_batches < 0:
            raise ValueError(f"num_batches must be >= 0, got {num_batches}")
        self.num_batches = num_batches
        self.input_key = input_key
        self._announced = False
        self.last_num_batches = 0  # batches used by the last update (0: none)

    def _say_once(self, message: str) -> None:
        if not self._announced:
            rank_zero_info(message)
            self._announced = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.num_batches == 0:
            return
        if not bn_modules(pl_module):
            self._say_once("PreciseBN: the model has no trainable BatchNorm (GN/LN/IN/frozen BN): nothing to do.")
            return
        loader = trainer.train_dataloader
        if loader is None:
            return
        loader = _separate_iteration(loader)

        def clips() -> Iterable[Tensor]:
            for batch in loader:
                batch = trainer.strategy.batch_to_device(batch)
                yield batch[self.input_key] if isinstance(batch, dict) else batch[0]

        def forward(video: Tensor) -> None:
            with trainer.precision_plugin.forward_context():
                pl_module(video)

        def average(t: Tensor) -> Tensor:
            return trainer.strategy.reduce(t, reduce_op="mean")

        # validation runs under inference mode; BN buffers must stay ordinary tensors for training
        with torch.inference_mode(False):
            used = update_bn_stats(pl_module, clips(), self.num_batches, forward=forward, average=average)
        self.last_num_batches = used
        if used < self.num_batches:
            self._say_once(f"PreciseBN: the train loader has {used} batches, fewer than num_batches={self.num_batches}")


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
