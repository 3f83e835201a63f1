"""WalkingTours-format long videos: finding the walks of a split, reading them chunk by chunk.

A WalkingTours root is a folder of long continuous videos (no labels). Splits are sub-folders
(`{root}/train/*.mp4`, `{root}/test/*.mp4`) when they exist; a flat folder (what the demo
generator writes) is split by sorted position: every `HOLDOUT_EVERY`-th walk (positions 3, 7,
11, ...) is `test`, the others `train`.

`iter_chunk_frames` streams a walk's frames chunk by chunk (what `cv.codec.walks` encodes, one
code-shard record per chunk, one shard per walk, in time order; a walk's last partial chunk is
dropped so chunks all have one shape); `walk_index` / `LoadWalk` read the encoded walks back.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

import numpy as np

from cv.data import code_shards, sources, transforms, video

HOLDOUT_EVERY = 4
SPLITS = ("train", "test")


def walk_source(root: str, split: str) -> sources.SourceReport:
  """The walks (records: path, video_id) of `split`, from `{root}/{split}/` or a flat folder."""
  folder = os.path.join(root, split)
  if os.path.isdir(folder):
    paths = _videos(folder)
  else:
    if split not in SPLITS:
      raise sources.DatasetError(f"{root}: no {split!r} sub-folder; a flat WalkingTours folder "
                                 f"has the splits {SPLITS} (every {HOLDOUT_EVERY}th walk is test)")
    paths = _videos(root)
    keep = (lambda i: i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1) if split == "test" else (
        lambda i: i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1)
    paths = [p for i, p in enumerate(paths) if keep(i)]
  if not paths:
    raise sources.DatasetError(f"{root}: no walks for split {split!r}; put video files in "
                               f"{folder}/ or, in a flat folder, at least {HOLDOUT_EVERY} walks "
                               f"(every {HOLDOUT_EVERY}th is held out for test)")
  report = sources.SourceReport([], [])
  for path in paths:
    problem = sources.file_problem(path)
    if problem:
      report.problems.append((path, problem))
      continue
    report.records.append(dict(path=path, video_id=os.path.splitext(os.path.basename(path))[0]))
  return report


def _videos(folder: str) -> list[str]:
  if not os.path.isdir(folder):
    raise sources.DatasetError(f"{folder}: not a folder; set config.data.root to a folder of "
                               f"walk videos")
  return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                if n.lower().endswith(sources.VIDEO_EXTENSIONS))


def iter_chunk_frames(path: str, chunk_frames: int, stride: int, short_side: int, grid: int
                      ) -> Iterator[np.ndarray]:
  """uint8 [chunk_frames, H, W, 3] chunks of every `stride`-th frame, resized to `short_side` and
  centre-cropped to multiples of `grid`; the last partial chunk is dropped."""
  for frames in video.iter_chunks(path, chunk_frames, stride=stride):
    if frames.shape[0] < chunk_frames:
      return
    frames = transforms.resize_short_side(frames, short_side)
    h, w = frames.shape[1:3]
    yield transforms.center_crop(frames, h // grid * grid, w // grid * grid)


def walk_index(root: str, split: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
  """One descriptor per non-empty walk of an encoded split: walk, video_id, offset (of its first
  chunk in `code_shards.code_dataset(root, split)`) and length (chunks), in shard order."""
  out, offset = [], 0
  for w, path in enumerate(code_shards.shard_paths(root, split, manifest)):
    with open(path + ".json") as f:
      summary = json.load(f)
    n = int(summary["num_records"])
    if n:
      out.append(dict(walk=w, video_id=summary.get("video_id", str(w)), offset=offset, length=n))
    offset += n
  if not out:
    raise sources.DatasetError(f"{root}: split {split!r} has no encoded chunks; check the walks "
                               f"listed as bad in {code_shards.MANIFEST}")
  return out


class LoadWalk:
  """Walk descriptor -> {'codes': [num_chunks, T', H', W', K] consecutive chunks, 'walk': int32}.

  Training takes a random run of `num_chunks` chunks; evaluation the first `num_chunks` (0 = the
  whole walk). Chunks are read from the split's code shards on demand, so only the codes of one
  walk are in memory. A top-level class holding only paths, so Grain workers can unpickle it.
  """

  def __init__(self, root: str, split: str, num_chunks: int, *, train: bool):
    self.root, self.split, self.num_chunks, self.train = root, split, num_chunks, train
    self._records = None

  def __getstate__(self):
    return {**self.__dict__, "_records": None}

  def __call__(self, desc: dict, rng: np.random.Generator | None = None) -> dict:
    if self._records is None:
      self._records = code_shards.code_dataset(self.root, self.split)
    n = self.num_chunks or desc["length"]
    if desc["length"] < n:
      raise sources.DatasetError(
          f"{desc['video_id']}: {desc['length']} chunks, fewer than config.data.num_chunks={n}; "
          f"lower num_chunks or drop walks that short")
    start = int(rng.integers(0, desc["length"] - n + 1)) if self.train else 0
    first = desc["offset"] + start
    codes = np.stack([self._records[first + i]["codes"] for i in range(n)])
    return {"codes": codes, "walk": np.int32(desc["walk"])}
