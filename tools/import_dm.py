"""Import DeepMind's released compressed_vision checkpoints and compressed Kinetics-600.

  python tools/import_dm.py 41861759_1_cr=192.pkl cr192.cvcodec
  python tools/import_dm.py 35225852_7_augm=flip.pkl flip_codec.cvcodec [--aug_out flip_aug]
  python tools/import_dm.py --tfrecords 'DIR/train.tfrecord-*' --tfrecords 'DIR/valid.tfrecord-*' \\
      --mapping 41861759_2_cr=192.pkl --codec cr192.cvcodec --out SHARDS

A codec pickle becomes a `.cvcodec` every cv tool and trainer reads (tools/codec.py --codec,
tools/encode_dataset.py --codec, --config.codec=). The flip pickle also gives a folder that
`LatentAugmenter.load` reads (--config.aug.workdir=), made for the latents of its own codec.
TFRecord shards become code shards + manifest for `s3d_cls` (--config.codes.root=SHARDS; their
`valid` split is called `validate` here). Pickles are read with a restricted unpickler: nothing
in them is executed. See docs/deepmind.md.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from cv.lib import tf_env  # pylint: disable=g-import-not-at-top,wrong-import-position

tf_env.quiet_tensorflow()  # before anything imports TensorFlow


def _split_name(path: str) -> str:
  """Split of a shard file `.../train.tfrecord-00001-of-00010` (their `valid` -> `validate`)."""
  m = re.match(r"(.+?)\.tfrecord", os.path.basename(path))
  name = m.group(1) if m else "train"
  return "validate" if name == "valid" else name


def _import_checkpoint(args: argparse.Namespace) -> None:
  from cv.augment import latent
  from cv.codec import dm_import
  ckpt = dm_import.load_checkpoint(args.input)
  codec = dm_import.codec_from_checkpoint(ckpt, args.input, mapping=args.mapping)
  codec.save(args.output)
  cr, label = codec.nominal_cr(), dm_import.nominal_label(args.input)
  note = f" (file label {label})" if label is not None and abs(label - cr) > 0.5 else ""
  print(f"wrote {args.output}: codec_id {codec.codec_id}, nominal CR {cr:.0f}{note} at "
        f"32x256x256, codes {codec.num_codebooks}x{codec.num_entries} per position, "
        f"{codec.spatial_factor}x spatial / {codec.temporal_factor}x temporal downsampling")
  if ckpt["augm_params"] is None:
    return
  net, params = dm_import.augmenter_from_checkpoint(ckpt, args.input, int(codec.latent_dim))
  folder = args.aug_out or os.path.splitext(args.output)[0] + "_aug"
  latent.write_dm(folder, net, params, codec.codec_id, os.path.basename(args.input))
  t, l = net["position_shape"]
  print(f"wrote {folder}: flip network (--config.aug.workdir={folder}) for the latents of "
        f"{args.output}; grids up to {t} code frames x {l} cells")


def _convert_tfrecords(args: argparse.Namespace) -> None:
  from cv.codec import dm_import
  from cv.codec.neural import NeuralCodec
  from cv.data import dm_tfrecords
  codec_path = args.codec or args.output
  codec = NeuralCodec.load(codec_path)
  splits: dict[str, list[str]] = {}
  for pattern in args.tfrecords:
    for f in dm_tfrecords.find_files(pattern):
      splits.setdefault(_split_name(f), []).append(f)
  manifest = dm_import.convert_tfrecords(splits, args.out, codec, codec_path=codec_path,
                                         mapping=args.mapping, num_shards=args.num_shards,
                                         progress=not args.quiet)
  print(f"wrote {manifest}: splits " + ", ".join(f"{s} ({len(f)} files)"
                                                 for s, f in splits.items()))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("input", nargs="?", help="a DeepMind checkpoint pickle")
  parser.add_argument("output", nargs="?", help="the .cvcodec to write")
  parser.add_argument("--aug_out", default=None,
                      help="flip checkpoints: folder of the augmentation network "
                      "(default: OUTPUT without extension + '_aug')")
  parser.add_argument("--mapping", default=None,
                      help="their data mapping pickle (data_mappings/41861759_2_cr=192.pkl): with "
                      "a checkpoint, use its codebook; with --tfrecords, check it is the codec's")
  parser.add_argument("--tfrecords", action="append", default=[],
                      help="glob of TFRecord shards, e.g. 'DIR/train.tfrecord-*' (repeatable)")
  parser.add_argument("--codec", default=None, help="with --tfrecords: the converted codec")
  parser.add_argument("--out", default=None, help="with --tfrecords: folder of code shards")
  parser.add_argument("--num_shards", type=int, default=16, help="code shards per split")
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  if bool(args.input) != bool(args.output):
    parser.error("give both IN.pkl and OUT.cvcodec")
  if not args.input and not args.tfrecords:
    parser.error("nothing to do: give IN.pkl OUT.cvcodec and/or --tfrecords ... --out SHARDS")
  if args.tfrecords and not args.out:
    parser.error("--tfrecords needs --out SHARDS")
  if args.tfrecords and not (args.codec or args.output):
    parser.error("--tfrecords needs --codec CODEC.cvcodec (the converted codec the codes were "
                 "made with), or IN.pkl OUT.cvcodec to convert it first")

  from absl import logging
  logging.set_verbosity(logging.ERROR)
  from cv.lib.errors import UserError
  try:
    if args.input:
      _import_checkpoint(args)
    if args.tfrecords:
      _convert_tfrecords(args)
  except (UserError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
