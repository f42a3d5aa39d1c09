"""Progress on the terminal: Lightning's bar without ``v_num``, and info lines that do not break the bar."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities import rank_zero_info
from tqdm import tqdm


def info_line(message: str) -> None:
    """``rank_zero_info`` on a line of its own: a progress bar drawn on the terminal is cleared first, redrawn after."""
    with tqdm.external_write_mode():
        rank_zero_info(message)


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num`` (the loggers' versions: a fragment of the W&B id, or
    ``None`` for the local record, beside the metrics)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
