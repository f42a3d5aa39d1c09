"""From a manifest of video files to batches ``{"video": (N, 3, T, H, W), ...}``: dataset and DataModule.

Files on disk (see ``data_prep``)::

    root/classes.txt          one class name per line; line i is label i
    root/train.txt, val.txt   manifests: ``relative/path.mp4 <int label>`` per line (``#`` comments, blank lines ok)
    root/videos/...

:class:`VideoDataset` is map-style (exact epochs, DDP sharding by Lightning's DistributedSampler). Items::

    {"video": float32 (3, T, H, W), "label": int, "index": int (video's row in the manifest),
     "view": int (0 in train/val; clip * test_crops + crop in test), "skipped": int}

(With ``repeat_aug=k`` a train item's video is (k, 3, T, H, W) and :func:`collate_repeated` makes batches of
clips again.)

Modes: ``train`` one random clip + random augmentation per video; ``val`` the center clip, center crop;
``test`` ``test_clips`` x ``test_crops`` views per video, item ``i`` = (video ``i // V``, view ``i % V``),
``V = test_clips * test_crops``, view ``v`` = clip ``v // test_crops``, crop ``v % test_crops``.

Broken videos at run time (undecodable, truncated, deleted): the failure is logged once per file and process
(``logging.getLogger("videonorm.data")``, path and reason), counted, and another video is drawn in its place
(deterministic: a seeded function of ``seed``, the video and the attempt). A blank clip is never returned.
``skipped`` says how many failed reads the item stands in for; the LightningModule sums it into
``data/skipped_videos``. When the failures exceed ``max_skip_fraction`` of the reads (checked once
``min_attempts`` reads were made, per worker process) a RuntimeError stops the run.

Test mode is video-level evaluation, so a replacement must not pose as the broken video: the item carries the
*replacement's* ``index``, ``label`` and the same ``view``, i.e. it is an exact duplicate of one of the
replacement's own test views (test transforms and clip positions are deterministic). Duplicates of a
(index, view) pair do not change a per-video average (the module keeps each pair once), so video-level
accuracy is computed over the decodable videos only, and the broken one is counted in ``skipped`` on its view
0 only, so that the epoch's sum counts videos, not views.

Randomness: train windows and augmentation use torch's global RNG, which in each DataLoader worker is seeded
from the main process's RNG (``base_seed``) + worker id, and by :func:`seed_worker` also the global rank, so
clips differ per epoch, per worker and per rank, and a run is reproducible under ``seed_everything``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from videonorm.sampling import center_clip_indices, test_clip_indices, train_clip_indices
from videonorm.transforms import KINETICS_MEAN, KINETICS_STD, test_transform, train_transform, val_transform
from videonorm.video import VideoDecodeError, read_clip

log = logging.getLogger("videonorm.data")

MODES = ("train", "val", "test")
MIN_ATTEMPTS = 20  # reads made before the failure fraction is judged (a few early failures must not stop a run)
MAX_TRIES = 10  # videos tried for one item before giving up
SHOW_PATHS = 5  # paths quoted in an error or warning


# ---- manifests and classes ----------------------------------------------------------------------------------
def _parse_manifest(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """``(relative path, label, line number)`` per entry."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):  # whole-line comments only: '#' may appear in file names
                continue
            parts = text.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'relative/path.mp4 <int label>', got {line.strip()!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {parts[1]!r} is not an integer") from None
            entries.append((parts[0], label, lineno))
    return entries


def read_manifest(path: str | os.PathLike) -> list[tuple[str, int]]:
    """Read a manifest: ``relative/path.mp4 <int label>`` per line, whitespace separated.

    Blank lines and lines starting with ``#`` are ignored. Paths may not contain
    whitespace (as in PySlowFast/pytorchvideo).

    Args:
        path: Manifest file.

    Returns:
        ``[(relative path, label), ...]`` in file order.

    Raises:
        ValueError: A malformed line, naming the file and line number.
    """
    return [(rel, label) for rel, label, _ in _parse_manifest(path)]


def read_classes(path: str | os.PathLike) -> list[str]:
    """Read ``classes.txt``: one class name per line, line i = label i (trailing blank lines ignored).

    Args:
        path: Classes file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: No classes, a blank line between classes (it would shift labels) or a duplicate name.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"classes file {path} not found")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f.read().rstrip().splitlines()]
    if not names or names == [""]:
        raise ValueError(f"{path}: no class names")
    for lineno, name in enumerate(names, start=1):
        if not name:
            raise ValueError(f"{path}:{lineno}: blank line between class names (line i is label i-1)")
    seen: dict[str, int] = {}
    for lineno, name in enumerate(names, start=1):
        if name in seen:
            raise ValueError(f"{path}:{lineno}: class {name!r} already on line {seen[name]}")
        seen[name] = lineno
    return names


# ---- dataset ------------------------------------------------------------------------------------------------
class VideoDataset(Dataset):
    """Map-style clips from a manifest (see the module docstring for items, modes and broken files).

    Args:
        root: Dataset root; manifest paths are relative to it.
        manifest: Manifest file, or its entries ``[(relative path, label), ...]``.
        mode: ``"train"``, ``"val"`` or ``"test"``.
        num_frames: Frames per clip (T).
        sampling_rate: Stride between clip frames.
        train_min_scale: Train: smallest random short side.
        train_max_scale: Train: largest random short side.
        train_flip: Train: random horizontal flip.
        crop_size: Train random crop and val center crop.
        test_scale: Val and test: short side.
        test_crop_size: Test: side of each spatial crop.
        mean: Normalization mean (per channel, [0, 1] scale).
        std: Normalization std.
        decoder: Video backend (``videonorm.video.BACKENDS``).
        decoder_threads: Decoder threads per read.
        test_clips: Test: temporal clips per video.
        test_crops: Test: spatial crops per clip (1 or 3).
        max_skip_fraction: Largest tolerated fraction of failed reads before a RuntimeError.
        min_attempts: Reads before that fraction is judged.
        seed: Seed of the replacement draws for broken videos.
        repeat_aug: Train: k > 1 augments one decoded window k times (repeated augmentation) and returns
            ``video`` as ``(k, 3, T, H, W)``; :func:`collate_repeated` flattens a batch of such items.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        manifest: str | os.PathLike | Sequence[tuple[str, int]],
        mode: str = "train",
        num_frames: int = 32,
        sampling_rate: int = 2,
        train_min_scale: int = 256,
        train_max_scale: int = 320,
        train_flip: bool = True,
        crop_size: int = 224,
        test_scale: int = 256,
        test_crop_size: int = 256,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        decoder: str = "decord",
        decoder_threads: int = 1,
        test_clips: int = 10,
        test_crops: int = 3,
        max_skip_fraction: float = 0.05,
        min_attempts: int = MIN_ATTEMPTS,
        seed: int = 0,
        repeat_aug: int = 1,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if repeat_aug < 1 or (repeat_aug > 1 and mode != "train"):
            raise ValueError(f"repeat_aug must be >= 1, and 1 outside train mode; got {repeat_aug} in {mode}")
        entries = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        if not entries:
            raise ValueError(f"{manifest if isinstance(manifest, (str, os.PathLike)) else 'manifest'}: no videos")
        self.paths = [os.path.join(os.fspath(root), rel) for rel, _ in entries]
        self.labels = [int(label) for _, label in entries]
        self.mode, self.num_frames, self.sampling_rate = mode, num_frames, sampling_rate
        self.decoder, self.decoder_threads = decoder, decoder_threads
        self.test_clips, self.test_crops = (test_clips, test_crops) if mode == "test" else (1, 1)
        self.max_skip_fraction, self.min_attempts, self.seed = max_skip_fraction, min_attempts, seed
        self.repeat_aug = repeat_aug
        if mode == "train":
            self.transforms = [train_transform(train_min_scale, train_max_scale, crop_size, train_flip, mean, std)]
        elif mode == "val":
            self.transforms = [val_transform(test_scale, crop_size, mean, std)]
        else:
            self.transforms = test_transform(test_scale, test_crop_size, test_crops, mean, std)
        # per-process state (each DataLoader worker has its own copy)
        self.attempts = 0
        self.failures = 0
        self.broken: dict[str, str] = {}  # path -> reason, logged once
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None  # test: crops of one clip share a decode

    @property
    def views_per_video(self) -> int:
        return self.test_clips * self.test_crops

    def __len__(self) -> int:
        return len(self.paths) * self.views_per_video

    def locate(self, item: int) -> tuple[int, int, int]:
        """Item -> (video index, clip, crop)."""
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} outside [0, {len(self)})")
        video, view = divmod(item, self.views_per_video)
        clip, crop = divmod(view, self.test_crops)
        return video, clip, crop

    def __getitem__(self, item: int) -> dict:
        video, clip, crop = self.locate(item)
        candidate, skipped = video, 0
        for attempt in range(MAX_TRIES):
            try:
                frames = self._read(candidate, clip)  # (T, 3, H, W) uint8
                break
            except VideoDecodeError as error:
                self._record_failure(error)
                skipped += 1
                candidate = self._replacement(video, attempt)
        else:
            raise RuntimeError(
                f"{MAX_TRIES} videos in a row could not be decoded (starting at {self.paths[video]}); "
                f"broken so far: {self._broken_summary()}"
            )
        view = clip * self.test_crops + crop
        if self.mode == "test" and view != 0:
            skipped = 0  # a broken test video is counted once, on its view 0 (see module docstring)
        if self.repeat_aug > 1:  # k augmentations of one decode: (k, 3, T, H, W)
            clips = torch.stack([self.transforms[crop](frames) for _ in range(self.repeat_aug)])
        else:
            clips = self.transforms[crop](frames)  # (3, T, H, W) float32
        return {
            "video": clips,
            "label": self.labels[candidate],
            "index": candidate,
            "view": view,
            "skipped": skipped,
        }

    def _read(self, video: int, clip: int) -> torch.Tensor:
        self.attempts += 1
        path = self.paths[video]
        if path in self.broken:
            raise VideoDecodeError(path, self.broken[path])
        if self.mode == "test" and self._cache is not None and self._cache[0] == (video, clip):
            return self._cache[1]
        frames, _ = read_clip(path, self._choose(clip), self.decoder, self.decoder_threads)
        if self.mode == "test":
            self._cache = ((video, clip), frames)
        return frames

    def _choose(self, clip: int):
        t, rate = self.num_frames, self.sampling_rate
        if self.mode == "train":
            return lambda n: train_clip_indices(n, t, rate)
        if self.mode == "val":
            return lambda n: center_clip_indices(n, t, rate)
        return lambda n: test_clip_indices(n, t, rate, self.test_clips)[clip]

    def _record_failure(self, error: VideoDecodeError) -> None:
        self.failures += 1
        if error.path not in self.broken:
            self.broken[error.path] = error.reason
            log.warning("skipping video %s: %s", error.path, error.reason)
        if self.attempts >= self.min_attempts and self.failures > self.max_skip_fraction * self.attempts:
            raise RuntimeError(
                f"too many broken videos: {self.failures} of {self.attempts} reads failed in this {self.mode} "
                f"data process ({self.failures / self.attempts:.1%} > max_skip_fraction="
                f"{self.max_skip_fraction:.1%}). Broken files: {self._broken_summary()}. Check the data "
                f"(kinetics-prep verify) or raise data.max_skip_fraction."
            )

    def _replacement(self, video: int, attempt: int) -> int:
        """A deterministic stand-in for ``video``: any other video, drawn from (seed, video, attempt)."""
        n = len(self.paths)
        if n == 1:
            raise RuntimeError(f"the only video of the manifest cannot be decoded: {self._broken_summary()}")
        draw = random.Random(((self.seed * 1_000_003) + video) * 1009 + attempt).randrange(n - 1)
        return draw + (draw >= video)  # skip the video itself

    def _broken_summary(self) -> str:
        items = list(self.broken.items())
        text = "; ".join(f"{path} ({reason})" for path, reason in items[:SHOW_PATHS])
        return text + (f"; and {len(items) - SHOW_PATHS} more" if len(items) > SHOW_PATHS else "")


