"""videonorm.data.manifest: one set of rules for manifests and class lists, for training and kinetics-prep alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep import cli as prep_cli
from tests.videos import make_dataset
from videonorm.cli import main as videonorm_main
from videonorm.data.datamodule import KineticsDataModule
from videonorm.data.manifest import (
    ManifestEntry,
    ManifestError,
    classes_text,
    manifest_text,
    read_classes,
    read_manifest,
)

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "videonorm/configs/demo/b4_8x2.yaml"


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_roundtrip_comments_blank_lines_and_line_numbers(tmp_path):
    entries = [ManifestEntry("videos/train/a.mp4", 3), ManifestEntry("videos/train/#c.mp4", 0)]
    path = write(tmp_path / "m.txt", "# header\n\n" + manifest_text(entries) + "\n")
    read = read_manifest(path)
    assert [(e.path, e.label, e.line) for e in read] == [("videos/train/a.mp4", 3, 3), ("videos/train/#c.mp4", 0, 4)]
    assert manifest_text(read) == manifest_text(entries)
    assert manifest_text([("x.mp4", 1)]) == "x.mp4 1\n"


def test_every_bad_line_is_listed_with_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.txt", "videos/a.mp4 1\nvideos/b.mp4 cat\nlonely\nvideos/c d.mp4 2\nv/e.mp4 -1\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(bad)
    text = str(info.value)
    assert "4 bad line(s)" in text
    assert f"{bad}:2: label 'cat' is not a non-negative integer" in text
    assert f"{bad}:3: expected 'relative/path.mp4 <label>'" in text
    assert f"{bad}:4: expected" in text and "paths may not contain spaces" in text
    assert f"{bad}:5: label '-1' is not a non-negative integer" in text


def test_labels_are_checked_against_the_class_count(tmp_path):
    path = write(tmp_path / "m.txt", "a.mp4 0\nb.mp4 2\n")
    assert len(read_manifest(path, num_classes=3)) == 2
    with pytest.raises(ManifestError, match=r"m\.txt:2: label 2 outside \[0, 2\)"):
        read_manifest(path, num_classes=2)


def test_a_byte_order_mark_keeps_the_first_entry(tmp_path):
    path = write(tmp_path / "m.txt", "\ufeffa.mp4 0\nb.mp4 1\n".encode("utf-8"))
    assert [e.path for e in read_manifest(path)] == ["a.mp4", "b.mp4"]
    classes = write(tmp_path / "classes.txt", "\ufeffabseiling\nair drumming\n".encode("utf-8"))
    assert read_classes(classes) == ["abseiling", "air drumming"]


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    path = write(tmp_path / "m.txt", "a.mp4 0\nb.mp4 1\ncaf\u00e9.mp4 1\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"m\.txt:3: not UTF-8 \(byte 0xe9"):
        read_manifest(path)
    classes = write(tmp_path / "classes.txt", "a\nd\u00e9j\u00e0 vu\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=r"classes\.txt:2: not UTF-8"):
        read_classes(classes)


def test_missing_files(tmp_path):
    with pytest.raises(ManifestError, match="nope.txt: manifest not found"):
        read_manifest(tmp_path / "nope.txt")
    with pytest.raises(ManifestError, match="nope.txt: class list not found"):
        read_classes(tmp_path / "nope.txt")


def test_class_list_rules(tmp_path):
    path = tmp_path / "classes.txt"
    assert read_classes(write(path, "abseiling\nair drumming\n\n")) == ["abseiling", "air drumming"]
    with pytest.raises(ManifestError, match=r"classes.txt:2: blank line"):
        read_classes(write(path, "a\n\nb\n"))
    with pytest.raises(ManifestError, match=r"classes.txt:3: class 'a' already on line 1"):
        read_classes(write(path, "a\nb\na\n"))
    with pytest.raises(ManifestError, match="no class names"):
        read_classes(write(path, "\n"))


def test_writing_refuses_what_could_not_be_read_back():
    with pytest.raises(ManifestError, match="line break"):
        classes_text(["a", "two\nlines", "c"])
    with pytest.raises(ManifestError):
        classes_text(["a", " padded "])
    with pytest.raises(ManifestError, match="without whitespace"):
        manifest_text([ManifestEntry("a b.mp4", 0)])
    with pytest.raises(ManifestError):
        manifest_text([ManifestEntry("a.mp4", -1)])
    assert classes_text(["a", "air drumming"]) == "a\nair drumming\n"


def test_unlabelled_manifests_hold_paths_alone(tmp_path):
    path = write(tmp_path / "test.txt", manifest_text([("videos/test/a.mp4", None), ("videos/test/b.mp4", None)]))
    assert path.read_text() == "videos/test/a.mp4\nvideos/test/b.mp4\n"
    assert [(e.path, e.label) for e in read_manifest(path, labelled=False)] == [("videos/test/a.mp4", None),
                                                                              ("videos/test/b.mp4", None)]
    with pytest.raises(ManifestError, match=r"test\.txt:1: expected"):
        read_manifest(path)  # training needs labels


@pytest.mark.parametrize("bad", ["/data/k400/a.mp4", "../other/a.mp4", "videos/../../a.mp4", "C:/k400/a.mp4"])
def test_paths_stay_inside_the_root_unless_the_reader_opts_in(tmp_path, bad):
    path = write(tmp_path / "m.txt", f"videos/ok.mp4 0\n{bad} 1\nvideos/x/../fine.mp4 1\n")
    with pytest.raises(ManifestError, match=rf"m\.txt:2: '{bad}' is outside the dataset root"):
        read_manifest(path)
    assert [e.path for e in read_manifest(path, allow_outside_root=True)] == ["videos/ok.mp4", bad,
                                                                            "videos/x/../fine.mp4"]


# ---- a video listed twice -----------------------------------------------------------------------------------------
def test_a_path_listed_twice_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path / "m.txt", "a.mp4 0\nb.mp4 1\n./a.mp4 0\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert str(info.value).startswith(f"{path}:3: './a.mp4' is already listed on line 1; list each video once")
    assert "--data.allow_duplicate_train true" in str(info.value) and "\n" not in str(info.value)
    # one path with two labels (it passed verify and trained on both)
    write(path, "a.mp4 0\nb.mp4 1\na.mp4 1\n")
    with pytest.raises(ManifestError, match=rf"m\.txt:3: 'a\.mp4' is already listed on line 1 with label 0;"):
        read_manifest(path)
    # a doubled manifest: every repeat listed, the way out said once
    write(path, "a.mp4 0\nb.mp4 1\n" * 2)
    with pytest.raises(ManifestError) as info:
        read_manifest(path, labelled=False)
    lines = str(info.value).splitlines()
    assert lines[:3] == [f"2 bad line(s) in {path}:", f"  {path}:3: 'a.mp4' is already listed on line 1",
                         f"  {path}:4: 'b.mp4' is already listed on line 2"]
    assert len(lines) == 4 and lines[3].startswith("  list each video once")
    # the opt-in (training manifests that repeat videos on purpose)
    assert [(e.path, e.line) for e in read_manifest(path, allow_duplicates=True)] == [
        ("a.mp4", 1), ("b.mp4", 2), ("a.mp4", 3), ("b.mp4", 4)]


@pytest.fixture
def doubled(tmp_path):
    """A dataset whose test and train manifests list every video twice."""
    data = make_dataset(tmp_path / "data", per_class=1, splits=("train", "val", "test"))
    for split in ("train", "test"):
        text = data["manifests"][split].read_text()
        data["manifests"][split].write_text(text + text)
    return data


def test_verify_refuses_a_doubled_manifest_in_one_line_unless_allowed(doubled, capsys):
    manifest = doubled["manifests"]["test"]
    assert prep_cli.main(["verify", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kinetics-prep: error: 2 bad line(s) in {manifest}:\n  {manifest}:3: ")
    assert not manifest.with_name("test.txt.bad.csv").exists()
    manifest = doubled["manifests"]["val"]
    write(manifest, manifest.read_text().splitlines()[0] + "\n" + manifest.read_text())  # one repeat: one line
    assert prep_cli.main(["verify", str(manifest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kinetics-prep: error: {manifest}:2: ") and "\n" not in err
    assert prep_cli.main(["verify", str(doubled["manifests"]["train"]), "--allow-duplicates"]) == 0
    assert capsys.readouterr().out == "verify: 2 ok, 0 bad\n"  # each video checked and counted once


def test_videonorm_test_refuses_a_doubled_manifest_before_the_run_starts(doubled, tmp_path, capsys, wandb_offline):
    # it used to report test/videos 12 for 6 videos, each counted twice in top-1
    runs = tmp_path / "runs"
    args = ["--config", str(DEMO_CONFIG), "--data.root", str(doubled["root"]), "--trainer.default_root_dir", str(runs)]
    assert videonorm_main(["test", *args, "--data.test_manifest", "test.txt"]) == 2
    err = capsys.readouterr().err
    assert f"error: 2 bad line(s) in {doubled['manifests']['test']}:" in err and "Traceback" not in err
    assert not runs.exists()  # no run directory, no W&B files
    # fit: a train manifest may repeat videos when asked (oversampling); val may not, even then
    write(doubled["manifests"]["val"], doubled["manifests"]["val"].read_text() * 2)
    assert videonorm_main(["fit", *args, "--data.allow_duplicate_train", "true"]) == 2
    assert f"in {doubled['manifests']['val']}:" in capsys.readouterr().err and not runs.exists()


def test_the_train_manifest_repeats_videos_only_when_asked(doubled):
    module = KineticsDataModule(str(doubled["root"]), num_workers=0, allow_duplicate_train=True)
    module.setup("fit")
    assert len(module.train_set) == 4 and len(module.val_set) == 2  # 2 videos, each twice in train
    with pytest.raises(ManifestError, match=r"train\.txt:3: .* is already listed on line 1"):
        KineticsDataModule(str(doubled["root"]), num_workers=0).setup("fit")
