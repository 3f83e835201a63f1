"""Encode a video dataset into neural-code shards for downstream training.

  python tools/encode_dataset.py --root=/data/kinetics600 --out=/data/k600_codes_cr192 \
      [--format=kinetics|coin|folder|walking_tours] [--splits=train,validate] \
      [--codec=FILE_OR_WORKDIR] [--num_shards=16] [--chunk_frames=0] \
      [--short_side=64 --crop=64 --stride=1 --max_frames=0] \
      [--process_index=0 --process_count=1]
      [--coordinator_address=HOST:PORT --num_processes=N --process_id=I | --distributed]

Without --root it encodes the built-in demo dataset. Resumable: re-running skips finished
shards. Several processes (machines) can share the work: give each its --process_index out of
--process_count, or start one copy per machine in a jax.distributed run (the same flags as
`cv.main`); the manifest appears when the last shard is done. Bad videos are skipped, listed in
the manifest and summarised at the end (count, reasons, first files). WalkingTours walks
(--format=walking_tours --splits=train,test --chunk_frames=10) are streamed and stored one record
per chunk, one shard per walk. SIGTERM or Ctrl-C abandons the shard being written (finished ones
are kept) and exits with status 0; re-running resumes. A full disk is one error line naming the
shard.
"""
from __future__ import annotations

import argparse
import os
import sys

from cv.lib import tf_env  # pylint: disable=g-import-not-at-top,wrong-import-position

tf_env.quiet_tensorflow()  # before anything imports TensorFlow


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--root", default=None, help="dataset root (default: the demo dataset)")
  parser.add_argument("--format", default="kinetics", choices=("kinetics", "coin", "folder", "walking_tours"))
  parser.add_argument("--out", required=True, help="output folder for shards + manifest.json")
  parser.add_argument("--splits", default="train,validate")
  parser.add_argument("--codec", default=None, help="shipped codec name (cr30|cr192|cr768|"
                      "demo), codec file or vq_codec workdir (default: cr192)")
  parser.add_argument("--num_shards", type=int, default=16)
  parser.add_argument("--short_side", type=int, default=64)
  parser.add_argument("--crop", type=int, default=64, help="centre crop size (0 = full frame)")
  parser.add_argument("--stride", type=int, default=1, help="keep every stride-th frame")
  parser.add_argument("--max_frames", type=int, default=0, help="frames per video (0 = all)")
  parser.add_argument("--chunk_frames", type=int, default=0,
                      help="walking_tours: encoded frames per chunk record (walks are streamed)")
  parser.add_argument("--process_index", type=int, default=0)
  parser.add_argument("--process_count", type=int, default=1)
  parser.add_argument("--strict", action="store_true", help="fail on the first bad video")
  parser.add_argument("--quiet", action="store_true")
  from cv.lib import distributed
  distributed.add_arguments(parser)
  args = parser.parse_args(argv)
  if not 0 <= args.process_index < args.process_count:
    parser.error(f"--process_index={args.process_index} must be in [0, {args.process_count})")
  settings = distributed.settings_from_args(args)
  try:
    distributed.check(settings)
  except ValueError as e:
    parser.error(str(e))
  if settings.enabled and args.process_count > 1:
    parser.error("give either --process_index/--process_count or the jax.distributed options")

  from absl import logging
  logging.set_verbosity(logging.ERROR)
  if distributed.initialize(settings):
    import jax
    args.process_index, args.process_count = jax.process_index(), jax.process_count()
  from cv.codec import shipped
  from cv.codec.neural import NeuralCodec
  from cv.data import code_shards
  from cv.codec import encode
  from cv.lib.errors import Preempted, UserError
  try:
    root = args.root
    if root is None:
      from cv.data import demo
      root = {"coin": demo.ensure_coin,
              "walking_tours": demo.ensure_walking_tours}.get(args.format, demo.ensure_kinetics)()
    codec = NeuralCodec.load(args.codec)
    spec = encode.EncodeSpec(args.short_side, args.crop, args.stride, args.max_frames,
                             args.chunk_frames)
    path = encode.encode_dataset(
        root, args.out, codec, spec, codec_path=args.codec or shipped.DEFAULT, data_format=args.format,
        splits=[s for s in args.splits.split(",") if s], num_shards=args.num_shards,
        process_index=args.process_index, process_count=args.process_count, strict=args.strict,
        progress=not args.quiet)
    if settings.enabled:  # every process's shards are finished after this: the last wrote the manifest
      distributed.barrier("encode_dataset")
      if os.path.exists(os.path.join(args.out, code_shards.MANIFEST)):
        path = os.path.join(args.out, code_shards.MANIFEST)
    if path:
      print(f"wrote {path}")
    else:
      print("this process is done; the manifest is written when every process has finished")
  except Preempted as e:  # the message is printed; finished shards are kept
    if settings.enabled:  # do not wait in the runtime's shutdown barrier for busy peers
      distributed.abort_peers_fast("", code=0)
    return e.code
  except (UserError, ValueError) as e:
    if settings.enabled:  # do not leave the other processes waiting at the barrier
      distributed.abort_peers_fast(f"error: {e}")
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
