"""Smoke tests of ``videonorm bench``: the commands run on tiny settings and write well-formed tables.

No timing is asserted (numbers live in docs/BENCHMARKS.md); the tests check what the tables contain: every
expected row and column, plausible values, and that CSV and JSON agree.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from videonorm.bench import common
from videonorm.bench import data as bench_data
from videonorm.bench import model as bench_model
from videonorm.bench.videos import key_frame_interval, make_bench_videos
from videonorm.cli import main as cli_main
from videonorm.data.video import available_backends

TINY_CLIPS = ["--num-frames", "8", "--sampling-rate", "2", "--crop", "32", "--min-scale", "48", "--max-scale", "56"]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _check_saved(out: Path, prefix: str, expected: dict[str, list[str]]) -> dict:
    """CSV per table with exactly the expected columns; the JSON holds the same tables and the machine."""
    document = json.loads((out / f"{prefix}.json").read_text())
    assert document["meta"]["machine"]["cores"] >= 1
    assert set(document["tables"]) == set(expected)
    for name, columns in expected.items():
        header, rows = _read_csv(out / f"{prefix}_{name}.csv")
        assert header == columns, name
        table = document["tables"][name]
        assert table["columns"] == columns
        assert len(table["rows"]) == len(rows), name
        for row in table["rows"]:
            assert list(row) == columns
    return document["tables"]


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory) -> dict[str, list[Path]]:
    """Two 1 s 64x48 videos per GOP setting, made by the bench's own generator (cached in the temp dir)."""
    return make_bench_videos(tmp_path_factory.mktemp("bench_cache"), count=2, seconds=1, width=64, height=48, fps=30)


def test_bench_videos_have_the_asked_gops(tiny_videos):
    assert set(tiny_videos) == {"long_gop", "short_gop"}
    assert all(len(files) == 2 and all(f.is_file() for f in files) for files in tiny_videos.values())
    # 30 frames: x264's default puts one key frame in a 1 s clip; the short GOP one every 16 frames
    assert key_frame_interval(tiny_videos["long_gop"][0]) == 30
    assert key_frame_interval(tiny_videos["short_gop"][0]) == 15
    # cached: a second call reuses the files
    before = {f: f.stat().st_mtime_ns for files in tiny_videos.values() for f in files}
    again = make_bench_videos(tiny_videos["long_gop"][0].parents[2], count=2, seconds=1, width=64, height=48, fps=30)
    assert {f: f.stat().st_mtime_ns for files in again.values() for f in files} == before