def collate_repeated(items: list[dict]) -> dict:
    """Collate items whose ``video`` is ``(k, 3, T, H, W)`` (``repeat_aug=k``) into a batch of N * k clips.

    ``video`` becomes ``(N * k, 3, T, H, W)``, the k clips of an item adjacent; ``label``, ``index`` and ``view``
    are repeated k times; ``skipped`` stays on the first clip of each item (zeros on its copies), so that its
    sum still counts broken videos, not clips.
    """
    batch = default_collate(items)
    k = batch["video"].shape[1]
    batch["video"] = batch["video"].flatten(0, 1)
    for key in ("label", "index", "view"):
        batch[key] = batch[key].repeat_interleave(k)
    skipped = torch.zeros(len(items) * k, dtype=batch["skipped"].dtype)
    skipped[::k] = batch["skipped"]
    batch["skipped"] = skipped
    return batch


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: mix the global rank into the worker's seed (torch, random, numpy).

    Torch already seeds worker ``w`` with ``base_seed + w``, ``base_seed`` drawn from the main process's RNG;
    under ``seed_everything`` every rank draws the same ``base_seed``, so without the rank all ranks would
    augment in lockstep.
    """
    rank = 0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
    seed = (torch.initial_seed() + rank * 1_000_003) % 2**63
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# ---- DataModule ---------------------------------------------------------------------------------------------
@dataclass
class _Manifest:
    path: str
    sha256: str
    listed: int
    present: list[tuple[str, int]] = field(default_factory=list)
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
        decoder: ``"decord"`` (falls back to ``"pyav"`` per file) or ``"pyav"``.
        decoder_threads: Decoder threads per read.
        test_clips: Temporal clips per test video.
        test_crops: Spatial crops per test clip (1 or 3).
        max_skip_fraction: Stop when more than this fraction of reads fail (per worker, after 20 reads).
        pin_memory: Pin batches (only when CUDA is available).
        repeat_aug: Repeated augmentation: k training clips per decoded window (k random scales, crops and
            flips of the same frames); must divide ``batch_size``. A batch then holds ``batch_size // k``
            videos x k clips, still ``batch_size`` clips per device, and an epoch visits every video once, so
            it has k times the steps (divide ``max_epochs`` by k to keep the number of clips). Decoding is the
            dominant cost, so clips/s grows 1.6-1.8x at k=2 (bench/RESULTS.md). The k clips of a video land in
            the same batch, so they share BN's batch statistics: that changes what BN sees (the quantity this
            project studies), not what GN sees.
        seed: Seed of the replacement draws for broken videos.
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
        decoder: str = "decord",
        decoder_threads: int = 1,
        test_clips: int = 10,
        test_crops: int = 3,
        max_skip_fraction: float = 0.05,
        pin_memory: bool = True,
        repeat_aug: int = 1,
        seed: int = 0,
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
        self.classes = read_classes(self.classes_file)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.dataset_kwargs = dict(
            num_frames=num_frames,
            sampling_rate=sampling_rate,
            train_min_scale=train_min_scale,
            train_max_scale=train_max_scale,
            train_flip=train_flip,
            crop_size=crop_size,
            test_scale=test_scale,
            test_crop_size=test_crop_size,
            decoder=decoder,
            decoder_threads=decoder_threads,
            test_clips=test_clips,
            test_crops=test_crops,
            max_skip_fraction=max_skip_fraction,
            seed=seed,
        )
        self._manifests: dict[str, _Manifest] = {}
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

    def _scan(self, name: str) -> _Manifest:
        """Parse one manifest (cached), check its labels against ``classes.txt`` and which files exist."""
        path = self._resolve(name)
        if path in self._manifests:
            return self._manifests[path]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"manifest {path} not found")
        entries = _parse_manifest(path)
        for rel, label, lineno in entries:
            if not 0 <= label < self.num_classes:
                raise ValueError(
                    f"{path}:{lineno}: label {label} outside [0, {self.num_classes}) "
                    f"({self.num_classes} classes in {self.classes_file})"
                )
        info = _Manifest(path, hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12], len(entries))
        for rel, label, _ in entries:
            if os.path.isfile(self._resolve(rel)):
                info.present.append((rel, label))
            else:
                info.missing.append(rel)
        self._manifests[path] = info
        return info

    def manifest(self, name: str) -> _Manifest:
        """A manifest ready for training: as :meth:`_scan`, and it must list videos of which some exist.

        Raises:
            FileNotFoundError: No manifest, or none of its videos exists.
            ValueError: Malformed line or label outside ``classes.txt`` (file and line), or no videos listed.
        """
        info = self._scan(name)
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
        return VideoDataset(self.root, self.manifest(name).present, mode, repeat_aug=repeat_aug, **self.dataset_kwargs)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (``fit``: train + val; ``validate``: val; ``test``/``predict``)."""
        if stage in ("fit", None):
            if self.train_manifest is None and stage == "fit":
                raise ValueError("fit needs data.train_manifest")
            if self.train_manifest is not None:
                self.train_set = self._dataset(self.train_manifest, "train")
        if stage in ("fit", "validate", None) and self.val_manifest is not None:
            self.val_set = self._dataset(self.val_manifest, "val")
        if stage in ("test", "predict", None) and self.test_manifest is not None:
            self.test_set = self._dataset(self.test_manifest, "test")
        if stage == "validate" and self.val_set is None:
            raise ValueError("validate needs data.val_manifest")
        if stage in ("test", "predict") and self.test_set is None:
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
            info = self._scan(name)
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

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
