"""The ``videonorm`` entry point.

``videonorm fit|validate|test|predict`` go through Lightning's CLI; ``compare``, ``demo`` and ``bench`` are
our own subcommands, each owned by its module (imported lazily so ``--help`` stays fast).
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help). Each module exposes ``main(argv: list[str] | None) -> int``.
EXTRA_COMMANDS = {
    "compare": ("videonorm.results.compare", "put W&B runs side by side with the paper's table, as CSV/Markdown + plots"),
    "demo": ("videonorm.demo", "prepare built-in synthetic data, train BN/GN x 2 batch sizes, compare (CPU, < 5 min)"),
    "bench": ("videonorm.bench", "measure data pipeline and model throughput"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _usage() -> str:
    lines = ["usage: videonorm {fit,validate,test,predict,compare,demo,bench} ...", "", "subcommands:"]
    for name in LIGHTNING_COMMANDS:
        lines.append(f"  {name:<9} Lightning CLI: {name} with --config YAML (see configs/)")
    for name, (_, text) in EXTRA_COMMANDS.items():
        lines.append(f"  {name:<9} {text}")
    lines.append("")
    lines.append("Run 'videonorm SUBCOMMAND --help' for its options.")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Run the CLI. ``args`` excludes the program name (``sys.argv[1:]`` when None)."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in EXTRA_COMMANDS:
        module = importlib.import_module(EXTRA_COMMANDS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    from videonorm.data.decoders import DecoderUnavailableError
    from videonorm.train.cli import run_lightning_cli

    try:
        run_lightning_cli(argv)
    except DecoderUnavailableError as error:  # data.decoder names one that cannot run here: say what to install
        raise SystemExit(f"error: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
