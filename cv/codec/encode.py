"""Encode a video dataset into code shards (the library behind tools/encode_dataset.py).

Work is split into shards (`records[i::num_shards]`), and shards are split over processes
(`shard % process_count == process_index`). A finished shard has its `.json` summary beside it;
re-running skips finished shards, so a killed job resumes without duplicating or losing records.
Each shard and summary is written atomically. The manifest is written once every shard of every
split is finished (by whichever process finishes last; writing it twice gives the same file).

SIGTERM or Ctrl-C abandons the shard being written (its temporary file is removed; the next run
makes it again) and exits with status 0 (`errors.Preempted`); a write that fails (full disk)
raises `WriteError` naming the shard. Every encoding ends with a summary of the videos it
skipped (`skipped_summary`): count, reasons, the first files of each, where the full list is.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from cv.codec.neural import NeuralCodec
from cv.codec.walks import encode_walk_split
from cv.data import code_shards, framewise, sources, transforms, video
from cv.lib import fileio, preemption
from cv.lib.errors import Preempted


class _Stopped(Exception):
  """Internal: a stop request seen between two videos; abandons the shard being written."""


@dataclasses.dataclass(frozen=True)
class EncodeSpec:
  """Which frames of each video are encoded: every `stride`-th frame, at most `max_frames`
  (0 = all), resized to `short_side` and centre-cropped to `crop` x `crop` (0 = keep the aspect,
  crop only to the codec grid). `chunk_frames` > 0 (long WalkingTours videos): stream each video
  and store one record per chunk of that many encoded frames (see `cv.data.walks`)."""
  short_side: int = 64
  crop: int = 64
  stride: int = 1
  max_frames: int = 0
  chunk_frames: int = 0


def load_frames(path: str, spec: EncodeSpec, grid: int) -> tuple[np.ndarray, float]:
  """The frames of `path` that get encoded, and their frame rate."""
  info = video.probe(path)
  n = info.num_frames // spec.stride
  if spec.max_frames:
    n = min(n, spec.max_frames)
  if n < 1:
    raise video.VideoError(path, f"has {info.num_frames} frames, fewer than stride {spec.stride}")
  frames = video.read_frames(path, np.arange(n) * spec.stride)
  frames = transforms.resize_short_side(frames, spec.short_side)
  if spec.crop:
    frames = transforms.center_crop(frames, spec.crop)
  else:
    h, w = frames.shape[1:3]
    frames = transforms.center_crop(frames, h // grid * grid, w // grid * grid)
  return frames, info.fps / spec.stride


def _examples(records: Sequence[dict], codec: NeuralCodec, spec: EncodeSpec, root: str,
              bad: list, bar: tqdm, stop: preemption.StopRequest | None = None
              ) -> Iterator[dict[str, Any]]:
  for r in records:
    if stop is not None and stop.requested:
      raise _Stopped()
    try:
      frames, fps = load_frames(r["path"], spec, codec.spatial_factor)
    except video.VideoError as e:
      bad.append([r["path"], e.reason])
      bar.update(1)
      continue
    usable = frames.shape[0] // codec.temporal_factor * codec.temporal_factor
    if usable == 0:
      bad.append([r["path"], f"only {frames.shape[0]} frames; the codec needs "
                  f"{codec.temporal_factor}"])
      bar.update(1)
      continue
    extra = {}
    if "segments" in r:  # COIN: per-frame labels of the encoded frames
      problem = framewise.segments_problem(r["segments"], frames.shape[0] / fps)
      if problem:
        bad.append([r["path"], problem])
        bar.update(1)
        continue
      extra["frame_labels"] = framewise.frame_labels(r["segments"], usable, fps)
    codes = codec.encode(frames[:usable])
    bar.update(1)
    yield dict(codes=codes.astype(np.uint8 if codec.bits <= 8 else np.uint16),
               label=int(r.get("label", -1)), video_id=str(r.get("video_id", "")),
               time_start=float(r.get("time_start", 0.0)), time_end=float(r.get("time_end", 0.0)),
               num_frames=int(usable), fps=float(fps), path=os.path.relpath(r["path"], root),
               **extra)


def encode_split(records: Sequence[dict], out_dir: str, split: str, codec: NeuralCodec,
                 spec: EncodeSpec, *, root: str, num_shards: int, process_index: int = 0,
                 process_count: int = 1, progress: bool = True,
                 stop: preemption.StopRequest | None = None) -> dict[str, int]:
  """Encodes this process's unfinished shards of one split. Returns counts (done, skipped).

  With `stop`, a stop request abandons the shard being written and raises `Preempted`."""
  num_shards = max(1, min(num_shards, len(records)))
  mine = [i for i in range(num_shards) if i % process_count == process_index]
  todo = [i for i in mine if not code_shards.finished(
      os.path.join(out_dir, code_shards.shard_name(split, i, num_shards)))]
  for i in todo:
    code_shards.remove_stale_temps(os.path.join(out_dir, code_shards.shard_name(split, i,
                                                                              num_shards)))
  skipped = len(mine) - len(todo)
  if skipped:
    print(f"{split}: {skipped} of {len(mine)} shards already finished, skipping them", flush=True)
  total = sum(len(records[i::num_shards]) for i in todo)
  bar = tqdm(total=total, unit="clip", desc=f"encode {split}", disable=not progress)
  t0 = time.monotonic()
  for k, i in enumerate(todo):
    name = code_shards.shard_name(split, i, num_shards)
    path = os.path.join(out_dir, name)
    bad: list = []
    try:
      n = code_shards.write_shard(path, _examples(records[i::num_shards], codec, spec, root, bad,
                                                  bar, stop))
    except _Stopped:
      bar.close()
      kept = skipped + k
      message = (f"{stop.requested}: stopped encoding; shard {name} abandoned (its temporary "
                 f"file removed; the next run makes it again), {kept} of this process's "
                 f"{len(mine)} {split} shards finished and kept in {out_dir}. Re-run the same "
                 f"command to resume.")
      print(message, flush=True)
      raise Preempted(message) from None
    fileio.write_json(path + ".json", dict(shard=name, split=split, num_records=n, bad=bad,
                                           seconds=round(time.monotonic() - t0, 2)))
  bar.close()
  return dict(done=len(todo), skipped=skipped, num_shards=num_shards)


def write_manifest_if_complete(out_dir: str, splits: dict[str, dict], codec: NeuralCodec,
                               codec_path: str, spec: EncodeSpec, source: dict) -> str | None:
  """Assembles manifest.json from the shard summaries once all are present; else None."""
  out = {}
  for split, s in splits.items():
    names = [code_shards.shard_name(split, i, s["num_shards"]) for i in range(s["num_shards"])]
    summaries = []
    for n in names:
      p = os.path.join(out_dir, n + ".json")
      if not os.path.exists(p):
        return None
      summaries.append(json.load(open(p)))
    out[split] = dict(shards=names, num_records=sum(x["num_records"] for x in summaries),
                      bad=[list(p) for p in s.get("problems", [])]
                      + [b for x in summaries for b in x["bad"]],
                      class_names=s.get("class_names", []))
  manifest = dict(format=code_shards.FORMAT, format_version=code_shards.FORMAT_VERSION,
                  codec_id=codec.codec_id, config_hash=codec.config_hash, codec_path=codec_path,
                  nominal_cr=codec.nominal_cr(), num_codebooks=codec.num_codebooks,
                  num_entries=codec.num_entries, bits=codec.bits,
                  spatial_factor=codec.spatial_factor, temporal_factor=codec.temporal_factor,
                  dtype="uint8" if codec.bits <= 8 else "uint16", encode=dataclasses.asdict(spec),
                  source=source, splits=out)
  path = os.path.join(out_dir, code_shards.MANIFEST)
  fileio.write_json(path, manifest)
  return path


def encode_dataset(root: str, out_dir: str, codec: NeuralCodec, spec: EncodeSpec, *,
                   codec_path: str, data_format: str = "kinetics",
                   splits: Sequence[str] = ("train", "validate"), num_shards: int = 16,
                   process_index: int = 0, process_count: int = 1, strict: bool = False,
                   progress: bool = True) -> str | None:
  """Encodes the `splits` of a Kinetics-, COIN-, folder- or WalkingTours-format dataset at `root`
  into `out_dir` (COIN records also store `frame_labels`, the class of every encoded frame;
  WalkingTours walks are streamed into one record per chunk, one shard per walk).

  Labels of every split are indexed by the first split's classes (a label the first split lacks
  is an error naming the CSV row). Returns the manifest path once every shard of every split is
  finished (by any process), else None. Re-running resumes.
  """
  from cv.data import datasets  # dataset readers; imported here to keep tools' startup light
  reports = datasets.read_splits(root, data_format, splits, strict=strict)  # all before encoding
  os.makedirs(out_dir, exist_ok=True)
  done: dict[str, dict] = {}
  if (data_format == "walking_tours") != (spec.chunk_frames > 0):
    raise ValueError(f"encode_dataset: format {data_format!r} with chunk_frames="
                     f"{spec.chunk_frames}; long walks are encoded in chunks (chunk_frames > 0), "
                     f"other formats whole (chunk_frames = 0)")
  stop = preemption.StopRequest(sync=False, notice="abandoning the shard being written (finished "
                                "shards are kept) and exiting")
  with stop:
    for split, rep in reports.items():
      if spec.chunk_frames:
        res = encode_walk_split(rep.records, out_dir, split, codec, spec,
                                process_index=process_index, process_count=process_count,
                                progress=progress, stop=stop)
      else:
        res = encode_split(rep.records, out_dir, split, codec, spec, root=root,
                           num_shards=num_shards, process_index=process_index,
                           process_count=process_count, progress=progress, stop=stop)
      done[split] = dict(num_shards=res["num_shards"], class_names=rep.class_names,
                         problems=rep.problems)
  source = dict(root=os.path.abspath(root), format=data_format)
  path = write_manifest_if_complete(out_dir, done, codec, codec_path, spec, source)
  print(skipped_summary(out_dir, done, root=root), flush=True)
  return path


def _skipped(out_dir: str, splits: dict[str, dict]) -> tuple[dict[str, list], int, bool]:
  """({split: [(path, reason)]}, videos looked at, complete) from the manifest when it exists,
  else from the source problems and the finished shard summaries (this process's so far)."""
  manifest_path = os.path.join(out_dir, code_shards.MANIFEST)
  if os.path.exists(manifest_path):
    m = code_shards.load_manifest(out_dir)["splits"]
    return ({s: [tuple(b) for b in m[s]["bad"]] for s in splits if s in m},
            sum(m[s]["num_records"] + len(m[s]["bad"]) for s in splits if s in m), True)
  bad: dict[str, list] = {}
  seen = 0
  for split, s in splits.items():
    bad[split] = [tuple(p) for p in s.get("problems", [])]
    seen += len(bad[split])
    for i in range(s["num_shards"]):
      p = os.path.join(out_dir, code_shards.shard_name(split, i, s["num_shards"]) + ".json")
      if os.path.exists(p):
        with open(p) as f:
          summary = json.load(f)
        bad[split] += [tuple(b) for b in summary["bad"]]
        seen += summary["num_records"] + len(summary["bad"])
  return bad, seen, False


def skipped_summary(out_dir: str, splits: dict[str, dict], *, root: str = "", files: int = 3
                    ) -> str:
  """A few lines about the videos an encoding skipped: how many, grouped by reason (most common
  first) with the first `files` files of each, and where the full list with every reason is."""
  bad, seen, complete = _skipped(out_dir, splits)
  total = sum(len(b) for b in bad.values())
  where = (os.path.join(out_dir, code_shards.MANIFEST) if complete else
           f"the *.array_record.json shard summaries in {out_dir} (the manifest once every "
           f"process has finished)")
  per_split = ", ".join(f"{s}: {len(b)}" for s, b in bad.items())
  if not total:
    return f"encoding summary: no video skipped ({seen} looked at; {per_split})"
  lines = [f"encoding summary: skipped {total} of {seen} videos ({per_split}):"]
  groups: dict[str, list[tuple[str, str]]] = {}
  for items in bad.values():
    for path, reason in items:
      groups.setdefault(sources.reason_kind(reason), []).append((path, reason))
  for group in sorted(groups.values(), key=len, reverse=True):
    shown = [os.path.relpath(p, root) if root and os.path.isabs(p) and
             p.startswith(os.path.abspath(root)) else p for p, _ in group[:files]]
    more = f" and {len(group) - files} more" if len(group) > files else ""
    lines.append(f"  {sources.reason_head(group[0][1])} ({len(group)}): "
                 f"{', '.join(shown)}{more}")
  lines.append(f"  every skipped file with its reason and fix: {where} (\"bad\" of each split)")
  return "\n".join(lines)
