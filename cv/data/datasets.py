"""Config -> clip sources for training and evaluation, with the demo data as the default.

`config.data.format` picks the reader (`kinetics`, `coin` or `folder`); with `config.data.root`
unset, the demo dataset of that format (`cv.data.demo`) is generated once, cached, and used.
"""
from __future__ import annotations

import os
from typing import Sequence

import ml_collections as mlc

from cv.data import pipeline, sources, walks


def resolve_root(data: mlc.ConfigDict) -> str:
  """The dataset root: `data.root`, or the cached demo dataset when it is unset."""
  if data.root:
    root = os.path.expanduser(data.root)
    if not os.path.isdir(root):
      raise sources.DatasetError(f"config.data.root={data.root!r} is not a folder; point it at a "
                                 f"dataset root or leave it unset to use the demo data")
    return root
  from cv.data import demo  # generating demo data is only needed without a real root
  makers = {"kinetics": demo.ensure_kinetics, "coin": demo.ensure_coin,
            "walking_tours": demo.ensure_walking_tours}
  if data.format not in makers:
    raise sources.DatasetError(f"config.data.format={data.format!r} needs config.data.root; "
                               f"built-in demo data exists for the formats {sorted(makers)}")
  return makers[data.format](**dict(data.demo))


def read_splits(root: str, data_format: str, splits: Sequence[str], *, strict: bool = False
                ) -> dict[str, sources.SourceReport]:
  """Records of each split of a Kinetics-, COIN- or folder-format dataset; labels of every split
  are indexed by the first split's classes (a label it lacks is an error naming the entry)."""
  out: dict[str, sources.SourceReport] = {}
  class_names = None
  for split in splits:
    if data_format == "kinetics":
      rep = sources.kinetics_source(root, split, class_names=class_names, strict=strict)
    elif data_format == "coin":
      rep = sources.coin_source(root, split, class_names=class_names, strict=strict)
    elif data_format == "walking_tours":
      rep = walks.walk_source(root, split)
    elif data_format == "folder":
      rep = sources.folder_source(os.path.join(root, split), class_names=class_names,
                                  strict=strict)
    else:
      raise sources.DatasetError(f"config.data.format={data_format!r} is not known; use "
                                 f"'kinetics', 'coin', 'folder' or 'walking_tours'")
    class_names = class_names or rep.class_names
    rep.log(f"{root} [{split}]")
    out[split] = rep
  return out


def clip_sources(data: mlc.ConfigDict) -> tuple[sources.SourceReport, sources.SourceReport]:
  """(train, eval) records; eval labels are indexed by the training classes."""
  reports = read_splits(resolve_root(data), data.format, [data.train_split, data.eval_split],
                        strict=data.strict)
  train, evals = reports[data.train_split], reports[data.eval_split]
  if data.max_eval_clips:
    evals.records = evals.records[:data.max_eval_clips]
  return train, evals


def clip_spec(data: mlc.ConfigDict) -> pipeline.ClipSpec:
  return pipeline.ClipSpec(num_frames=data.num_frames, stride=data.stride,
                           target_fps=data.target_fps, short_side=data.short_side, crop=data.crop)
