"""The learning-rate schedule, in (fractional) epochs, so that it holds for any total batch size."""

from __future__ import annotations

import math
from collections.abc import Sequence


class EpochSchedule:
    """Learning-rate factor as a function of the optimizer step, defined in (fractional) epochs.

    ``factor(step) = warmup(e) * main(e)`` with ``e = step / steps_per_epoch``: ``main`` is a step schedule
    (``gamma ** (number of lr_steps <= e)``) or a cosine over ``max_epochs``; ``warmup`` rises linearly from
    ``warmup_start_factor`` to 1 over ``warmup_epochs``. The optimizer step count lives in the checkpoint
    (``LambdaLR.last_epoch``), the curve comes from the config: a resumed run with the same config continues
    on exactly the same curve, and one resumed with a longer ``max_epochs`` follows the longer curve.

    Args:
        steps_per_epoch: Optimizer steps per epoch.
        schedule: ``"step"`` or ``"cosine"``.
        lr_steps: Epochs at which the step schedule multiplies the lr by ``lr_gamma``.
        lr_gamma: Step-schedule factor.
        max_epochs: Length of the cosine.
        warmup_epochs: Linear warmup length in epochs (0: none).
        warmup_start_factor: Warmup's initial factor.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        schedule: str = "step",
        lr_steps: Sequence[float] = (),
        lr_gamma: float = 0.1,
        max_epochs: float | None = None,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.1,
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if schedule == "cosine" and not (max_epochs and max_epochs > 0):
            raise ValueError("schedule='cosine' needs trainer.max_epochs > 0 (the cosine's length)")
        self.steps_per_epoch = int(steps_per_epoch)
        self.schedule = schedule
        self.lr_steps = sorted(float(e) for e in lr_steps)
        self.lr_gamma = float(lr_gamma)
        self.max_epochs = float(max_epochs) if max_epochs else None
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_start_factor = float(warmup_start_factor)

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch
        if self.schedule == "cosine":
            assert self.max_epochs is not None
            factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.max_epochs) / self.max_epochs))
        else:
            factor = self.lr_gamma ** sum(epoch >= e for e in self.lr_steps)
        if epoch < self.warmup_epochs:
            factor *= self.warmup_start_factor + (1.0 - self.warmup_start_factor) * epoch / self.warmup_epochs
        return factor
