"""The encoder's command-line options, shared by ``trim``, ``resize`` and ``prepare``."""

from __future__ import annotations

import argparse

from data_prep.writer import EncodeSettings


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Encoder and parallelism options shared by ``trim``, ``resize`` and ``prepare``."""
    parser.add_argument("--short-side", type=int, default=256, help="output short side in pixels; 0 keeps the size")
    parser.add_argument("--gop", type=int, default=16, help="frames between key frames; 0 = libx264 default (250)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality (lower = better, bigger)")
    parser.add_argument("--preset", default="fast", help="libx264 preset")
    parser.add_argument("--layout", choices=("stride2", "x264"), default="stride2",
                        help="frame types: stride2 = odd frames non-reference (32x2 clips decode half the frames; "
                             "the default), x264 = libx264's own")
    parser.add_argument("--keep-audio", action="store_true", help="keep the audio (AAC); dropped by default")
    parser.add_argument("--min-duration", type=float, default=2.0,
                        help="flag outputs shorter than this many seconds")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes")


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    """EncodeSettings from parsed ``add_encode_arguments`` options (one codec thread per job if jobs > 1)."""
    return EncodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                          keep_audio=args.keep_audio, threads=1 if args.jobs > 1 else 0, layout=args.layout)
