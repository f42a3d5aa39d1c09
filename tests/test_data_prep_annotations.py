"""Annotation CSVs, manifests and class lists: parsing and validation (no videos)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.annotations import find_split_csv, read_annotations, segment_name
from data_prep.errors import InputError
from data_prep.manifest import check_labels, write_classes
from videonorm.data.manifest import ManifestError, read_classes

HEADER = "label,youtube_id,time_start,time_end,split\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_segment_name_matches_cvdf_convention():
    assert segment_name("--07WQ2iBlw", 1, 11) == "--07WQ2iBlw_000001_000011.mp4"
    assert segment_name("abc", 123456, 123466) == "abc_123456_123466.mp4"


def test_reads_official_rows_with_extra_columns_and_float_times(tmp_path):
    csv = write(tmp_path / "train.csv", "label,youtube_id,time_start,time_end,split,is_cc\n"
                "abseiling,--07WQ2iBlw,1,11,train,0\n"
                '"passing American football (in game)",-0AAAAAAAAA,14.0,24.0,train,1\n')
    ann = read_annotations(csv)
    assert [s.name for s in ann.segments] == ["--07WQ2iBlw_000001_000011.mp4", "-0AAAAAAAAA_000014_000024.mp4"]
    assert ann.segments[1].label == "passing American football (in game)"
    assert [s.line for s in ann.segments] == [2, 3]
    assert ann.labels() == {"abseiling", "passing American football (in game)"}


def test_k400_val_split_name_reads_as_validate(tmp_path):
    csv = write(tmp_path / "validate.csv", HEADER + "archery,aaaaaaaaaaa,0,10,val\n")
    assert read_annotations(csv).segments[0].split == "validate"


def test_test_split_without_label_column(tmp_path):
    csv = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\naaaaaaaaaaa,0,10,test\n")
    seg = read_annotations(csv).segments[0]
    assert (seg.label, seg.split) == ("", "test")


def test_train_rows_need_the_label_column(tmp_path):
    csv = write(tmp_path / "x.csv", "youtube_id,time_start,time_end,split\naaaaaaaaaaa,0,10,train\n")
    with pytest.raises(InputError, match=r"x\.csv:2: .*needs a label column"):
        read_annotations(csv)


def test_missing_columns_name_file_and_header_line(tmp_path):
    csv = write(tmp_path / "bad.csv", "label,youtube_id,start,split\nx,aaaaaaaaaaa,1,train\n")
    with pytest.raises(InputError, match=r"bad\.csv:1: missing column\(s\) time_start, time_end"):
        read_annotations(csv)


def test_every_bad_row_is_listed_with_file_and_line(tmp_path):
    csv = write(tmp_path / "bad.csv", HEADER
                + "a,aaaaaaaaaaa,0,10,train\n"      # 2 ok
                + "a,bbbbbbbbbbb,abc,10,train\n"    # 3 not a number
                + "a,ccccccccccc,10,5,train\n"      # 4 end before start
                + "a,ddddddddddd,-3,5,train\n"      # 5 negative
                + "a,eeeeeeeeeee,0,10,holdout\n"    # 6 unknown split
                + "a,aaaaaaaaaaa,0,10.0,train\n"    # 7 duplicate of 2
                + ",fffffffffff,0,10,train\n"       # 8 empty label
                + "a,ggggggggggg,1.5,10,train\n"    # 9 fractional
                + "a,bad id!,0,10,train\n"          # 10 unsafe id
                + "a,hhhhhhhhhhh,0,10\n")           # 11 missing field
    with pytest.raises(InputError) as info:
        read_annotations(csv)
    message = str(info.value)
    expected = {3: "time_start 'abc' is not a number", 4: "time_end 5 is not after time_start 10",
                5: "time_start '-3' is negative", 6: "unknown split 'holdout'",
                7: "duplicate segment aaaaaaaaaaa [0, 10] (first on line 2)", 8: "empty label",
                9: "not a whole number", 10: "bad youtube_id", 11: "wrong number of fields"}
    for line, problem in expected.items():
        assert f"{csv}:{line}: " in message and problem in message, (line, message)
    assert f"{csv}:2:" not in message
    assert message.startswith("9 bad row(s)")


def test_skip_bad_rows_keeps_the_good_ones_and_lists_the_rest(tmp_path, capsys):
    csv = write(tmp_path / "bad.csv", HEADER + "a,aaaaaaaaaaa,0,10,train\na,bbbbbbbbbbb,x,10,train\n")
    ann = read_annotations(csv, skip_bad_rows=True)
    assert [s.youtube_id for s in ann.segments] == ["aaaaaaaaaaa"]
    assert len(ann.errors) == 1 and f"{csv}:3:" in ann.errors[0]
    assert f"{csv}:3:" in capsys.readouterr().err


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_annotations(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r":1: empty file"):
        read_annotations(write(tmp_path / "empty.csv", ""))


def test_find_split_csv(tmp_path):
    write(tmp_path / "train.csv", HEADER)
    write(tmp_path / "kinetics_400_val.csv", HEADER)
    assert find_split_csv(tmp_path, "train").name == "train.csv"
    assert find_split_csv(tmp_path, "validate").name == "kinetics_400_val.csv"
    with pytest.raises(InputError, match="no annotation CSV for split 'test'"):
        find_split_csv(tmp_path, "test")


def test_write_classes_never_replaces_a_different_list(tmp_path):
    classes = tmp_path / "classes.txt"
    write_classes(classes, ["a", "b"])
    write_classes(classes, ["a", "b"])  # same list: fine
    with pytest.raises(InputError, match="different class list"):
        write_classes(classes, ["a", "b", "c"])
    assert read_classes(classes) == ["a", "b"]


def test_unknown_label_names_label_file_and_line(tmp_path):
    csv = write(tmp_path / "val.csv", HEADER + "a,aaaaaaaaaaa,0,10,validate\nzebra,bbbbbbbbbbb,0,10,validate\n")
    segments = read_annotations(csv).segments
    with pytest.raises(InputError, match=r"val\.csv:3: label 'zebra' is not in the class list"):
        check_labels(segments, ["a"], csv)


def test_a_label_with_a_quoted_line_break_is_rejected_with_file_and_line(tmp_path):
    csv = write(tmp_path / "train.csv", HEADER + "abseiling,aaaaaaaaaaa,0,10,train\n"
                '"air\ndrumming",bbbbbbbbbbb,0,10,train\n' "zumba,ccccccccccc,0,10,train\n")
    with pytest.raises(InputError, match=r"train\.csv:4: label 'air\\ndrumming' contains a line break"):
        read_annotations(csv)
    # a class list is never written with such a name either: it would be a line (a label) too many
    with pytest.raises(ManifestError, match="line break"):
        write_classes(tmp_path / "classes.txt", ["abseiling", "air\ndrumming", "zumba"])
    assert not (tmp_path / "classes.txt").exists()
