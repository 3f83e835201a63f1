"""A trained `vq_codec` run -> one self-contained `.cvcodec` file (`tools/export_codec.py`).

The file carries the code frequencies measured on the run's own training clips (read through the
trainer's loader, so a footage corpus is cropped at its own resolution exactly as in training):
`--entropy` range-codes with them.
"""
from __future__ import annotations

import json
import os

import ml_collections as mlc
import numpy as np
from tqdm import tqdm

from cv.codec import shipped
from cv.codec.neural import NeuralCodec
from cv.data import datasets
from cv.lib import metrics


def measure_counts(codec: NeuralCodec, config: mlc.ConfigDict, max_clips: int,
                   progress: bool = True) -> np.ndarray:
  """Code histogram [K, N] over up to `max_clips` training clips of the run's dataset, spread
  evenly over the split (corpora are ordered by source)."""
  train, _ = datasets.clip_sources(config.data)
  load = datasets.clip_loader(config.data, datasets.clip_spec(config.data), train=False)
  records = train.records[::max(1, len(train.records) // max(1, max_clips))][:max_clips]
  counts = np.zeros((codec.num_codebooks, codec.num_entries), np.int64)
  for record in tqdm(records, desc="code frequencies", unit="clip", disable=not progress):
    clip = load(record)
    if clip is None:
      continue
    counts += np.asarray(metrics.code_counts(codec.encode(clip["video"]), codec.num_entries))
  return counts


def export_workdir(workdir: str, out: str, step: int | None = None, max_clips: int = 512,
                   progress: bool = True) -> NeuralCodec:
  """Writes the codec of `workdir` (newest or given checkpoint) to `out` with its code
  frequencies and the run's last evaluation; returns it. Writing over a shipped asset records its
  new id (cv.codec.shipped.record_id), so files it writes decompress without --codec."""
  codec = NeuralCodec.from_workdir(workdir, step)
  with open(os.path.join(workdir, "config.json")) as f:
    config = mlc.ConfigDict(json.load(f))
  codec.code_counts = measure_counts(codec, config, max_clips, progress)
  metrics_path = os.path.join(workdir, "metrics.json")
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      m = json.load(f)
    codec.info["eval"] = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("eval/")}
  codec.save(out)
  shipped.record_id(out, codec.codec_id)
  return codec
