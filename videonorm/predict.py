"""``videonorm predict``: the classes of video files, from a trained checkpoint, the way ``test`` scores them.

    videonorm predict runs/demo/i3d_r14-gn-g4-w16-b4-8x2/checkpoints/last.ckpt clip1.mp4 clip2.mp4
    videonorm predict CKPT --manifest data/k700/test.txt --out k700_test      # e.g. an unlabelled test split

Each video is cut into the checkpoint's test views (``clips`` temporal clips x ``crops`` spatial crops, as
``videonorm test``; ``--clips``/``--crops`` change them), the softmax is averaged over the views, and the top-5
classes with their probabilities are written to ``OUT/predictions.csv`` (one row per video: ``top1_class``,
``top1_prob`` ... ``top5_prob``) and ``OUT/predictions.json`` (plus the settings used), then printed as a short
table. A manifest is read with :func:`videonorm.data.manifest.read_manifest` (``labelled=False``: lines may be a
path alone; when they carry labels, the label is written beside the prediction and top-1/top-5 are printed).

A file that cannot be decoded is listed with the reason (in both files and on screen) and the others go on; the
exit status is 1 only when no video could be predicted (then nothing is written, and one line says why).

What the checkpoint must hold besides the weights (class names, test clip geometry, decoder) is stored by the
``CheckpointMetadata`` callback of every ``videonorm fit``; a checkpoint without it is refused in one line.
Checkpoints are loaded with ``weights_only=True`` (no code runs from them).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from videonorm import metric_keys as keys
from videonorm.data.dataset import ClipSpec
from videonorm.data.manifest import ManifestError, read_manifest
from videonorm.data.video import VideoDecodeError, read_clip
from videonorm.files import csv_text, write_text_atomic
from videonorm.models.spec import lift_legacy

SHOW = 20  # rows printed; all of them are in the files


class PredictError(Exception):
    """Bad input to ``videonorm predict`` (checkpoint, manifest, options); the message says what to do."""


@dataclasses.dataclass
class Checkpoint:
    """A trained model and what predicting with it needs."""

    model: torch.nn.Module
    classes: list[str]
    clip: ClipSpec
    decoder: str


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a ``videonorm fit`` checkpoint (weights only: nothing in the file is executed).

    Args:
        path: ``last.ckpt`` / ``best.ckpt`` (or any checkpoint of a ``VideoClassifier``).

    Raises:
        PredictError: not a readable checkpoint of this model, or no class names / clip settings for it.
    """
    from videonorm.train.module import VideoClassifier  # imported here: `videonorm predict --help` stays fast

    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        # the constructor's arguments only (LightningCLI adds _instantiator); no 2D weights: the state dict follows
        names = set(inspect.signature(VideoClassifier).parameters) - {"pretrained_2d"}
        hparams = {k: v for k, v in lift_legacy(ckpt["hyper_parameters"]).items() if k in names}
        model = VideoClassifier(**hparams)
        model.load_state_dict(ckpt["state_dict"])
    except Exception as err:  # unpickling, missing keys, a state dict of another model
        raise PredictError(f"{path}: not a videonorm checkpoint ({type(err).__name__}: {err})") from None
    meta = ckpt.get("videonorm")
    if not meta:  # CheckpointMetadata stores it in every checkpoint the CLI saves
        raise PredictError(f"{path}: the checkpoint has no class names or clip settings (it was not saved by "
                           "`videonorm fit`, or by a version before they were stored); predict needs them")
    fields = {f.name for f in dataclasses.fields(ClipSpec)}
    clip = {k: v for k, v in meta["clip"].items() if k in fields}
    classes = list(meta["classes"])
    if len(classes) != model.net.num_classes:
        raise PredictError(f"{path}: {len(classes)} class names for a model with {model.net.num_classes} outputs")
    return Checkpoint(model.eval(), classes, ClipSpec(**clip), meta.get("decoder") or "pyav")


class _Views(Dataset):
    """One item per video: all its test views (V, 3, T, S, S) uint8, or the reason it cannot be decoded."""

    def __init__(self, paths: list[str], clip: ClipSpec, decoder: str):
        self.paths, self.clip, self.decoder = paths, clip, decoder
        self.transforms = clip.transforms("test")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        t, clips = self.clip.num_frames, self.clip.test_clips
        try:  # one open and one decode for all clips, the windows `videonorm test` reads: (clips * T, 3, H, W)
            frames, _ = read_clip(self.paths[i], self.clip.indices("test"), self.decoder)
        except VideoDecodeError as err:
            return {"index": i, "error": err.reason}
        views = [crop(c) for c in frames.view(clips, t, *frames.shape[1:]) for crop in self.transforms]
        return {"index": i, "views": torch.stack(views), "error": ""}


