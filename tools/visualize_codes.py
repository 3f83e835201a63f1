"""Shows what the neural codec does to a video: input | reconstruction | codes, and an error grid.

  python tools/visualize_codes.py INPUT_VIDEO --out DIR [--codec PATH] [--num_frames 32]
      [--size 128]

The first `--num_frames` frames of INPUT_VIDEO (fewer if the video is shorter) are resized
(short side) and centre-cropped to a `--size` square, encoded and decoded with the codec
(default: the shipped default codec, cr192, in cv/assets). The codes are shown as colours: the
codebook embedding of every code position projected on its 3 principal components
(cv.codec.pictures).
Writes (each file atomically):

  DIR/side_by_side.mp4   input | reconstruction | codes (PCA), H.264, at the video's frame rate
  DIR/side_by_side.gif   the same as an animated GIF
  DIR/grid.png           rows input / reconstruction / |difference| x4 over 8 evenly spaced frames

and prints the paths and the PSNR of the reconstruction.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


from cv.lib import tf_env  # pylint: disable=g-import-not-at-top,wrong-import-position

tf_env.quiet_tensorflow()  # before anything imports TensorFlow


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses the command line."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("input", help="video file (mp4/avi/mkv/webm/...)")
  parser.add_argument("--out", required=True, help="output folder (created if missing)")
  parser.add_argument("--codec", default=None,
                      help="shipped codec name (cr30|cr192|cr768|demo), codec file or "
                           "vq_codec workdir (default: cr192)")
  parser.add_argument("--num_frames", type=int, default=32,
                      help="frames to show, from the first (fewer if the video is shorter)")
  parser.add_argument("--size", type=int, default=128,
                      help="resize the short side to this and centre-crop a square (even)")
  parser.add_argument("--grid_frames", type=int, default=8, help="columns of grid.png")
  return parser.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
  """Raises ValueError naming the flag or file that cannot work."""
  if not os.path.exists(args.input):
    raise ValueError(f"{args.input}: no such file; pass an existing video file as INPUT_VIDEO")
  if not os.path.isfile(args.input):
    raise ValueError(f"{args.input}: not a file (a folder?); pass a video file as INPUT_VIDEO")
  if args.num_frames < 1:
    raise ValueError(f"--num_frames must be >= 1, got {args.num_frames}")
  if args.size < 2 or args.size % 2:
    raise ValueError(f"--size must be an even number >= 2 (H.264 needs even frame sizes), got "
                     f"{args.size}")
  if args.grid_frames < 1:
    raise ValueError(f"--grid_frames must be >= 1, got {args.grid_frames}")


def run(args: argparse.Namespace) -> dict[str, object]:
  """Encodes, decodes and writes the three pictures; returns their paths and the PSNR."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.data import transforms, video  # pylint: disable=g-import-not-at-top
  from cv.data.writer import write_video  # pylint: disable=g-import-not-at-top
  from cv.codec import pictures  # pylint: disable=g-import-not-at-top

  info = video.probe(args.input)
  num_frames = min(args.num_frames, info.num_frames)
  frames = video.read_frames(args.input, np.arange(num_frames))
  frames = transforms.resize_and_crop(frames, short_side=args.size, crop=args.size, train=False)
  codec = NeuralCodec.load(args.codec)
  codes = codec.encode(frames)
  recon = codec.decode(codes, size=frames.shape[:3])
  latents = np.asarray(codec.latents(codes[None]))[0]
  code_rgb = pictures.pca_rgb(latents)
  panels = pictures.side_by_side(frames, recon, code_rgb, temporal_factor=codec.temporal_factor,
                                  spatial_factor=codec.spatial_factor)
  grid = pictures.reconstruction_grid(frames, recon, args.grid_frames)

  fps = info.fps if info.fps > 0 else 25.0
  paths = {name: os.path.join(args.out, name)
           for name in ("side_by_side.mp4", "side_by_side.gif", "grid.png")}
  write_video(paths["side_by_side.mp4"], panels, fps)
  pictures.write_gif(paths["side_by_side.gif"], panels, fps)
  pictures.write_png(paths["grid.png"], grid)
  mse = float(np.mean((frames.astype(np.float64) - recon.astype(np.float64)) ** 2))
  psnr = 10.0 * np.log10(255.0**2 / max(mse, 1e-10))
  return {"paths": paths, "psnr": float(psnr), "frames": list(frames.shape[:3]),
          "codes": list(codes.shape), "cr": codec.nominal_cr()}


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the tool; returns the exit status (1 with a one-line message on a usage error)."""
  args = parse_args(argv)
  try:
    _check_args(args)
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.ERROR)
    from cv.lib.errors import UserError  # pylint: disable=g-import-not-at-top
    try:
      result = run(args)
    except UserError as e:
      raise ValueError(str(e)) from None
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for path in result["paths"].values():
    print(path)
  t, h, w = result["frames"]
  print(f"PSNR {result['psnr']:.2f} dB over {t} frames of {w}x{h} "
        f"(codes {'x'.join(map(str, result['codes']))}, nominal CR {result['cr']:.0f})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
