"""Figure `loader`: input-pipeline clips/s from code shards vs from video files.

What it measures: the training input pipeline of cv/configs/k600_s3d.py on the built-in demo
dataset, twice, with the same clip spec, batch size, Grain threads and prefetch:
  rgb    video files -> `pipeline.LoadClip` (PyAV decode of a random window, resize, random
         crop) -> uint8 [B, T, H, W, 3];
  codes  the same videos encoded once by the shipped demo codec into ArrayRecord code shards
         (`code_cache.ensure_codes`) -> `code_clips.LoadCodeClip` (msgpack decode, random window
         and crop of the code grid) -> uint8 [B, T', H', W', K].
For each: clips/s over --batches batches after --warmup batches (and the time to the first
batch), the bytes per clip read from storage (mean video file size of the training records vs
code shard bytes per record, with the mean serialized record next to it), the bytes per example
as delivered to the model (array nbytes) and the peak RSS of the process. Each pipeline runs in
its own fresh Python process (`python -c`, spawned one after the other), so the peak RSS
belongs to that pipeline alone and neither run warms the other's caches; both processes import
the same libraries (JAX, Grain, PyAV), so the RSS difference is the pipeline's.

Why: the paper's case for training on codes is partly an input-pipeline one — codes are ~200x
smaller to store and need no video decoding, so a host can feed far more clips per second.
This figure measures that claim on this machine as ratios of two measurements taken in the
same run (`codes_vs_rgb_clips_per_s_ratio`, `rgb_vs_codes_bytes_per_clip_ratio`, ...).
Encoding the dataset (once, cached) is not part of the measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

from cv.benchmarks.common import (checkout_env, fmt, log, non_negative_int, positive_int,
                                  run_child)

HELP = "input pipeline clips/s from code shards vs from video files (same clip spec and cores)"

PIPELINES = ("rgb", "codes")
ROW_NAMES = {"rgb": "rgb (video files)", "codes": "codes (code shards)"}

# Run in the child process: measure one pipeline described by a JSON spec file, write JSON.


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--batch", type=positive_int, default=16, help="clips per batch")
  parser.add_argument("--batches", type=positive_int, default=20, help="timed batches")
  parser.add_argument("--warmup", type=non_negative_int, default=2,
                      help="batches drawn before timing (thread start-up, first reads)")
  parser.add_argument("--num_threads", type=positive_int, default=2,
                      help="Grain read threads (both pipelines)")
  parser.add_argument("--prefetch", type=non_negative_int, default=4,
                      help="Grain prefetch buffer in examples (both pipelines)")
  parser.add_argument("--smoke", action="store_true",
                      help="k600_s3d.py:smoke (tiny demo data and clips; for tests)")


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Measures both pipelines in their own processes; prints the table; returns the figures."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.configs import k600_s3d  # pylint: disable=g-import-not-at-top
  from cv.data import code_shards, datasets  # pylint: disable=g-import-not-at-top
  from cv.codec import code_cache  # pylint: disable=g-import-not-at-top

  c = k600_s3d.get_config("smoke" if args.smoke else None)
  data = c.data
  codec = NeuralCodec.load(None)
  tf, sf = codec.temporal_factor, codec.spatial_factor
  log(f"[loader] demo data and code shards (made once, cached; not timed)")
  with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
    root, manifest = code_cache.ensure_codes(c, codec, "demo")
    train, _ = datasets.clip_sources(data)
  records = [{"path": r["path"], "label": int(r.get("label", 0))} for r in train.records]
  if not records:
    raise SystemExit("error: the demo dataset has no training records")

  # Bytes per clip in storage: every record is equally likely to be drawn by the shuffle.
  rgb_storage = float(np.mean([os.path.getsize(r["path"]) for r in records]))
  shards = code_shards.shard_paths(root, data.train_split, manifest)
  num_code_records = int(manifest["splits"][data.train_split]["num_records"])
  shard_bytes = sum(os.path.getsize(p) for p in shards)
  record_bytes = _mean_record_bytes(shards)

  clip = dict(num_frames=data.num_frames, stride=data.stride, target_fps=data.target_fps,
              short_side=data.short_side, crop=data.crop)
  code_clip = dict(num_steps=data.num_frames // tf, grid=data.crop // sf)
  common = dict(batch=args.batch, batches=args.batches, warmup=args.warmup,
                num_threads=args.num_threads, prefetch=args.prefetch, seed=0)
  specs = {
      "rgb": dict(common, pipeline="rgb", records=records, clip=clip),
      "codes": dict(common, pipeline="codes", root=root, split=data.train_split,
                    clip=code_clip),
  }
  results = {}
  for name in PIPELINES:
    log(f"[loader] {name}: {args.warmup} + {args.batches} batches of {args.batch} in a fresh "
        f"process ({args.num_threads} threads, prefetch {args.prefetch})")
    results[name] = run_child("loader", specs[name], checkout_env())
    r = results[name]
    log(f"[loader] {name}: {r['clips_per_s']:.1f} clips/s, peak RSS {r['peak_rss_mb']:.0f} MB")

  figures: dict[str, Any] = {
      "clip": f"{data.num_frames}x{data.crop}x{data.crop}",
      "code_clip": "x".join(str(v) for v in results["codes"]["example_shape"]),
      "batch": args.batch, "batches": args.batches, "warmup": args.warmup,
      "num_threads": args.num_threads, "prefetch": args.prefetch,
      "rgb/records": len(records), "codes/records": num_code_records,
      "rgb/storage_bytes_per_clip": rgb_storage,
      "codes/storage_bytes_per_clip": shard_bytes / num_code_records,
      "codes/record_bytes": record_bytes,
      "codes/shard_bytes": shard_bytes,
  }
  for name in PIPELINES:
    r = results[name]
    for key in ("clips_per_s", "s_per_batch", "first_batch_s", "elapsed_s", "example_bytes",
                "peak_rss_mb", "rss_after_imports_mb"):
      figures[f"{name}/{key}"] = r[key]
    figures[f"{name}/dtype"] = r["dtype"]
  figures["codes_vs_rgb_clips_per_s_ratio"] = (
      figures["codes/clips_per_s"] / figures["rgb/clips_per_s"])
  figures["rgb_vs_codes_bytes_per_clip_ratio"] = (
      figures["rgb/storage_bytes_per_clip"] / figures["codes/storage_bytes_per_clip"])
  figures["rgb_vs_codes_record_bytes_ratio"] = (
      figures["rgb/storage_bytes_per_clip"] / figures["codes/record_bytes"])
  figures["rgb_vs_codes_example_bytes_ratio"] = (
      figures["rgb/example_bytes"] / figures["codes/example_bytes"])
  figures["rgb_vs_codes_peak_rss_ratio"] = (
      figures["rgb/peak_rss_mb"] / figures["codes/peak_rss_mb"])
  print(format_tables(figures))
  return figures


def format_tables(figures: dict[str, Any]) -> str:
  """The `loader` figure as two Markdown tables (per pipeline, then ratios) and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  rows = []
  for name in PIPELINES:
    p = name + "/"
    rows.append([ROW_NAMES[name], fmt(figures[p + "clips_per_s"]),
                 fmt(figures[p + "s_per_batch"]), fmt(figures[p + "first_batch_s"]),
                 f"{figures[p + 'storage_bytes_per_clip']:,.0f}",
                 f"{figures[p + 'example_bytes']:,.0f}", f"{figures[p + 'peak_rss_mb']:,.0f}"])
  table = timing.markdown_table(
      ["pipeline", "clips/s", "s/batch", "first batch s", "storage bytes/clip",
       "bytes/example delivered", "peak RSS MB"], rows)
  ratios = timing.markdown_table(["ratio", "value"], [
      ["codes vs rgb clips/s", fmt(figures["codes_vs_rgb_clips_per_s_ratio"])],
      ["rgb vs codes storage bytes/clip", fmt(figures["rgb_vs_codes_bytes_per_clip_ratio"])],
      ["rgb vs codes serialized record bytes", fmt(figures["rgb_vs_codes_record_bytes_ratio"])],
      ["rgb vs codes bytes/example delivered",
       fmt(figures["rgb_vs_codes_example_bytes_ratio"])],
      ["rgb vs codes peak RSS", fmt(figures["rgb_vs_codes_peak_rss_ratio"])],
  ])
  notes = [
      f"Clips: {figures['clip']} RGB frames vs {figures['code_clip']} codes (T'xH'xW'xK) of the "
      f"same clip spec (k600_s3d), batch {figures['batch']}, {figures['num_threads']} Grain "
      f"threads, prefetch {figures['prefetch']}; clips/s over {figures['batches']} batches "
      f"after {figures['warmup']} warm-up batches; first batch s: from creating the iterator.",
      f"Storage bytes/clip: mean video file size of the {figures['rgb/records']} training "
      f"records vs code shard bytes / records ({figures['codes/records']} records in "
      f"{figures['codes/shard_bytes']:,} shard bytes; mean serialized record "
      f"{figures['codes/record_bytes']:,.0f} B, msgpack with the video's metadata). ArrayRecord "
      "pads shard files, which weighs on a dataset this small; a clip reads its whole record "
      "(whole video) in both pipelines.",
      "Each pipeline runs in its own fresh process; peak RSS is that process's maximum (after "
      f"imports: rgb {figures['rgb/rss_after_imports_mb']:,.0f} MB, codes "
      f"{figures['codes/rss_after_imports_mb']:,.0f} MB).",
      "Ratios: the first named over the second, from measurements of this run.",
  ]
  return table + "\n" + ratios + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _mean_record_bytes(shards: list[str]) -> float:
  """Mean serialized size of the records in `shards` (msgpack bytes, as stored)."""
  import grain  # pylint: disable=g-import-not-at-top
  source = grain.sources.ArrayRecordDataSource(shards)
  n = len(source)
  return float(sum(len(source[i]) for i in range(n)) / max(n, 1))


