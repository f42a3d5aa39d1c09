"""kinetics-prep refuses a bad command line before any work, with exit status 2, one error line and nothing created:
a number out of its range (named with the valid range, while the command line is parsed), an output of the wrong
kind (a file where a folder goes, a folder where a file goes), an output where nothing can be written (read-only).
Each step gets real inputs, so a bad command line that slipped through would run the step (and create its
output)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import cli
from data_prep.synth import make_dataset


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny synthetic release (one class, one 32x24 source of 2 s), a manifest of its source and a folder to write."""
    root = tmp_path_factory.mktemp("options")
    data = make_dataset(root / "release", num_classes=1, per_class=1, val_fraction=0, sizes=((32, 24),),
                        source_seconds=(2.0, 2.0), segment_seconds=(1,))
    (source,) = data.raw_dir.iterdir()
    manifest = data.root / "sources.txt"
    manifest.write_text(f"raw/{source.name} 0\n")
    return {"annotations": data.annotations_dir, "csv": data.csvs["train"], "raw": data.raw_dir,
            "manifest": manifest}


def _argv(step: str, inputs: dict[str, Path], out: Path) -> list[str]:
    """A command line on which ``step`` runs (and writes ``out``)."""
    return {
        "trim": ["trim", str(inputs["csv"]), "--raw", str(inputs["raw"]), "--out", str(out)],
        "resize": ["resize", str(inputs["raw"]), "--out", str(out)],
        "prepare": ["prepare", str(inputs["annotations"]), "--raw", str(inputs["raw"]), "--out", str(out)],
        # /bin/false as yt-dlp: every call fails at once, so a download that started would finish quickly
        "download": ["download", str(inputs["csv"]), "--out", str(out), "--yt-dlp", shutil.which("false")],
        "verify": ["verify", str(inputs["manifest"])],
        "synth": ["synth", str(out), "--classes", "1", "--per-class", "1"],
        "manifest": ["manifest", str(inputs["csv"]), "--videos", str(inputs["raw"]), "--root",
                     str(inputs["raw"].parent), "--out", str(out)],
    }[step]


WHOLE = "a whole number"
# (step, option, value, the range the error names)
CASES = [
    ("trim", "--short-side", "-5", f"{WHOLE} >= 0"),
    ("trim", "--gop", "-1", f"{WHOLE} >= 0"),
    ("trim", "--crf", "99", f"{WHOLE} from 0 to 51"),  # x264 would clip it to 51 (8-bit) without a word
    ("trim", "--crf", "-1", f"{WHOLE} from 0 to 51"),
    ("trim", "--crf", "20.5", f"{WHOLE} from 0 to 51"),
    ("trim", "--min-duration", "-1", "a number >= 0"),
    ("trim", "--min-duration", "nan", "a number >= 0"),
    ("trim", "--jobs", "0", f"{WHOLE} >= 1"),
    ("resize", "--short-side", "-5", f"{WHOLE} >= 0"),
    ("resize", "--jobs", "0", f"{WHOLE} >= 1"),
    ("prepare", "--crf", "52", f"{WHOLE} from 0 to 51"),
    ("prepare", "--jobs", "-2", f"{WHOLE} >= 1"),
    ("prepare", "--download-jobs", "0", f"{WHOLE} >= 1"),
    ("prepare", "--retries", "-1", f"{WHOLE} >= 0"),
    ("prepare", "--backoff", "-1", "a number >= 0"),
    ("prepare", "--margin", "-1", f"{WHOLE} >= 0"),
    ("download", "--jobs", "0", f"{WHOLE} >= 1"),
    ("download", "--retries", "-1", f"{WHOLE} >= 0"),  # today: every video fails with AssertionError
    ("download", "--backoff", "-1", "a number >= 0"),  # today: every retried video fails in time.sleep
    ("download", "--backoff", "inf", "a number >= 0"),
    ("download", "--margin", "-1", f"{WHOLE} >= 0"),
    ("verify", "--jobs", "0", f"{WHOLE} >= 1"),
    ("synth", "--classes", "0", f"{WHOLE} from 1 to 16"),
    ("synth", "--classes", "17", f"{WHOLE} from 1 to 16"),
    ("synth", "--per-class", "0", f"{WHOLE} >= 1"),
    ("synth", "--seed", "-1", f"{WHOLE} >= 0"),  # today: a traceback from numpy
    ("synth", "--val-fraction", "1", "a number >= 0 and < 1"),
    ("synth", "--test-fraction", "-0.1", "a number >= 0 and < 1"),
    ("synth", "--speed", "0", "a number > 0"),
    ("synth", "--jobs", "0", f"{WHOLE} >= 1"),
]


