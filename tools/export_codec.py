"""Export a trained `vq_codec` run as one self-contained codec file.

  python tools/export_codec.py --workdir=/work/runs/cr192 --out=cv/assets/codec_cr192.cvcodec

The file holds the model config, weights, codebooks and the code frequencies measured on the
run's training clips (used for entropy coding; cv.codec.export). Tools and downstream configs
load it by path (`--codec`, `--config.codec=`); the shipped ones also by name (cv.codec.shipped).
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--workdir", required=True, help="a finished vq_codec run")
  parser.add_argument("--out", required=True, help="output .cvcodec file")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default newest)")
  parser.add_argument("--max_clips", type=int, default=512,
                      help="training clips used to measure code frequencies")
  args = parser.parse_args(argv)
  from cv.codec.export import export_workdir  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import CodecError  # pylint: disable=g-import-not-at-top
  try:
    codec = export_workdir(args.workdir, args.out, args.step, args.max_clips)
  except CodecError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  size = os.path.getsize(args.out)
  print(f"wrote {args.out} ({size / 1e6:.2f} MB): codec_id {codec.codec_id}, nominal CR "
        f"{codec.nominal_cr():.1f} at 32x256x256, {codec.num_codebooks}x{codec.num_entries} codes, "
        f"step {codec.info.get('step')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
