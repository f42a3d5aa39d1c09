"""data_prep gives no silent wrong results (issue 13): exact timing, honest coverage, flags that survive a kill,
workers that die with their parent, a full disk that stops the step cleanly. Real files, real encoder."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from data_prep.encode import transcode
from data_prep.records import read_record
from data_prep.synth import render
from data_prep.synth import write_video as write_synth
from data_prep.trim import trim
from data_prep.writer import EncodeSettings
from tests.processes import alive, children, cmdline, wait_for
from tests.videos import frame_index, index_frame, write_truncated_video, write_video
from tests.videos import write_annotations as write_rows
from videonorm.files import PARTIAL_TAG

FAST = EncodeSettings(short_side=0, gop=16, preset="ultrafast", crf=12)


def report_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def decoded(path: Path) -> tuple[list[int], Fraction]:
    """Frame indices spelled by every frame of ``path``, and its average rate."""
    with av.open(str(path)) as c:
        return [frame_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)], c.streams.video[0].average_rate


def write_mpeg_ps(path: Path, num_frames: int, width: int, height: int) -> Path:
    """An MPEG-2 program stream (.mpg) at 25 fps, 12-frame GOPs, frame i spelling i; its clock starts at 0.54 s."""
    with av.open(str(path), "w", format="mpeg") as c:
        stream = c.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", 2_000_000
        stream.options = {"g": "12", "bf": "2"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, width, height), format="rgb24")
            frame.pts = i
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    return path


# --- item 3: a variable-frame-rate source keeps its timing ---------------------------------------------------

def test_variable_frame_rate_source_keeps_its_timing(tmp_path):
    # 1 s at 12.5 fps, then 3 s at 25 fps (a phone video that dropped frames in the dark)
    times = [i / 12.5 for i in range(13)] + [1.04 + i / 25 for i in range(75)]
    times = [round(t, 3) for t in times]
    src = write_video(tmp_path / "vfr.mp4", len(times), timestamps=times)
    with av.open(str(src)) as c:
        average = Fraction(c.streams.video[0].average_rate).limit_denominator(1001)
    encoded = transcode(src, tmp_path / "out.mp4", FAST, 0.0, 3.0)
    indices, rate = decoded(tmp_path / "out.mp4")
    # constant output rate (the source's average), as many frames as 3 s hold: 3 s long, not 2.90 s
    assert rate == average == encoded.fps
    assert len(indices) == math.ceil(3 * average) == encoded.frames
    assert abs(len(indices) / average - 3.0) < 1 / average
    # frame k shows what the source shows at k / fps: the last source frame at or before it (to half a frame)
    expected = [max(i for i, t in enumerate(times) if t <= (k + 0.5) / average) for k in range(len(indices))]
    assert indices == expected
    assert encoded.duplicated > 0 and encoded.dropped > 0  # repeated in the slow second, dropped in the fast part
    assert indices[:4] == [0, 0, 1, 2]  # the first second plays at its own speed, not at twice it


# --- item 4: MPEG-PS and truncated sources lose no frames silently -------------------------------------------

def test_mpeg_program_stream_trim_starts_where_asked(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_mpeg_ps(raw / "mpegpsAAAAA.mpg", 200, 192, 144)
    csv_path = write_rows(tmp_path / "a.csv", [["x", "mpegpsAAAAA", 2, 6, "train"]])
    summary = trim(csv_path, raw, tmp_path / "out", FAST, min_duration=2.0)
    assert summary.count("done") == 1 and summary.count("flagged") == 0, summary.rows()
    indices, rate = decoded(tmp_path / "out" / "mpegpsAAAAA_000002_000006.mp4")
    # 2-6 s at 25 fps from the container start: frames 50..149, all 100 (not 90 starting at 2.40 s)
    assert rate == 25 and indices == list(range(50, 150))


@pytest.mark.parametrize("threads", [1, 0])  # one decoder thread (trim --jobs 2) or automatic: the same result
def test_truncated_source_is_kept_and_flagged(tmp_path, threads):
    raw = tmp_path / "raw"
    # the header says 200 frames (8 s at 25 fps); the file holds 189 of them
    write_truncated_video(raw / "truncatedAA.mp4", 200, keep_fraction=0.97, gop=25)
    csv_path = write_rows(tmp_path / "a.csv", [["x", "truncatedAA", 4, 8, "train"]])
    summary = trim(csv_path, raw, tmp_path / "out", EncodeSettings(short_side=0, preset="ultrafast", threads=threads),
                   min_duration=2.0)
    assert summary.count("flagged") == 1 and summary.count("failed") == 0
    indices, _ = decoded(tmp_path / "out" / "truncatedAA_000004_000008.mp4")
    assert indices == list(range(100, 189))  # what the file holds of 4-8 s, in order, none invented
    row = report_rows(tmp_path / "out.trim-failures.csv")["truncatedAA_000004_000008.mp4"]
    assert row["status"] == "flagged" and row["reason"] == "truncated_source"
    assert "3.56 s kept (4.00-7.56 s) of 4-8 s requested" in row["message"]
    assert "frames end at 7.56 s, its header says 8.00 s" in row["message"]


def test_finished_videos_stay_done_after_their_raw_files_are_deleted(tmp_path):
    """download's archive lets users delete raw files after trimming: a rerun keeps the outputs (and their flags)
    as done, and only a segment with neither output nor source is a failure."""
    raw = tmp_path / "raw"
    write_truncated_video(raw / "truncatedAA.mp4", 200, keep_fraction=0.97, gop=25)
    write_video(raw / "plainAAAAAA.mp4", 100, 64, 48, 25)
    rows = [["x", "truncatedAA", 4, 8, "train"], ["x", "plainAAAAAA", 0, 3, "train"],
            ["x", "goneAAAAAAA", 0, 3, "train"]]
    csv_path = write_rows(tmp_path / "a.csv", rows)
    first = trim(csv_path, raw, tmp_path / "out", FAST, min_duration=2.0)
    assert (first.count("done"), first.count("flagged"), first.count("failed")) == (1, 1, 1)
    made = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")}
    shutil.rmtree(raw)
    raw.mkdir()
    again = trim(csv_path, raw, tmp_path / "out", FAST, min_duration=2.0)
    assert (again.count("skipped"), again.count("failed")) == (2, 1), again.rows()  # the flag is kept (report)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")} == made  # nothing remade
    report = report_rows(tmp_path / "out.trim-failures.csv")
    assert report["truncatedAA_000004_000008.mp4"]["reason"] == "truncated_source"
    assert report["goneAAAAAAA_000000_000003.mp4"]["reason"] == "missing_source"
    assert "plainAAAAAA_000000_000003.mp4" not in report

def write_late_video(path: Path, num_frames: int, delay: float) -> Path:
    """An mp4 whose audio starts at 0 and whose video (frame i spelling i, 25 fps) starts ``delay`` s later."""
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "12"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = c.add_stream("aac", rate=16000, layout="mono")
        samples = np.zeros((1, 1024), np.float32)
        for k in range(round((delay + num_frames / 25) * 16000 / 1024)):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            c.mux(audio.encode(frame))
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = round((delay + i / 25) * 1000), Fraction(1, 1000)
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
        c.mux(audio.encode(None))
    return path


def test_window_past_the_end_and_late_video_are_flagged_with_their_cause(tmp_path):
    raw = tmp_path / "raw"
    write_video(raw / "shortAAAAAA.mp4", 125)  # 5 s
    write_late_video(raw / "lateAAAAAAA.mp4", 100, 1.0)  # the picture starts 1 s after the file
    csv_path = write_rows(tmp_path / "a.csv", [["x", "shortAAAAAA", 2, 8, "train"], ["x", "shortAAAAAA", 1, 4, "train"],
                                               ["x", "lateAAAAAAA", 0, 3, "train"]])
    summary = trim(csv_path, raw, tmp_path / "out", FAST, min_duration=2.0)
    assert summary.count("done") == 1 and summary.count("flagged") == 2
    rows = report_rows(tmp_path / "out.trim-failures.csv")
    assert rows["shortAAAAAA_000002_000008.mp4"]["reason"] == "past_source_end"
    assert "the source ends at 5.00 s" in rows["shortAAAAAA_000002_000008.mp4"]["message"]
    assert rows["lateAAAAAAA_000000_000003.mp4"]["reason"] == "late_start"
    indices, _ = decoded(tmp_path / "out" / "lateAAAAAAA_000000_000003.mp4")
    assert indices == list(range(50))  # the real frames of 1-3 s, nothing made up before them


# --- item 9: flags of videos finished before a kill survive it -----------------------------------------------

def test_flags_survive_a_killed_trim(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_synth(raw / "shortAAAAAA.mp4", render("zoom_in", 30, 25, 64, 48, 0), 25)  # 1.2 s
    for k in range(2):
        write_synth(raw / f"long{k}AAAAAA.mp4", render("move_left", 100, 25, 160, 120, k), 25)
    rows = [["x", "shortAAAAAA", 0, 10, "train"]] + [["x", f"long{k}AAAAAA", 0, 4, "train"] for k in range(2)]
    csv_path = write_rows(tmp_path / "a.csv", rows)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "data_prep", "trim", str(csv_path), "--raw", str(raw), "--out", str(out),
           "--short-side", "120", "--preset", "veryslow", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (out / "shortAAAAAA_000000_000010.mp4").exists())
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "out.trim-failures.csv").exists()  # the killed run wrote no report
    assert read_record(out / "shortAAAAAA_000000_000010.mp4")["reason"] == "short"
    summary = trim(csv_path, raw, out, EncodeSettings(short_side=120, preset="ultrafast"))
    assert summary.count("skipped") >= 1
    row = report_rows(tmp_path / "out.trim-failures.csv")["shortAAAAAA_000000_000010.mp4"]
    assert (row["status"], row["reason"]) == ("flagged", "short") and "1.20 s kept" in row["message"]
    assert "1 flags of finished videos listed" in summary.line()


# --- item 11: workers die with their parent ------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to find the workers")
def test_sigkill_of_trim_with_workers_leaves_no_orphans(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(4):
        write_synth(raw / f"vid{k}AAAAAAA.mp4", render("move_left", 100, 25, 160, 120, k), 25)
    csv_path = write_rows(tmp_path / "a.csv", [["x", f"vid{k}AAAAAAA", 0, 4, "train"] for k in range(4)])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "data_prep", "trim", str(csv_path), "--raw", str(raw), "--out", str(out),
           "--short-side", "120", "--preset", "veryslow", "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        # the pool's workers are at work once partial outputs appear
        assert wait_for(lambda: out.is_dir() and len([p for p in out.iterdir() if PARTIAL_TAG in p.name]) >= 2)
        # the pool's workers (not multiprocessing's resource tracker, which exits after them)
        workers = {pid for pid in children(proc.pid) if alive(pid) and b"spawn_main" in cmdline(pid)}
        assert len(workers) >= 2
        proc.kill()
        proc.wait()
        assert wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10), "orphaned workers"
    finally:
        proc.kill()
        for pid in workers:  # a failing run must not leave them behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    summary = trim(csv_path, raw, out, EncodeSettings(short_side=120, preset="ultrafast"))
    assert summary.count("failed") == 0 and len(list(out.glob("*.mp4"))) == 4
    assert not [p for p in out.iterdir() if PARTIAL_TAG in p.name]


# --- item 12: a full disk stops the step cleanly -------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 64 KiB filesystem (tmpfs, as root), else a 64 KiB file size limit (RLIMIT_FSIZE).

    Yields (folder, command that runs ``kinetics-prep`` under that limit).
    """
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = (os.name == "posix" and os.geteuid() == 0 and shutil.which("mount") is not None and
               subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                              capture_output=True).returncode == 0)
    if mounted:
        command = [sys.executable, "-m", "data_prep"]
    else:
        pytest.importorskip("resource")  # POSIX; Python ignores SIGXFSZ, so writes fail with EFBIG
        command = [sys.executable, "-c", "import resource, runpy, sys; sys.argv[0] = 'data_prep'; "
                   "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); runpy.run_module('data_prep', "
                   "run_name='__main__')"]
    try:
        yield folder, command
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("jobs", [1, 2])
def test_full_disk_stops_trim_cleanly_and_keeps_the_report(tmp_path, small_disk, jobs):
    folder, command = small_disk
    raw = tmp_path / "raw"
    raw.mkdir()
    write_synth(raw / "smallAAAAAA.mp4", render("zoom_in", 25, 25, 64, 48, 0), 25)  # 1 s: a few KiB out
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(50)]
    for k in range(2):
        write_synth(raw / f"noise{k}AAAAA.mp4", noise, 25)  # noise at crf 0: far more than 64 KiB out
    out = folder / "videos"
    args = ["trim", "", "--raw", str(raw), "--out", str(out), "--short-side", "0", "--crf", "0",
            "--preset", "ultrafast", "--jobs", str(jobs)]

    def run(rows: list[list[object]]) -> subprocess.CompletedProcess:
        args[1] = str(write_rows(tmp_path / "a.csv", rows))
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})

    first = [["x", "smallAAAAAA", 0, 10, "train"]]  # fits, and is flagged short
    done = run(first)
    assert done.returncode == 0, done.stderr
    report = folder / "videos.trim-failures.csv"
    assert report_rows(report)["smallAAAAAA_000000_000010.mp4"]["reason"] == "short"
    full = run(first + [["x", f"noise{k}AAAAA", 0, 2, "train"] for k in range(2)])
    assert full.returncode == 3, (full.returncode, full.stderr)  # not 139 (SIGSEGV in the encoder's close)
    assert "kinetics-prep: error:" in full.stderr and "rerun the same command" in full.stderr
    assert ("No space left on device" in full.stderr) or ("File too large" in full.stderr)
    assert "Traceback" not in full.stderr
    assert sorted(p.name for p in out.iterdir()) == ["smallAAAAAA_000000_000010.mp4"]  # no partial left
    assert report_rows(report)["smallAAAAAA_000000_000010.mp4"]["reason"] == "short"  # the report is kept


