"""Grain input pipelines over clip records: deterministic, resumable, sharded by process.

Training stream (one definition, identical in every process):
  records -> shuffle(seed) -> repeat (reshuffled every epoch) -> random_map(load clip, seed)
and each process reads only its slice of every *global* batch. The global batch at step s is
therefore the same whatever the number of processes, per-example randomness (start time, crop)
is a function of (seed, position) only, and the Grain iterator state saved in checkpoints
restores the exact position.

Bad videos (truncated, not a video, too short, ...) are skipped and counted by `LoadClip`, or
fail fast with `strict=True`. Note that a skipped clip shifts later examples of the stream.

Dead input (every video unusable, e.g. all shorter than the clip) must not spin forever: before
training, `check_usable` probes the frame counts of (a sample of) a split's videos and stops with
one message (how many were tried, the most common reason with an example, the fix) when none can
give a clip; while running, `SkipGuard` stops a loader that skips `max_skips_in_row` videos in a
row without yielding one.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

import grain
import jax
import numpy as np
from absl import logging

from cv.data import sources, transforms, video
from cv.lib.errors import ConfigError

# Default of `config.data.max_skips_in_row` (cv/configs/common.py): a loader that skips this many
# videos in a row without yielding one stops the run (a dead or dying input).
DEFAULT_MAX_SKIPS_IN_ROW = 100


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

  def problems(self) -> list[tuple[str, str]]:
    """(path, reason) of every unusable video met so far."""
    with self._lock:
      return list(self._skipped.items())

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

  def frames_needed(self, fps: float) -> int:
    """Source frames one clip spans in a video of frame rate `fps`."""
    s = self.spec
    return int(video.sample_indices(1 << 40, num_frames=s.num_frames, stride=s.stride,
                                    src_fps=fps, target_fps=s.target_fps, start="begin")[-1]) + 1

  def preflight(self, record: dict) -> "Unusable | None":
    """Why `record` cannot give a clip, from its container header only (no decoding): None if
    it may. Used by `check_usable` before training starts."""
    path = record["path"]
    try:
      info = video.probe(path)
    except video.VideoError as e:
      return Unusable(path, e.reason)
    if self.spec.target_fps and info.fps <= 0:
      return Unusable(path, "has no frame rate, so it cannot be resampled to data.target_fps; "
                      "re-encode it or unset data.target_fps")
    needed = self.frames_needed(info.fps)
    if info.num_frames < needed:
      return Unusable(path, f"has {info.num_frames} frames but the clip needs {needed}",
                      frames=info.num_frames, needed=needed)
    return None

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


@dataclasses.dataclass(frozen=True)
class Unusable:
  """A video a loader cannot use: `frames`/`needed` are set when it is too short for the clip."""
  path: str
  reason: str
  frames: int | None = None
  needed: int | None = None


def _clip_span(spec: ClipSpec | None) -> str:
  if spec is None:
    return ""
  what = f" (data.num_frames={spec.num_frames} x data.stride={spec.stride}"
  if spec.target_fps:
    what += f" at data.target_fps={spec.target_fps:g}"
  return what + ")"


def describe_unusable(found: Sequence[Unusable], *, spec: ClipSpec | None = None) -> str:
  """The most common reason of `found` in one line; too-short videos are summarised with the
  frame counts (what the clip needs, what the videos have) and the fix."""
  short = [u for u in found if u.needed is not None]
  if short and len(short) * 2 >= len(found):
    have = sorted({u.frames for u in short})
    have_text = f"{have[0]}" if len(have) == 1 else f"{have[0]}-{have[-1]}"
    needed = sorted({u.needed for u in short})
    need_text = f"{needed[0]}" if len(needed) == 1 else f"{needed[0]}-{needed[-1]}"
    text = (f"{len(short)} of {len(found)} are too short: the clip needs {need_text} frames"
            f"{_clip_span(spec)} but the videos have {have_text} frames (e.g. {short[0].path}); "
            f"lower data.num_frames or data.stride, or use longer videos")
    rest = [(u.path, u.reason) for u in found if u.needed is None]
    if rest:
      text += f"; the others: {sources.describe_problems(rest)}"
    return text
  return sources.describe_problems([(u.path, u.reason) for u in found])


def check_usable(records: Sequence[dict], preflight: Callable[[dict], Unusable | None], *,
                 what: str, sample: int = DEFAULT_MAX_SKIPS_IN_ROW, spec: ClipSpec | None = None,
                 threads: int = 8) -> int:
  """Stops with `DeadInputError` before any training when none of (a sample of) `records` can
  give an example, naming how many were tried, the most common reason and the fix.

  Probes at most `sample` videos (evenly spread over the split, so the cost is bounded on large
  datasets): `sample` unusable in a row is what stops a running loader too (`SkipGuard`). Warns
  when more than half of those tried are unusable. Returns how many were tried.
  """
  if not len(records):
    raise sources.DeadInputError(f"{what}: no videos to read (the split is empty or every "
                                 f"entry was skipped, see the warnings above); check the dataset")
  n = len(records)
  picks = range(n) if n <= sample else np.linspace(0, n - 1, sample).round().astype(int)
  with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
    found = [u for u in pool.map(lambda i: preflight(records[int(i)]), picks) if u is not None]
  tried = len(picks)
  of = f"all {n}" if tried == n else f"{tried} of {n}, spread over the split"
  if len(found) == tried:
    raise sources.DeadInputError(f"{what}: no usable video: tried {of}, none can give a clip; "
                                 f"{describe_unusable(found, spec=spec)}")
  if len(found) * 2 > tried:
    print(f"warning: {what}: {len(found)} of {tried} videos tried are unusable; "
          f"{describe_unusable(found, spec=spec)}", file=sys.stderr, flush=True)
  return tried


class SkipGuard:
  """Wraps a loader (record[, rng] -> example or None): raises `DeadInputError` when it returns
  None (skips an unusable video) `limit` times in a row, instead of letting the pipeline spin
  forever. Picklable (Grain worker processes run it); the count is per process."""

  def __init__(self, load: Callable, limit: int, what: str):
    if limit < 1:
      raise ConfigError(f"config.data.max_skips_in_row={limit} must be >= 1")
    self.load, self.limit, self.what = load, int(limit), what
    self._in_a_row, self._lock = 0, threading.Lock()

  def __getstate__(self):
    return {"load": self.load, "limit": self.limit, "what": self.what}

  def __setstate__(self, state):
    self.__init__(state["load"], state["limit"], state["what"])

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict | None:
    out = self.load(record) if rng is None else self.load(record, rng)
    with self._lock:
      if out is not None:
        self._in_a_row = 0
        return out
      self._in_a_row += 1
      dead = self._in_a_row >= self.limit
    if dead:
      log = getattr(self.load, "skipped", None)
      problems = log.problems() if isinstance(log, SkipLog) else []
      detail = (f"{len(problems)} distinct unusable file(s) so far; "
                f"{sources.describe_problems(problems)}" if problems else "see the warnings above")
      raise sources.DeadInputError(
          f"{self.what}: the loader skipped {self.limit} videos in a row without yielding a clip "
          f"(config.data.max_skips_in_row={self.limit}); {detail}")
    return None


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
                   worker_count: int = 0, max_skips_in_row: int = DEFAULT_MAX_SKIPS_IN_ROW,
                   what: str = "training split") -> grain.DatasetIterator:
  """Endless, checkpointable iterator of this process's slices of global training batches.

  `load(record, rng)` turns a record into an example (None to skip it). A loader with a
  `preflight(record)` method (video loaders) first checks a sample of the records
  (`check_usable`); then `max_skips_in_row` skips in a row stop the run (`SkipGuard`).
  """
  if not len(records):
    raise sources.DeadInputError(f"{what}: no usable videos (every entry was skipped, see the "
                                 f"warnings above); check the dataset")
  if hasattr(load, "preflight") and not isinstance(records, grain.MapDataset):
    check_usable(records, load.preflight, what=what, sample=max_skips_in_row,
                 spec=getattr(load, "spec", None))
  ds = as_dataset(records).shuffle(seed=seed).repeat(None)
  ds = ds.random_map(SkipGuard(load, max_skips_in_row, what), seed=seed)
  ds = _BatchSlice(ds, global_batch, jax.process_index(), jax.process_count())
  local = global_batch // jax.process_count()
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  it = it.batch(local, drop_remainder=True)
  if worker_count > 0:
    it = it.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=worker_count))
  return iter(it)


class _Share(grain.MapDataset):
  """This process's share of an evaluation stream: the groups g (`group` consecutive examples of
  `parent`: one record's views) with g % count == index, in order. Each example gets `_position`,
  its place in the whole stream, so outputs can be put back in single-process order."""

  def __init__(self, parent: grain.MapDataset, group: int, index: int, count: int):
    super().__init__(parent)
    self._group, self._index, self._count = group, index, count
    self._groups = len(range(index, len(parent) // group, count))

  def __len__(self) -> int:
    return self._groups * self._group

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self.slice(i)
    g, v = divmod(i, self._group)
    pos = (g * self._count + self._index) * self._group + v
    return {**self._parent[pos], "_position": pos}


class _Positioned:
  """A loader whose examples carry `position` (int64: the record's `_position`). Picklable."""

  def __init__(self, load: Callable):
    self.load = load

  def __call__(self, record: dict) -> dict | None:
    out = self.load(record)
    if out is not None:
      out = {**out, "position": np.int64(record["_position"])}
    return out


class EvalBatches:
  """This process's share of an evaluation split as batches of `global_batch / process_count`
  examples (iterable, and iterable again for the next evaluation).

  Process p loads only the records r with r % process_count == p (all views of a record stay
  together), so no process decodes the whole split. Every usable example is yielded once, in
  order; the last batch is padded by repeating an example and `mask` (float32, 1 = real) marks
  real ones. Examples carry `position` (int64, the place of the example in the whole split's
  stream: record * views + view), so a process-count-independent order can be restored after
  gathering (`cv.lib.evaluate.run`, which also makes every process run the same number of
  batches with `padding()`). With `views`, `index` (the record's position) lets the caller
  average predictions over the views of one video.

  A split that yields no clip at all raises `DeadInputError` naming the reasons (it is finite,
  so it cannot spin like training): at the end of the iteration in one process, from
  `cv.lib.evaluate.run` (`no_examples_error`) when no process found one.
  """

  def __init__(self, records: Sequence[dict] | grain.MapDataset, load: Callable, *,
               global_batch: int, num_threads: int = 2, views: Sequence[View] | None = None):
    count = jax.process_count()
    if global_batch % count:
      raise ConfigError(f"the evaluation batch size {global_batch} (config.eval_batch_size) is not "
                        f"divisible by the {count} processes")
    self.records, self.load, self.num_threads = records, load, num_threads
    self.local = global_batch // count
    stream = as_dataset(records)
    group = 1
    if views is not None:
      stream, group = _Views(stream, views), len(views)
    self._stream = stream
    self._share = _Share(stream, group, jax.process_index(), count)
    self._last: dict[str, np.ndarray] | None = None

  def __len__(self) -> int:
    """Examples (record views) in this process's share, usable or not."""
    return len(self._share)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    ds = self._share.map(_Positioned(self.load))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads,
                                              prefetch_buffer_size=4))
    buf: list[dict] = []
    yielded = 0
    for ex in it:
      buf.append(ex)
      yielded += 1
      if len(buf) == self.local:
        yield self._emit(buf, len(buf))
        buf = []
    if buf:
      yield self._emit(buf, len(buf))
    if not yielded and jax.process_count() == 1:
      raise self.no_examples_error()

  def _emit(self, items: list[dict], n_real: int) -> dict[str, np.ndarray]:
    mask = np.zeros(self.local, np.float32)
    mask[:n_real] = 1.0
    while len(items) < self.local:
      items.append(items[-1])
    out = {k: np.stack([x[k] for x in items]) for k in items[0]}
    out["mask"] = mask
    self._last = out
    return out

  def padding(self) -> dict[str, np.ndarray]:
    """A batch shaped like this process's batches with every example masked out, for the steps
    after this process's share is exhausted while others still evaluate. A process that has not
    yielded an example yet borrows the first usable one of the whole split."""
    if self._last is None:
      load = _Positioned(self.load)
      for i in range(len(self._stream)):
        ex = load({**self._stream[i], "_position": i})
        if ex is not None:
          self._last = {k: np.stack([v] * self.local) for k, v in ex.items()}
          break
      else:
        raise self.no_examples_error()
    return {**self._last, "mask": np.zeros(self.local, np.float32)}

  def no_examples_error(self) -> sources.DeadInputError:
    """The error for a split in which no example is usable, with the reasons this process saw."""
    log = getattr(self.load, "skipped", None)
    problems = log.problems() if isinstance(log, SkipLog) else []
    return sources.DeadInputError(
        f"evaluation split: no usable clip in its {len(self.records)} entries; "
        + (sources.describe_problems(problems) if problems else "see the warnings above"))


def eval_batches(records: Sequence[dict] | grain.MapDataset, load: Callable, *,
                 global_batch: int, num_threads: int = 2, views: Sequence[View] | None = None
                 ) -> EvalBatches:
  """This process's share of the usable eval clips as masked batches; see `EvalBatches`."""
  return EvalBatches(records, load, global_batch=global_batch, num_threads=num_threads,
                     views=views)


def config_train_iterator(source: Sequence[dict] | grain.MapDataset, load: Callable,
                          config: Any) -> grain.DatasetIterator:
  """`train_iterator` with a run config's batch size, seed and `config.data` reader settings."""
  d = config.data
  return train_iterator(source, load, global_batch=config.batch_size, seed=config.seed,
                        num_threads=d.num_threads, prefetch=d.prefetch,
                        worker_count=d.worker_count,
                        max_skips_in_row=d.get("max_skips_in_row", DEFAULT_MAX_SKIPS_IN_ROW),
                        what=f"training split {d.get('train_split', 'train')!r}")
