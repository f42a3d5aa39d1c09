"""What CI does about FFmpeg (``.ci/install-ffmpeg``, run by ``.ci/run``) and how skipped tests are reported
(``tests/skip_summary.py``): a machine without FFmpeg gets it where apt-get can install it, and otherwise says
so; every skip reason is counted in one place, and the header names what this machine lacks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL_FFMPEG = REPO / ".ci" / "install-ffmpeg"


def _install_ffmpeg(tmp_path: Path, *tools: str) -> subprocess.CompletedProcess:
    """The CI step with only ``tools`` (links to the real programs) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return subprocess.run([shutil.which("bash"), str(INSTALL_FFMPEG)], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=60)


def test_ci_runs_the_ffmpeg_step_before_the_tests():
    run = (REPO / ".ci" / "run").read_text()
    assert run.index("bash .ci/install-ffmpeg || true") < run.index('bash -euo pipefail -c "$cmd"')


def test_without_ffmpeg_or_apt_get_ci_says_so_and_goes_on(tmp_path):
    result = _install_ffmpeg(tmp_path, "id")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == ("CI: ffmpeg not found and no apt-get on this machine to install it: tests that need the "
                             "ffmpeg program or torchcodec's FFmpeg libraries will skip\n")


def test_with_ffmpeg_ci_installs_nothing(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg program not found (apt-get install ffmpeg): the step's no-op is not tested")
    result = _install_ffmpeg(tmp_path, "ffmpeg", "apt-get") if shutil.which("apt-get") else \
        _install_ffmpeg(tmp_path, "ffmpeg")
    assert result.returncode == 0
    assert result.stdout == f"CI: ffmpeg: {tmp_path / 'bin' / 'ffmpeg'}\n"


def test_skip_reasons_are_counted_and_the_header_names_what_is_missing(pytester, monkeypatch):
    reason = "ffmpeg program not found: apt-get install ffmpeg"
    pytester.makepyfile(
        test_a=f"import pytest\ndef test_1(): pytest.skip({reason!r})\ndef test_2(): pytest.skip({reason!r})\n",
        test_b=f"import pytest\ndef test_3(): pytest.skip({reason!r})\ndef test_4(): pytest.skip('no CUDA device')\n"
               "def test_5(): pass\n",
    )
    monkeypatch.setenv("PATH", str(pytester.path))  # no ffmpeg program on PATH
    result = pytester.runpytest("-p", "tests.skip_summary", "-ra")
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.fnmatch_lines([
        "ffmpeg program: not found (apt-get install ffmpeg): tests that write files with it skip",
        "decoder pyav: available",
        "*= skip reasons =*",
        f"    3 skipped: {reason}",
        "    1 skipped: no CUDA device",
    ])  # fmt: skip
