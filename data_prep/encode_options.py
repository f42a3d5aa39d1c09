"""The encoder's command-line options, shared by ``trim``, ``resize`` and ``prepare``."""

from __future__ import annotations

import argparse

from data_prep.writer import EncodeSettings
from videonorm.commands import float_in, int_in

# libx264's presets, fastest first (x264_preset_names); a name not among them fails every video
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def add_encode_arguments(parser: argparse.ArgumentParser) -> None:
    """Encoder and parallelism options shared by ``trim``, ``resize`` and ``prepare``."""
    parser.add_argument("--short-side", type=int_in(0), default=256,
                        help="output short side in pixels; 0 keeps the size")
    parser.add_argument("--gop", type=int_in(0), default=16,
                        help="frames between key frames; 0 = libx264 default (250)")
    # x264 clips the rate factor to 0..51 at 8 bits (QP_BD_OFFSET = 0): 99 would silently encode as 51
    parser.add_argument("--crf", type=int_in(0, 51), default=23, help="libx264 quality, 0-51 (lower = better, bigger)")
    parser.add_argument("--preset", default="fast", choices=X264_PRESETS, metavar="PRESET",
                        help="libx264 preset: " + ", ".join(X264_PRESETS) + " (default %(default)s)")
    parser.add_argument("--layout", choices=("stride2", "x264"), default="stride2",
                        help="frame types: stride2 = odd frames non-reference (32x2 clips decode half the frames; "
                             "the default), x264 = libx264's own")
    parser.add_argument("--keep-audio", action="store_true", help="keep the audio (AAC); dropped by default")
    parser.add_argument("--min-duration", type=float_in(0), default=2.0,
                        help="flag outputs shorter than this many seconds")
    parser.add_argument("--jobs", type=int_in(1), default=1, help="parallel worker processes")


def settings_from(args: argparse.Namespace) -> EncodeSettings:
    """EncodeSettings from parsed ``add_encode_arguments`` options (one codec thread per job if jobs > 1)."""
    return EncodeSettings(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset,
                          keep_audio=args.keep_audio, threads=1 if args.jobs > 1 else 0, layout=args.layout)