def child_main(spec_path: str, out_path: str) -> None:
  """Entry point of a measuring process: reads the spec, measures, writes JSON to `out_path`."""
  with open(spec_path) as f:
    spec = json.load(f)
  result = measure(spec)
  with open(out_path, "w") as f:
    json.dump(result, f)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
  """Clips/s, bytes per example and peak RSS of one pipeline (run in its own process).

  `spec`: pipeline ("rgb" with `records` and a `ClipSpec` dict, or "codes" with the shard
  `root`, `split` and a `CodeClipSpec` dict), batch, batches, warmup, num_threads, prefetch,
  seed.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  from cv.data import code_clips, code_shards, pipeline  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  if spec["pipeline"] == "rgb":
    source: Any = spec["records"]
    load: Any = pipeline.LoadClip(pipeline.ClipSpec(**spec["clip"]), train=True)
    key = "video"
  elif spec["pipeline"] == "codes":
    source = code_shards.code_dataset(spec["root"], spec["split"])
    load = code_clips.LoadCodeClip(code_clips.CodeClipSpec(**spec["clip"]), train=True)
    key = "codes"
  else:
    raise ValueError(f"unknown pipeline {spec['pipeline']!r}")
  rss_after_imports = timing.peak_rss_mb()
  batch_size, warmup, batches = spec["batch"], spec["warmup"], spec["batches"]
  start = time.perf_counter()
  it = pipeline.train_iterator(source, load, global_batch=batch_size, seed=spec["seed"],
                               num_threads=spec["num_threads"], prefetch=spec["prefetch"])
  stamps = []
  for _ in range(warmup + batches):
    batch = next(it)
    stamps.append(time.perf_counter())
  t0 = start if warmup == 0 else stamps[warmup - 1]
  elapsed = stamps[-1] - t0
  x = batch[key]
  if x.shape[0] != batch_size:
    raise RuntimeError(f"expected batches of {batch_size}, got {x.shape}")
  return {
      "clips_per_s": batches * batch_size / elapsed,
      "s_per_batch": elapsed / batches,
      "first_batch_s": stamps[0] - start,
      "elapsed_s": elapsed,
      "example_bytes": x.nbytes / batch_size,
      "example_shape": list(x.shape[1:]),
      "dtype": str(x.dtype),
      "peak_rss_mb": timing.peak_rss_mb(),
      "rss_after_imports_mb": rss_after_imports,
  }
