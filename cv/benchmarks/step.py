"""Figure `step`: S3D train-step and inference time on codes vs RGB (and recon), at equal batch.

What it measures: for each input of cv/configs/k600_s3d.py (`codes`: the default codec's codes
embedded with its frozen codebooks, fed to the S3D-G whose stem skips the strides the codec
already applied; `rgb`: decoded frames; `recon`: the codes decoded back to pixels by the frozen
codec inside the step, fed to the RGB model), the model, features, task and one real batch are
built by the `s3d_cls` trainer exactly as a training run builds them. Then, jitted, on one real
batch already on the device: the train step (`task.train_step`: forward, loss, backward,
optimizer update; not donated, so every call starts from the same state) and inference
(`model.apply(..., train=False)` on the features), each a mean over --repeats calls after a
compiling warm-up call. Also the compile time, the parameter count, the bytes of the input
array as fed and the peak RSS. All inputs run in this one process, one after another, on the
default single CPU device (a `--xla_force_host_platform_device_count` in XLA_FLAGS is dropped
before JAX starts), so they share the same cores.

`--size paper` builds k600_s3d.py:paper instead: the full S3D-G (width 1.0, nine Mixed blocks)
on 32x224x224 RGB clips of real video (`cv.benchmarks.real_video`) against the 32x28x28 codes of
the same clips; batch 2 by default (the paper's recipe uses 128 over 8 devices; a float32 step at
batch 2 already takes tens of seconds on 2 CPU cores), inputs codes and rgb.

Why: the paper's second claim is that a network on codes is cheaper per step than on pixels
(its input is 8x smaller in each spatial dimension, and the stem strides go away), while a model
on reconstructions pays the decoder on top of the RGB model. The speed-ups are ratios of times
measured in the same run: `train_step_codes_vs_rgb_speedup_ratio` = RGB step time / codes step
time (> 1: codes are faster), likewise for inference and for recon vs RGB.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import time
from typing import Any

from cv.codec import shipped
from cv.benchmarks.common import choice_list, fmt, log, positive_int

HELP = "S3D train-step and inference time on codes vs RGB vs recon at equal batch"

INPUTS = ("codes", "rgb", "recon")
PAPER_BATCH = 2
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--batch", type=positive_int, default=None,
                      help="clips per batch (default: 16 at demo size, 2 at paper size, which "
                           "keeps a float32 S3D-G step on 32x224x224 RGB within a few GiB and "
                           "a few seconds on 2 CPU cores; the paper's recipe uses 128)")
  parser.add_argument("--repeats", type=positive_int, default=None,
                      help="timed calls per measurement (default: 5 at demo size, 3 at paper size)")
  parser.add_argument("--inputs", type=choice_list(INPUTS), default=None,
                      help="comma-separated inputs to measure, in this order (default: "
                           "codes,rgb,recon at demo size, codes,rgb at paper size)")
  parser.add_argument("--size", choices=("demo", "paper"), default="demo",
                      help="demo: k600_s3d.py (S3D-G width 0.25, 8x64x64 clips of the demo "
                           "data); paper: k600_s3d.py:paper (S3D-G width 1.0, 32x224x224 clips "
                           "of real video, codes 32x28x28; cv.benchmarks.real_video)")
  parser.add_argument("--smoke", action="store_true",
                      help="k600_s3d.py:smoke (tiny model and clips; for tests)")


def use_single_device() -> None:
  """Drops a forced host device count from XLA_FLAGS, if JAX has not started its backend yet."""
  flags = os.environ.get("XLA_FLAGS", "").split()
  kept = [f for f in flags if not f.startswith(_DEVICE_COUNT_FLAG)]
  if len(kept) == len(flags):
    return
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():
    log(f"[step] warning: JAX already started with XLA_FLAGS={os.environ['XLA_FLAGS']!r}; "
        f"measuring on device 0 of those devices")
    return
  os.environ["XLA_FLAGS"] = " ".join(kept)
  log(f"[step] dropped {_DEVICE_COUNT_FLAG} from XLA_FLAGS: measuring on the default single "
      f"CPU device")


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Measures every input in --inputs; prints the table; returns the figures."""
  use_single_device()
  import jax  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  if args.batch is None:
    args.batch = PAPER_BATCH if args.size == "paper" else 16
  if args.repeats is None:
    args.repeats = 3 if args.size == "paper" else 5
  if args.inputs is None:
    args.inputs = ["codes", "rgb"] if args.size == "paper" else list(INPUTS)
  figures: dict[str, Any] = {"size": args.size, "batch": args.batch, "repeats": args.repeats,
                             "inputs": ",".join(args.inputs), "devices": len(jax.devices())}
  for inp in args.inputs:
    figures.update({f"{inp}/{k}": v for k, v in measure(inp, args).items()})
  for inp in ("codes", "recon"):
    if inp in args.inputs and "rgb" in args.inputs:
      figures[f"train_step_{inp}_vs_rgb_speedup_ratio"] = (
          figures["rgb/train_step_s"] / figures[f"{inp}/train_step_s"])
      figures[f"inference_{inp}_vs_rgb_speedup_ratio"] = (
          figures["rgb/inference_s"] / figures[f"{inp}/inference_s"])
  if "codes" in args.inputs and "rgb" in args.inputs:
    figures["input_bytes_rgb_vs_codes_ratio"] = (
        figures["rgb/input_bytes"] / figures["codes/input_bytes"])
  figures["peak_rss_mb"] = timing.peak_rss_mb()
  print(format_tables(figures, args.inputs))
  return figures


