"""Accuracy metrics that count each video once across processes (torchmetrics ``Metric``s).

Lightning's DistributedSampler pads the last shard of a validation or test set by repeating the first items, so
with W processes up to W - 1 clips (or test views) are seen twice. Both metrics keep the first occurrence in rank
order: torchmetrics gathers their per-process keys (uneven lengths included) in rank order, and each metric drops
the later copies. This is the one place that rule lives.

* :class:`UniqueVideoAccuracy` (validation): one clip per video; top-1 / top-k over the unique videos.
* :class:`VideoLevelAccuracy` (test): several views per video; each video's class probabilities are averaged over
  its unique views, then top-1 / top-k over videos, the mean class accuracy and the confusion matrix. Only the
  keys travel in the all-gather: the per-view probabilities stay in CPU memory on their process, and the per-video
  sums travel in one all-reduce, so memory does not grow with the world size.

Keys are stored as int64; every process must see at least one batch (DistributedSampler's padding guarantees it
whenever the set is not empty).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix
from torchmetrics.utilities import dim_zero_cat


def first_occurrence(keys: Tensor) -> Tensor:
    """Boolean mask of the rows of ``keys`` (N,) or (N, K) that are the first of their value.

    Args:
        keys: int64 keys in gathering order.
    """
    if keys.ndim == 1:
        keys = keys[:, None]
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(inverse), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(inverse)), reduce="amin")
    mask = torch.zeros(len(inverse), dtype=torch.bool)
    mask[first] = True
    return mask


def _gathered(state: list[Tensor] | Tensor) -> Tensor:
    """A cat state as one int64 CPU tensor (a list before the sync, a tensor after it)."""
    if isinstance(state, list) and not state:
        return torch.zeros(0, dtype=torch.long)
    return dim_zero_cat(state).long().cpu()


class UniqueVideoAccuracy(Metric):
    """Top-1 and top-k accuracy over the videos seen, each video once across processes.

    Args:
        top_k: k of the second accuracy (5, or the number of classes when there are fewer).
    """

    full_state_update = False

    def __init__(self, top_k: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = top_k
        for name in ("index", "hit1", "hitk"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, label: Tensor, index: Tensor) -> None:
        """Args: logits (N, C), label (N,), index (N,) the video's row in its manifest."""
        top = logits.detach().topk(self.top_k, dim=1).indices  # (N, k)
        self.index.append(index.long())
        self.hit1.append((top[:, 0] == label).long())
        self.hitk.append((top == label[:, None]).any(dim=1).long())

    def compute(self) -> dict[str, float]:
        """``top1``, ``top5`` (fractions over unique videos) and ``videos`` (their count)."""
        index, hit1, hitk = (_gathered(s) for s in (self.index, self.hit1, self.hitk))
        keep = first_occurrence(index)
        videos = int(keep.sum())
        if videos == 0:
            return {"top1": float("nan"), "top5": float("nan"), "videos": 0.0}
        return {"top1": hit1[keep].double().mean().item(), "top5": hitk[keep].double().mean().item(),
                "videos": float(videos)}


class VideoLevelAccuracy(Metric):
    """Video-level top-1 / top-k from per-view class probabilities, each (video, view) once across processes.

    Args:
        num_classes: C.
        top_k: k of the second accuracy.
    """

    full_state_update = False

    def __init__(self, num_classes: int, top_k: int = 5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.top_k = num_classes, top_k
        for name in ("index", "view", "label"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="cat")  # rows per process, in rank order
        self._probs: list[Tensor] = []  # this process's (n, C) probabilities; never gathered

    def update(self, probs: Tensor, label: Tensor, index: Tensor, view: Tensor) -> None:
        """Args: probs (N, C) softmax of one view each, label (N,), index (N,) video row, view (N,) view index."""
        self.index.append(index.long())
        self.view.append(view.long())
        self.label.append(label.long())
        self.count += len(index)
        self._probs.append(probs.detach().float().cpu())

    def reset(self) -> None:
        super().reset()
        self._probs = []

    def compute(self) -> dict[str, float | Tensor]:
        """``top1``, ``top5`` (fractions over videos), ``mean_class_acc``, ``videos``, ``views_per_video`` (mean),
        ``clip_top1`` (per-view accuracy over unique views) and ``confusion``: (C, C) int64 video counts, row = true
        class, column = predicted (top-1).

        ``mean_class_acc`` is torchmetrics' macro accuracy: the mean over classes of their recall, counting the
        classes that occur as a label or as a prediction (a class predicted but absent from the labels counts 0).
        That is MMAction2's ``mean_class_accuracy`` (its confusion matrix spans the labels and predictions seen).
        """
        index, view, label = (_gathered(s) for s in (self.index, self.view, self.label))
        counts = self.count.reshape(-1).long().cpu()  # (W,) after the sync, (1,) without one
        rank = dist.get_rank() if counts.numel() > 1 else 0
        start = int(counts[:rank].sum())
        local = slice(start, start + int(counts[rank]))
        keep = first_occurrence(torch.stack([index, view], dim=1))[local]
        if not len(index):
            raise RuntimeError("test produced no predictions (empty test set?)")
        num_videos = int(index.max()) + 1
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, self.num_classes)
        mine = index[local][keep]
        sums = torch.zeros(num_videos, self.num_classes, dtype=torch.float64)
        sums.index_add_(0, mine, probs[keep].double())
        views = torch.bincount(mine, minlength=num_videos).double()
        clip_hits = (probs[keep].argmax(1) == label[local][keep]).sum().double().view(1)
        if counts.numel() > 1:  # per-video sums from every process: one all-reduce
            stacked = torch.cat([sums.flatten(), views, clip_hits]).to(self.device)
            dist.all_reduce(stacked)
            stacked = stacked.cpu()
            sums = stacked[: sums.numel()].view_as(sums)
            views, clip_hits = stacked[sums.numel() : -1], stacked[-1]
        labels = torch.full((num_videos,), -1, dtype=torch.long)
        first = first_occurrence(index)
        labels[index[first]] = label[first]  # a video's label from its first row (all its rows agree)
        present = views > 0
        mean_probs = sums[present] / views[present, None]  # (V, C)
        targets = labels[present]
        topk = mean_probs.topk(self.top_k, dim=1).indices  # (V, k)
        per_video = views[present]
        if per_video.min() != per_video.max():
            rank_zero_warn(f"test: videos have between {int(per_video.min())} and {int(per_video.max())} views "
                           "(some views missing?)")
        preds = topk[:, 0]
        return {
            "top1": (preds == targets).double().mean().item(),
            "top5": (topk == targets[:, None]).any(dim=1).double().mean().item(),
            "mean_class_acc": multiclass_accuracy(preds, targets, self.num_classes, average="macro").item(),
            "confusion": multiclass_confusion_matrix(preds, targets, self.num_classes),
            "videos": float(present.sum()),
            "views_per_video": per_video.mean().item(),
            "clip_top1": (clip_hits.sum() / views.sum()).item(),
        }
