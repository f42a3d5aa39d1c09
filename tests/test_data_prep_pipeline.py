"""data_prep on real encoded files: trim, resize, manifest, verify, prepare, interrupted runs, the CLI."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from data_prep import cli
from data_prep.annotations import read_annotations
from data_prep.errors import InputError
from data_prep.manifest import write_manifest
from data_prep.prepare import prepare
from data_prep.records import records_dir
from data_prep.resize import resize
from data_prep.synth import SynthDataset, make_dataset, render, write_video
from data_prep.trim import trim
from data_prep.verify import check_video
from data_prep.writer import EncodeSettings
from tests import videos as test_videos
from tests.videos import write_annotations as write_rows
from videonorm.data import decoders
from videonorm.data.manifest import read_classes, read_manifest
from videonorm.data.video import BACKENDS, DecoderUnavailableError, VideoDecodeError, read_clip, require_backend
from videonorm.files import PARTIAL_TAG

SMALL = EncodeSettings(short_side=48, gop=16, preset="ultrafast")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> SynthDataset:
    """3 classes x 3 videos (2 train + 1 validate each), 64x48 or 80x60 sources of 3-3.5 s, 2 s segments."""
    return make_dataset(tmp_path_factory.mktemp("synth"), num_classes=3, per_class=3, seed=0, val_fraction=0.34,
                        sizes=((64, 48), (80, 60)), source_seconds=(3.0, 3.5), segment_seconds=(2,))


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """relative path -> (mtime_ns, bytes) of every file under folder."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def partials(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob(f"*{PARTIAL_TAG}*")]