def test_outputs_without_records_are_measured_on_rerun(tmp_path):
    raw = tmp_path / "raw"
    write_video(raw / "shortAAAAAA.mp4", 125)  # 5 s
    csv_path = write_rows(tmp_path / "a.csv", [["x", "shortAAAAAA", 2, 8, "train"], ["x", "shortAAAAAA", 4, 9, "train"],
                                               ["x", "shortAAAAAA", 0, 2, "train"]])
    out = tmp_path / "out"
    trim(csv_path, raw, out, FAST, min_duration=2.0)
    shutil.rmtree(tmp_path / "out.records")  # as if made by a version without records
    (tmp_path / "out.trim-failures.csv").unlink()
    again = trim(csv_path, raw, out, FAST, min_duration=2.0)
    assert again.count("skipped") == 3
    rows = report_rows(tmp_path / "out.trim-failures.csv")
    assert {name: row["reason"] for name, row in rows.items()} == {
        "shortAAAAAA_000002_000008.mp4": "incomplete", "shortAAAAAA_000004_000009.mp4": "short"}
    assert "3.00 s of 6 s requested (made without a record" in rows["shortAAAAAA_000002_000008.mp4"]["message"]
    assert read_record(out / "shortAAAAAA_000000_000002.mp4")["frames"] == 50  # measured once, then kept
