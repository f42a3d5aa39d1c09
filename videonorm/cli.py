"""The ``videonorm`` entry point.

``videonorm fit|validate|test`` go through Lightning's CLI; ``predict``, ``compare``, ``demo`` and ``bench`` are
our own subcommands, each owned by its module (``configure(parser)`` and ``run(args)``, see :mod:`videonorm.commands`;
imported only when its command runs, so ``--help`` stays fast).
"""

from __future__ import annotations

import sys
import warnings

from videonorm.commands import Command, run_command

COMMANDS = {
    "predict": Command("videonorm.predict", "class predictions (top-5, multi-view) for video files from a checkpoint"),
    "compare": Command("videonorm.results.compare",
                       "put runs (local records or W&B) side by side with the paper's table, as CSV/Markdown + plots"),
    "demo": Command("videonorm.demo", "prepare built-in synthetic data, train BN and GN at 16, 4 and 2 clips per "
                                      "device, compare (CPU, < 5 min)"),
    "bench": Command("videonorm.bench", "measure data pipeline and model throughput"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test")
# Deprecation notices our dependencies raise at import or on every run, about their own code: nothing a
# videonorm user can act on. Filtered here, at the entry point only, so library users and tests still see them.
DEPENDENCY_WARNINGS = (
    r"`torch\.jit\.script` is deprecated",  # fvcore/pytorchvideo script functions at import
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's _pytree on torch >= 2.10
)


def _usage() -> str:
    lines = ["usage: videonorm {fit,validate,test,predict,compare,demo,bench} ...", "", "subcommands:"]
    for name in LIGHTNING_COMMANDS:
        lines.append(f"  {name:<9} Lightning CLI: {name} with --config YAML (see configs/)")
    for name, command in COMMANDS.items():
        lines.append(f"  {name:<9} {command.help}")
    lines.append("")
    lines.append("Run 'videonorm SUBCOMMAND --help' for its options.")
    return "\n".join(lines)


def ignore_dependency_warnings() -> None:
    """Filter :data:`DEPENDENCY_WARNINGS` (in a ``catch_warnings`` block, or in a process of our own)."""
    for message in DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def main(args: list[str] | None = None) -> int:
    """Run the CLI. ``args`` excludes the program name (``sys.argv[1:]`` when None)."""
    with warnings.catch_warnings():
        ignore_dependency_warnings()
        return _run(list(sys.argv[1:] if args is None else args))


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in COMMANDS:
        return run_command(f"videonorm {argv[0]}", COMMANDS[argv[0]], argv[1:])
    from videonorm.data.decoders import DecoderUnavailableError
    from videonorm.data.manifest import ManifestError
    from videonorm.train.cli import run_lightning_cli
    from videonorm.train.guards import TrainingDiverged

    try:
        run_lightning_cli(argv)
    except ManifestError as err:  # bad input: file and line (the run has not started: nothing was written)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DecoderUnavailableError as err:  # data.decoder names one that cannot run here: say what to install
        print(f"error: {err}", file=sys.stderr)
        return 1
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
