"""Builds the real-footage codec training corpus (docs/footage.md).

Examples:
  # 1. once per machine (needs apt; optional): the Debian wallpaper photographs + licences
  apt-get update
  python tools/make_footage.py fetch-debian --cache /work/runs/debian-cache
  # 2. the corpus (deterministic from --seed; resumable: re-run the same command)
  python tools/make_footage.py build --out /work/runs/footage \\
      --photos /work/runs/debian-cache/photos --photo_clips 3000 --video_clips 300
  # train a codec on it
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192,footage \\
      --config.data.root=/work/runs/footage --workdir=workdirs/cr192

`build` writes a Kinetics-format dataset (train.csv + H.264 clips, the held-out real frames as
validate.csv) and footage.json (photos with hashes, skipped photo files, per-clip sources, totals)
and prints the totals. Nothing is downloaded while building or training: --photos is a folder.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from cv.data import footage
from cv.data.footage import debian


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  sub = parser.add_subparsers(dest="command", required=True)
  f = sub.add_parser("fetch-debian", help="apt-get download + dpkg-deb -x the wallpaper photos")
  f.add_argument("--cache", required=True, help="Folder for .deb files and extracted photos.")
  f.add_argument("--packages", nargs="*", default=None,
                 help=f"Subset of {sorted(debian.PACKAGES)} (default: all).")
  b = sub.add_parser("build", help="Render and write the corpus.")
  b.add_argument("--out", required=True, help="Corpus folder (created; resumable).")
  d = footage.FootageParams()
  b.add_argument("--seed", type=int, default=d.seed)
  b.add_argument("--photo_clips", type=int, default=d.photo_clips)
  b.add_argument("--video_clips", type=int, default=d.video_clips)
  b.add_argument("--num_frames", type=int, default=d.num_frames)
  b.add_argument("--fps", type=float, default=d.fps)
  b.add_argument("--min_size", type=int, default=d.min_size)
  b.add_argument("--max_size", type=int, default=d.max_size)
  b.add_argument("--cut_prob", type=float, default=d.cut_prob)
  b.add_argument("--crf", type=int, default=d.crf)
  b.add_argument("--max_photo_side", type=int, default=d.max_photo_side)
  b.add_argument("--photos", default="", help="Extra photo folder (e.g. fetch-debian's photos).")
  b.add_argument("--no_package_extras", action="store_true",
                 help="Leave out matplotlib's and scikit-learn's sample photos.")
  b.add_argument("--no_held_out_split", action="store_true",
                 help="Do not write the held-out frames as the validate split.")
  b.add_argument("--workers", type=int, default=1, help="Render processes (same bytes).")
  return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  if args.command == "fetch-debian":
    folder = debian.fetch(args.cache, tuple(args.packages) if args.packages else None)
    print(folder, flush=True)
    return {"photos": folder}
  params = footage.FootageParams(
      seed=args.seed, photo_clips=args.photo_clips, video_clips=args.video_clips,
      num_frames=args.num_frames, fps=args.fps, min_size=args.min_size, max_size=args.max_size,
      cut_prob=args.cut_prob, crf=args.crf, max_photo_side=args.max_photo_side,
      package_extras=not args.no_package_extras,
      photos=os.path.abspath(args.photos) if args.photos else "",
      held_out_split=not args.no_held_out_split)
  manifest = footage.build(args.out, params, workers=args.workers)
  summary = dict(out=os.path.abspath(args.out), totals=manifest["totals"],
                 photos_per_group=manifest["photos_per_group"],
                 skipped_photos=manifest["skipped_photos"])
  print(json.dumps(summary, indent=1), flush=True)
  return summary


def main(argv: Sequence[str] | None = None) -> int:
  from cv.lib.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    run(argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
