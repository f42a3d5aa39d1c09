"""download: yt-dlp bookkeeping (skip, classify, retry with backoff, resume) against a local fake yt-dlp."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from data_prep import cli
from data_prep.download import DownloadSettings, classify, download, resolve_executable
from data_prep.errors import InputError
from data_prep.synth import render, write_video
from tests.processes import alive, wait_for
from videonorm.files import PARTIAL_TAG

# A stand-in for yt-dlp: same command line, behaviour chosen per id in $FAKE_YTDLP_DIR/behaviour.json,
# every call logged (id and time) to calls.jsonl.
FAKE = r'''#!{python}
import fcntl, json, os, shutil, sys, time
from pathlib import Path
state = Path(os.environ["FAKE_YTDLP_DIR"])
args = sys.argv[1:]
template = args[args.index("-o") + 1]
assert args[args.index("--") + 1].startswith("https://www.youtube.com/watch?v=")
youtube_id = args[-1].split("v=", 1)[1]
with (state / "calls.jsonl").open("a+") as f:  # locked: parallel calls must not read each other's half lines
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(json.dumps({{"id": youtube_id, "t": time.monotonic(), "args": args}}) + "\n")
    f.flush()
    f.seek(0)
    calls = sum(json.loads(line)["id"] == youtube_id for line in f.read().splitlines())
behaviour = json.loads((state / "behaviour.json").read_text()).get(youtube_id, "ok")
errors = {{
    "removed": "ERROR: [youtube] {{id}}: Video unavailable. This video has been removed by the uploader",
    "private": "ERROR: [youtube] {{id}}: Private video. Sign in if you've been granted access to this video",
    "unavailable": "ERROR: [youtube] {{id}}: Video unavailable. The uploader has not made this video available "
                   "in your country",
    "rate_limited": "ERROR: [youtube] {{id}}: HTTP Error 429: Too Many Requests",
    "other": "ERROR: unable to download video data: <urlopen error [Errno 104] Connection reset by peer>",
    "needs_ffmpeg": "ERROR: [youtube] {{id}}: You have requested downloading the video partially, but ffmpeg is not "
                    "installed. Aborting",
}}
if behaviour.startswith("once_"):  # fail the first time only
    behaviour = behaviour[5:] if calls == 1 else "ok"
if behaviour == "hang":  # a stalled download: yt-dlp waits on its ffmpeg, which never ends
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    pids = state / f"hang-{{youtube_id}}-{{os.getpid()}}"
    pids.with_suffix(".tmp").write_text(f"{{os.getpid()}} {{child.pid}}")
    os.replace(pids.with_suffix(".tmp"), pids.with_suffix(".pids"))
    print("[download] Destination: stalled.mp4", file=sys.stderr, flush=True)
    child.wait()
    sys.exit(0)
if behaviour in errors:
    Path(template.replace("%(ext)s", "mp4.part")).write_bytes(b"half")  # yt-dlp leaves .part files
    print("WARNING: something harmless", file=sys.stderr)
    print(errors[behaviour].format(id=youtube_id), file=sys.stderr)
    sys.exit(1)
ext = "webm" if behaviour == "webm" else "mp4"
target = template.replace("%(ext)s", ext)
if "--download-sections" not in args:
    shutil.copy(state / "video.mp4", target)
    sys.exit(0)
# a section, as yt-dlp has ffmpeg cut it: `-ss START -t LENGTH -i URL -c copy` with `-copyts` (our
# --downloader-args): packets from the key frame at or before START, up to END, their timestamps unchanged
spec = args[args.index("--download-sections") + 1]
assert spec.startswith("*") and args[args.index("--downloader-args") + 1] == "ffmpeg_o:-copyts", args
start, end = (float(x) for x in spec[1:].split("-"))
import av
with av.open(str(state / "video.mp4")) as source, av.open(target, "w") as out:
    video = source.streams.video[0]
    copy = out.add_stream_from_template(video)
    source.seek(int(start / video.time_base), stream=video, backward=True)
    for packet in source.demux(video):
        if packet.dts is None:
            continue
        if packet.pts * video.time_base >= end:
            break
        packet.stream = copy
        out.mux(packet)
'''


@pytest.fixture
def fake(tmp_path, monkeypatch) -> dict:
    state = tmp_path / "fake_state"
    state.mkdir()
    write_video(state / "video.mp4", render("move_left", 30, 10, 32, 24, 0), 10)  # 3 s
    exe = tmp_path / "fake-yt-dlp"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_YTDLP_DIR", str(state))

    def configure(behaviour: dict[str, str]) -> None:
        (state / "behaviour.json").write_text(json.dumps(behaviour))

    def calls() -> list[dict]:
        log = state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return {"exe": str(exe), "configure": configure, "calls": calls}


def annotations(path: Path, ids: list[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for i, youtube_id in enumerate(ids):
            writer.writerow(["x", youtube_id, i, i + 10, "train"])
    return path


IDS = ["okAAAAAAAAA", "-webmAAAAAA", "removedAAAA", "privateAAAA", "unavailAAAA", "rateOnceAAA", "rateAlwaysA",
       "flakyAAAAAA", "brokenAAAAA"]
BEHAVIOUR = {"-webmAAAAAA": "webm", "removedAAAA": "removed", "privateAAAA": "private", "unavailAAAA": "unavailable",
             "rateOnceAAA": "once_rate_limited", "rateAlwaysA": "rate_limited", "flakyAAAAAA": "once_other",
             "brokenAAAAA": "other"}


def test_download_classifies_retries_and_resumes(fake, tmp_path):
    fake["configure"](BEHAVIOUR)
    csv_path = annotations(tmp_path / "train.csv", IDS + ["okAAAAAAAAA"])  # a second segment of one video
    raw = tmp_path / "raw"
    settings = DownloadSettings(executable=fake["exe"], retries=2, backoff=0.02, whole_videos=True)
    summary = download(csv_path, raw, settings, jobs=3)
    assert sorted(p.name for p in raw.iterdir()) == ["-webmAAAAAA.webm", "flakyAAAAAA.mp4", "okAAAAAAAAA.mp4",
                                                     "rateOnceAAA.mp4"]
    assert not list(tmp_path.rglob(f"*{PARTIAL_TAG}*"))  # temporary folders and yt-dlp's .part files gone
    assert summary.count("done") == 4
    assert dict(summary.reasons("failed")) == {"removed": 1, "private": 1, "unavailable": 1, "rate_limited": 1,
                                               "other": 1}
    calls = fake["calls"]()
    per_id = {i: [c for c in calls if c["id"] == i] for i in IDS}
    assert {i: len(c) for i, c in per_id.items()} == {
        "okAAAAAAAAA": 1, "-webmAAAAAA": 1, "removedAAAA": 1, "privateAAAA": 1, "unavailAAAA": 1,  # permanent: once
        "rateOnceAAA": 2, "rateAlwaysA": 3, "flakyAAAAAA": 2, "brokenAAAAA": 3}  # retried up to 2 more times
    times = [c["t"] for c in per_id["rateAlwaysA"]]
    assert times[1] - times[0] >= 0.02 and times[2] - times[1] >= 0.04  # exponential backoff
    with (tmp_path / "raw.download-failures.csv").open() as f:
        report = {r["youtube_id"]: r for r in csv.DictReader(f)}
    assert report["removedAAAA"]["reason"] == "removed"
    assert "removed by the uploader" in report["removedAAAA"]["message"]
    assert report["rateAlwaysA"]["reason"] == "rate_limited" and "429" in report["rateAlwaysA"]["message"]

    # rerun: done ones skipped, known-dead ones not asked again, the rest retried; report rewritten only if changed
    fake["configure"]({**BEHAVIOUR, "rateAlwaysA": "ok", "brokenAAAAA": "ok"})
    again = download(csv_path, raw, settings, jobs=3)
    new_calls = fake["calls"]()[len(calls):]
    assert sorted(c["id"] for c in new_calls) == ["brokenAAAAA", "rateAlwaysA"]
    assert again.count("skipped") == 4 and again.count("done") == 2 and len(again.kept) == 3
    before = (tmp_path / "raw.download-failures.csv").stat().st_mtime_ns
    download(csv_path, raw, settings)
    assert len(fake["calls"]()) == len(calls) + 2  # nothing left to ask
    assert (tmp_path / "raw.download-failures.csv").stat().st_mtime_ns == before

    # --retry-failed asks the known-dead ones again
    assert cli.main(["download", str(csv_path), "--out", str(raw), "--yt-dlp", fake["exe"], "--retries", "0",
                     "--retry-failed", "--whole-videos"]) == 0
    assert sorted(c["id"] for c in fake["calls"]()[len(calls) + 2:]) == ["privateAAAA", "removedAAAA", "unavailAAAA"]


def test_prepare_with_download_explains_what_vanished(fake, tmp_path):
    fake["configure"]({"removedAAAA": "removed"})
    annotations_dir = tmp_path / "annotations"
    annotations_dir.mkdir()
    with (annotations_dir / "train.csv").open("w") as f:
        f.write("label,youtube_id,time_start,time_end,split\n"
                "a,okAAAAAAAAA,0,2,train\nb,-okBBBBBBBB,1,3,train\nb,removedAAAA,0,2,train\n")
    (annotations_dir / "validate.csv").write_text("label,youtube_id,time_start,time_end,split\na,valAAAAAAAA,0,2,val\n")
    dataset = tmp_path / "dataset"
    assert cli.main(["prepare", str(annotations_dir), "--raw", str(tmp_path / "raw"), "--out", str(dataset),
                     "--download", "--whole-videos", "--yt-dlp", fake["exe"], "--retries", "0", "--short-side", "24",
                     "--preset", "ultrafast"]) == 0
    assert (dataset / "train.txt").read_text() == ("videos/train/okAAAAAAAAA_000000_000002.mp4 0\n"
                                                   "videos/train/-okBBBBBBBB_000001_000003.mp4 1\n")
    assert (dataset / "val.txt").read_text() == "videos/val/valAAAAAAAA_000000_000002.mp4 0\n"
    with (dataset / "train.txt.missing.csv").open() as f:
        (missing,) = list(csv.DictReader(f))
    assert missing["youtube_id"] == "removedAAAA" and missing["reason"] == "missing_source"
    assert "download failed (removed)" in missing["message"] and "removed by the uploader" in missing["message"]


def test_stale_partial_downloads_are_removed(fake, tmp_path):
    fake["configure"]({})
    raw = tmp_path / "raw"
    stale = raw / f"okAAAAAAAAA{PARTIAL_TAG}999999999"
    stale.mkdir(parents=True)
    (stale / "okAAAAAAAAA.mp4.part").write_bytes(b"half")
    summary = download(annotations(tmp_path / "a.csv", ["okAAAAAAAAA"]), raw,
                       DownloadSettings(executable=fake["exe"], whole_videos=True), jobs=1)
    assert summary.count("done") == 1 and not stale.exists()
    assert (raw / "okAAAAAAAAA.mp4").stat().st_size == (Path(os.environ["FAKE_YTDLP_DIR"]) / "video.mp4").stat().st_size


@pytest.mark.parametrize(("stderr", "reason"), [
    ("ERROR: [youtube] abc: Video unavailable. This video is no longer available because the YouTube account "
     "associated with this video has been terminated.", "removed"),
    ("ERROR: [youtube] abc: Video unavailable. This video has been removed for violating YouTube's Terms of Service",
     "removed"),
    ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", "private"),
    ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
     "unavailable"),
    ("ERROR: [youtube] abc: Video unavailable", "unavailable"),
    ("ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies-from-browser", "rate_limited"),
    ("WARNING: x\nERROR: unable to download video data: HTTP Error 429: Too Many Requests", "rate_limited"),
    ("ERROR: [Errno 28] No space left on device", "other"),
    ("", "other"),
])
def test_classify_real_yt_dlp_messages(stderr, reason):
    got, message = classify(stderr)
    assert got == reason
    assert message == (stderr.splitlines()[-1] if stderr else "no error output")


def test_missing_executable_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        resolve_executable(str(tmp_path / "no-such-yt-dlp"))


def test_download_fetches_sections_that_trim_cuts_exactly(fake, tmp_path):
    from data_prep.download import archive_path
    from data_prep.trim import trim
    from data_prep.writer import EncodeSettings
    from tests.videos import frame_index
    from tests.videos import write_video as write_index_video

    state = Path(os.environ["FAKE_YTDLP_DIR"])
    write_index_video(state / "video.mp4", 500, fps=25, gop=50, bframes=0)  # 20 s, frame i spells i, 2 s GOPs
    fake["configure"]({})
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("label,youtube_id,time_start,time_end,split\n"
                        "x,sectionAAAA,5,9,train\nx,twoSegments,1,3,train\ny,twoSegments,12,14,train\n")
    raw = tmp_path / "raw"
    settings = DownloadSettings(executable=fake["exe"], retries=0, margin=2)
    summary = download(csv_path, raw, settings, jobs=2)
    assert summary.count("done") == 2
    # the segments plus 2 s on each side (all segments of a video in one section), not whole videos
    assert sorted(p.name for p in raw.iterdir()) == ["sectionAAAA_000003_000011.mp4", "twoSegments_000000_000016.mp4"]
    sections = sorted(c["args"][c["args"].index("--download-sections") + 1] for c in fake["calls"]())
    assert sections == ["*0-16", "*3-11"]
    assert sorted(archive_path(raw).read_text().splitlines()) == ["youtube sectionAAAA", "youtube twoSegments"]

    out = tmp_path / "videos"
    trimmed = trim(csv_path, raw, out, EncodeSettings(short_side=0, preset="ultrafast", crf=12))
    assert trimmed.count("done") == 3 and trimmed.count("flagged") == 0, trimmed.rows()
    for name, first, last in [("sectionAAAA_000005_000009.mp4", 125, 225), ("twoSegments_000001_000003.mp4", 25, 75),
                              ("twoSegments_000012_000014.mp4", 300, 350)]:
        with av.open(str(out / name)) as c:
            assert [frame_index(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)] == list(range(first, last))

    # resumable: held files and archived videos are not fetched again, even once the raw files are deleted
    calls = len(fake["calls"]())
    assert download(csv_path, raw, settings).count("skipped") == 2
    shutil.rmtree(raw)
    assert download(csv_path, raw, settings).count("skipped") == 2 and len(fake["calls"]()) == calls
    # a segment outside a raw file of an archived video fetches a section that holds all of its segments
    with csv_path.open("a") as f:
        f.write("x,sectionAAAA,15,18,train\n")
    shutil.rmtree(raw)
    raw.mkdir()
    (raw / "sectionAAAA_000003_000011.mp4").write_bytes((state / "video.mp4").read_bytes())
    again = download(csv_path, raw, settings)
    assert again.count("done") == 1 and again.count("skipped") == 1  # twoSegments: archived, no file
    assert (raw / "sectionAAAA_000003_000020.mp4").is_file()


def test_sections_without_ffmpeg_stop_with_a_clear_error(fake, tmp_path, capsys):
    fake["configure"]({"okAAAAAAAAA": "needs_ffmpeg"})
    code = cli.main(["download", str(annotations(tmp_path / "a.csv", ["okAAAAAAAAA"])), "--out", str(tmp_path / "raw"),
                     "--yt-dlp", fake["exe"], "--retries", "0"])
    assert code == 2
    assert "yt-dlp needs ffmpeg to download sections" in capsys.readouterr().err


# --- issue 24 item 12: a hung yt-dlp costs --timeout once, is listed as such, and leaves no process behind -------

def _hung_pids(fake_dir: Path) -> list[int]:
    """Pids of the hung fake yt-dlp calls and of the child each started."""
    return [int(pid) for f in sorted(fake_dir.glob("hang-*.pids")) for pid in f.read_text().split()]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:  # a failing run must not leave an hour of sleepers behind
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to check the children")
def test_hung_yt_dlp_is_killed_with_its_child_listed_as_timeout_and_retried_next_run(fake, tmp_path, capsys):
    fake["configure"]({"hangAAAAAAA": "hang"})
    csv_path = annotations(tmp_path / "a.csv", ["okAAAAAAAAA", "hangAAAAAAA"])
    raw = tmp_path / "raw"
    argv = ["download", str(csv_path), "--out", str(raw), "--yt-dlp", fake["exe"], "--whole-videos",
            "--timeout", "2", "--retries", "3", "--backoff", "0", "--jobs", "2"]
    state = Path(os.environ["FAKE_YTDLP_DIR"])
    try:
        started = time.monotonic()
        assert cli.main(argv) == 0
        elapsed = time.monotonic() - started
        pids = _hung_pids(state)
        assert len(pids) == 2  # one call (not retried in this run) and its child
        assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5), "yt-dlp or its child survived"
    finally:
        _kill_all(_hung_pids(state))
    assert elapsed < 2 * 2  # one --timeout, not one per retry
    assert [c["id"] for c in fake["calls"]()].count("hangAAAAAAA") == 1
    with (tmp_path / "raw.download-failures.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["youtube_id"], row["status"], row["reason"]) == ("hangAAAAAAA", "failed", "timeout")
    assert row["message"] == ("no result within 2 s (--timeout): killed with its children; its last line: "
                              "[download] Destination: stalled.mp4")
    out, err = capsys.readouterr()
    assert "download: 1 done, 0 skipped, 1 failed (timeout 1)" in out
    assert "download: 2 video(s) to fetch, 2 at a time (0 there or known); a yt-dlp call is stopped after 2 s" in err
    assert f"download: hangAAAAAAA: {row['message']}" in err  # said when it happened, not only at the end
    # a timeout is not a permanent failure: the next run asks again
    fake["configure"]({})
    assert cli.main(argv) == 0
    assert [c["id"] for c in fake["calls"]()].count("hangAAAAAAA") == 2 and (raw / "hangAAAAAAA.mp4").is_file()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to check the children")
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_of_download_ends_every_yt_dlp_with_its_children(fake, tmp_path, jobs):
    ids = ["hangAAAAAAA", "hangBBBBBBB"]
    fake["configure"]({i: "hang" for i in ids})
    state = Path(os.environ["FAKE_YTDLP_DIR"])
    cmd = [sys.executable, "-m", "data_prep", "download", str(annotations(tmp_path / "a.csv", ids)), "--out",
           str(tmp_path / "raw"), "--yt-dlp", fake["exe"], "--whole-videos", "--timeout", "600", "--jobs", str(jobs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(_hung_pids(state)) == 2 * jobs, timeout=60)  # every worker in a hung call
        pids = _hung_pids(state)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 130  # not after --timeout: the calls are ended, not waited on
        assert wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5), "yt-dlp or its child survived"
        assert "interrupted" in proc.stderr.read().splitlines()[-1]
    finally:
        proc.kill()
        proc.wait()
        _kill_all(_hung_pids(state))
