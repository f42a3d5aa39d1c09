"""Precise BN: BN running statistics recomputed, before each validation of a fit, for the current weights.

BN's running statistics are an exponential average of per-iteration batch statistics taken while the weights
were still changing; precise BN replaces them, before each validation, with statistics of the current weights
over N training batches on every device: the pooled mean E[x] and variance E[x^2] - E[x]^2 of everything each BN
layer saw, as the Non-local code computes them (lib/utils/bn_helper.py: per batch and GPU it adds up mean and
var + mean^2, then var = E[x^2] - E[x]^2). PySlowFast has the same option off by default
(``BN.USE_PRECISE_STATS = False``) and uses 200 batches when it is turned on (``BN.NUM_BATCHES_PRECISE``), the
number taken here; this suite turns it on for every run. Averaging per-batch variances instead (fvcore's
``update_bn_stats``, which PySlowFast calls) leaves out how the batch means vary, so it underestimates the
population variance, the more the smaller the batch: the regime this suite studies.

It touches only the layers whose running statistics can change (BN, SyncBN, Batch Renorm, and EvoNorm-B0's
running variance: ``bn_modules``); frozen BN and the batch-independent norms (GN, LN, IN, FRN, EvoNorm-S0) have
nothing to recompute, so for them the callback says so once and does nothing. That is why the CLI adds it to every run (``--precise_bn.num_batches 0`` turns it off).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from videonorm.models.norm import bn_modules
from videonorm.train.progress import info_line


@torch.no_grad()
def update_bn_stats(
    model: nn.Module,
    inputs: Iterable[Tensor],
    num_batches: int,
    forward: Callable[[Tensor], object] | None = None,
    average: Callable[[Tensor], Tensor] | None = None,
) -> int:
    """Set running statistics (``bn_modules``) to the pooled mean and variance of their inputs over ``num_batches``
    batches.

    The model runs in train mode (frozen BN layers keep their own semantics) without gradients, so each BN
    layer sees the activations training gives it; its training flag is restored afterwards. Layers with a
    ``plain_statistics()`` context (Batch Renorm) normalize as plain BN during these passes. Each layer's
    input is summed per channel over (N, T, H, W) in float64: ``running_mean = E[x]`` and ``running_var =
    E[x^2] - E[x]^2`` over every element of every batch on every process (a population variance, as the
    Non-local code's; batches of different sizes count by their elements). EvoNorm-B0 keeps a running variance
    only, of the same per-channel quantity; it gets the pooled variance times n / (n - 1) (n: elements per
    channel on one process), the unbiased form its own running update keeps.

    Args:
        model: Model holding the layers.
        inputs: Iterable of model inputs, e.g. (N, 3, T, H, W) clips already on the model's device.
        num_batches: Number of batches to use (fewer if ``inputs`` runs out).
        forward: Called on each input (default ``model``).
        average: Averages a tensor across processes (default: identity, one process); applied to the sums
            and to the element counts, so the ratio is the pooled statistic of all processes.

    Returns:
        The number of batches used.
    """
    layers = bn_modules(model)
    if not layers:
        return 0
    forward = forward or model
    was_training = model.training
    # per layer: [sum of x, sum of x^2, element count] per channel, float64 against cancellation in E[x^2]-E[x]^2
    sums = [[torch.zeros(bn.num_features, dtype=torch.float64, device=bn.running_var.device) for _ in range(3)]
            for bn in layers]
    # the passes update the buffers with their momentum on the way: all of them go back if the update fails, the
    # step counts (BN's num_batches_tracked) in any case
    saved = [{name: b.clone() for name, b in bn.named_buffers(recurse=False)} for bn in layers]

    def restore(names: Iterable[str]) -> None:
        for bn, buffers in zip(layers, saved):
            for name in set(names) & set(buffers):
                getattr(bn, name).copy_(buffers[name])

    def accumulate(acc: list[Tensor]) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]  # (N, C, T, H, W)
            dims = [0, *range(2, x.dim())]
            var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
            count = x.numel() // x.shape[1]
            acc[0] += mean.double() * count
            acc[1] += (var.double() + mean.double() ** 2) * count
            acc[2] += count

        return hook

    handles = [bn.register_forward_pre_hook(accumulate(acc)) for bn, acc in zip(layers, sums)]
    used = 0
    model.train()
    try:
        with contextlib.ExitStack() as plain:
            for bn in layers:
                if hasattr(bn, "plain_statistics"):  # Batch Renorm: r = 1, d = 0 while its statistics are rewritten
                    plain.enter_context(bn.plain_statistics())
            for batch in itertools.islice(inputs, num_batches):
                forward(batch)
                used += 1
        if used == 0:
            raise ValueError("precise BN: the data gave no batches")
    except BaseException:
        restore(("running_mean", "running_var", "num_batches_tracked"))
        raise
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    average = average or (lambda t: t)
    for bn, (sum_x, sum_x2, count) in zip(layers, sums):
        count = average(count)
        mean = average(sum_x) / count
        var = (average(sum_x2) / count - mean**2).clamp(min=0)
        # copy_ into the existing buffers (never rebind): they stay ordinary tensors owned by the module
        if getattr(bn, "running_mean", None) is not None:
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        else:  # EvoNorm-B0: its running variance is unbiased, as its own update keeps it
            bn.running_var.copy_(var * count / (count - 1).clamp(min=1))
    restore(("num_batches_tracked",))
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
    """Recompute running statistics (BN's, EvoNorm-B0's variance) on ``num_batches`` training batches before each
    validation of a fit.

    Skipped during the sanity check and in ``validate``/``test`` (stats come from the checkpoint there).
    A no-op, announced once, for models without running statistics to recompute (GN, LN, IN, FRN, EvoNorm-S0,
    frozen BN).

    Args:
        num_batches: Training batches per device to average over (PySlowFast's when on: 200); 0 disables.
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
            info_line(message)  # it comes mid-epoch, while the progress bar is drawn
            self._announced = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.num_batches == 0:
            return
        if not bn_modules(pl_module):
            self._say_once("PreciseBN: the model has no trainable BatchNorm or EvoNorm-B0 "
                           "(GN/LN/IN/FRN/EvoNorm-S0/frozen BN): nothing to do.")
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