@pytest.mark.parametrize(("step", "option", "value", "valid"), CASES)
def test_out_of_range_option_is_refused_before_anything_is_made(inputs, tmp_path, capsys, step, option, value,
                                                                valid):
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(inputs["raw"].parent.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*_argv(step, inputs, work / "out"), option, value])
    assert exit_info.value.code == 2
    named = {"--val-fraction": "--val-fraction/--split-fraction"}.get(option, option)  # argparse names the alias too
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"kinetics-prep {step}: error: argument {named}: {value!r} is not {valid}")
    assert list(work.iterdir()) == [] and sorted(inputs["raw"].parent.rglob("*")) == before


def test_bad_preset_is_refused_with_the_list(inputs, tmp_path, capsys):
    # today every video fails ("x264 [error]: invalid preset") and the step exits 0
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*_argv("trim", inputs, tmp_path / "out"), "--preset", "fastest"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "argument --preset: invalid choice: 'fastest'" in error and "ultrafast" in error and "placebo" in error
    assert not (tmp_path / "out").exists()


def test_trim_short_side_minus_five_as_a_program(inputs, tmp_path):
    """The issue's case, as a user runs it: before, trim finished (exit 0) and kept the source size."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "data_prep", *_argv("trim", inputs, out), "--short-side", "-5"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == ("kinetics-prep trim: error: argument --short-side: '-5' is not a whole "
                                              "number >= 0")
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


# --- outputs of the wrong kind (issue 24 item 14) --------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("step", ["trim", "resize", "prepare", "download", "synth"])
def test_out_that_is_a_file_is_one_line_naming_it(inputs, tmp_path, capsys, step):
    # before: a FileExistsError (NotADirectoryError for synth) traceback, exit status 1
    out = tmp_path / "out"
    out.write_text("my notes\n")
    before = _snapshot(tmp_path), _snapshot(inputs["raw"].parent)
    assert cli.main(_argv(step, inputs, out)) == 2
    what = "output folder" if step == "synth" else "--out"
    assert capsys.readouterr().err == f"kinetics-prep: error: {what} {out}: is a file, not a folder\n"
    assert (_snapshot(tmp_path), _snapshot(inputs["raw"].parent)) == before


def test_prepare_download_raw_that_is_a_file(inputs, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.write_text("")
    argv = ["prepare", str(inputs["annotations"]), "--raw", str(raw), "--out", str(tmp_path / "dataset"), "--download",
            "--yt-dlp", shutil.which("false")]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"kinetics-prep: error: --raw {raw}: is a file, not a folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_out_below_a_file_names_the_file(inputs, tmp_path, capsys):
    (tmp_path / "notes").write_text("")
    out = tmp_path / "notes" / "videos"
    assert cli.main(_argv("trim", inputs, out)) == 2
    notes = tmp_path / "notes"
    assert capsys.readouterr().err == f"kinetics-prep: error: --out {out}: {notes} is a file, not a folder\n"


def test_manifest_out_must_be_a_file(inputs, tmp_path, capsys):
    # before: classes.txt and the .missing.csv were written beside the folder, then an IsADirectoryError traceback
    folder = tmp_path / "dataset"
    folder.mkdir()
    argv = ["manifest", str(inputs["csv"]), "--videos", str(inputs["raw"]), "--root", str(inputs["raw"].parent)]
    assert cli.main([*argv, "--out", str(folder)]) == 2
    assert capsys.readouterr().err == f"kinetics-prep: error: --out {folder}: is a folder, not a file\n"
    (tmp_path / "notes").write_text("")
    assert cli.main([*argv, "--out", str(tmp_path / "notes" / "train.txt")]) == 2
    assert capsys.readouterr().err == (f"kinetics-prep: error: --out {tmp_path / 'notes' / 'train.txt'}: "
                                       f"{tmp_path / 'notes'} is a file, not a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "notes"] and not list(folder.iterdir())


# --- outputs where nothing can be written (issue 24 item 13) ----------------------------------------------------

@pytest.fixture
def read_only():
    """``(lock, prefix)``: ``lock(folder)`` makes a folder read-only for the processes run as ``prefix + command``.

    Mode 0o555; root passes over modes (CAP_DAC_OVERRIDE), so as root the command runs without that capability
    (``setpriv``), like any user.
    """
    locked: list[Path] = []

    def lock(folder: Path) -> Path:
        folder.mkdir(exist_ok=True)
        folder.chmod(0o555)
        locked.append(folder)
        return folder

    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"] if setpriv else []
        if not prefix or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip("root without setpriv: cannot run a command that read-only modes stop")
    try:
        yield lock, prefix
    finally:
        for folder in locked:
            folder.chmod(0o755)


def _run(prefix: list[str], argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "data_prep", *argv], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("step", ["trim", "resize", "prepare", "download", "synth", "manifest"])
def test_out_in_a_read_only_folder_is_one_line_before_any_work(inputs, tmp_path, read_only, step):
    # before: trim, resize and download failed every video ("error") and exited 0; the others ended in a traceback
    lock, prefix = read_only
    locked = lock(tmp_path / "locked")
    out = locked / ("train.txt" if step == "manifest" else "out")
    before = _snapshot(tmp_path), _snapshot(inputs["raw"].parent)
    result = _run(prefix, _argv(step, inputs, out))
    what = "output folder" if step == "synth" else "--out"
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"kinetics-prep: error: {what} {out}: cannot write in {locked} (Permission denied)\n"
    assert (_snapshot(tmp_path), _snapshot(inputs["raw"].parent)) == before


@pytest.mark.parametrize("step", ["trim", "download"])
def test_read_only_out_and_read_only_place_of_its_report(inputs, tmp_path, read_only, step):
    lock, prefix = read_only
    out = lock(tmp_path / "out")
    result = _run(prefix, _argv(step, inputs, out))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"kinetics-prep: error: --out {out}: cannot write there (Permission denied)\n"
    # the folder takes files, the one that holds it (where the report goes) does not
    out.chmod(0o755)
    (out / "kept.txt").write_text("")
    lock(tmp_path)
    result = _run(prefix, _argv(step, inputs, out))
    assert result.returncode == 2
    assert result.stderr == (f"kinetics-prep: error: --out {out}: cannot write beside it in {tmp_path}, where its "
                             "report goes (Permission denied)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and [p.name for p in out.iterdir()] == ["kept.txt"]


def test_verify_of_a_manifest_in_a_read_only_folder(inputs, tmp_path, read_only):
    # before: every video was decoded, then writing MANIFEST.bad.csv failed with a traceback
    lock, prefix = read_only
    folder = tmp_path / "dataset"
    folder.mkdir()
    manifest = folder / "sources.txt"
    shutil.copy(inputs["manifest"], manifest)
    lock(folder)
    result = _run(prefix, ["verify", str(manifest), "--root", str(inputs["raw"].parent)])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"kinetics-prep: error: MANIFEST {manifest}: cannot write in {folder} (Permission denied)\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a read-only filesystem needs root")
def test_trim_into_a_read_only_filesystem(inputs, tmp_path, capsys):
    out = tmp_path / "mounted"
    out.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(out)]).returncode != 0:
        pytest.skip("mount refused here")
    try:
        assert cli.main(_argv("trim", inputs, out)) == 2
        assert capsys.readouterr().err == (f"kinetics-prep: error: --out {out}: cannot write there "
                                           "(Read-only file system)\n")
    finally:
        subprocess.run(["umount", str(out)], check=False)
    assert [p.name for p in tmp_path.iterdir()] == ["mounted"]