def test_bench_data_runs_and_saves_tables(tiny_videos, tmp_path, capsys):
    cache = tiny_videos["long_gop"][0].parents[2]
    out = tmp_path / "out"
    argv = ["bench", "data", "--cache", str(cache), "--video-size", "64x48", "--video-seconds", "1",
            "--num-videos", "2", "--clips", "2", "--rounds", "1", "--threads", "1", "--workers", "0,1",
            "--batch", "2", "--loader-clips", "2", "--repeat", "2", "--gpu-clips-per-s", "100,1000",
            "--out", str(out), *TINY_CLIPS]  # fmt: skip
    assert cli_main(argv) == 0
    tables = _check_saved(out, "data", {
        "files": bench_data.FILE_COLUMNS, "clips": bench_data.CLIP_COLUMNS,
        "full_decode": bench_data.FULL_DECODE_COLUMNS, "loader": bench_data.LOADER_COLUMNS,
        "stages": bench_data.STAGE_COLUMNS, "cores": bench_data.CORE_COLUMNS, "ratios": bench_data.RATIO_COLUMNS,
    })  # fmt: skip
    stages = {(r["videos"], r["hand_off"]): r for r in tables["stages"]["rows"]}
    assert set(stages) == {(v, d) for v in ("long_gop", "short_gop") for d in ("uint8", "float32")}
    for row in stages.values():
        parts = [row[f"{name}_ms"] for name in ("demux", "decode", "convert", "transforms", "hand_off")]
        assert all(ms >= 0 for ms in parts) and row["total_ms"] == pytest.approx(sum(parts)) and row["total_ms"] > 0
    for videos in ("long_gop", "short_gop"):  # float32 moves 4x the bytes of uint8
        mb = {d: stages[(videos, d)]["hand_off_mb_per_clip"] for d in ("uint8", "float32")}
        assert mb["float32"] == 4 * mb["uint8"]
    cores = tables["cores"]["rows"]
    assert {(r["videos"], r["gpu_clips_per_s"]) for r in cores} == {(v, g) for v in ("long_gop", "short_gop")
                                                                     for g in (100.0, 1000.0)}
    for row in cores:
        assert row["cores"] == pytest.approx(row["gpu_clips_per_s"] * row["cpu_ms_per_clip"] / 1000)
    clips = tables["clips"]["rows"]
    pipelines = {(r["videos"], r["pipeline"], r["backend"], r["repeat"]) for r in clips}
    backends = available_backends()  # the default of --backends: every decoder that can run here
    assert "pyav" in backends
    for videos in ("long_gop", "short_gop"):
        for backend in backends:
            for pipeline in ("raw", "videonorm-decode", "videonorm"):
                assert (videos, pipeline, backend, 1) in pipelines
            for pipeline in ("videonorm-repeat-window", "videonorm-repeat-video"):
                assert (videos, pipeline, backend, 2) in pipelines
        assert (videos, "pytorchvideo", "pyav", 1) in pipelines
    assert len(clips) == len(pipelines) == 2 * (len(backends) * 3 + 1 + len(backends) * 2)
    for row in clips:
        assert row["clips_per_s"] > 0 and row["cpu_ms_per_clip"] > 0
        assert row["clips"] == 2 * row["repeat"]  # repeated augmentation counts k clips per read
        if row["pipeline"] in ("videonorm", "pytorchvideo") or row["repeat"] > 1:
            assert row["decode_cpu_ms"] + row["transform_cpu_ms"] == pytest.approx(row["cpu_ms_per_clip"])
    full = tables["full_decode"]["rows"]
    assert {(r["videos"], r["backend"]) for r in full} == {(v, b) for v in ("long_gop", "short_gop")
                                                            for b in backends}  # fmt: skip
    assert all(r["frames"] == 2 * 30 and r["frames_per_s"] > 0 for r in full)
    loader = tables["loader"]["rows"]
    assert sorted((r["videos"], r["backend"], r["workers"]) for r in loader) == sorted(
        (v, b, w) for v in ("long_gop", "short_gop") for b in backends for w in (0, 1))
    assert all(r["clips_per_s"] > 0 and r["cpu_ms_per_clip"] > 0 for r in loader)
    ratios = {(r["videos"], r["ratio"]): r for r in tables["ratios"]["rows"]}
    names = [name for _, name in ratios]
    assert sum("fastest raw decoder" in n for n in names) == 2
    assert sum("pytorchvideo" in n for n in names) == 2
    assert sum("short GOP / long GOP" in n for n in names) == 2 * len(backends)
    assert sum(n.startswith("videonorm-repeat") for n in names) == 2 * 2 * len(backends)
    for row in ratios.values():
        assert row["value"] > 0 and row["cpu_value"] > 0
        assert row["met"] in (None, "yes", "no")
    printed = capsys.readouterr().out
    assert "| videos" in printed and "fastest raw decoder" in printed


def test_bench_data_reads_a_manifest(tiny_videos, tmp_path):
    root = tiny_videos["short_gop"][0].parent
    manifest = root / "bench_manifest.txt"
    manifest.write_text("".join(f"{f.name} 0\n" for f in tiny_videos["short_gop"]))
    out = tmp_path / "out"
    argv = ["data", "--videos", str(manifest), "--clips", "1", "--rounds", "1", "--threads", "1", "--workers", "",
            "--repeat", "", "--backends", "pyav", "--no-reference", "--out", str(out), *TINY_CLIPS]  # fmt: skip
    assert cli_main(["bench", *argv]) == 0
    tables = json.loads((out / "data.json").read_text())["tables"]
    assert tables["files"]["rows"][0]["files"] == 2
    assert tables["files"]["rows"][0]["key_interval"] == 15
    assert {r["pipeline"] for r in tables["clips"]["rows"]} == {"raw", "videonorm-decode", "videonorm"}
    assert tables["loader"]["rows"] == []


def test_bench_data_rejects_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder or manifest"):
        bench_data.find_videos(tmp_path / "nope", 10)
    with pytest.raises(FileNotFoundError, match="no video files"):
        bench_data.find_videos(tmp_path, 10)
    (tmp_path / "m.txt").write_text("missing.mp4 0\n")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        bench_data.find_videos(tmp_path / "m.txt", 10)
    with pytest.raises(SystemExit, match="unknown backend"):
        cli_main(["bench", "data", "--backends", "opencv"])


