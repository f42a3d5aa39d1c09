"""``KineticsDataModule``: a dataset root with ``classes.txt`` and manifests -> train/val/test DataLoaders.

Files on disk (written by ``kinetics-prep``; rules in :mod:`videonorm.data.manifest`)::

    root/classes.txt          one class name per line; line i is label i
    root/train.txt, val.txt   manifests: ``relative/path.mp4 <int label>`` per line (``#`` comments, blank lines ok)
    root/videos/...

The datamodule knows nothing about the model; ``num_classes`` flows to it through the CLI's argument link.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from videonorm.data.batch_decode import BATCH_DECODERS, BatchDecoder
from videonorm.data.dataset import SHOW_PATHS, ClipSpec, VideoDataset, collate_repeated, seed_worker
from videonorm.data.manifest import ManifestEntry, read_classes, read_manifest
from videonorm.data.video import DEFAULT_BACKEND, require_backend

log = logging.getLogger("videonorm.data")


@dataclass
class _Manifest:
    path: str
    sha256: str
    listed: int
    present: list[ManifestEntry] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class KineticsDataModule(pl.LightningDataModule):
    """Kinetics-style data: ``root`` with ``classes.txt`` and ``path label`` manifests (see module docstring).

    Paths of manifests and of the classes file are relative to ``root`` unless absolute. ``setup`` checks every
    manifest: malformed lines and labels outside ``classes.txt`` raise ValueError (file and line), an empty
    manifest or one whose files are all missing raises, a few missing files are dropped with a warning (and
    counted in :meth:`fingerprint`).

    Args:
        root: Dataset root.
        train_manifest: Training manifest (``None``: no training data).
        val_manifest: Validation manifest, single center clip (``None``: no validation).
        test_manifest: Multi-view test manifest; ``None`` tests on ``val_manifest`` (Kinetics has no public test
            labels, the paper reports on val).
        classes_file: One class name per line.
        batch_size: Clips per device.
        num_workers: DataLoader worker processes per device.
        num_frames: Frames per clip (T).
        sampling_rate: Stride between clip frames.
        train_min_scale: Smallest random short side in training.
        train_max_scale: Largest random short side in training.
        train_flip: Random horizontal flip in training (off for data whose classes are mirror images of each
            other, like the demo's move_left / move_right).
        crop_size: Training crop and validation center crop.
        test_scale: Short side in validation and test.
        test_crop_size: Side of each test crop.
        decoder: ``"pyav"`` (default: exact on every file kind), ``"torchcodec"`` or ``"decord"`` (optional
            extras; files they are not tested exact on are decoded by PyAV): :mod:`videonorm.data.video`. Or
            ``"torchcodec_cuda"``: the workers only choose the frames, and the training process decodes a batch
            at a time on the GPU and transforms it there (:mod:`videonorm.data.batch_decode`).
        decoder_threads: Decoder threads per read.
        test_clips: Temporal clips per test video.
        test_crops: Spatial crops per test clip (1 or 3).
        window_align: Clip windows start on multiples of this; 2 with an even ``sampling_rate`` (32x2) reads only
            even frames, which videos prepared by kinetics-prep (stride-2 layout: odd frames non-reference)
            decode without their odd frames (1.3x faster decoding, docs/BENCHMARKS.md).
        max_skip_fraction: Stop when more than this fraction of reads fail (per worker, after 20 reads).
        pin_memory: Pin batches (only when CUDA is available).
        repeat_aug: Repeated augmentation: k training clips per decoded window (k random scales, crops and
            flips of the same frames); must divide ``batch_size``. A batch then holds ``batch_size // k``
            videos x k clips, still ``batch_size`` clips per device, and an epoch visits every video once, so
            it has k times the steps (divide ``max_epochs`` by k to keep the number of clips). Decoding is the
            dominant cost, so clips/s grows 1.6-1.8x at k=2 (docs/BENCHMARKS.md). The k clips of a video land in
            the same batch, so they share BN's batch statistics: that changes what BN sees (the quantity this
            project studies), not what GN sees.
        seed: Seed of the replacement draws for broken videos.
        allow_outside_root: Accept manifest paths that are absolute or climb out of ``root`` with ``..`` (an error
            otherwise: a manifest should not silently read files from elsewhere).
        allow_duplicate_train: Accept a video listed more than once in the train manifest (oversampling on
            purpose); a duplicate is an error otherwise, and always in the val and test manifests, where it would
            count a video twice.
    """

    def __init__(
        self,
        root: str,
        train_manifest: str | None = "train.txt",
        val_manifest: str | None = "val.txt",
        test_manifest: str | None = None,
        classes_file: str = "classes.txt",
        batch_size: int = 8,
        num_workers: int = 4,
        num_frames: int = 32,
        sampling_rate: int = 2,
        train_min_scale: int = 256,
        train_max_scale: int = 320,
        train_flip: bool = True,
        crop_size: int = 224,
        test_scale: int = 256,
        test_crop_size: int = 256,
        decoder: str = DEFAULT_BACKEND,
        decoder_threads: int = 1,
        test_clips: int = 10,
        test_crops: int = 3,
        window_align: int = 1,
        max_skip_fraction: float = 0.05,
        pin_memory: bool = True,
        repeat_aug: int = 1,
        seed: int = 0,
        allow_outside_root: bool = False,
        allow_duplicate_train: bool = False,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if repeat_aug < 1 or batch_size % repeat_aug:
            raise ValueError(f"repeat_aug={repeat_aug} must be >= 1 and divide batch_size={batch_size}")
        self.repeat_aug = repeat_aug
        self.root = root
        self.train_manifest, self.val_manifest = train_manifest, val_manifest
        self.test_manifest = test_manifest if test_manifest is not None else val_manifest
        self.classes_file = self._resolve(classes_file)
        if not os.path.isfile(self.classes_file):
            raise FileNotFoundError(f"classes file {self.classes_file} not found")
        self.classes = read_classes(self.classes_file)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.allow_outside_root, self.allow_duplicate_train = allow_outside_root, allow_duplicate_train
        args = locals()
        self.clip = ClipSpec(**{f.name: args[f.name] for f in dataclasses.fields(ClipSpec) if f.name in args})
        self.batch_device = BATCH_DECODERS.get(decoder)  # decode in the training process, on this device kind
        if self.batch_device is not None:
            if not torch.cuda.is_available():
                raise ValueError(f"data.decoder {decoder} decodes on a CUDA GPU and none is available here; use "
                                 "pyav (or torchcodec) to decode on the CPU")
            if repeat_aug > 1:
                raise ValueError(f"data.repeat_aug is not offered with data.decoder {decoder}")
            decoder = "torchcodec"
        require_backend(decoder)  # a missing optional decoder stops here, in one line, not in every worker
        self.reading = dict(decoder=decoder, decoder_threads=decoder_threads, max_skip_fraction=max_skip_fraction,
                            seed=seed, deferred=self.batch_device is not None)
        self._batch_decoder: BatchDecoder | None = None
        self._manifests: dict[tuple[str, bool], _Manifest] = {}
        self._warned: set[str] = set()
        self.train_set: VideoDataset | None = None
        self.val_set: VideoDataset | None = None
        self.test_set: VideoDataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of lines of ``classes.txt`` (known right after ``__init__``)."""
        return len(self.classes)

    def _resolve(self, path: str) -> str:
        return os.path.join(self.root, path)  # an absolute ``path`` stays as it is

    def _splits(self) -> dict[str, str]:
        names = {"train": self.train_manifest, "val": self.val_manifest, "test": self.test_manifest}
        return {split: name for split, name in names.items() if name is not None}

    def _scan(self, name: str, split: str) -> _Manifest:
        """Parse one manifest (cached), check its labels against ``classes.txt`` and which files exist."""
        path = self._resolve(name)
        duplicates = split == "train" and self.allow_duplicate_train
        if (path, duplicates) in self._manifests:
            return self._manifests[path, duplicates]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"manifest {path} not found")
        entries = read_manifest(path, num_classes=self.num_classes, allow_outside_root=self.allow_outside_root,
                                allow_duplicates=duplicates)
        info = _Manifest(path, hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12], len(entries))
        for entry in entries:
            if os.path.isfile(self._resolve(entry.path)):
                info.present.append(entry)
            else:
                info.missing.append(entry.path)
        self._manifests[path, duplicates] = info
        return info

    def check_manifests(self, stage: str) -> None:
        """Read the manifests ``stage`` uses (those that exist), so that a bad line stops a run before it starts.

        ``videonorm fit/validate/test`` call this before the run directory is made (one line, exit 2).

        Args:
            stage: ``fit``, ``validate`` or ``test``.

        Raises:
            ManifestError: A bad line (file and line), e.g. a video listed twice.
        """
        names = self._splits()
        for split in {"fit": ("train", "val"), "validate": ("val",)}.get(stage, ("test",)):
            if split in names and os.path.isfile(self._resolve(names[split])):
                self._scan(names[split], split)

    def manifest(self, name: str, split: str) -> _Manifest:
        """A manifest ready for training: as :meth:`_scan`, and it must list videos of which some exist.

        Args:
            name: The manifest (relative to ``root`` unless absolute).
            split: ``train``, ``val`` or ``test`` (only ``train`` may repeat videos, with ``allow_duplicate_train``).

        Raises:
            FileNotFoundError: No manifest, or none of its videos exists.
            ValueError: Malformed line or label outside ``classes.txt`` (file and line), or no videos listed.
        """
        info = self._scan(name, split)
        if not info.listed:
            raise ValueError(f"{info.path}: manifest lists no videos")
        if not info.present:
            raise FileNotFoundError(
                f"{info.path}: none of its {info.listed} videos exist under {self.root} "
                f"(first: {', '.join(info.missing[:SHOW_PATHS])})"
            )
        if info.missing and info.path not in self._warned:
            self._warned.add(info.path)
            log.warning(
                "%s: %d of %d videos missing, dropped (first: %s)",
                info.path, len(info.missing), info.listed, ", ".join(info.missing[:SHOW_PATHS]),
            )
        return info

    def _dataset(self, name: str, mode: str) -> VideoDataset:
        repeat_aug = self.repeat_aug if mode == "train" else 1
        return VideoDataset(self.root, self.manifest(name, mode).present, mode, self.clip, repeat_aug=repeat_aug,
                            **self.reading)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With a batch decoder: descriptors -> the decoded, transformed uint8 batch on the training device."""
        if self.batch_device is None or not isinstance(batch, dict) or "path" not in batch:
            return batch
        if self._batch_decoder is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else self.batch_device
            modes = {m: self.clip.transforms(m) for m in ("train", "val", "test")}
            self._batch_decoder = BatchDecoder(modes, device, self.reading["decoder_threads"])
        return self._batch_decoder(batch)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train + val; ``validate``: val; ``test``: test)."""
        if stage in ("fit", None):
            if self.train_manifest is None and stage == "fit":
                raise ValueError("fit needs data.train_manifest")
            if self.train_manifest is not None:
                self.train_set = self._dataset(self.train_manifest, "train")
        if stage in ("fit", "validate", None) and self.val_manifest is not None:
            self.val_set = self._dataset(self.val_manifest, "val")
        if stage in ("test", None) and self.test_manifest is not None:
            self.test_set = self._dataset(self.test_manifest, "test")
        if stage == "validate" and self.val_set is None:
            raise ValueError("validate needs data.val_manifest")
        if stage == "test" and self.test_set is None:
            raise ValueError(f"{stage} needs data.test_manifest or data.val_manifest")

    def fingerprint(self) -> dict:
        """Dataset identity for the run config: per manifest its sha256 (12 hex) and counts, totals, one hash.

        Returns:
            ``{"train": {"file", "sha256", "listed", "present", "missing"}, "val": ..., "test": ...,
            "classes": {"file", "sha256", "num_classes"}, "total": {"listed", "present", "missing"},
            "hash": 12 hex}``. ``total`` counts each distinct manifest once (test defaults to val). A manifest
            file that does not exist (e.g. no train manifest where only testing) has ``sha256 == "absent"``;
            unlike :meth:`setup`, an empty manifest or missing videos do not raise here.
        """
        result: dict = {}
        total = {"listed": 0, "present": 0, "missing": 0}
        seen = set()
        for split, name in self._splits().items():
            if not os.path.isfile(self._resolve(name)):  # e.g. no train manifest on a test-only machine
                result[split] = {"file": self._resolve(name), "sha256": "absent", "listed": 0, "present": 0,
                                 "missing": 0}  # fmt: skip
                continue
            info = self._scan(name, split)
            result[split] = {
                "file": info.path,
                "sha256": info.sha256,
                "listed": info.listed,
                "present": len(info.present),
                "missing": len(info.missing),
            }
            if info.path not in seen:
                seen.add(info.path)
                for key in total:
                    total[key] += result[split][key]
        classes_sha = hashlib.sha256(Path(self.classes_file).read_bytes()).hexdigest()[:12]
        result["classes"] = {"file": self.classes_file, "sha256": classes_sha, "num_classes": self.num_classes}
        result["total"] = total
        key = ";".join(f"{split}={result[split]['sha256']}" for split in ("train", "val", "test") if split in result)
        result["hash"] = hashlib.sha256(f"{key};classes={classes_sha}".encode()).hexdigest()[:12]
        return result

    def _loader(self, dataset: VideoDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("dataset not set up: call setup() with the right stage first")
        return DataLoader(
            dataset,
            batch_size=self.batch_size // dataset.repeat_aug,  # videos; x repeat_aug clips each
            collate_fn=collate_repeated if dataset.repeat_aug > 1 else None,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_manifest is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