def decode(path: Path) -> tuple[np.ndarray, Fraction]:
    """All frames (T, H, W, 3) and the average frame rate (read while the file is open)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)]), stream.average_rate


@pytest.fixture(scope="module")
def problems(synth, tmp_path_factory) -> dict[str, Path]:
    """The synth train rows plus: a missing source, a corrupt source, a segment past the end, one beyond it."""
    root = tmp_path_factory.mktemp("problems")
    raw = root / "raw"
    shutil.copytree(synth.raw_dir, raw)
    (raw / "corruptAAAA.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    rows = rows_of(synth.csvs["train"])
    label, first_id = rows[0][0], rows[0][1]
    rows += [[label, "missingAAAA", 0, 2, "train"], [label, "corruptAAAA", 0, 2, "train"],
             [label, first_id, 2, 12, "train"], [label, first_id, 20, 30, "train"]]
    csv_path = write_rows(root / "train.csv", rows)
    out = root / "dataset" / "videos" / "train"
    summary = trim(csv_path, raw, out, SMALL, min_duration=2.0)
    return {"root": root, "raw": raw, "csv": csv_path, "out": out, "summary": summary, "first_id": first_id}


def test_trim_writes_segments_and_reports_failures_and_short_ones(problems, synth):
    summary, out, first_id = problems["summary"], problems["out"], problems["first_id"]
    assert summary.count("done") == 6 and summary.count("flagged") == 1
    assert dict(summary.reasons("failed")) == {"missing_source": 1, "corrupt_source": 1, "empty_segment": 1}
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 7 and f"{first_id}_000002_000012.mp4" in names
    assert not partials(out)
    report = {r[0]: r for r in rows_of(out.parent / "train.trim-failures.csv")}
    assert {name: (r[6], r[7]) for name, r in report.items()} == {
        "missingAAAA_000000_000002.mp4": ("failed", "missing_source"),
        "corruptAAAA_000000_000002.mp4": ("failed", "corrupt_source"),
        f"{first_id}_000020_000030.mp4": ("failed", "empty_segment"),
        f"{first_id}_000002_000012.mp4": ("flagged", "short")}
    assert "requested" in report[f"{first_id}_000002_000012.mp4"][8]
    for seg in read_annotations(synth.csvs["train"]).segments:
        frames, rate = decode(out / seg.name)
        with av.open(str(synth.raw_dir / f"{seg.youtube_id}.mp4")) as c:
            src_rate = c.streams.video[0].average_rate
        assert rate == src_rate
        assert frames.shape[0] == 2 * src_rate  # frames with start <= t < end
        assert min(frames.shape[1:3]) == 48 and frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
        with av.open(str(out / seg.name)) as c:
            assert not c.streams.audio
            keys = [i for i, p in enumerate(sorted((p for p in c.demux(c.streams.video[0]) if p.size),
                                                   key=lambda p: p.pts)) if p.is_keyframe]
        assert keys == list(range(0, frames.shape[0], 16))  # short, fixed GOP


def test_trim_cuts_the_annotated_window(problems, synth):
    seg = read_annotations(synth.csvs["train"]).segments[0]
    out_frames, _ = decode(problems["out"] / seg.name)
    h, w = out_frames.shape[1:3]
    with av.open(str(synth.raw_dir / f"{seg.youtube_id}.mp4")) as c:
        source = [(float(f.time), f.reformat(width=w, height=h, format="rgb24").to_ndarray())
                  for f in c.decode(video=0)]
    window = np.stack([a for t, a in source if seg.time_start <= t < seg.time_end])
    shifted = np.stack([a for t, a in source if seg.time_start - 0.5 <= t < seg.time_end - 0.5])
    error = np.abs(out_frames.astype(float) - window).mean()
    assert error < 12  # same frames, up to scaling and re-encoding
    assert np.abs(out_frames.astype(float) - shifted[: len(out_frames)]).mean() > 2 * error


def test_trim_rerun_changes_nothing(problems):
    before = snapshot(problems["out"].parent)
    again = trim(problems["csv"], problems["raw"], problems["out"], SMALL, min_duration=2.0)
    assert again.count("skipped") == 7 and again.count("done") == 0 and again.count("failed") == 3
    assert snapshot(problems["out"].parent) == before  # outputs and report: same bytes, same mtimes


def test_trim_resumes_after_a_simulated_kill(problems, tmp_path):
    out = tmp_path / "videos"
    shutil.copytree(problems["out"], out)
    names = sorted(p.name for p in out.iterdir())
    for name in names[:3]:
        (out / name).unlink()
    stale = out / f"{names[0]}{PARTIAL_TAG}{dead_pid()}"
    stale.write_bytes(b"half a video")
    kept = {n: (out / n).stat().st_mtime_ns for n in names[3:]}
    summary = trim(problems["csv"], problems["raw"], out, SMALL, min_duration=2.0)
    assert summary.count("done") + summary.count("flagged") == 3 and summary.count("skipped") == 4
    assert not partials(out)
    assert sorted(p.name for p in out.iterdir()) == names
    assert {n: (out / n).stat().st_mtime_ns for n in names[3:]} == kept
    for name in names[:3]:
        check_video(out / name)


def _run_trim_and_signal(problems: dict, out: Path, sig: int) -> int:
    """Start `python -m data_prep trim` (slow settings), send `sig` once its first output appears."""
    cmd = [sys.executable, "-m", "data_prep", "trim", str(problems["csv"]), "--raw", str(problems["raw"]),
           "--out", str(out), "--short-side", "256", "--preset", "medium", "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and any(p.suffix == ".mp4" for p in out.iterdir()):
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_trim_interrupted_for_real_resumes(problems, tmp_path, sig):
    out = tmp_path / "videos"
    code = _run_trim_and_signal(problems, out, sig)
    finished = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".mp4"}
    assert finished  # it got going
    if sig != signal.SIGKILL and code != 0:  # Ctrl-C or kill: clean exit, own partial file removed at once
        assert code == 130 and not partials(out)
    for name in finished:
        check_video(out / name)  # whatever was renamed into place is complete
    stale_record = records_dir(out) / f"gone.mp4.json{PARTIAL_TAG}4194305"  # above Linux's largest pid: dead
    stale_record.write_text("{")
    summary = trim(problems["csv"], problems["raw"], out, EncodeSettings(short_side=256, preset="ultrafast"))
    assert summary.count("skipped") == len(finished)
    assert {n: (out / n).stat().st_mtime_ns for n in finished} == finished  # not redone
    assert len([p for p in out.iterdir() if p.suffix == ".mp4"]) == 7 and not partials(out, records_dir(out))


def test_trim_odd_sources_webm_rotation_audio_ntsc_rate(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    gradient = np.zeros((50, 75, 3), np.uint8)
    gradient[:25, :37] = 255  # bright top-left quadrant
    # webm/VP9 with an odd width; mkv (H.264) stored landscape, displayed rotated 90 degrees clockwise
    # (display matrix -90), with audio; mp4 at NTSC 30000/1001 fps
    write_video(raw / "webmAAAAAAA.webm", [gradient] * 75, 25, codec="libvpx-vp9",
                options={"deadline": "realtime", "cpu-used": "8"})
    write_video(raw / "rotatedAAAA.mkv", [gradient[:, :74]] * 75, 25, rotation=-90, audio_rate=16000)
    write_video(raw / "ntscAAAAAAA.mp4", render("zoom_in", 90, 30000 / 1001, 64, 48, 1), Fraction(30000, 1001))
    csv_path = write_rows(tmp_path / "train.csv", [["x", "webmAAAAAAA", 1, 2, "train"],
                                                   ["x", "rotatedAAAA", 1, 2, "train"],
                                                   ["x", "ntscAAAAAAA", 1, 2, "train"]])
    out = tmp_path / "out"
    summary = trim(csv_path, raw, out, EncodeSettings(short_side=40, keep_audio=True), min_duration=0.5)
    assert summary.count("done") == 3, summary.rows()
    webm, _ = decode(out / "webmAAAAAAA_000001_000002.mp4")
    assert webm.shape == (25, 40, 60, 3)
    rotated, _ = decode(out / "rotatedAAAA_000001_000002.mp4")
    assert rotated.shape[1:3] == (60, 40)  # portrait now, from the pixels, not from metadata
    top_right, top_left = rotated[0, :20, 20:].mean(), rotated[0, :20, :20].mean()
    assert top_right > 200 and top_left < 50  # clockwise: top-left went to top-right
    with av.open(str(out / "rotatedAAAA_000001_000002.mp4")) as c:
        assert next(c.decode(video=0)).rotation == 0
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac" and abs(float(audio.duration * audio.time_base) - 1.0) < 0.1
    ntsc, rate = decode(out / "ntscAAAAAAA_000001_000002.mp4")
    assert rate == Fraction(30000, 1001) and ntsc.shape[0] == 30


def test_gop_is_exact_whatever_the_source_key_frames(tmp_path):
    """Source key frames (every 7 frames here) must not leak into the output's GOP."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_video(raw / "keyint7AAAA.mp4", render("move_up", 75, 25, 64, 48, 2), 25,
                options={"preset": "ultrafast", "x264-params": "keyint=7:min-keyint=7:scenecut=0"})
    csv_path = write_rows(tmp_path / "a.csv", [["x", "keyint7AAAA", 0, 3, "train"]])
    for gop in (16, 5):
        out = tmp_path / f"gop{gop}"
        trim(csv_path, raw, out, EncodeSettings(short_side=0, gop=gop, preset="ultrafast"))
        with av.open(str(out / "keyint7AAAA_000000_000003.mp4")) as c:
            packets = sorted((p for p in c.demux(c.streams.video[0]) if p.size), key=lambda p: p.pts)
        assert [i for i, p in enumerate(packets) if p.is_keyframe] == list(range(0, 75, gop))


