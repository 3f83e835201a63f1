"""Grain input pipelines over clip records: deterministic, resumable, sharded by process.

Training stream (one definition, identical in every process):
  records -> shuffle(seed) -> repeat (reshuffled every epoch) -> random_map(load clip, seed)
and each process reads only its slice of every *global* batch. The global batch at step s is
therefore the same whatever the number of processes, per-example randomness (start time, crop)
is a function of (seed, position) only, and the Grain iterator state saved in checkpoints
restores the exact position.

Bad videos (truncated, not a video, too short, ...) are skipped and counted by `LoadClip`, or
fail fast with `strict=True`. Note that a skipped clip shifts later examples of the stream.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

import grain
import jax
import numpy as np
from absl import logging

from cv.data import transforms, video


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """How a clip is cut from a video file."""
  num_frames: int = 8
  stride: int = 1
  target_fps: float | None = None
  short_side: int = 64
  crop: int = 64


class SkipLog:
  """Unusable videos met by a loader (path -> reason), counted once each and warned about on
  first sight. Thread-safe and picklable (Grain threads and worker processes share loaders)."""

  def __init__(self):
    self._skipped: dict[str, str] = {}
    self._lock = threading.Lock()

  def __getstate__(self):
    return {"_skipped": dict(self._skipped)}

  def __setstate__(self, state):
    self._skipped = state["_skipped"]
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self._skipped)

  def add(self, error: video.VideoError) -> None:
    with self._lock:
      first = error.path not in self._skipped
      self._skipped[error.path] = error.reason
    if first:
      logging.warning("skipping unusable video (%d so far): %s", len(self), error)
      print(f"warning: skipping unusable video: {error}", file=sys.stderr, flush=True)


class LoadClip:
  """Record -> {'video': uint8 [T,crop,crop,3], 'label': int32}, or None for an unusable file.

  A top-level class (picklable) so Grain worker processes can run it.
  """

  def __init__(self, spec: ClipSpec, *, train: bool, strict: bool = False):
    self.spec, self.train, self.strict = spec, train, strict
    self.skipped = SkipLog()

  @property
  def num_skipped(self) -> int:
    return len(self.skipped)

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict | None:
    s = self.spec
    view = record.get("_view")  # (start fraction, crop fraction, flip) of an evaluation view
    try:
      frames = video.read_clip(record["path"], num_frames=s.num_frames, stride=s.stride,
                               target_fps=s.target_fps, start="random" if self.train else "center",
                               rng=rng, start_frac=None if view is None else view[0])
    except video.VideoError as e:
      if self.strict:
        raise
      self.skipped.add(e)
      return None
    frames = transforms.resize_and_crop(frames, short_side=s.short_side, crop=s.crop,
                                        train=self.train, rng=rng,
                                        pos=None if view is None else view[1])
    out = {"video": frames, "label": np.int32(record.get("label", 0))}
    if view is not None:
      if view[2]:
        out["video"] = np.ascontiguousarray(frames[:, :, ::-1])
      out["index"] = np.int32(record["_index"])
    return out


View = tuple[float, float, bool]


def view_positions(temporal: int = 1, spatial: int = 1, flip: bool = False) -> list[View]:
  """Evaluation views (paper Table 4): `temporal` clips spread evenly over each video x `spatial`
  crops spread along its longer axis (x 2 when `flip`). A view is (start fraction, crop fraction,
  flipped); one clip / one crop sits in the centre."""
  if temporal < 1 or spatial < 1:
    raise ValueError(f"evaluation views need temporal >= 1 and spatial >= 1, got {temporal}, "
                     f"{spatial}; fix config.eval_views")
  ts = [0.5] if temporal == 1 else np.linspace(0.0, 1.0, temporal).tolist()
  ss = [0.5] if spatial == 1 else np.linspace(0.0, 1.0, spatial).tolist()
  return [(t, c, f) for t in ts for c in ss for f in ((False, True) if flip else (False,))]


class _Views(grain.MapDataset):
  """Every example of `parent` once per view: i -> parent[i // V] with `_view` and `_index`."""

  def __init__(self, parent: grain.MapDataset, views: Sequence[View]):
    super().__init__(parent)
    self._views = list(views)

  def __len__(self) -> int:
    return len(self._parent) * len(self._views)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self.slice(i)
    v = len(self._views)
    return {**self._parent[i // v], "_view": self._views[i % v], "_index": i // v}


def as_dataset(source: Sequence[dict] | grain.MapDataset) -> grain.MapDataset:
  """Records (a list of dicts) or an existing Grain dataset (e.g. code shards) as a MapDataset."""
  return source if isinstance(source, grain.MapDataset) else grain.MapDataset.source(list(source))


class _BatchSlice(grain.MapDataset):
  """This process's part of every global batch: local index i -> global index."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, index: int, count: int):
    super().__init__(parent)
    if global_batch % count:
      raise ValueError(f"global batch size {global_batch} is not divisible by {count} processes")
    self._local = global_batch // count
    self._global, self._index = global_batch, index

  def __len__(self) -> int:
    return len(self._parent) // self._global * self._local

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self.slice(i)
    b, r = divmod(i, self._local)
    return self._parent[b * self._global + self._index * self._local + r]


def train_iterator(records: Sequence[dict] | grain.MapDataset, load: Callable, *,
                   global_batch: int, seed: int, num_threads: int = 2, prefetch: int = 4,
                   worker_count: int = 0) -> grain.DatasetIterator:
  """Endless, checkpointable iterator of this process's slices of global training batches.

  `load(record, rng)` turns a record into an example (None to skip it).
  """
  if not len(records):
    raise ValueError("no usable training clips (see the warnings above)")
  ds = as_dataset(records).shuffle(seed=seed).repeat(None)
  ds = ds.random_map(load, seed=seed)
  ds = _BatchSlice(ds, global_batch, jax.process_index(), jax.process_count())
  local = global_batch // jax.process_count()
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  it = it.batch(local, drop_remainder=True)
  if worker_count > 0:
    it = it.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=worker_count))
  return iter(it)


def eval_batches(records: Sequence[dict] | grain.MapDataset, load: Callable, *,
                 global_batch: int, num_threads: int = 2, views: Sequence[View] | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every usable eval clip exactly once, in order, as this process's slices of global batches.

  The last batch is padded by repeating a clip; `mask` (float32, 1 = real) marks real examples.
  With `views`, every record is loaded once per view, and `index` (the record's position) lets
  the caller average predictions over the views of one video.
  """
  ds = as_dataset(records)
  if views is not None:
    ds = _Views(ds, views)
  ds = ds.map(load)
  it = iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4)))
  pc, pi = jax.process_count(), jax.process_index()
  local = global_batch // pc
  buf: list[dict] = []

  def emit(items: list[dict], n_real: int) -> dict[str, np.ndarray]:
    mask = np.zeros(global_batch, np.float32)
    mask[:n_real] = 1.0
    while len(items) < global_batch:
      items.append(items[-1])
    part = items[pi * local:(pi + 1) * local]
    out = {k: np.stack([x[k] for x in part]) for k in part[0]}
    out["mask"] = mask[pi * local:(pi + 1) * local]
    return out

  for ex in it:
    buf.append(ex)
    if len(buf) == global_batch:
      yield emit(buf, global_batch)
      buf = []
  if buf:
    yield emit(buf, len(buf))


def config_train_iterator(source: Sequence[dict] | grain.MapDataset, load: Callable,
                          config: Any) -> grain.DatasetIterator:
  """`train_iterator` with a run config's batch size, seed and `config.data` reader settings."""
  d = config.data
  return train_iterator(source, load, global_batch=config.batch_size, seed=config.seed,
                        num_threads=d.num_threads, prefetch=d.prefetch,
                        worker_count=d.worker_count)
