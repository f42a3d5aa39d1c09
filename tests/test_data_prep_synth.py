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


def _flow(video: np.ndarray, region: tuple[slice, slice]) -> tuple[float, float]:
    """Mean (dy, dx) in pixels per frame inside `region`: least-squares optical flow (Lucas-Kanade, one window).

    Brightness constancy, Ix u + Iy v + It = 0, solved over every pixel of the region and every frame pair of
    the lightly blurred grey video. The static background pulls the estimate towards 0 but keeps its sign.
    """
    grey = video.astype(np.float64).mean(axis=-1)
    for axis in (1, 2):
        grey = (np.roll(grey, 1, axis) + 2 * grey + np.roll(grey, -1, axis)) / 4
    a, b = grey[:-1], grey[1:]
    mid = (a + b) / 2
    ix = (np.roll(mid, -1, 2) - np.roll(mid, 1, 2)) / 2
    iy = (np.roll(mid, -1, 1) - np.roll(mid, 1, 1)) / 2
    it = b - a
    ix, iy, it = (g[(slice(None), *region)].ravel() for g in (ix, iy, it))
    u, v = np.linalg.solve([[ix @ ix, ix @ iy], [ix @ iy, iy @ iy]], [-(ix @ it), -(iy @ it)])
    return float(v), float(u)


WHOLE = (slice(2, -2), slice(2, -2))  # away from np.roll's wrap-around
RIGHT = (slice(20, 100), slice(110, 158))  # right of the centre of a 160x120 frame


@pytest.mark.parametrize(("name", "region", "sign"), [
    ("move_right", WHOLE, (0, 1)), ("move_left", WHOLE, (0, -1)),
    ("move_down", WHOLE, (1, 0)), ("move_up", WHOLE, (-1, 0)),
    # right of the centre, cw rotation moves content down and zooming in moves it right (the other axis
    # moves little there: not checked)
    ("rotate_cw", RIGHT, (1, None)), ("rotate_ccw", RIGHT, (-1, None)),
    ("zoom_in", RIGHT, (None, 1)), ("zoom_out", RIGHT, (None, -1)),
])
def test_motion_direction_matches_the_class_name(name, region, sign):
    # translation: 0.6 half-heights/s = 36 px/s = 1.44 px/frame at 25 fps; the estimate reads 1.2-1.5
    flow = _flow(frames(name, n=20, seed=3), region)
    for value, want in zip(flow, sign):
        if want is not None:
            assert (value > 0.1) if want > 0 else (value < -0.1) if want < 0 else abs(value) < 0.1, (name, flow)


def test_fast_is_twice_as_fast():
    slow = _flow(frames("move_right", n=20, seed=4), WHOLE)[1]
    fast = _flow(frames("move_right_fast", n=20, seed=4), WHOLE)[1]
    assert 1.0 < slow < 1.6, slow
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


def test_three_splits_with_a_test_fraction(tmp_path):
    """--test-fraction adds a labelled test split (the demo's: calibrated on validate, reported on test)."""
    data = make_dataset(tmp_path / "synth", num_classes=2, per_class=5, seed=2, val_fraction=0.2, test_fraction=0.4,
                        sizes=((64, 48),), source_seconds=(2.0, 2.5), segment_seconds=(1,))
    counts = {split: len(read_annotations(path).segments) for split, path in data.csvs.items()}
    assert counts == {"train": 4, "validate": 2, "test": 4}
    ids = [{s.youtube_id for s in read_annotations(path).segments} for path in data.csvs.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # no video in two splits
    assert all(s.split == "test" for s in read_annotations(data.csvs["test"]).segments)
    with pytest.raises(InputError, match="leave videos to train on"):
        make_dataset(tmp_path / "x", val_fraction=0.5, test_fraction=0.5)
