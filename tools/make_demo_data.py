"""Generates (or finds cached) deterministic demo datasets and prints their folders.

Examples:
  python tools/make_demo_data.py --format=all
  python tools/make_demo_data.py --format=kinetics --root=/tmp/demo --seed=1 \\
      --train_per_class=8 --validate_per_class=2 --height=64 --width=96
  python tools/make_demo_data.py --format=walking_tours --walks=1 --length_seconds=3600

Each dataset lands in `{root}/{format}-{hash of params}` (root: --root, else $CV_DEMO_DIR, else
~/.cache/cv/demo) and is only generated when missing; see cv/data/demo/ for the formats.
Options left unset keep each format's own default (e.g. 96x128 for kinetics/coin, 64x64 walks).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence


from cv.data import demo  # pylint: disable=g-import-not-at-top,wrong-import-position

FORMATS = ("kinetics", "coin", "walking_tours")

# CLI option -> (formats it applies to, params field).
_OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "seed": (FORMATS, "seed"),
    "height": (FORMATS, "height"),
    "width": (FORMATS, "width"),
    "fps": (FORMATS, "fps"),
    "crf": (FORMATS, "crf"),
    "train_per_class": (("kinetics",), "train_per_class"),
    "validate_per_class": (("kinetics",), "validate_per_class"),
    "num_frames": (("kinetics",), "num_frames"),
    "num_training": (("coin",), "num_training"),
    "num_testing": (("coin",), "num_testing"),
    "duration_seconds": (("coin",), "duration_seconds"),
    "walks": (("walking_tours",), "num_walks"),
    "length_seconds": (("walking_tours",), "length_seconds"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses the command line (all dataset options default to None = format default)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--format", choices=FORMATS + ("all",), default="all",
                      help="Which dataset(s) to make.")
  parser.add_argument("--root", default=None,
                      help="Cache folder (default: $CV_DEMO_DIR or ~/.cache/cv/demo).")
  parser.add_argument("--seed", type=int, default=None, help="Random seed (default 0).")
  parser.add_argument("--height", type=int, default=None, help="Frame height (even).")
  parser.add_argument("--width", type=int, default=None, help="Frame width (even).")
  parser.add_argument("--fps", type=float, default=None, help="Frames per second.")
  parser.add_argument("--crf", type=int, default=None, help="libx264 CRF (quality).")
  parser.add_argument("--train_per_class", type=int, default=None,
                      help="Kinetics: train clips per class (default 48).")
  parser.add_argument("--validate_per_class", type=int, default=None,
                      help="Kinetics: validate clips per class (default 12).")
  parser.add_argument("--num_frames", type=int, default=None,
                      help="Kinetics: frames per clip (default 32).")
  parser.add_argument("--num_training", type=int, default=None,
                      help="COIN: training videos (default 24).")
  parser.add_argument("--num_testing", type=int, default=None,
                      help="COIN: testing videos (default 8).")
  parser.add_argument("--duration_seconds", type=float, nargs=2, default=None,
                      metavar=("MIN", "MAX"), help="COIN: video length range (default 20 40).")
  parser.add_argument("--walks", type=int, default=None,
                      help="WalkingTours: number of walks (default 2).")
  parser.add_argument("--length_seconds", type=float, default=None,
                      help="WalkingTours: length of each walk in seconds (default 300).")
  parser.add_argument("--quiet", action="store_true", help="Only print the dataset folders.")
  return parser.parse_args(argv)


def params_for(fmt: str, args: argparse.Namespace) -> dict[str, Any]:
  """The params of `fmt` that were set on the command line."""
  params = {}
  for option, (formats, field) in _OPTIONS.items():
    value = getattr(args, option)
    if value is not None and fmt in formats:
      params[field] = value
  return params


def run(argv: Sequence[str] | None = None) -> list[str]:
  """Makes the requested datasets; prints and returns their folders."""
  args = parse_args(argv)
  if not args.quiet:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  formats = FORMATS if args.format == "all" else (args.format,)
  paths = []
  for fmt in formats:
    path = demo.ensure(fmt, args.root, **params_for(fmt, args))
    print(path, flush=True)
    paths.append(path)
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  """The `cv-demo-data` command: `run`, exit status 0."""
  run(argv)
  return 0


if __name__ == "__main__":
  sys.exit(main())
