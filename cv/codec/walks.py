"""Encoding WalkingTours-format walks chunk by chunk into code shards (one shard per walk).

Each walk is streamed (`cv.data.walks.iter_chunk_frames`): frames are decoded, resized and encoded
one chunk of `chunk_frames` encoded frames at a time, and every chunk becomes one code-shard
record (`codes` [chunk_frames / tf, H', W', K], `walk`, `video_id`, `chunk`, `time_start`), so an
hour of video never sits in memory, neither as RGB nor as codes.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from cv.data import code_shards, video
from cv.data.walks import iter_chunk_frames
from cv.lib import fileio
from cv.lib.errors import Preempted


def _num_chunks(path: str, spec: Any) -> int:
  """Whole chunks a walk will give (for the progress bar; 0 if the file cannot be read)."""
  try:
    return video.probe(path).num_frames // spec.stride // spec.chunk_frames
  except video.VideoError:
    return 0


class Stopped(Exception):
  """A stop request seen between two chunks: abandons the walk's shard (see `encode_walk_split`)."""


def _walk_records(record: dict, walk: int, codec: Any, spec: Any, bar: tqdm, stop: Any = None
                  ) -> Iterator[dict[str, Any]]:
  info = video.probe(record["path"])
  rate = info.fps / spec.stride
  dtype = np.uint8 if codec.bits <= 8 else np.uint16
  for i, frames in enumerate(iter_chunk_frames(record["path"], spec.chunk_frames, spec.stride,
                                               spec.short_side, codec.spatial_factor)):
    if stop is not None and stop.requested:
      raise Stopped()
    bar.update(1)
    yield dict(codes=codec.encode(frames).astype(dtype), walk=walk,
               video_id=record["video_id"], chunk=i, time_start=i * spec.chunk_frames / rate,
               num_frames=spec.chunk_frames, fps=rate)


def encode_walk_split(records: Sequence[dict], out_dir: str, split: str, codec: Any, spec: Any,
                      *, process_index: int = 0, process_count: int = 1,
                      progress: bool = True, stop: Any = None) -> dict[str, int]:
  """Encodes this process's unfinished walks of one split (one shard per walk); resumable.

  With `stop` (a `cv.lib.preemption.StopRequest`), a stop request abandons the walk being written
  (its temporary file is removed) and raises `Preempted`."""
  n = len(records)
  todo = [i for i in range(n) if i % process_count == process_index
          and not code_shards.finished(os.path.join(out_dir, code_shards.shard_name(split, i, n)))]
  total = sum(_num_chunks(records[i]["path"], spec) for i in todo)
  bar = tqdm(total=total, unit="chunk", desc=f"encode {split}", disable=not progress)
  for i in todo:
    name = code_shards.shard_name(split, i, n)
    path = os.path.join(out_dir, name)
    code_shards.remove_stale_temps(path)
    t0 = time.monotonic()
    bad: list = []
    try:
      count = code_shards.write_shard(path, _walk_records(records[i], i, codec, spec, bar, stop))
    except Stopped:
      bar.close()
      message = (f"{stop.requested}: stopped encoding; shard {name} abandoned (its temporary "
                 f"file removed; the next run makes it again); finished shards are kept in "
                 f"{out_dir}. Re-run the same command to resume.")
      print(message, flush=True)
      raise Preempted(message) from None
    except video.VideoError as e:  # a broken walk: listed, its shard left empty
      bad.append([records[i]["path"], e.reason])
      count = code_shards.write_shard(path, [])
    fileio.write_json(path + ".json", dict(shard=name, split=split, num_records=count, bad=bad,
                                           video_id=records[i]["video_id"],
                                           seconds=round(time.monotonic() - t0, 2)))
  bar.close()
  return dict(done=len(todo), skipped=n - len(todo), num_shards=n)