@torch.inference_mode()
def predict(ckpt: Checkpoint, paths: list[str], device: torch.device, batch_size: int = 16, workers: int = 0,
            top_k: int = 5) -> list[dict[str, Any]]:
    """Per video: the top classes (index, name, probability) from the softmax averaged over its test views.

    Args:
        ckpt: From :func:`load_checkpoint` (its ``clip`` sets the views).
        paths: Video files.
        device: Where the model runs.
        batch_size: Views per forward pass.
        workers: DataLoader processes decoding ahead (0: in this process).
        top_k: Classes per video (at most the number of classes).

    Returns:
        One dict per path, in order: ``path``, ``views`` and ``top`` (list of ``{"label", "class", "prob"}``),
        or ``path`` and ``error`` (the decoder's reason).
    """
    model = ckpt.model.to(device)
    k = min(top_k, len(ckpt.classes))
    loader = DataLoader(_Views(paths, ckpt.clip, ckpt.decoder), batch_size=None, num_workers=workers)
    results: list[dict[str, Any]] = [{} for _ in paths]
    for item in loader:
        i = int(item["index"])
        if item["error"]:
            results[i] = {"path": paths[i], "error": item["error"]}
            continue
        views = item["views"]  # uint8; the model's own batch hook normalizes them on the device, as in test
        probs = torch.cat([model(model.on_after_batch_transfer({"video": chunk.to(device)}, 0)["video"])
                           .float().softmax(1) for chunk in views.split(batch_size)])
        mean = probs.mean(0).cpu()  # views averaged in probability space, as test
        top = mean.topk(k)
        results[i] = {"path": paths[i], "views": len(views),
                      "top": [{"label": int(c), "class": ckpt.classes[c], "prob": float(p)}
                              for p, c in zip(top.values.tolist(), top.indices.tolist())]}
    return results


def _csv(results: list[dict[str, Any]], labels: list[str | None], k: int) -> str:
    header = ["path", "label", *[f"top{j}_{w}" for j in range(1, k + 1) for w in ("class", "prob")], "views", "error"]
    rows = []
    for result, label in zip(results, labels):
        top = [v for t in result.get("top", []) for v in (t["class"], f"{t['prob']:.6f}")]
        rows.append([result["path"], label or "", *top, *[""] * (2 * k - len(top)), result.get("views", ""),
                     result.get("error", "")])
    return csv_text(header, rows)


def _short(path: str, width: int) -> str:
    return path if len(path) <= width else "..." + path[-(width - 3):]


def _table(results: list[dict[str, Any]], labels: list[str | None]) -> str:
    """The first ``SHOW`` videos with their top-5 (and true class, when known), then every video not decoded."""
    shown, labelled = results[:SHOW], any(labels)
    width = min(48, max(5, *(len(r["path"]) for r in shown)))
    lines = [f"{'video':<{width}}  " + ("label / " if labelled else "") + "top-5 (probability)"]
    for result, label in zip(shown, labels):
        text = (", ".join(f"{t['class']} {t['prob']:.2f}" for t in result["top"]) if "top" in result
                else "not decodable")
        lines.append(f"{_short(result['path'], width):<{width}}  " + (f"{label or '?'} / " if labelled else "")
                     + text)
    if len(results) > SHOW:
        lines.append(f"... and {len(results) - SHOW} more")
    failed = [r for r in results if "error" in r]
    if failed:
        lines.append(f"Not decodable ({len(failed)}):")
        lines += [f"  {r['path']}: {r['error']}" for r in failed[:50]]
        if len(failed) > 50:
            lines.append(f"  ... and {len(failed) - 50} more (predictions.json lists them all)")
    return "\n".join(lines)


def _inputs(args: argparse.Namespace, classes: list[str]) -> tuple[list[str], list[str | None]]:
    """Video paths and their true class names (None when unlabelled)."""
    paths, labels = list(args.videos), [None] * len(args.videos)
    if args.manifest:
        root = Path(args.root) if args.root else Path(args.manifest).parent
        try:
            entries = read_manifest(args.manifest, num_classes=len(classes), labelled=False)
        except ManifestError as err:
            raise PredictError(str(err)) from None
        paths += [str(root / e.path) for e in entries]
        labels += [None if e.label is None else classes[e.label] for e in entries]
    if not paths:
        raise PredictError("no videos: name video files, or a manifest with --manifest FILE")
    return paths, labels