def measure(inp: str, args: argparse.Namespace) -> dict[str, Any]:
  """Builds the s3d_cls model, features and task for input `inp` and times them."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  from cv.benchmarks.loader import bench_config  # pylint: disable=g-import-not-at-top
  from cv.trainers import s3d_cls  # pylint: disable=g-import-not-at-top

  c = bench_config(args.size, args.smoke, f"input={inp}")
  c.batch_size = args.batch
  codec = NeuralCodec.load(None) if inp != "rgb" else None
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):  # the trainer's progress lines; stdout = tables
    data = s3d_cls.Data(c, codec, shipped.DEFAULT)
  model = s3d_cls.build_model(c, len(data.class_names), codec)
  features, embed = s3d_cls.make_features(c, codec)
  task = s3d_cls.make_task(c, data, model, features, embed)
  state = jax.jit(task.init)(jax.random.PRNGKey(0))
  it = task.make_train_iter()
  host_batch = next(it)
  del it  # stop the loader's threads before timing
  gc.collect()
  key = data.input_key
  host_batch = {k: np.asarray(host_batch[k]) for k in (key, "label")}
  x = host_batch[key]
  if x.shape[0] != args.batch:
    raise RuntimeError(f"step: expected a batch of {args.batch}, got {x.shape}")
  batch = jax.device_put(host_batch)
  build_s = time.perf_counter() - start
  log(f"[step] {inp}: {'x'.join(map(str, x.shape))} {x.dtype} input (built in {build_s:.1f} s); "
      f"train step: compile + {args.repeats} calls")

  train_step = jax.jit(task.train_step)
  train = timing.time_fn(train_step, state, batch, repeats=args.repeats)
  log(f"[step] {inp}: train step {train['mean_s']:.3f} s (compile+first {train['warmup_s']:.1f} "
      f"s); inference: compile + {args.repeats} calls")

  def infer_fn(params, model_state, b):
    return model.apply({"params": params["s3d"], **model_state}, features(params, b), train=False)

  infer = timing.time_fn(jax.jit(infer_fn), state.params, state.model_state, {key: batch[key]},
                        repeats=args.repeats)
  log(f"[step] {inp}: inference {infer['mean_s']:.3f} s")
  params = jax.tree.leaves(state.params)
  s3d_params = int(sum(np.size(p) for p in jax.tree.leaves(state.params["s3d"])))
  del state, batch, train_step  # free this input's buffers before the next input is measured
  gc.collect()
  return {
      "width": float(c.model.width),
      "mixed_blocks": len(c.model.mixed_blocks) or 9,
      "input_shape": "x".join(map(str, x.shape)),
      "input_dtype": str(x.dtype),
      "input_bytes": int(x.nbytes),
      "parameters": int(sum(np.size(p) for p in params)),
      "parameters_s3d": s3d_params,
      "build_s": build_s,
      "train_step_s": train["mean_s"], "train_step_s_std": train["std_s"],
      "train_step_s_min": train["min_s"], "train_compile_s": train["warmup_s"],
      "train_clips_per_s": timing.per_second(args.batch, train),
      "inference_s": infer["mean_s"], "inference_s_std": infer["std_s"],
      "inference_s_min": infer["min_s"], "inference_compile_s": infer["warmup_s"],
      "inference_clips_per_s": timing.per_second(args.batch, infer),
      "peak_rss_mb": timing.peak_rss_mb(),
  }


def format_tables(figures: dict[str, Any], inputs: list[str]) -> str:
  """The `step` figure as two Markdown tables (per input, then speed-up ratios) and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  rows = []
  for inp in inputs:
    p = inp + "/"
    rows.append([inp, f"{figures[p + 'input_shape']} {figures[p + 'input_dtype']}",
                 fmt(figures[p + "train_step_s"]), fmt(figures[p + "train_clips_per_s"]),
                 fmt(figures[p + "inference_s"]), fmt(figures[p + "inference_clips_per_s"]),
                 f"{figures[p + 'train_compile_s']:.1f}", f"{figures[p + 'parameters']:,}",
                 f"{figures[p + 'input_bytes']:,}", f"{figures[p + 'peak_rss_mb']:,.0f}"])
  table = timing.markdown_table(
      ["input", "batch fed", "train step s", "train clips/s", "inference s",
       "inference clips/s", "train compile s", "parameters", "input bytes/batch",
       "peak RSS MB"], rows, align="llrrrrrrrr")
  ratio_rows = []
  for inp in ("codes", "recon"):
    if f"train_step_{inp}_vs_rgb_speedup_ratio" in figures:
      ratio_rows.append([f"{inp} vs rgb", fmt(figures[f"train_step_{inp}_vs_rgb_speedup_ratio"]),
                         fmt(figures[f"inference_{inp}_vs_rgb_speedup_ratio"])])
  out = table
  if ratio_rows:
    out += "\n" + timing.markdown_table(["speed-up", "train step", "inference"], ratio_rows)
  first = figures[inputs[0] + "/width"]
  notes = [
      f"Size {figures['size']}: S3D-G width {first:g} with "
      f"{figures[inputs[0] + '/mixed_blocks']} Mixed blocks (k600_s3d"
      f"{':paper' if figures['size'] == 'paper' else ''}).",
      f"Batch {figures['batch']} of one real {'video' if figures['size'] == 'paper' else 'demo'} "
      f"batch, on {figures['devices']} CPU device(s); "
      f"times: mean of {figures['repeats']} jitted calls after a compiling warm-up "
      "(train compile s: compile + first call). Train step = forward, loss, backward and "
      "optimizer update, as `s3d_cls` trains; inference = features + model, train=False.",
      ("recon decodes the codes with the frozen codec inside both programs, then runs the RGB "
       "model. " if "recon" in inputs else "")
      + "Speed-up = RGB time / other time (> 1: faster than RGB).",
      "input bytes/batch: the array as fed (codes stay uint8 until the jitted step)."
      + (f" RGB / codes: {fmt(figures['input_bytes_rgb_vs_codes_ratio'])}x."
         if "input_bytes_rgb_vs_codes_ratio" in figures else ""),
      "peak RSS: of this one process after each input (cumulative, in the order measured).",
  ]
  return out + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
