"""Compress videos with the neural codec, and decompress them.

  python tools/codec.py compress INPUT OUT.cvz [--codec PATH] [--chunk_frames 32] [--entropy]
  python tools/codec.py decompress IN.cvz OUTPUT [--codec PATH]

INPUT: any video file (mp4/avi/mkv/webm/...) or a folder of frames (png/jpg, sorted by name);
OUTPUT: a video file (.mp4/.mkv/.avi/.webm) or a new folder of PNG frames. `--codec` is a codec
file from tools/export_codec.py or a vq_codec workdir; default: the demo codec shipped in
cv/assets (CR 192). The .cvz holds the original size, frame rate and frame count.
"""
from __future__ import annotations

import argparse
import os
import sys


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  sub = parser.add_subparsers(dest="command", required=True)
  c = sub.add_parser("compress", help="video or frame folder -> .cvz")
  c.add_argument("input")
  c.add_argument("output")
  c.add_argument("--chunk_frames", type=int, default=32, help="frames encoded at once")
  c.add_argument("--entropy", action="store_true", help="entropy-code the indices: each chunk is "
                 "range-coded by the codec's code frequencies, or by a temporal-context model "
                 "(each index predicted from the latent frame before it), or bit-packed, whichever "
                 "is smallest")
  c.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder (default 25)")
  c.add_argument("--levels", type=int, default=None,
                 help="residual-quantisation codecs: keep the first LEVELS levels (a lower rate)")
  d = sub.add_parser("decompress", help=".cvz -> video file or frame folder")
  d.add_argument("input")
  d.add_argument("output")
  for p in (c, d):
    p.add_argument("--codec", default=None, help="codec file or vq_codec workdir (default: demo codec)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)

  from absl import logging
  logging.set_verbosity(logging.ERROR)
  from cv.codec import files
  from cv.codec.neural import NeuralCodec
  from cv.lib.errors import UserError
  try:
    codec = NeuralCodec.load(args.codec)
    if args.command == "compress":
      s = files.compress(args.input, args.output, codec, chunk_frames=args.chunk_frames,
                         use_entropy=args.entropy, fps=args.fps, progress=not args.quiet,
                         levels=args.levels)
      print(f"{args.output}: {s['frames']} frames, {s['bytes']:,} bytes ({s['bpp']:.4f} bits/pixel, "
            f"CR {s['cr']:.1f} vs raw RGB; header+framing {100 * s['overhead']:.2f}%)")
    else:
      s = files.decompress(args.input, args.output, codec, progress=not args.quiet)
      print(f"{args.output}: {s['frames']} frames of {s['width']}x{s['height']} at {s['fps']} fps")
  except (UserError, ValueError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