def test_bench_model_runs_and_saves_tables(tmp_path, capsys):
    out = tmp_path / "out"
    norms = ["bn", "syncbn", "frozenbn", "gn", "ln", "gn_ws", "frn"]  # the default is every scheme
    argv = ["bench", "model", "--width", "8", "--frames", "8", "--size", "64", "--batch", "2", "--classes", "5",
            "--steps", "1", "--warmup", "0", "--threads", "1", "--device", "cpu", "--peak-shape", "1,16,4,16,16",
            "--norms", ",".join(norms), "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    tables = _check_saved(out, "model", {
        "steps": bench_model.STEP_COLUMNS, "peak": bench_model.PEAK_COLUMNS, "ratios": bench_model.RATIO_COLUMNS,
    })  # fmt: skip
    steps = {r["norm"]: r for r in tables["steps"]["rows"]}
    assert list(steps) == norms
    for row in steps.values():
        assert row["precision"] == "fp32" and row["memory_format"] == "contiguous"
        assert row["step_ms_per_clip"] > 0 and row["fwd_ms"] > 0 and row["bwd_ms"] > 0
        assert row["peak_mb"] is not None and row["peak_mb"] >= 0
        assert row["saved_mb"] > 0 and row["state_mb"] > 0
    # same convolutions for every norm: the FLOP count does not depend on the norm
    assert len({round(r["gflop_step"], 9) for r in steps.values()}) == 1
    # frozen BN has no affine parameters to train: fewer parameters than BN, same as BN otherwise for GN; FRN's
    # TLU adds a threshold per channel
    assert steps["frozenbn"]["params_m"] < steps["bn"]["params_m"] == steps["gn"]["params_m"] < steps["frn"]["params_m"]
    peak = tables["peak"]["rows"]
    assert len(peak) == 1 and peak[0]["shape"] == "1x16x4x16x16"
    assert peak[0]["gflop"] == pytest.approx(2 * 16 * 4 * 16 * 16 * 16 * 27 / 1e9)
    ratios = {r["norm"]: r for r in tables["ratios"]["rows"]}
    assert set(ratios) == set(norms) - {"bn"}
    assert ratios["gn"]["target"] == "<= 1.1" and ratios["gn"]["met"] in ("yes", "no")
    assert ratios["ln"]["target"] is None
    assert math.isclose(ratios["gn"]["step_vs_bn"], steps["gn"]["step_ms_per_clip"] / steps["bn"]["step_ms_per_clip"])
    assert math.isclose(ratios["frn"]["saved_vs_bn"], steps["frn"]["saved_mb"] / steps["bn"]["saved_mb"])
    printed = capsys.readouterr().out
    assert "each norm vs bn" in printed and "| gn " in printed


def test_markdown_table_and_save_tables(tmp_path):
    rows = [{"a": "x", "b": 1.23456, "c": float("nan")}, {"a": "yy", "b": 12345.6}]
    text = common.markdown_table(rows, ["a", "b", "c"])
    lines = text.splitlines()
    assert lines[0].split("|")[1].strip() == "a" and len(lines) == 4
    assert "1.23" in lines[2] and "12346" in lines[3] and lines[3].rstrip().endswith("- |")
    written = common.save_tables(tmp_path, "t", {"one": (rows, ["a", "b", "c"])}, {"k": 1})
    assert [p.name for p in written] == ["t_one.csv", "t.json"]
    document = json.loads((tmp_path / "t.json").read_text())
    assert document["tables"]["one"]["rows"][0]["c"] is None  # NaN is not JSON
    _, csv_rows = _read_csv(tmp_path / "t_one.csv")
    assert csv_rows[1] == {"a": "yy", "b": "12345.6", "c": ""}
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob("*partial*"))


def test_bench_prep_runs_and_saves_tables(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["bench", "prep", "--sources", "2", "--clips", "2", "--jobs", "1", "--size", "64x48", "--short-side", "48",
            "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    tables = json.loads((out / "prep.json").read_text())["tables"]
    trims = {r["gop"]: r for r in tables["trim"]["rows"]}
    assert set(trims) == {16, "x264 default"}
    assert all(r["files"] == 2 and r["files_per_s"] > 0 and r["mb_per_file"] > 0 for r in trims.values())
    assert 15 < trims[16]["frames_per_key"] <= 16 < trims["x264 default"]["frames_per_key"]
    readers = [r["reader"] for r in tables["clips"]["rows"]]
    assert readers[0] == "pyav" and all(r["short_gop_clips_s"] > 0 for r in tables["clips"]["rows"])
    ratio = tables["ratios"]["rows"][0]
    assert ratio["short_gop_vs_default"] == pytest.approx(
        tables["clips"]["rows"][0]["short_gop_clips_s"] / tables["clips"]["rows"][0]["default_gop_clips_s"])
    assert (out / "prep_trim.csv").is_file() and "short GOP" in capsys.readouterr().out