def _log_wandb(out: Path, args: argparse.Namespace, ckpt: Checkpoint, results: list[dict[str, Any]]) -> None:
    """One W&B run of job type ``predict``: the settings and a table of the predictions (offline without login)."""
    import wandb

    from videonorm.train.logger import wandb_mode

    mode = wandb_mode()
    run = wandb.init(project=args.wandb_project, job_type="predict", dir=str(out), mode=mode,
                     config={"checkpoint": str(Path(args.checkpoint).resolve()), "videos": len(results),
                             **{f"clip.{k}": v for k, v in dataclasses.asdict(ckpt.clip).items()}},
                     settings=wandb.Settings(quiet=True))
    table = wandb.Table(columns=["path", "top1_class", "top1_prob", "error"],
                        data=[[r["path"], *((r["top"][0]["class"], r["top"][0]["prob"]) if "top" in r
                                            else (None, None)), r.get("error")] for r in results])
    run.log({keys.PREDICT_PREDICTIONS: table})
    run.summary.update({keys.PREDICT_VIDEOS: sum("top" in r for r in results),
                        keys.PREDICT_FAILED: sum("error" in r for r in results)})
    run.finish()
    wandb.teardown()
    if mode == "offline":
        print(f"W&B run saved offline; upload it with: wandb sync {out / 'wandb'}")


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``videonorm predict`` options to ``p``."""
    p.add_argument("checkpoint", help="a checkpoint of `videonorm fit` (e.g. runs/<group>/<run>/checkpoints/last.ckpt)")
    p.add_argument("videos", nargs="*", help="video files")
    p.add_argument("--manifest", help="a manifest of videos (paths, optionally labels), e.g. an unlabelled test split")
    p.add_argument("--root", help="folder the manifest's paths are relative to (default: the manifest's folder)")
    p.add_argument("--out", default="predict_out", help="folder for predictions.csv / .json (default: predict_out)")
    p.add_argument("--clips", type=int, help="temporal clips per video (default: the checkpoint's test setting)")
    p.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (default: the checkpoint's)")
    p.add_argument("--decoder", help="video decoder (default: the one the model was trained with)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--batch-size", type=int, default=16, help="views per forward pass (default 16)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes")
    p.add_argument("--wandb", action="store_true", help="also log the predictions as a W&B run (job type predict)")
    p.add_argument("--wandb-project", default="videonorm", help="W&B project for --wandb (default: videonorm)")


def run(args: argparse.Namespace) -> int:
    """Run ``videonorm predict`` with parsed ``args``; 0 when at least one video was predicted, 1 otherwise."""
    try:
        ckpt = load_checkpoint(args.checkpoint)
        overrides = {k: v for k, v in (("test_clips", args.clips), ("test_crops", args.crops)) if v is not None}
        ckpt.clip = dataclasses.replace(ckpt.clip, **overrides)
        ckpt.decoder = args.decoder or ckpt.decoder
        paths, labels = _inputs(args, ckpt.classes)
    except PredictError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    results = predict(ckpt, paths, torch.device(args.device), args.batch_size, args.workers)
    failed = [r for r in results if "error" in r]
    if len(failed) == len(results):
        reasons = "; ".join(f"{r['path']}: {r['error']}" for r in failed[:3])
        print(f"error: no video could be decoded ({reasons}{'; ...' if len(failed) > 3 else ''})", file=sys.stderr)
        return 1
    out = Path(args.out)
    k = min(5, len(ckpt.classes))
    write_text_atomic(out / "predictions.csv", _csv(results, labels, k))
    settings = {"checkpoint": str(Path(args.checkpoint).resolve()), "decoder": ckpt.decoder,
                "clip": dataclasses.asdict(ckpt.clip), "views_per_video": ckpt.clip.test_clips * ckpt.clip.test_crops}
    videos = [{**r, "label": label} if label else r for r, label in zip(results, labels) if "top" in r]
    write_text_atomic(out / "predictions.json", json.dumps(
        {"settings": settings, "videos": videos, "failed": [{"path": r["path"], "reason": r["error"]} for r in failed]},
        indent=1) + "\n")
    print(_table(results, labels))
    labelled = [(r, label) for r, label in zip(results, labels) if label and "top" in r]
    if labelled:
        top1 = sum(r["top"][0]["class"] == label for r, label in labelled) / len(labelled)
        top5 = sum(any(t["class"] == label for t in r["top"]) for r, label in labelled) / len(labelled)
        print(f"top-1 / top-5 over the {len(labelled)} labelled videos: {100 * top1:.1f} / {100 * top5:.1f} %")
    print(f"{len(results) - len(failed)} video(s) predicted ({ckpt.clip.test_clips} clip(s) x {ckpt.clip.test_crops} "
          f"crop(s) each), {len(failed)} not decodable; written: {out / 'predictions.csv'}, "
          f"{out / 'predictions.json'}")
    if args.wandb:
        _log_wandb(out, args, ckpt, results)
    return 0
