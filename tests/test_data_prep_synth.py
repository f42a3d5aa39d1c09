"""synth: motion classes that only time can tell apart, written in the official Kinetics layout."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest

from data_prep.annotations import read_annotations
from data_prep.errors import InputError
from data_prep.synth import CLASS_NAMES, make_dataset, render

OPPOSITES = [("move_left", "move_right"), ("move_up", "move_down"), ("rotate_cw", "rotate_ccw"),
             ("zoom_in", "zoom_out"), ("move_left_fast", "move_right_fast"), ("zoom_in_fast", "zoom_out_fast")]


def frames(name: str, n: int = 40, fps: int = 25, width: int = 160, height: int = 120, seed: int = 7) -> np.ndarray:
    return np.concatenate(list(render(name, n, fps, width, height, seed)))  # (T, H, W, 3)


@pytest.mark.parametrize(("a", "b"), OPPOSITES)
def test_opposite_classes_are_exact_time_reverses(a, b):
    """Same content, reversed time: every single frame of `a` is a frame of `b`, so no frame tells them apart."""
    x, y = frames(a), frames(b)
    assert x.shape == (40, 120, 160, 3) and x.dtype == np.uint8
    assert np.array_equal(x[::-1], y)
    assert not np.array_equal(x, y)  # but the motion differs


def _foreground_shift(video: np.ndarray, region: tuple[slice, slice], gap: int = 10) -> tuple[int, int]:
    """(dy, dx) that best maps the moving layer of frame 0 onto frame `gap` inside `region`."""
    background = np.median(video, axis=0)  # static background; shapes cover each pixel a minority of the time
    mask = np.abs(video.astype(np.int16) - background).max(axis=-1) > 40  # (T, H, W)
    best, arg = -1, (0, 0)
    for dy in range(-20, 21):
        for dx in range(-20, 21):
            overlap = np.count_nonzero(np.roll(mask[0], (dy, dx), axis=(0, 1))[region] & mask[gap][region])
            if overlap > best:
                best, arg = overlap, (dy, dx)
    return arg


@pytest.mark.parametrize(("name", "region", "sign"), [
    ("move_right", "all", (0, 1)), ("move_left", "all", (0, -1)),
    ("move_down", "all", (1, 0)), ("move_up", "all", (-1, 0)),
    # right of the centre, cw rotation moves content down and zooming in moves it right (the other axis
    # moves little and the small region makes it ambiguous: not checked)
    ("rotate_cw", "right", (1, None)), ("rotate_ccw", "right", (-1, None)),
    ("zoom_in", "right", (None, 1)), ("zoom_out", "right", (None, -1)),
])
def test_motion_direction_matches_the_class_name(name, region, sign):
    video = frames(name, n=60, seed=3)
    area = (slice(None), slice(None)) if region == "all" else (slice(40, 80), slice(120, 160))
    dy, dx = _foreground_shift(video, area)
    for shift, want in zip((dy, dx), sign):
        if want is not None:
            assert (shift > 1) if want > 0 else (shift < -1) if want < 0 else abs(shift) <= 1, (name, dy, dx)


def test_fast_is_twice_as_fast():
    everywhere = (slice(None), slice(None))
    slow = _foreground_shift(frames("move_right", n=60, seed=4), everywhere, gap=8)[1]  # about 11.5 px
    fast = _foreground_shift(frames("move_right_fast", n=60, seed=4), everywhere, gap=8)[1]
    assert 1.6 <= fast / slow <= 2.4, (slow, fast)


def test_make_dataset_official_layout(tmp_path):
    data = make_dataset(tmp_path / "synth", num_classes=3, per_class=3, seed=1, val_fraction=0.34,
                        sizes=((64, 48), (80, 60)), source_seconds=(3.0, 3.5), segment_seconds=(2,))
    assert data.classes == sorted(CLASS_NAMES[:3])
    assert data.summary.count("done") == 9
    rows = {}
    for split, path in data.csvs.items():
        assert path == tmp_path / "synth" / "annotations" / f"{split}.csv"
        with path.open() as f:
            reader = csv.reader(f)
            assert next(reader) == ["label", "youtube_id", "time_start", "time_end", "split"]
            rows[split] = list(reader)
        read_annotations(path)  # valid by our own parser
    assert len(rows["train"]) == 6 and len(rows["validate"]) == 3
    for split, split_rows in rows.items():
        for label, youtube_id, start, end, row_split in split_rows:
            assert row_split == split and label in data.classes and len(youtube_id) == 11
            with av.open(str(data.raw_dir / f"{youtube_id}.mp4")) as c:
                stream = c.streams.video[0]
                assert stream.average_rate in (24, 25, 30)
                assert (stream.width, stream.height) in ((64, 48), (80, 60))
                length = stream.frames / stream.average_rate
                assert 3.0 <= length <= 3.6 and int(end) - int(start) == 2 and int(end) <= length


def test_make_dataset_is_deterministic_and_rerun_skips(tmp_path):
    kwargs = dict(num_classes=2, per_class=2, sizes=((64, 48),), source_seconds=(2.0, 2.5), segment_seconds=(1,))
    a = make_dataset(tmp_path / "a", seed=5, **kwargs)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(a.raw_dir.iterdir())}
    again = make_dataset(tmp_path / "a", seed=5, **kwargs)
    assert again.summary.count("skipped") == 4 and again.summary.count("done") == 0
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(a.raw_dir.iterdir())} == before
    b = make_dataset(tmp_path / "b", seed=5, **kwargs)
    assert b.csvs["train"].read_text() == a.csvs["train"].read_text()
    assert {p.name: p.read_bytes() for p in b.raw_dir.iterdir()} == {k: v[1] for k, v in before.items()}
    c = make_dataset(tmp_path / "c", seed=6, **kwargs)
    assert c.csvs["train"].read_text() != a.csvs["train"].read_text()


def test_bad_arguments():
    with pytest.raises(InputError, match="--classes must be"):
        make_dataset("/nonexistent", num_classes=len(CLASS_NAMES) + 1)
    with pytest.raises(InputError, match="even"):
        make_dataset("/nonexistent", sizes=((65, 48),))
