"""``kinetics-prep`` (also ``python -m data_prep``): prepare Kinetics for videonorm.

Subcommands, one module each (run ``kinetics-prep <command> --help``)::

    download  ANNOTATIONS.csv --out RAW_DIR                 yt-dlp the annotated sections (or whole videos)
    trim      ANNOTATIONS.csv --raw RAW_DIR --out VIDEOS    cut, resize, re-encode (short GOP)
    resize    VIDEOS_DIR --out OUT_DIR                      resize, re-encode pre-trimmed (CVDF) videos
    manifest  ANNOTATIONS.csv --videos VIDEOS --out M.txt  manifest + classes.txt + M.txt.missing.csv
    verify    MANIFEST [--drop]                             decode every video, MANIFEST.bad.csv
    prepare   ANNOTATIONS_DIR --raw RAW_DIR --out DATASET   all of the above per split
    synth     OUT_DIR --classes K --per-class N             a small synthetic Kinetics (demo, tests)

Exit status: see :mod:`data_prep.runner` (0 ran, 1 bad videos left by ``verify``, 2 bad input, 3 disk full,
130 interrupted).
"""

from __future__ import annotations

import argparse

from data_prep.runner import execute
from videonorm.commands import Command, add_commands

# step -> its module (configure(parser), run(args)); the help line is the first line of the module's docstring
STEPS = {name: Command(f"data_prep.{name}") for name in
         ("download", "trim", "resize", "manifest", "verify", "prepare", "synth")}


def build_parser() -> argparse.ArgumentParser:
    """The ``kinetics-prep`` parser with one subparser per step."""
    parser = argparse.ArgumentParser(prog="kinetics-prep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(parser, STEPS, required=False, metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kinetics-prep``.

    Args:
        argv: arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        Exit status (see :mod:`data_prep.runner`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return execute(STEPS[args.command].load(), args)