def test_resize_keeps_names_and_is_resumable(problems, tmp_path):
    out = tmp_path / "small"
    summary = resize(problems["out"], out, EncodeSettings(short_side=32), min_duration=2.0)
    names = sorted(p.name for p in problems["out"].iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    assert summary.count("done") == 6 and summary.count("flagged") == 1  # the short one stays flagged
    assert all(min(decode(out / n)[0].shape[1:3]) == 32 for n in names[:2])
    before = snapshot(tmp_path)
    assert resize(problems["out"], out, EncodeSettings(short_side=32)).count("skipped") == 7
    assert snapshot(tmp_path) == before
    with pytest.raises(InputError, match="different folder"):
        resize(out, out)


def test_manifest_lists_present_videos_and_explains_missing(problems, synth):
    root = problems["out"].parent.parent  # dataset/ (videos/train inside)
    summary = write_manifest(problems["csv"], problems["out"], root / "train.txt")
    classes = read_classes(root / "classes.txt")
    assert classes == sorted(synth.classes)
    entries = read_manifest(root / "train.txt")
    segments = {s.name: s for s in read_annotations(problems["csv"]).segments}
    assert len(entries) == 7 and summary.count("failed") == 3
    for e in entries:
        assert e.path.startswith("videos/train/") and (root / e.path).is_file()
        assert classes[e.label] == segments[Path(e.path).name].label
    missing = {r[0]: r[-2:] for r in rows_of(root / "train.txt.missing.csv")}
    assert missing["missingAAAA_000000_000002.mp4"][0] == "missing_source"
    assert missing["missingAAAA_000000_000002.mp4"][1].startswith("trim: no video missingAAAA.*")
    assert missing["corruptAAAA_000000_000002.mp4"][0] == "corrupt_source"
    assert missing["corruptAAAA_000000_000002.mp4"][1].startswith("trim: cannot open")
    assert missing[f"{problems['first_id']}_000020_000030.mp4"][0] == "empty_segment"
    before = snapshot(root)
    write_manifest(problems["csv"], problems["out"], root / "train.txt")
    assert snapshot(root) == before
    with pytest.raises(InputError, match="not inside the dataset root"):
        write_manifest(problems["csv"], problems["out"], problems["root"] / "elsewhere" / "train.txt")


def test_manifest_cli_unknown_label_with_fixed_classes(problems, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("move_left\n")
    code = cli.main(["manifest", str(problems["csv"]), "--videos", str(problems["out"]),
                     "--out", str(tmp_path / "m.txt"), "--root", str(problems["root"]), "--classes", str(classes)])
    err = capsys.readouterr().err
    assert code == 2
    line = next(i for i, r in enumerate(rows_of(problems["csv"]), start=2) if r[0] != "move_left")
    assert f"{problems['csv']}:{line}: label '{rows_of(problems['csv'])[line - 2][0]}' is not in the class list" in err
    assert not (tmp_path / "m.txt").exists()


def test_verify_finds_truncated_corrupt_and_missing_and_drop_keeps_everything(problems, tmp_path, capsys):
    videos = tmp_path / "videos"
    shutil.copytree(problems["out"], videos)
    names = sorted(p.name for p in videos.iterdir())
    data = (videos / names[0]).read_bytes()
    (videos / names[0]).write_bytes(data[: len(data) // 2])
    (videos / names[1]).write_bytes(os.urandom(4000))
    manifest = tmp_path / "train.txt"
    manifest.write_text("".join(f"videos/{n} {i % 3}\n" for i, n in enumerate(names)) + "videos/gone.mp4 0\n")
    original = manifest.read_text()
    assert cli.main(["verify", str(manifest)]) == 1
    assert "bad (missing 1, truncated 1, unreadable 1)" in capsys.readouterr().out
    bad = {r[0]: r for r in rows_of(tmp_path / "train.txt.bad.csv")}
    assert {p: r[3] for p, r in bad.items()} == {f"videos/{names[0]}": "truncated", f"videos/{names[1]}": "unreadable",
                                                  "videos/gone.mp4": "missing"}
    assert bad[f"videos/{names[0]}"][1] == "0"  # labels kept with the bad lines
    assert cli.main(["verify", str(manifest), "--root", str(tmp_path), "--drop", "--jobs", "2"]) == 0
    assert (tmp_path / "train.txt.orig").read_text() == original
    assert [e.path for e in read_manifest(manifest)] == [f"videos/{n}" for n in names[2:]]
    before = snapshot(tmp_path)
    assert cli.main(["verify", str(manifest), "--drop"]) == 0
    assert snapshot(tmp_path) == before  # dropped rows stay in the bad report; nothing rewritten


def _mpeg_program_stream(path: Path) -> Path:
    """A good 1.9 s MPEG-2 program stream as the ffmpeg program writes it (48 frames, key frame every 12).

    ``verify --drop`` used to drop such files ("no frame decoded at pts 217800"): its seek to the last frame of
    an MPEG-PS lands after the last key frame, so nothing decodes there, yet training reads the file. (Without
    the ffmpeg program, a PyAV-written one, which the old check passed too.)
    """
    if shutil.which("ffmpeg") is None:
        return test_videos.write_video(path, 48, 160, 90, codec="mpeg2video", format="mpeg", gop=12)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=1.92",
                    "-c:v", "mpeg2video", "-b:v", "4M", str(path)], check=True)
    return path


@pytest.mark.parametrize("decoder", BACKENDS)
def test_verify_verdict_is_the_training_verdict(tmp_path, decoder):
    # verify decodes through read_clip, as training does: a file is dropped exactly when training cannot read it
    try:
        require_backend(decoder)
    except DecoderUnavailableError as err:
        pytest.skip(str(err))
    videos = tmp_path / "videos"
    files = {
        "good.mp4": lambda p: test_videos.write_video(p, 40, gop=8),
        "rotated.mp4": lambda p: test_videos.write_video(p, 40, gop=8, rotation=90),
        "ten_bit.mkv": lambda p: test_videos.write_video(p, 40, gop=8, codec="libx265", pix_fmt="yuv420p10le"),
        "program_stream.mpg": _mpeg_program_stream,
        # cut without re-encoding (ffmpeg -ss T -c copy): an edit list hides the packets before the cut. Were
        # "truncated" (header 40 samples, 32 packets kept from key frame 8) and "decode_error" (stream has 27
        # frames, frame 39 was asked for: every packet kept, one key frame), so --drop deleted playable videos
        "cut.mp4": lambda p: test_videos.write_cut_video(p, 40, 13, gop=8),
        "cut_at_key_frame.mp4": lambda p: test_videos.write_cut_video(p, 40, 8, gop=8),
        "cut_long_gop.mp4": lambda p: test_videos.write_cut_video(p, 40, 13, gop=40),
        "joined.ts": test_videos.write_concatenated_ts,  # timestamps restart: read in stream order, kept
        # recordings of two sizes joined: bad, with the reason (was "all input arrays must have the same shape")
        "resized.ts": lambda p: test_videos.write_concatenated_ts(p, ((8, 64, 48), (8, 96, 72))),
        "truncated.mp4": lambda p: test_videos.write_truncated_video(p, 40, keep_fraction=0.6, gop=8),
        "not_a_video.mp4": test_videos.write_not_a_video,
    }
    names = []
    for name, write in files.items():
        try:
            write(videos / name)
        except test_videos.EncoderUnavailable:
            continue
        names.append(name)
    manifest = tmp_path / "train.txt"
    manifest.write_text("".join(f"videos/{n} 0\n" for n in names + ["gone.mp4"]))
    assert cli.main(["verify", str(manifest), "--drop", "--decoder", decoder]) == 0
    kept = {Path(e.path).name for e in read_manifest(manifest)}
    readable = set()
    for name in names:
        try:  # training's read of a random window
            read_clip(videos / name, lambda n: torch.randint(0, n, (8,)), decoder)
            readable.add(name)
        except VideoDecodeError:
            pass
    assert kept == readable
    assert {"good.mp4", "rotated.mp4", "program_stream.mpg", "cut.mp4", "cut_at_key_frame.mp4",
            "cut_long_gop.mp4", "joined.ts"} <= kept
    assert {"truncated.mp4", "not_a_video.mp4", "resized.ts"} <= set(names) - kept
    rows = {Path(r[0]).name: r for r in rows_of(tmp_path / "train.txt.bad.csv")}
    assert {name: r[3] for name, r in rows.items()} == {"truncated.mp4": "truncated", "not_a_video.mp4": "unreadable",
                                                        "gone.mp4": "missing", "resized.ts": "unsupported"}
    assert rows["resized.ts"][4].endswith("pyav: frame size changes from 64x48 to 96x72 at frame 8")


def test_verify_with_a_decoder_that_cannot_run_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "decord", None)  # as where decord is not installed
    monkeypatch.setattr(decoders, "_load", decoders._load.__wrapped__)
    manifest = tmp_path / "train.txt"
    test_videos.write_video(tmp_path / "a.mp4", 8)
    manifest.write_text("a.mp4 0\n")
    assert cli.main(["verify", str(manifest), "--decoder", "decord"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kinetics-prep: error: --decoder decord: decord is not installed") and "\n" not in err
    assert "pip install 'videonorm[decord]'" in err
    assert not (tmp_path / "train.txt.bad.csv").exists()


def test_prepare_end_to_end_and_rerun(synth, tmp_path):
    annotations = tmp_path / "annotations"
    shutil.copytree(synth.annotations_dir, annotations)
    raw = tmp_path / "raw"
    shutil.copytree(synth.raw_dir, raw)
    train_rows = rows_of(annotations / "train.csv")
    (raw / f"{train_rows[1][1]}.mp4").write_bytes(os.urandom(3000))  # a corrupt download
    write_rows(annotations / "train.csv", train_rows + [[train_rows[0][0], train_rows[0][1], 2, 12, "train"]])
    dataset = tmp_path / "dataset"
    code = cli.main(["prepare", str(annotations), "--raw", str(raw), "--out", str(dataset),
                     "--short-side", "48", "--preset", "ultrafast", "--jobs", "2"])
    assert code == 0
    assert sorted(p.name for p in dataset.iterdir()) == [
        "classes.txt", "train.txt", "train.txt.bad.csv", "train.txt.missing.csv", "val.txt", "val.txt.bad.csv",
        "val.txt.missing.csv", "videos"]
    assert read_classes(dataset / "classes.txt") == sorted(synth.classes)
    train, val = read_manifest(dataset / "train.txt"), read_manifest(dataset / "val.txt")
    assert len(train) == 6 and len(val) == 3  # 6 train rows + 1 past the end - 1 corrupt
    assert all(e.path.startswith("videos/train/") for e in train) and all(e.path.startswith("videos/val/") for e in val)
    for e in train + val:
        check_video(dataset / e.path)
    classes = read_classes(dataset / "classes.txt")
    val_labels = {s.name: s.label for s in read_annotations(annotations / "validate.csv").segments}
    assert all(classes[e.label] == val_labels[Path(e.path).name] for e in val)
    missing = rows_of(dataset / "train.txt.missing.csv")
    assert len(missing) == 1 and missing[0][2] == train_rows[1][1] and missing[0][-2] == "corrupt_source"
    flagged = rows_of(dataset / "videos" / "train.trim-failures.csv")
    assert sorted(r[7] for r in flagged) == ["corrupt_source", "short"]
    before = snapshot(dataset)
    assert cli.main(["prepare", str(annotations), "--raw", str(raw), "--out", str(dataset),
                     "--short-side", "48", "--preset", "ultrafast"]) == 0
    assert snapshot(dataset) == before  # a finished prepare rewrites nothing


def test_prepare_cvdf_route_resizes_pretrimmed_videos(synth, tmp_path):
    trimmed = tmp_path / "cvdf"
    for split, folder in (("train", "train"), ("validate", "val")):
        trim(synth.csvs[split], synth.raw_dir, trimmed / folder, EncodeSettings(short_side=0, preset="ultrafast"))
    (trimmed / "train" / "notannotated_000000_000002.mp4").write_bytes(b"ignored: not in the CSV")
    results = prepare(synth.annotations_dir, tmp_path / "dataset", trimmed_dir=trimmed, settings=SMALL)
    assert results["train"]["resize"].count("done") == 6 and results["validate"]["resize"].count("done") == 3
    assert len(read_manifest(tmp_path / "dataset" / "train.txt")) == 6
    assert len(read_manifest(tmp_path / "dataset" / "val.txt")) == 3
    first_val = tmp_path / "dataset" / read_manifest(tmp_path / "dataset" / "val.txt")[0].path
    assert min(decode(first_val)[0].shape[1:3]) == 48


def test_prepare_checks_every_label_before_any_video_work(synth, tmp_path):
    annotations = tmp_path / "annotations"
    shutil.copytree(synth.annotations_dir, annotations)
    rows = rows_of(annotations / "validate.csv")
    write_rows(annotations / "validate.csv", rows + [["juggling", "jugglingAAA", 0, 2, "validate"]])
    with pytest.raises(InputError, match=rf"validate\.csv:{len(rows) + 2}: label 'juggling' is not in the class list"):
        prepare(annotations, tmp_path / "dataset", raw_dir=synth.raw_dir, settings=SMALL)
    assert not (tmp_path / "dataset" / "videos").exists()
    with pytest.raises(InputError, match="exactly one of --raw"):
        prepare(annotations, tmp_path / "dataset")


def test_cli_help_for_every_step():
    for step in cli.STEPS:
        with pytest.raises(SystemExit) as info:
            cli.main([step, "--help"])
        assert info.value.code == 0
    done = subprocess.run([sys.executable, "-m", "data_prep", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and all(step in done.stdout for step in cli.STEPS)


def test_prepare_labelled_and_unlabelled_test_splits(synth, tmp_path):
    annotations = tmp_path / "annotations"
    shutil.copytree(synth.annotations_dir, annotations)
    val_rows = rows_of(annotations / "validate.csv")
    # Kinetics-400/600: the test CSV has labels
    write_rows(annotations / "test.csv", [[*r[:4], "test"] for r in val_rows])
    dataset = tmp_path / "dataset"
    prepare(annotations, dataset, raw_dir=synth.raw_dir, splits=("train", "validate", "test"), settings=SMALL)
    classes = read_classes(dataset / "classes.txt")
    test = read_manifest(dataset / "test.txt", num_classes=len(classes))
    assert [(Path(e.path).name, classes[e.label]) for e in test] == [
        (f"{r[1]}_{int(r[2]):06d}_{int(r[3]):06d}.mp4", r[0]) for r in val_rows]
    assert all(e.path.startswith("videos/test/") and (dataset / e.path).is_file() for e in test)
    # Kinetics-700-2020: the test CSV has no label column -> a manifest of paths alone, for videonorm predict
    (annotations / "test.csv").write_text("youtube_id,time_start,time_end,split\n" +
                                         "".join(f"{r[1]},{r[2]},{r[3]},test\n" for r in val_rows))
    unlabelled = tmp_path / "unlabelled"
    results = prepare(annotations, unlabelled, raw_dir=synth.raw_dir, splits=("test",), settings=SMALL)
    assert results["test"]["verify"].count("done") == len(val_rows)
    assert not (unlabelled / "classes.txt").exists()  # nothing to name
    text = (unlabelled / "test.txt").read_text()
    assert text == "".join(f"videos/test/{r[1]}_{int(r[2]):06d}_{int(r[3]):06d}.mp4\n" for r in val_rows)
    assert all(e.label is None for e in read_manifest(unlabelled / "test.txt", labelled=False))
    # some rows labelled, others not: which lines
    rows = [[r[0], *r[1:4], "test"] for r in val_rows]
    rows[1][0] = ""
    write_rows(annotations / "test.csv", rows)
    with pytest.raises(InputError, match=r"test\.csv:3: no label \(test row\) where other rows have one"):
        prepare(annotations, tmp_path / "mixed", raw_dir=synth.raw_dir, splits=("train", "test"), settings=SMALL)


def test_prepare_cvdf_route_overlays_the_mirrors_replacement_files(synth, tmp_path):
    from tests.videos import write_truncated_video

    mirror = tmp_path / "k400"  # the layout k400_downloader.sh + k400_extractor.sh leave
    trim(synth.csvs["train"], synth.raw_dir, mirror / "train", EncodeSettings(short_side=0, preset="ultrafast"))
    names = sorted(p.name for p in (mirror / "train").iterdir())
    truncated, corrupt = names[0], names[1]
    good = {n: (mirror / "train" / n).read_bytes() for n in (truncated, corrupt)}
    write_truncated_video(mirror / "train" / truncated, 150, keep_fraction=0.6)  # decodes, but not all
    (mirror / "train" / corrupt).write_bytes(os.urandom(5000))
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    shutil.copy(synth.csvs["train"], annotations / "train.csv")
    dataset = tmp_path / "dataset"
    first = prepare(annotations, dataset, trimmed_dir=mirror, splits=("train",), settings=SMALL)["train"]
    assert dict(first["resize"].reasons("failed")) == {"corrupt_source": 1}
    assert dict(first["resize"].reasons("flagged")) == {"truncated_source": 1}
    assert len(read_manifest(dataset / "train.txt")) == 5
    # the mirror's replacements arrive: one under the same name, one under another segment time of its id
    replacement = mirror / "replacement" / "replacement_for_corrupted_k400"
    replacement.mkdir(parents=True)
    (replacement / corrupt).write_bytes(good[corrupt])
    other_times = f"{truncated.rsplit('_', 2)[0]}_000100_000110.mp4"
    (replacement / other_times).write_bytes(good[truncated])
    second = prepare(annotations, dataset, trimmed_dir=mirror, splits=("train",), settings=SMALL)["train"]
    assert second["resize"].count("done") == 2 and second["resize"].count("skipped") == 4
    assert second["resize"].count("failed") == 0 and second["resize"].listed("flagged") == 0
    assert len(read_manifest(dataset / "train.txt")) == 6
    with (dataset / "videos" / "train.resize-failures.csv").open() as f:
        assert list(csv.DictReader(f)) == []
    made, _ = decode(dataset / "videos" / "train" / truncated)
    assert made.shape[0] == decode(replacement / other_times)[0].shape[0]  # all of the replacement, not half
