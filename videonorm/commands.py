"""One way to dispatch a subcommand, for ``videonorm``, ``videonorm bench`` and ``kinetics-prep``.

Every command module exposes ``configure(parser)`` (adds its options; may set the parser's ``description`` and
``epilog``, which default to the module's docstring) and ``run(args) -> int`` (the exit status). A program lists
its commands as ``name -> Command(module path, one-line help)`` and imports a module only when that command runs or
its options are needed, so ``videonorm --help`` loads none of them. Standard library only (``kinetics-prep``
starts without torch).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping, Sequence
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
