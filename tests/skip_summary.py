"""A pytest plugin (loaded by tests/conftest.py) that says up front what this machine lacks and, at the end, how
many tests each skip reason stood for.

On a machine without the ``ffmpeg`` program or FFmpeg's shared libraries, some tests skip: those that write files
with the program, and torchcodec's exactness tests. ``-ra`` (pyproject) lists every skip with its file and line;
the same reason raised from several files is then spread over several lines, so this adds one line per reason,
with the count, and the header names the optional tools and decoders found.
"""

from __future__ import annotations

import shutil
from collections import Counter


def pytest_report_header(config) -> list[str]:
    """The ``ffmpeg`` program and the video decoders this run can use (the rest of their tests skip)."""
    from videonorm.data.decoders import BACKENDS, DecoderUnavailableError, backend_module

    ffmpeg = shutil.which("ffmpeg")
    lines = [f"ffmpeg program: {ffmpeg}" if ffmpeg else
             "ffmpeg program: not found (apt-get install ffmpeg): tests that write files with it skip"]
    for name in BACKENDS:
        try:
            backend_module(name)
        except DecoderUnavailableError as error:
            lines.append(f"decoder {name}: unavailable, its tests skip: {error}")
        else:
            lines.append(f"decoder {name}: available")
    return lines


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per skip reason, with the number of tests it skipped, most frequent first."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
            reasons[report.longrepr[2].removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skip reasons")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count:5d} skipped: {reason}")
