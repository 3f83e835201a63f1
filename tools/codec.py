"""Compress videos with the neural codec, and decompress them.

  python tools/codec.py compress INPUT OUT.cvz [--codec cr30|cr192|cr768|demo|PATH] [--entropy]
  python tools/codec.py decompress IN.cvz OUTPUT [--codec PATH]

INPUT: any video file (mp4/avi/mkv/webm/...) or a folder of frames (png/jpg, sorted by name);
OUTPUT: a video file (.mp4/.mkv/.avi/.webm) or a new folder of PNG frames. `--codec` is a shipped
codec name (cr192, the default, cr30 and cr768: trained on real footage; demo: the previous
default, trained on 64x64 demo clips), a codec file from tools/export_codec.py or a vq_codec
workdir. Decompress finds the shipped codec that wrote the file by its id; name --codec for any
other. The .cvz holds the original size, frame rate and frame count.
"""
from __future__ import annotations

import argparse
import sys


from cv.lib import tf_env  # pylint: disable=g-import-not-at-top,wrong-import-position

tf_env.quiet_tensorflow()  # before anything imports TensorFlow


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
    p.add_argument("--codec", default=None,
                   help="shipped codec name (cr30|cr192|cr768|demo), codec file or vq_codec "
                        "workdir (compress default: cr192; decompress: the shipped codec that "
                        "wrote the file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)

  from absl import logging
  logging.set_verbosity(logging.ERROR)
  from cv.codec import files
  from cv.codec.neural import NeuralCodec
  from cv.lib.errors import UserError
  try:
    if args.command == "compress":
      codec = NeuralCodec.load(args.codec)
      s = files.compress(args.input, args.output, codec, chunk_frames=args.chunk_frames,
                         use_entropy=args.entropy, fps=args.fps, progress=not args.quiet,
                         levels=args.levels)
      print(f"{args.output}: {s['frames']} frames, {s['bytes']:,} bytes ({s['bpp']:.4f} bits/pixel, "
            f"CR {s['cr']:.1f} vs raw RGB; header+framing {100 * s['overhead']:.2f}%)")
    else:
      codec = NeuralCodec.load(args.codec) if args.codec else None
      s = files.decompress(args.input, args.output, codec, progress=not args.quiet)
      print(f"{args.output}: {s['frames']} frames of {s['width']}x{s['height']} at {s['fps']} fps")
  except (UserError, ValueError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
