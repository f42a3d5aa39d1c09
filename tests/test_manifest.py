"""videonorm.data.manifest: one set of rules for manifests and class lists, for training and kinetics-prep alike."""

from __future__ import annotations

import pytest

from videonorm.data.manifest import (
    ManifestEntry,
    ManifestError,
    classes_text,
    manifest_text,
    read_classes,
    read_manifest,
)


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
