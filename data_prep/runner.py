"""Running one step as a program: exit status, Ctrl-C and ``kill``, bad input.

Used by ``kinetics-prep`` (:mod:`data_prep.cli`) and by each step's own ``python -m data_prep.<step>``; the steps
import this module, never the CLI, so no step depends on the list of all steps.

Exit status: 0 when the step ran (per-video failures are in its report CSV), 1 when ``verify`` leaves bad
videos in a manifest, 2 for bad input (the message names file and line), 3 when the disk is full (no space
left, quota exceeded, file size limit), 130 when interrupted by Ctrl-C or ``kill`` (SIGTERM). In the last two
cases the file being written is removed, finished files are kept, and a rerun resumes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import ModuleType

from data_prep.errors import NO_SPACE, InputError
from videonorm.commands import command_parser
from videonorm.data.manifest import ManifestError


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` cleans up like Ctrl-C: the file being written is removed


def execute(step: ModuleType, args: argparse.Namespace) -> int:
    """Run ``step.run(args)`` and turn bad input and interruptions into exit codes with one clear line.

    Args:
        step: a step module (``configure(parser)`` and ``run(args) -> int``).
        args: its parsed arguments.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        return step.run(args)
    except (InputError, ManifestError) as err:
        print(f"kinetics-prep: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in NO_SPACE:
            raise
        print(f"kinetics-prep: error: {err.strerror}: {err.filename}; finished files are kept and the partial one "
              "removed: free some space and rerun the same command to resume", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("kinetics-prep: interrupted; finished files are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def step_name(step: ModuleType) -> str:
    """``trim`` for ``data_prep.trim`` (also when it runs as ``__main__`` under ``python -m``)."""
    spec = getattr(step, "__spec__", None)
    return (spec.name if spec is not None else step.__name__).rpartition(".")[2]


def run_step(step: ModuleType, argv: list[str] | None = None) -> int:
    """Run one step as its own program (``python -m data_prep.<step>``).

    Args:
        step: the step module.
        argv: arguments after the program name (default: ``sys.argv[1:]``).
    """
    parser = command_parser(f"python -m data_prep.{step_name(step)}", step)
    return execute(step, parser.parse_args(argv))
