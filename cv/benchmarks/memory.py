"""Figure `memory`: peak RSS and time per training pass over whole walks, codes vs RGB.

What it measures: for walks of --minutes minutes (one demo WalkingTours walk per length, made
once and cached, as are its code shards), one training pass of the `past_future` model
(cv/configs/walkingtours_past_future.py) over the whole walk, batch of one walk, all its chunks:
`past_future.make_walk_pass(...)(params, walk, rng, with_grads=True)` jitted, i.e. the forward
scan over every chunk, the memory history, and the per-chunk gradients summed group by group,
exactly as the trainer computes them (the optimizer update, a few hundred thousand parameters,
is left out). Two pipelines, each in its own fresh Python process (spawned one after the other,
so each peak RSS is that pipeline's alone):
  codes  the walk's codes read from its code shards (`walks.LoadWalk`, whole walk) ->
         uint8 [1, N, T', H', W', K] -> the codec's frozen codebook vectors per chunk
         (`past_future.codes_features`), as the trainer feeds them;
  rgb    the same frames decoded from the video (`walks.iter_chunk_frames`: every stride-th
         frame, resized, cropped to the codec grid) into one uint8 array [1, N, T, H, W, 3]
         (the walk held as pixels), turned per chunk, inside the jitted pass, into the codes'
         grid by a fixed space-to-depth (8x8 pixel patches -> 192 channels, float32 in [0, 1]).
         The model is the same but for its adapter's first convolution (192 input channels
         instead of the codebook dimension); queries are cropped to the same number of cells
         (query_crop * 8 pixels, at any pixel offset).
For each: the input array's bytes, the peak RSS of the process (`ru_maxrss`), the compile time
(compile + first pass) and the mean time per pass over --repeats passes. An RGB walk whose
estimated size (frames x H x W x 3 bytes) exceeds --rgb_max_gib is not decoded ("skipped"), and
an RGB process that dies (e.g. killed for memory) is reported as "did not fit"; the other
lengths still run. Ratios per length, when both pipelines ran: `rgb_vs_codes_peak_rss_ratio`,
`rgb_vs_codes_input_bytes_ratio`, `rgb_vs_codes_pass_time_ratio`.

Why: the paper's hour-long video understanding (§4.6) is possible because an hour of codes fits
in memory where an hour of RGB does not, and because a pass over codes is cheaper. This figure
measures how peak memory and time per pass grow with the walk's length on this machine, for
both inputs. On CPU the trainer unrolls the gradient groups into one program, so compile time
grows with chunks / group: `--group 0` picks ceil(chunks / 6) per walk.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Callable

from cv.benchmarks.common import (checkout_env, float_list, fmt, log, non_negative_int,
                                  positive_int, run_child)
from cv.codec import shipped

HELP = "peak RSS and time per past_future training pass over 5-60 min walks, codes vs RGB"

PIPELINES = ("codes", "rgb")
ROW_NAMES = {"codes": "codes (code shards)", "rgb": "rgb (decoded pixels)"}
MEMORIES = ("none", "lstm", "slot")
DEFAULT_MINUTES = [5.0, 15.0, 30.0, 60.0]
SMOKE_MINUTES = [0.25, 0.5]
SPLIT = "train"  # a flat 1-walk folder: walk_000 is in the train split
AUTO_GROUPS = 6  # --group 0: ceil(chunks / AUTO_GROUPS) steps per gradient group
WALK_SEED = 0
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"

# Run in the child process: measure one pipeline described by a JSON spec file, write JSON.


def _positive_minutes(text: str) -> list[float]:
  values = float_list(text)
  if any(v <= 0 for v in values):
    raise argparse.ArgumentTypeError(f"expected positive minutes, got {text!r}")
  return values


def _positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not 0 < value < math.inf:
    raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
  return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--minutes", type=_positive_minutes, default=None,
                      help="comma-separated walk lengths in minutes (default 5,15,30,60; "
                           "--smoke: 0.25,0.5)")
  parser.add_argument("--memory", choices=MEMORIES, default="slot", help="the model's memory")
  parser.add_argument("--repeats", type=positive_int, default=1,
                      help="timed passes per measurement (after one compiling pass)")
  parser.add_argument("--group", type=non_negative_int, default=None,
                      help="steps per gradient group (default: config.group; 0 = auto, "
                           f"ceil(chunks / {AUTO_GROUPS}) per walk)")
  parser.add_argument("--rgb_max_gib", type=_positive_float, default=8.0,
                      help="skip the RGB pipeline when the decoded walk would exceed this (GiB)")
  parser.add_argument("--smoke", action="store_true",
                      help="walkingtours_past_future.py:smoke (32x32 walks, tiny model; for "
                           "tests)")


def config_arg(args: argparse.Namespace) -> str:
  """The `get_config` argument of walkingtours_past_future.py for these flags."""
  return f"memory={args.memory}" + (",smoke" if args.smoke else "")


def resolve_group(requested: int | None, config_group: int, num_chunks: int) -> int:
  """Steps per gradient group: the flag, else the config's; 0 = ceil(chunks / AUTO_GROUPS);
  never more than the walk has (as the trainer clamps it)."""
  group = config_group if requested is None else requested
  if group == 0:
    group = -(-num_chunks // AUTO_GROUPS)
  return max(1, min(group, num_chunks))


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Measures both pipelines per walk length, each in its own process; prints the tables."""
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.configs import walkingtours_past_future  # pylint: disable=g-import-not-at-top

  c = walkingtours_past_future.get_config(config_arg(args))
  minutes = args.minutes or (SMOKE_MINUTES if args.smoke else DEFAULT_MINUTES)
  codec = NeuralCodec.load(None)
  figures: dict[str, Any] = {
      "minutes": ",".join(f"{m:g}" for m in minutes), "memory": c.model.memory,
      "repeats": args.repeats, "codec_id": codec.codec_id, "stride": c.data.stride,
      "chunk_frames": c.data.chunk_frames, "short_side": c.data.short_side,
      "query_crop": c.query_crop, "model_dim": c.model.dim,
      "adapter_features": c.model.adapter_features, "rgb_max_gib": args.rgb_max_gib,
  }
  for m in minutes:
    p = f"{m:g}min/"
    walk = prepare_walk(c, codec, m)
    n = walk["num_chunks"]
    group = resolve_group(args.group, c.group, n)
    frames = n * c.data.chunk_frames
    rgb_bytes = frames * walk["height"] * walk["width"] * 3
    figures.update({p + "minutes": m, p + "chunks": n, p + "frames": frames, p + "group": group,
                    p + "frame_size": f"{walk['height']}x{walk['width']}",
                    p + "chunk_seconds": walk["chunk_seconds"],
                    p + "rgb/estimated_input_bytes": rgb_bytes})
    common = dict(config_arg=config_arg(args), group=group, repeats=args.repeats,
                  num_chunks=n, seed=0)
    specs = {
        "codes": dict(common, pipeline="codes", root=walk["codes_root"], split=SPLIT,
                      desc=walk["desc"]),
        "rgb": dict(common, pipeline="rgb", path=walk["path"]),
    }
    for name in PIPELINES:
      q = f"{p}{name}/"
      if name == "rgb" and rgb_bytes > args.rgb_max_gib * 2 ** 30:
        figures[q + "status"] = (f"skipped: {fmt(rgb_bytes / 2 ** 30)} GiB of pixels > "
                                 f"--rgb_max_gib {args.rgb_max_gib:g}")
        log(f"[memory] {m:g} min: rgb {figures[q + 'status']}")
        continue
      log(f"[memory] {m:g} min: {name}: {n} chunks, group {group}, compile + {args.repeats} "
          f"pass(es) in a fresh process")
      try:
        r = run_child("memory", specs[name], _child_env())
      except RuntimeError as e:
        if name == "codes":
          raise
        figures[q + "status"] = f"did not fit: {e}".splitlines()[0]
        log(f"[memory] {m:g} min: rgb {e}")
        continue
      figures[q + "status"] = "ok"
      figures.update({q + k: v for k, v in r.items()})
      log(f"[memory] {m:g} min: {name}: {r['s_per_pass']:.2f} s/pass (compile "
          f"{r['compile_s']:.1f} s), peak RSS {r['peak_rss_mb']:,.0f} MiB, input "
          f"{r['input_bytes']:,} B")
    if figures[p + "rgb/status"] == "ok":
      figures[p + "rgb_vs_codes_peak_rss_ratio"] = (
          figures[p + "rgb/peak_rss_bytes"] / figures[p + "codes/peak_rss_bytes"])
      figures[p + "rgb_vs_codes_input_bytes_ratio"] = (
          figures[p + "rgb/input_bytes"] / figures[p + "codes/input_bytes"])
      figures[p + "rgb_vs_codes_pass_time_ratio"] = (
          figures[p + "rgb/s_per_pass"] / figures[p + "codes/s_per_pass"])
  print(format_tables(figures, minutes))
  return figures


