"""``videonorm bench``: measure the data pipeline (``bench data``), the model (``bench model``) and the data
preparation's encode (``bench prep``).

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

from videonorm.commands import Command, add_commands

COMMANDS = {
    "data": Command("videonorm.bench.data", "decode + transform throughput of the training pipeline vs raw decoders"),
    "model": Command("videonorm.bench.model", "training-step time, memory and FLOP/s per normalization layer"),
    "prep": Command("videonorm.bench.prep",
                    "kinetics-prep trim throughput and short- vs default-GOP random clip reads"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ``data``, ``model`` and ``prep`` to ``parser``, one subcommand each (a command is required)."""
    add_commands(parser, COMMANDS, required=True, metavar="{" + ",".join(COMMANDS) + "}")


def run(args: argparse.Namespace) -> int:
    """Run ``videonorm bench data|model|prep`` with parsed ``args``; returns the exit status."""
    return int(COMMANDS[args.command].load().run(args) or 0)
