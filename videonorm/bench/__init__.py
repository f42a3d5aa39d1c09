"""``videonorm bench``: measure the data pipeline (``bench data``) and the model (``bench model``).

    videonorm bench data  [--videos DIR_OR_MANIFEST] [--clips N] [--backends pyav,torchcodec,decord] [--threads 1,2]
                          [--workers 0,1,2] [--out DIR]
    videonorm bench model [--depth 50] [--width 64] [--frames 8] [--size 112] [--batch 2]
                          [--norms bn,gn,syncbn,frozenbn,ln,in] [--steps N] [--device cpu|cuda] [--out DIR]
    videonorm bench prep  [--sources 20] [--clips 200] [--jobs 1,2] [--size 340x256] [--out DIR]

Each prints Markdown tables and saves them as CSV plus one JSON with the machine's description
(:mod:`videonorm.bench.common`). Benchmarks are commands, not tests: ``tests/test_bench.py`` only checks that
they run and write well-formed tables. Measured results: ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import importlib

# subcommand -> (module, help); each module has configure(parser) and run(args) -> int
COMMANDS = {
    "data": ("videonorm.bench.data", "decode + transform throughput of the training pipeline vs raw decoders"),
    "model": ("videonorm.bench.model", "training-step time, memory and FLOP/s per normalization layer"),
    "prep": ("videonorm.bench.prep", "kinetics-prep trim throughput and short- vs default-GOP random clip reads"),
}


def main(argv: list[str] | None = None) -> int:
    """``videonorm bench {data,model} ...``; ``argv`` excludes ``bench`` itself.

    Args:
        argv: Arguments (``sys.argv[2:]`` when None).

    Returns:
        Exit status.
    """
    parser = argparse.ArgumentParser(prog="videonorm bench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module, text) in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=importlib.import_module(module).__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        importlib.import_module(module).configure(sub)
    args = parser.parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
