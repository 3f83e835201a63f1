"""Export a trained `vq_codec` run as one self-contained codec file.

  python tools/export_codec.py --workdir=workdirs/k600_vq --out=cv/assets/demo_codec_cr192.cvcodec

The file holds the model config, weights, codebooks and the code frequencies measured on the
run's training clips (used for entropy coding). Tools and downstream configs load it with
`cv.codec.neural.NeuralCodec.load(path)`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


import ml_collections as mlc  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cv.codec.neural import NeuralCodec  # noqa: E402
from cv.data import datasets, pipeline  # noqa: E402
from cv.lib import metrics  # noqa: E402


def measure_counts(codec: NeuralCodec, config: mlc.ConfigDict, max_clips: int) -> np.ndarray:
  """Code histogram [K, N] over (up to `max_clips`) training clips of the run's dataset."""
  train, _ = datasets.clip_sources(config.data)
  load = pipeline.LoadClip(datasets.clip_spec(config.data), train=False)
  counts = np.zeros((codec.num_codebooks, codec.num_entries), np.int64)
  for record in tqdm(train.records[:max_clips], desc="code frequencies", unit="clip"):
    clip = load(record)
    if clip is None:
      continue
    counts += np.asarray(metrics.code_counts(codec.encode(clip["video"]), codec.num_entries))
  return counts


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--workdir", required=True, help="a finished vq_codec run")
  parser.add_argument("--out", required=True, help="output .cvcodec file")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default newest)")
  parser.add_argument("--max_clips", type=int, default=512,
                      help="training clips used to measure code frequencies")
  args = parser.parse_args(argv)
  codec = NeuralCodec.from_workdir(args.workdir, args.step)
  config = mlc.ConfigDict(json.load(open(os.path.join(args.workdir, "config.json"))))
  codec.code_counts = measure_counts(codec, config, args.max_clips)
  metrics_path = os.path.join(args.workdir, "metrics.json")
  if os.path.exists(metrics_path):
    m = json.load(open(metrics_path))
    codec.info["eval"] = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("eval/")}
  codec.save(args.out)
  size = os.path.getsize(args.out)
  print(f"wrote {args.out} ({size / 1e6:.2f} MB): codec_id {codec.codec_id}, nominal CR "
        f"{codec.nominal_cr():.1f} at 32x256x256, {codec.num_codebooks}x{codec.num_entries} codes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