def prepare_walk(c: Any, codec: Any, minutes: float) -> dict[str, Any]:
  """The demo walk of `minutes` and its code shards (both made once and cached; not timed).

  Returns path (video), codes_root, desc (`walks.walk_index` descriptor), num_chunks, height
  and width (pixels of the encoded frames) and chunk_seconds.
  """
  from cv.data import code_shards, walks  # pylint: disable=g-import-not-at-top
  from cv.codec import code_cache  # pylint: disable=g-import-not-at-top
  from cv.codec import encode  # pylint: disable=g-import-not-at-top
  from cv.data.demo import ensure_walking_tours  # pylint: disable=g-import-not-at-top

  demo = dict(c.data.demo)
  size = {k: demo[k] for k in ("height", "width", "fps") if k in demo}
  log(f"[memory] {minutes:g} min: demo walk and its code shards (made once, cached; not timed)")
  folder = ensure_walking_tours(num_walks=1, length_seconds=60.0 * minutes, seed=WALK_SEED,
                                **size)
  spec = code_cache.encode_spec(c.data)
  key = json.dumps(dict(walk=os.path.abspath(folder), codec=codec.codec_id,
                        config=codec.config_hash, spec=dataclasses.asdict(spec), split=SPLIT),
                   sort_keys=True)
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  root = os.path.join(code_cache.cache_base(),
                      f"bench_memory-{os.path.basename(folder)}-{codec.codec_id}-{digest}")
  manifest_path = os.path.join(root, code_shards.MANIFEST)
  if not os.path.exists(manifest_path) or any(
      not os.path.exists(os.path.join(root, s))
      for s in code_shards.load_manifest(root)["splits"][SPLIT]["shards"]):
    log(f"[memory] {minutes:g} min: encoding {folder} into {root}")
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
      encode.encode_dataset(folder, root, codec, spec, codec_path=shipped.DEFAULT,
                            data_format="walking_tours", splits=(SPLIT,), num_shards=1)
  manifest = code_shards.load_manifest(root)
  code_shards.check_codec(manifest, codec.codec_id, codec.config_hash, root)
  desc = walks.walk_index(root, SPLIT, manifest)[0]
  first = code_shards.code_dataset(root, SPLIT)[desc["offset"]]
  h, w = first["codes"].shape[1:3]
  return dict(path=os.path.join(folder, f"{desc['video_id']}.mp4"), codes_root=root, desc=desc,
              num_chunks=int(desc["length"]), height=int(h * codec.spatial_factor),
              width=int(w * codec.spatial_factor),
              chunk_seconds=float(first["num_frames"]) / float(first["fps"]))


