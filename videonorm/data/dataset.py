"""From manifest entries to clips: the map-style :class:`VideoDataset`, its collate and worker seeding.

Manifest and class-list files: :mod:`videonorm.data.manifest`; the LightningDataModule that builds these datasets:
:mod:`videonorm.data.datamodule`. :class:`VideoDataset` is map-style (exact epochs, DDP sharding by Lightning's
DistributedSampler). Items::

    {"video": uint8 (3, T, H, W), "label": int, "index": int (video's row in the manifest),
     "view": int (0 in train/val; clip * test_crops + crop in test), "skipped": int,
     "skipped_files": str ("path<TAB>reason" per line for each failed read; "" when none)}

(With ``repeat_aug=k`` a train item's video is (k, 3, T, H, W) and :func:`collate_repeated` makes batches of
clips again.)

Modes: ``train`` one random clip + random augmentation per video; ``val`` the center clip, center crop;
``test`` ``test_clips`` x ``test_crops`` views per video, item ``i`` = (video ``i // V``, view ``i % V``),
``V = test_clips * test_crops``, view ``v`` = clip ``v // test_crops``, crop ``v % test_crops``.

Broken videos at run time (undecodable, truncated, deleted): the failure is logged once per file and process
(``logging.getLogger("videonorm.data")``, path and reason), counted, and another video is drawn in its place
(deterministic: a seeded function of ``seed``, the video and the attempt). A blank clip is never returned.
``skipped`` says how many failed reads the item stands in for; the LightningModule sums it into
``data/skipped_videos``; ``skipped_files`` carries the paths and reasons out of the DataLoader worker (the
training callback ``SkippedVideos`` lists them at the end of the stage). When the failures exceed
``max_skip_fraction`` of the reads (checked once ``min_attempts`` reads were made, per worker process) a
RuntimeError stops the run.

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

import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from videonorm.data.manifest import ManifestEntry, read_manifest
from videonorm.data.sampling import center_clip_indices, multiview_clip_indices, train_clip_indices
from videonorm.data.transforms import multiview_transform, train_transform, val_transform
from videonorm.data.video import DEFAULT_BACKEND, VideoDecodeError, read_clip, video_info

log = logging.getLogger("videonorm.data")

MODES = ("train", "val", "test")
MIN_ATTEMPTS = 20  # reads made before the failure fraction is judged (a few early failures must not stop a run)
MAX_TRIES = 10  # videos tried for one item before giving up
SHOW_PATHS = 5  # paths quoted in an error or warning


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video (the paper's values by default); normalization is the model's
    (:class:`videonorm.data.transforms.ClipNormalize`, on the device).

    Args:
        num_frames: Frames per clip (T).
        sampling_rate: Stride between clip frames (a window of ``num_frames * sampling_rate`` frames).
        train_min_scale: Train: smallest random short side.
        train_max_scale: Train: largest random short side.
        train_flip: Train: random horizontal flip.
        crop_size: Train random crop and val center crop.
        test_scale: Val and test: short side.
        test_crop_size: Test: side of each spatial crop.
        test_clips: Test: temporal clips per video.
        test_crops: Test: spatial crops per clip (1 or 3).
        window_align: Window starts are multiples of this (:mod:`videonorm.data.sampling`): 2 with an even
            stride reads only even frames, which kinetics-prep's stride-2 files decode without the odd ones.
    """

    num_frames: int = 32
    sampling_rate: int = 2
    train_min_scale: int = 256
    train_max_scale: int = 320
    train_flip: bool = True
    crop_size: int = 224
    test_scale: int = 256
    test_crop_size: int = 256
    test_clips: int = 10
    test_crops: int = 3
    window_align: int = 1

    def indices(self, mode: str, clip: int | None = None) -> Callable[[int], torch.Tensor]:
        """``n -> frame indices`` of a video of ``n`` frames: train a random window, val the center one, test
        temporal clip ``clip``, or all ``test_clips`` clips one after the other, ``(K * T,)``, when ``clip`` is None.
        The one place windows are chosen: the dataset, the batch decoder's workers and ``videonorm predict``."""
        t, rate, align = self.num_frames, self.sampling_rate, self.window_align
        if mode == "train":
            return lambda n: train_clip_indices(n, t, rate, align=align)
        if mode == "val":
            return lambda n: center_clip_indices(n, t, rate, align)
        if clip is None:
            return lambda n: multiview_clip_indices(n, t, rate, self.test_clips, align).reshape(-1)
        return lambda n: multiview_clip_indices(n, t, rate, self.test_clips, align)[clip]

    def transforms(self, mode: str) -> list:
        """The transform of each crop position of ``mode`` (one for train and val, ``test_crops`` for test)."""
        if mode == "train":
            return [train_transform(self.train_min_scale, self.train_max_scale, self.crop_size, self.train_flip)]
        if mode == "val":
            return [val_transform(self.test_scale, self.crop_size)]
        return multiview_transform(self.test_scale, self.test_crop_size, self.test_crops)


