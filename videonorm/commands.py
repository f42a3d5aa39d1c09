"""One way to dispatch a subcommand, for ``videonorm``, ``videonorm bench`` and ``kinetics-prep``, and the argparse
types that refuse a number out of its range while the command line is parsed.

Every command module exposes ``configure(parser)`` (adds its options; may set the parser's ``description`` and
``epilog``, which default to the module's docstring) and ``run(args) -> int`` (the exit status). A program lists
its commands as ``name -> Command(module path, one-line help)`` and imports a module only when that command runs or
its options are needed, so ``videonorm --help`` loads none of them. Standard library only (``kinetics-prep``
starts without torch).
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType


class UsageError(Exception):
    """Bad command-line input that only ``run`` can see: reported as argparse reports its own (usage, exit 2)."""


@dataclass(frozen=True)
class Command:
    """A subcommand: the module that owns it and its one-line help.

    Args:
        module: Dotted module path (imported when needed).
        help: One line for the program's list of commands; None takes the first line of the module's docstring.
    """

    module: str
    help: str | None = None

    def load(self) -> ModuleType:
        """The command's module (imported on first use)."""
        return importlib.import_module(self.module)

    def summary(self) -> str:
        """The one-line help."""
        return self.help if self.help is not None else (self.load().__doc__ or "").strip().splitlines()[0]


def _range_text(kind: str, low: float, high: float | None, include_low: bool, include_high: bool) -> str:
    """``a whole number from 0 to 51``, ``a number > 0``, ``a number >= 0 and < 1``."""
    if high is not None and include_low and include_high:
        return f"{kind} from {low:g} to {high:g}"
    text = f"{kind} {'>=' if include_low else '>'} {low:g}"
    return text if high is None else f"{text} and {'<=' if include_high else '<'} {high:g}"


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` that takes a whole number from ``low`` to ``high`` (both included; no upper bound if
    None) and refuses anything else with a message naming the range (``'-5' is not a whole number >= 0``).

    Args:
        low: The smallest value accepted.
        high: The largest value accepted (None: no upper bound).
    """
    text = _range_text("a whole number", low, high, True, True)

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{value!r} is not {text}")
        return number

    return parse


def float_in(low: float, high: float | None = None, *, include_low: bool = True,
             include_high: bool = True) -> Callable[[str], float]:
    """An argparse ``type=`` that takes a finite number in a range and refuses anything else (NaN, inf, out of range)
    with a message naming the range (``'0' is not a number > 0``).

    Args:
        low: The lower bound.
        high: The upper bound (None: none).
        include_low: Whether ``low`` itself is accepted.
        include_high: Whether ``high`` itself is accepted.
    """
    text = _range_text("a number", low, high, include_low, include_high)

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        above = number >= low if include_low else number > low
        below = high is None or (number <= high if include_high else number < high)
        if not (math.isfinite(number) and above and below):
            raise argparse.ArgumentTypeError(f"{value!r} is not {text}")
        return number

    return parse


def command_parser(prog: str, module: ModuleType) -> argparse.ArgumentParser:
    """The parser of one command run as its own program (``videonorm predict``, ``python -m data_prep.trim``)."""
    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.configure(parser)
    return parser


def add_commands(parser: argparse.ArgumentParser, commands: Mapping[str, Command], *, required: bool,
                 metavar: str) -> None:
    """One subparser per command under ``args.command`` (each module is imported to add its options).

    Args:
        parser: The program's parser.
        commands: Name -> command.
        required: Whether a command must be given (argparse then exits 2 without one).
        metavar: How the command list shows in the usage line.
    """
    subparsers = parser.add_subparsers(dest="command", required=required, metavar=metavar)
    for name, command in commands.items():
        module = command.load()
        sub = subparsers.add_parser(name, help=command.summary(), description=module.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(sub)


def run_parsed(parser: argparse.ArgumentParser, module: ModuleType, args: argparse.Namespace) -> int:
    """``module.run(args)``, with a :class:`UsageError` reported through ``parser`` (exit status 2)."""
    try:
        return int(module.run(args) or 0)
    except UsageError as err:
        parser.error(str(err))


def run_command(prog: str, command: Command, argv: Sequence[str]) -> int:
    """Parse ``argv`` with the command's options and run it.

    Args:
        prog: The program name shown in usage and errors (``videonorm compare``).
        command: The command.
        argv: Its arguments (after the command name).

    Returns:
        The command's exit status (argparse exits 2 itself on bad options, 0 after ``--help``).
    """
    module = command.load()
    parser = command_parser(prog, module)
    return run_parsed(parser, module, parser.parse_args(list(argv)))