def format_tables(figures: dict[str, Any], minutes: list[float]) -> str:
  """The `memory` figure as two Markdown tables (per walk and pipeline, then ratios) and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  rows, ratio_rows, notes = [], [], []
  for m in minutes:
    p = f"{m:g}min/"
    for name in PIPELINES:
      q = f"{p}{name}/"
      if figures[q + "status"] == "ok":
        rows.append([f"{m:g} min", ROW_NAMES[name], f"{figures[p + 'chunks']:,}",
                     f"{figures[q + 'input_shape']} {figures[q + 'input_dtype']}",
                     f"{figures[q + 'input_bytes']:,}", f"{figures[q + 'peak_rss_mb']:,.0f}",
                     f"{figures[q + 'compile_s']:.1f}", fmt(figures[q + "s_per_pass"])])
      else:
        rows.append([f"{m:g} min", ROW_NAMES[name], f"{figures[p + 'chunks']:,}", "-",
                     f"{figures[p + 'rgb/estimated_input_bytes']:,} (est.)",
                     figures[q + "status"].split(":")[0], "-", "-"])
        notes.append(f"{m:g} min, {name}: {figures[q + 'status']}.")
    if p + "rgb_vs_codes_peak_rss_ratio" in figures:
      ratio_rows.append([f"{m:g} min", fmt(figures[p + "rgb_vs_codes_peak_rss_ratio"]),
                         fmt(figures[p + "rgb_vs_codes_input_bytes_ratio"]),
                         fmt(figures[p + "rgb_vs_codes_pass_time_ratio"])])
  out = timing.markdown_table(
      ["walk", "pipeline", "chunks", "input fed", "input bytes", "peak RSS MiB", "compile s",
       "s/pass"], rows, align="llrlrrrr")
  if ratio_rows:
    out += "\n" + timing.markdown_table(
        ["walk", "rgb vs codes peak RSS", "rgb vs codes input bytes", "rgb vs codes s/pass"],
        ratio_rows)
  m0 = f"{minutes[0]:g}min/"
  groups = ", ".join(f"{m:g} min: {figures[f'{m:g}min/group']}" for m in minutes)
  baseline = ", ".join(
      f"{m:g} min {name} {figures[f'{m:g}min/{name}/rss_after_imports_mb']:,.0f}"
      for m in minutes for name in PIPELINES if figures[f"{m:g}min/{name}/status"] == "ok")
  notes = [
      f"One training pass (forward over every chunk, memory history, per-chunk gradients summed "
      f"group by group; `past_future.make_walk_pass`, with_grads) over one whole demo walk of "
      f"{figures[m0 + 'frame_size']} frames, chunks of {figures['chunk_frames']} frames at every "
      f"{figures['stride']}th frame ({figures[m0 + 'chunk_seconds']:g} s of video per chunk); "
      f"memory={figures['memory']}, dim {figures['model_dim']}, max_slots = chunks. Steps per "
      f"gradient group: {groups}.",
      f"compile s: compile + first pass; s/pass: mean of {figures['repeats']} pass(es) after it.",
      "codes: the walk's uint8 codes read from its code shards, codebook vectors per chunk in "
      "the pass; rgb: the same frames decoded into one uint8 array, 8x8 space-to-depth (192 "
      "channels, float32) per chunk in the pass, same model but for the adapter's first conv.",
      "Each pipeline runs in its own fresh process; peak RSS is that process's maximum (after "
      f"imports, MiB: {baseline or 'n/a'}).",
      "Ratios: rgb over codes, from measurements of this run.",
  ] + notes
  return out + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _child_env() -> dict[str, str]:
  """The parent's environment with this checkout importable and one CPU device (no forced host
  device count: the pass runs on one device, as `step` measures)."""
  env = checkout_env()
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_COUNT_FLAG)]
  env["XLA_FLAGS"] = " ".join(flags)
  return env


def child_main(spec_path: str, out_path: str) -> None:
  """Entry point of a measuring process: reads the spec, measures, writes JSON to `out_path`."""
  with open(spec_path) as f:
    spec = json.load(f)
  result = measure(spec)
  with open(out_path, "w") as f:
    json.dump(result, f)


def space_to_depth_features(block: int) -> Callable[[Any], Any]:
  """uint8 frames [..., H, W, 3] -> float32 [..., H/block, W/block, block*block*3] in [0, 1]:
  the fixed pixel counterpart of the codes' grid (8x8 patches -> 192 channels at block 8)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def features(pixels: Any) -> Any:
    *lead, h, w, c = pixels.shape
    x = pixels.reshape(*lead, h // block, block, w // block, block, c)
    x = jnp.swapaxes(x, -4, -3)  # [..., H/b, W/b, b, b, c]
    x = x.reshape(*lead, h // block, w // block, block * block * c)
    return x.astype(jnp.float32) / 255.0

  return features


def decode_walk(path: str, num_chunks: int, chunk_frames: int, stride: int, short_side: int,
                grid: int) -> Any:
  """The walk's encoded frames as one uint8 array [num_chunks, chunk_frames, H, W, 3], decoded
  chunk by chunk (`walks.iter_chunk_frames`) into one preallocated array (one copy of the
  pixels, no list of chunks next to it)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.data import walks  # pylint: disable=g-import-not-at-top
  out = None
  count = 0
  for frames in walks.iter_chunk_frames(path, chunk_frames, stride, short_side, grid):
    if count == num_chunks:
      break
    if out is None:
      out = np.empty((num_chunks, *frames.shape), np.uint8)
    out[count] = frames
    count += 1
  if count != num_chunks:
    raise RuntimeError(f"{path}: decoded {count} chunks, the code shards have {num_chunks}")
  return out


def measure(spec: dict[str, Any]) -> dict[str, Any]:
  """Input bytes, compile time, time per pass and peak RSS of one pipeline (own process).

  `spec`: pipeline ("codes" with the shard `root`, `split` and walk `desc`, or "rgb" with the
  video `path`), config_arg, group, repeats, num_chunks, seed.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.configs import walkingtours_past_future  # pylint: disable=g-import-not-at-top
  from cv.data import walks  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  from cv.models import past_future as pf  # pylint: disable=g-import-not-at-top
  from cv.trainers import past_future  # pylint: disable=g-import-not-at-top

  c = walkingtours_past_future.get_config(spec["config_arg"])
  codec = NeuralCodec.load(None)
  sf = codec.spatial_factor
  rss_after_imports = timing.peak_rss_mb()
  n = spec["num_chunks"]
  start = time.perf_counter()
  if spec["pipeline"] == "codes":
    x = walks.LoadWalk(spec["root"], spec["split"], 0, train=False)(spec["desc"])["codes"]
    features = past_future.codes_features(codec)
    query_crop = c.query_crop  # code cells
  elif spec["pipeline"] == "rgb":
    d = c.data
    x = decode_walk(spec["path"], n, d.chunk_frames, d.stride, d.short_side, sf)
    features = space_to_depth_features(sf)
    query_crop = c.query_crop * sf  # pixels: the same number of cells after space-to-depth
  else:
    raise ValueError(f"unknown pipeline {spec['pipeline']!r}")
  load_s = time.perf_counter() - start
  if x.shape[0] != n:
    raise RuntimeError(f"expected {n} chunks, got {x.shape}")
  shape, dtype, nbytes = "x".join(map(str, (1, *x.shape))), str(x.dtype), int(x.nbytes)
  rss_after_load = timing.peak_rss_mb()

  model = past_future.build_model(c, n)
  walk_pass = past_future.make_walk_pass(model, features, query_crop, spec["group"])

  @jax.jit
  def init(rng: jax.Array) -> Any:  # as the trainer's `init`, on this pipeline's features
    chunk = features(jnp.zeros((1, *x.shape[1:]), x.dtype))
    query = chunk[:, :, :c.query_crop, :c.query_crop]
    state = pf.initial_state(model.memory, 1, model.dim, model.max_slots)
    return model.init(rng, state, chunk, query)["params"]

  params = init(jax.random.PRNGKey(spec["seed"]))
  walk = jax.device_put(x[None])
  del x
  rng = jax.random.PRNGKey(spec["seed"] + 1)
  step = jax.jit(lambda p, w, r: walk_pass(p, w, r, True))
  stats = timing.time_fn(step, params, walk, rng, repeats=spec["repeats"])
  return {
      "input_shape": shape, "input_dtype": dtype, "input_bytes": nbytes,
      "parameters": int(sum(np.size(v) for v in jax.tree.leaves(params))),
      "load_s": load_s,
      "compile_s": stats["warmup_s"], "s_per_pass": stats["mean_s"],
      "s_per_pass_std": stats["std_s"], "s_per_pass_min": stats["min_s"],
      "s_per_chunk": stats["mean_s"] / n,
      "peak_rss_bytes": int(timing.peak_rss_mb() * 2**20), "peak_rss_mb": timing.peak_rss_mb(),
      "rss_after_imports_mb": rss_after_imports, "rss_after_load_mb": rss_after_load,
  }