class VideoDataset(Dataset):
    """Map-style clips from a manifest (see the module docstring for items, modes and broken files).

    Args:
        root: Dataset root; manifest paths are relative to it.
        manifest: Manifest file, or its entries (:class:`ManifestEntry` or ``(relative path, label)``).
        mode: ``"train"``, ``"val"`` or ``"test"``.
        clip: Clip sampling and transforms.
        decoder: Video backend (``videonorm.data.video.BACKENDS``).
        decoder_threads: Decoder threads per read.
        max_skip_fraction: Largest tolerated fraction of failed reads before a RuntimeError.
        min_attempts: Reads before that fraction is judged.
        seed: Seed of the replacement draws for broken videos.
        repeat_aug: Train: k > 1 augments one decoded window k times (repeated augmentation) and returns
            ``video`` as ``(k, 3, T, H, W)``; :func:`collate_repeated` flattens a batch of such items.
        deferred: Decode nothing: items are descriptors (``path``, ``frames`` = the chosen indices, ``mode``,
            ``crop``) for a batch decoder in the training process (:mod:`videonorm.data.batch_decode`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        manifest: str | os.PathLike | Sequence[ManifestEntry | tuple[str, int]],
        mode: str = "train",
        clip: ClipSpec = ClipSpec(),
        decoder: str = DEFAULT_BACKEND,
        decoder_threads: int = 1,
        max_skip_fraction: float = 0.05,
        min_attempts: int = MIN_ATTEMPTS,
        seed: int = 0,
        repeat_aug: int = 1,
        deferred: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if repeat_aug < 1 or (repeat_aug > 1 and mode != "train"):
            raise ValueError(f"repeat_aug must be >= 1, and 1 outside train mode; got {repeat_aug} in {mode}")
        if deferred and repeat_aug > 1:
            raise ValueError("repeated augmentation is not offered with a batch decoder (decoding in the training "
                             "process)")
        entries = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
        if not entries:
            raise ValueError(f"{manifest if isinstance(manifest, (str, os.PathLike)) else 'manifest'}: no videos")
        pairs = [(e.path, e.label) if isinstance(e, ManifestEntry) else e for e in entries]
        self.paths = [os.path.join(os.fspath(root), rel) for rel, _ in pairs]
        self.labels = [int(label) for _, label in pairs]
        self.mode, self.clip = mode, clip
        self.decoder, self.decoder_threads = decoder, decoder_threads
        self.test_clips, self.test_crops = (clip.test_clips, clip.test_crops) if mode == "test" else (1, 1)
        self.max_skip_fraction, self.min_attempts, self.seed = max_skip_fraction, min_attempts, seed
        self.repeat_aug, self.deferred = repeat_aug, deferred
        self.transforms = clip.transforms(mode)
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
        candidate, skipped, failures = video, 0, []
        for attempt in range(MAX_TRIES):
            try:
                frames = self._read(candidate, clip)  # (T, 3, H, W) uint8; deferred: the chosen indices (T,) int64
                break
            except VideoDecodeError as error:
                self._record_failure(error)
                skipped += 1
                failures.append(f"{error.path}\t{error.reason}")
                candidate = self._replacement(video, attempt)
        else:
            raise RuntimeError(
                f"{MAX_TRIES} videos in a row could not be decoded (starting at {self.paths[video]}); "
                f"broken so far: {self._broken_summary()}"
            )
        view = clip * self.test_crops + crop
        if self.mode == "test" and view != 0:
            skipped = 0  # a broken test video is counted once, on its view 0 (see module docstring)
        item = {"label": self.labels[candidate], "index": candidate, "view": view, "skipped": skipped,
                "skipped_files": "\n".join(failures)}
        if self.deferred:  # frames holds the chosen indices: the batch decoder decodes them
            return {"path": self.paths[candidate], "frames": frames, "mode": self.mode, "crop": crop, **item}
        if self.repeat_aug > 1:  # k augmentations of one decode: (k, 3, T, H, W)
            clips = torch.stack([self.transforms[crop](frames) for _ in range(self.repeat_aug)])
        else:
            clips = self.transforms[crop](frames)  # (3, T, H, W) uint8
        return {"video": clips, **item}

    def _read(self, video: int, clip: int) -> torch.Tensor:
        self.attempts += 1
        path = self.paths[video]
        if path in self.broken:
            raise VideoDecodeError(path, self.broken[path])
        if self.deferred:  # the frame count (a demux pass, nothing decoded) and the chosen indices
            return torch.as_tensor(self._choose(clip)(video_info(path)[0]), dtype=torch.long)
        if self.mode == "test" and self._cache is not None and self._cache[0] == (video, clip):
            return self._cache[1]
        frames, _ = read_clip(path, self._choose(clip), self.decoder, self.decoder_threads)
        if self.mode == "test":
            self._cache = ((video, clip), frames)
        return frames

    def _choose(self, clip: int):
        return self.clip.indices(self.mode, clip)

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


