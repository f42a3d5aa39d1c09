"""``kinetics-prep`` entry point (subcommands land with the data_prep issue)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinetics-prep", description="Prepare Kinetics for videonorm.")
    parser.add_subparsers(dest="command")
    parser.parse_args(argv)
    parser.print_help()
    return 0
