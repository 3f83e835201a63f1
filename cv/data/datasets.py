"""Config -> clip sources for training and evaluation, with the demo data as the default.

`config.data.format` picks the reader (`kinetics`, `coin`, `folder`, `walking_tours` or
`footage`: the real-footage codec corpus, a Kinetics-layout dataset read at its own resolution);
with `config.data.root` unset, the demo dataset of that format (`cv.data.demo`, or a small cached
`cv.data.footage` corpus) is generated once, cached, and used.
"""
from __future__ import annotations

import dataclasses
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
  from cv.data import footage  # pylint: disable=g-import-not-at-top
  makers = {"kinetics": demo.ensure_kinetics, "coin": demo.ensure_coin,
            "walking_tours": demo.ensure_walking_tours, "footage": footage.ensure}
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
    if data_format in ("kinetics", "footage"):  # a footage corpus is a Kinetics dataset
      rep = sources.kinetics_source(root, split, class_names=class_names, strict=strict)
    elif data_format == "coin":
      rep = sources.coin_source(root, split, class_names=class_names, strict=strict)
    elif data_format == "walking_tours":
      rep = walks.walk_source(root, split)
    elif data_format == "folder":
      rep = sources.folder_source(os.path.join(root, split), class_names=class_names,
                                  strict=strict)
    elif data_format == "dm_k600":
      raise sources.DatasetError(f"config.data.format='dm_k600' ({root}): DeepMind's compressed "
                                 f"Kinetics-600 holds codes only, no video; train on it with "
                                 f"input=codes (or recon) and their converted CR-192 codec")
    else:
      raise sources.DatasetError(f"config.data.format={data_format!r} is not known; use "
                                 f"'kinetics', 'coin', 'folder', 'walking_tours' or 'footage' "
                                 f"('dm_k600': DeepMind's compressed Kinetics-600, codes only)")
    class_names = class_names or rep.class_names
    rep.log(f"{root} [{split}]")
    out[split] = rep
  return out


def clip_sources(data: mlc.ConfigDict) -> tuple[sources.SourceReport, sources.SourceReport]:
  """(train, eval) records; eval labels are indexed by the training classes.

  Both splits are checked before training starts (`pipeline.check_usable`: frame counts from
  the container headers of up to `data.max_skips_in_row` videos against the clip): a split that
  cannot give a single clip stops here with one message, the reason and the fix (instead of a
  training loader spinning forever or an evaluation failing after the first interval)."""
  root = resolve_root(data)
  reports = read_splits(root, data.format, [data.train_split, data.eval_split],
                        strict=data.strict)
  train, evals = reports[data.train_split], reports[data.eval_split]
  if data.max_eval_clips:
    evals.records = evals.records[:data.max_eval_clips]
  sample = data.get("max_skips_in_row", pipeline.DEFAULT_MAX_SKIPS_IN_ROW)
  spec = clip_spec(data)
  pipeline.check_usable(train.records, pipeline.LoadClip(spec, train=True).preflight,
                        what=f"training split {data.train_split!r} of {root}", spec=spec,
                        sample=sample)
  spec = eval_clip_spec(data, spec)
  pipeline.check_usable(evals.records, pipeline.LoadClip(spec, train=False).preflight,
                        what=f"evaluation split {data.eval_split!r} of {root}", spec=spec,
                        sample=sample)
  return train, evals


def clip_loader(data: mlc.ConfigDict, spec: pipeline.ClipSpec, *, train: bool
                ) -> pipeline.LoadClip:
  """The clip loader of `data.format`: footage clips are cropped at their own resolution
  (`footage.LoadNativeClip`: the corpus already holds every scale); others are resized to
  `short_side`, then cropped (`pipeline.LoadClip`)."""
  if data.format == "footage":
    from cv.data import footage  # pylint: disable=g-import-not-at-top
    return footage.LoadNativeClip(spec, train=train, strict=data.strict,
                                  min_scale=data.get("min_scale", 1.0))
  return pipeline.LoadClip(spec, train=train, strict=data.strict)


def clip_spec(data: mlc.ConfigDict) -> pipeline.ClipSpec:
  return pipeline.ClipSpec(num_frames=data.num_frames, stride=data.stride,
                           target_fps=data.target_fps, short_side=data.short_side, crop=data.crop)


def eval_clip_spec(data: mlc.ConfigDict, spec: pipeline.ClipSpec) -> pipeline.ClipSpec:
  """The evaluation clip of a training `spec`: `data.eval_num_frames` frames and `data.eval_crop`
  pixels square where set. Per-frame codecs train on short, small crops from many videos per
  batch and are measured on longer crops of whole held-out shots, at a fixed size so that runs
  with different training crops are measured on the same pixels."""
  return dataclasses.replace(spec, num_frames=data.get("eval_num_frames") or spec.num_frames,
                             crop=data.get("eval_crop") or spec.crop)
