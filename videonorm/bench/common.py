"""What both benchmarks share: the machine's description, CPU clocks, medians, and tables (printed as
Markdown, saved as CSV and JSON).

A table is a list of row dicts plus the ordered column names. :func:`save_tables` writes one CSV per table
(``{prefix}_{table}.csv``) and one JSON with every table and the run's metadata (``{prefix}.json``)::

    {"meta": {...machine, arguments...}, "tables": {"name": {"columns": [...], "rows": [{...}, ...]}}}

Files are written to a temporary name and renamed, so a reader never sees half a table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from videonorm.files import write_csv_atomic, write_text_atomic

Row = dict[str, object]


# ---- machine and clocks -------------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> float | None:
    """1-minute load average (None where the OS does not report it)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict[str, object]:
    """Where the numbers come from: CPU, cores, memory, library versions, load when measured."""
    import torch

    info: dict[str, object] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    for module in ("torchvision", "av", "torchcodec", "decord", "pytorchvideo"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError, OSError, RuntimeError):  # not installed or broken: leave it out
            continue
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished, waited-for children (DataLoader workers
    that exited), in seconds."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def median(values: Iterable[float]) -> float:
    """Median, NaN for no values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


# ---- tables -------------------------------------------------------------------------------------------------
def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        magnitude = abs(value)
        return f"{value:.3g}" if magnitude < 10 else f"{value:.1f}" if magnitude < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """Rows as a Markdown table (3 significant digits, at least one decimal below 1000; ``-`` for missing).

    Args:
        rows: One dict per row; keys missing from a row print as ``-``.
        columns: Column order (and header).
    """
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        lines.append("| " + " | ".join(v.rjust(w) if _is_number(v) else v.ljust(w) for v, w in zip(r, widths)) + " |")
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _json_value(value: object) -> object:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None  # JSON has no NaN
    return value


def save_tables(
    out_dir: str | os.PathLike, prefix: str, tables: dict[str, tuple[Sequence[Row], Sequence[str]]], meta: dict
) -> list[Path]:
    """Write each table as ``{prefix}_{name}.csv`` and all of them with ``meta`` as ``{prefix}.json``.

    Args:
        out_dir: Output folder (created).
        prefix: File name prefix, e.g. ``"data"``.
        tables: ``name -> (rows, columns)``.
        meta: Machine and arguments, stored in the JSON.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (rows, columns) in tables.items():
        path = out / f"{prefix}_{name}.csv"
        write_csv_atomic(path, list(columns), rows)
        written.append(path)
    document = {
        "meta": meta,
        "tables": {
            name: {"columns": list(columns), "rows": [{c: _json_value(row.get(c)) for c in columns} for row in rows]}
            for name, (rows, columns) in tables.items()
        },
    }
    path = out / f"{prefix}.json"
    write_text_atomic(path, json.dumps(document, indent=1, default=str) + "\n")
    written.append(path)
    return written


def print_tables(tables: dict[str, tuple[Sequence[Row], Sequence[str]]], titles: dict[str, str] | None = None) -> None:
    """Print each table under a heading (its title, else its name)."""
    for name, (rows, columns) in tables.items():
        print(f"\n### {(titles or {}).get(name, name)}\n")
        print(markdown_table(rows, columns))
    sys.stdout.flush()


def report(out_dir: str | os.PathLike, prefix: str, tables: dict[str, tuple[Sequence[Row], Sequence[str]]],
           titles: dict[str, str], meta: dict) -> list[Path]:
    """Print the tables (:func:`print_tables`), save them (:func:`save_tables`) and say where they went."""
    print_tables(tables, titles)
    written = save_tables(out_dir, prefix, tables, meta)
    print(f"\n[bench {prefix}] wrote {', '.join(str(p) for p in written)}")
    return written
