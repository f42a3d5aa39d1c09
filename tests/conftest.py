"""Shared fixtures: real small videos written once per session (see tests/videos.py), W&B offline in a test's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

# pyproject's `pythonpath = ["."]` puts the repository root on sys.path, so tests import `tests.videos`.
from tests import videos

# what this machine lacks (header) and the skip reasons with their counts (end): tests/skip_summary.py; pytester
# runs that plugin in a pytest of its own (tests/test_skip_summary.py)
pytest_plugins = ["pytester", "tests.skip_summary"]


@pytest.fixture(scope="session")
def video_files(tmp_path_factory) -> dict[str, Path]:
    """A few real mp4s, written once per session. Do not modify them.

    ``a25``: 64x48, 25 fps, 50 frames, keyframe every 8; ``b30``: 80x64, 30 fps, 60 frames, keyframe every 12;
    ``short``: 64x48, 25 fps, 6 frames; ``vfr``: 64x48, 40 frames alternating 25 and 12.5 fps every 10 frames;
    ``truncated``: header says 40 frames, half the bytes; ``truncated_late``: header says 60 frames, the data
    stops after about 30 (the first frames decode); ``not_a_video``: junk bytes named .mp4.
    """
    root = tmp_path_factory.mktemp("videos")
    timestamps, t = [], 0.0
    for i in range(40):
        timestamps.append(t)
        t += 1 / 25 if (i // 10) % 2 == 0 else 1 / 12.5
    return {
        "a25": videos.write_video(root / "a25.mp4", 50, 64, 48, 25, gop=8),
        "b30": videos.write_video(root / "b30.mp4", 60, 80, 64, 30, gop=12),
        "short": videos.write_video(root / "short.mp4", 6, 64, 48, 25),
        "vfr": videos.write_video(root / "vfr.mp4", 40, 64, 48, 25, gop=8, timestamps=timestamps),
        "truncated": videos.write_truncated_video(root / "truncated.mp4", 40, keep_fraction=0.5),
        "truncated_late": videos.write_truncated_video(root / "truncated_late.mp4", 60, keep_fraction=0.8, gop=8),
        "not_a_video": videos.write_not_a_video(root / "not_a_video.mp4"),
    }


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B offline and quiet, every file it writes (runs, cache, settings) inside the test's ``tmp_path``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
