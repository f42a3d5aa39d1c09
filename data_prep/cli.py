"""``kinetics-prep`` (also ``python -m data_prep``): prepare Kinetics for videonorm.

Subcommands, one module each (run ``kinetics-prep <command> --help``)::

    download  ANNOTATIONS.csv --out RAW_DIR                 yt-dlp the full source videos
    trim      ANNOTATIONS.csv --raw RAW_DIR --out VIDEOS    cut, resize, re-encode (short GOP)
    resize    VIDEOS_DIR --out OUT_DIR                      resize, re-encode pre-trimmed (CVDF) videos
    manifest  ANNOTATIONS.csv --videos VIDEOS --out M.txt  manifest + classes.txt + M.txt.missing.csv
    verify    MANIFEST [--drop]                             decode every video, MANIFEST.bad.csv
    prepare   ANNOTATIONS_DIR --raw RAW_DIR --out DATASET   all of the above per split
    synth     OUT_DIR --classes K --per-class N             a small synthetic Kinetics (demo, tests)

Exit status: 0 when the step ran (per-video failures are in its report CSV), 1 when ``verify`` leaves bad
videos in a manifest, 2 for bad input (the message names file and line), 130 when interrupted by Ctrl-C or
``kill`` (SIGTERM): the file being written is removed and a rerun resumes. After ``kill -9`` its partial file
is left and removed by the rerun.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import ModuleType

from data_prep import download, manifest, prepare, resize, synth, trim, verify
from data_prep.errors import InputError

STEPS: dict[str, ModuleType] = {"download": download, "trim": trim, "resize": resize, "manifest": manifest,
                                "verify": verify, "prepare": prepare, "synth": synth}


def _summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` cleans up like Ctrl-C: the file being written is removed


def _execute(module: ModuleType, args: argparse.Namespace) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return module.run(args)
    except InputError as err:
        print(f"kinetics-prep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinetics-prep: interrupted; finished files are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    """The ``kinetics-prep`` parser with one subparser per step."""
    parser = argparse.ArgumentParser(prog="kinetics-prep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in STEPS.items():
        sub = commands.add_parser(name, help=_summary(module), description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(sub)
    return parser


def run_step(name: str, argv: list[str] | None = None) -> int:
    """Run one step as its own program (``python -m data_prep.<step>``).

    Args:
        name: step name, a key of ``STEPS``.
        argv: arguments after the program name (default: ``sys.argv[1:]``).
    """
    module = STEPS[name]
    parser = argparse.ArgumentParser(prog=f"python -m data_prep.{name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.configure(parser)
    return _execute(module, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kinetics-prep``.

    Args:
        argv: arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        Exit status (see the module docstring).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _execute(STEPS[args.command], args)
