"""Figure `cost`: what a paper run needs — memory and FLOPs of one train step of each `:paper`
config, from XLA's own analysis of the compiled step, and what that means on accelerators.

What it measures: for each run (a `:paper` config, see `RUNS`) the trainer builds its task
exactly as `cv.main` does (`make_task` of `config.trainer`), but with no data: the train state
is `jax.eval_shape(task.init)` and the batch a `jax.ShapeDtypeStruct` of the config's per-device
batch (`config.batch_size / --devices`, data parallel). The step is compiled with
`jax.jit(task.train_step, donate_argnums=0).lower(state, batch).compile()`, as the loop donates
the state, and reported:
  memory   bytes per device of parameters, optimizer state, model state (BatchNorm statistics,
           VQ codebooks), the batch, and XLA's `memory_analysis()`: arguments, outputs, aliased
           (donated) bytes and temporaries (activations kept for the backward pass and
           workspace); peak = arguments + outputs - aliased + temporaries;
  FLOPs    `cost_analysis()["flops"]` of the step (XLA counts a multiply-add as 2 FLOPs, and a
           loop body once: past_future's per-chunk embedding loop is added back, see `_run`);
  speed    projected steps/s at 40% of the bf16 dense peak of an A100, an H100 SXM and a TPU v5e
           (`PEAKS`), the clips/s per device that gives, and the hours the recipe's
           `total_steps` take on --devices such devices; with --time, also the seconds per step
           on this CPU for the runs whose peak fits in --max_gib.
The frozen codec of the runs on codes is the shipped CR-192 demo codec (the paper-size codes grid
of a CR-192 codec; its 64-dim codebook vectors feed the networks), unless `config.codec` is set.

Why: the paper's sizes (32x224x224 clips, the full S3D-G) cannot run on the machines this project
is developed on; this says, before anyone rents accelerators, how much memory each device needs
and how long a paper run takes, from the same compiled program the trainer runs. FLOPs and
memory do not depend on weights or data, so abstract inputs give exact figures for the program.
Projections assume 40% of peak (model FLOPs utilisation typical of well-fed convolutional
training); real utilisation depends on the input pipeline, the dtype (bf16 for the peaks used)
and XLA's kernels on that device.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from typing import Any

from cv.benchmarks.common import choice_list, fmt, log, positive_int

HELP = "memory and FLOPs per train step of every :paper config (compiled, abstract inputs)"

# (name, config module, config argument): one train step each.
RUNS = (
    ("vq", "k600_vq", "cr=192,paper"),
    ("s3d_codes", "k600_s3d", "paper"),
    ("s3d_rgb", "k600_s3d", "paper,input=rgb"),
    ("latent_aug", "k600_latent_aug", "aug=crop_flip,paper"),
    ("coin_codes", "coin_framewise", "paper"),
    ("past_future", "walkingtours_past_future", "paper"),
)
# bf16 dense peaks (FLOP/s) from the vendors' data sheets (docs/paper.md has the sources).
PEAKS = (("A100", 312e12), ("H100_SXM", 989e12), ("TPU_v5e", 197e12))
UTILIZATION = 0.4
# Classes of the paper's datasets (the head's size): Kinetics-600; COIN's 778 steps + background.
NUM_CLASSES = {"s3d_cls": 600, "coin_framewise": 779}
# A WalkingTours chunk at short side 256 of 16:9 video: 448 of 455 columns (grid multiple of 8).
WALK_ASPECT = 16 / 9


def add_arguments(parser: argparse.ArgumentParser) -> None:
  names = tuple(r[0] for r in RUNS)
  parser.add_argument("--runs", type=choice_list(names), default=list(names),
                      help=f"comma-separated runs to compile ({','.join(names)})")
  parser.add_argument("--devices", type=positive_int, default=8,
                      help="data-parallel devices the global batch is split over (per-device "
                           "batch = config.batch_size / devices)")
  parser.add_argument("--dtype", choices=("config", "float32", "bfloat16"), default="config",
                      help="compute dtype of the S3D and codec runs (config: config.dtype)")
  parser.add_argument("--time", action="store_true",
                      help="also run each step whose peak fits in --max_gib on this CPU")
  parser.add_argument("--max_gib", type=float, default=24.0, help="memory limit for --time")
  parser.add_argument("--repeats", type=positive_int, default=2, help="timed steps (--time)")
  parser.add_argument("--smoke", action="store_true",
                      help=":paper,smoke configs (tiny sizes; for tests)")


def build(name: str, module: str, arg: str, args: argparse.Namespace
          ) -> tuple[Any, Any, dict[str, Any], Any]:
  """(config, task, abstract batch, flops correction fn or None) of one run, with no data."""
  import importlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top

  c = importlib.import_module(f"cv.configs.{module}").get_config(
      arg + (",smoke" if args.smoke else ""))
  if args.dtype != "config" and "dtype" in c:
    c.dtype = args.dtype
  b = max(1, c.batch_size // args.devices)
  sds = jax.ShapeDtypeStruct
  d = c.data
  if c.trainer == "vq_codec":
    from cv.trainers import vq_codec  # pylint: disable=g-import-not-at-top
    task = vq_codec.make_task(c, vq_codec.build_model(c), [], [])
    return c, task, {"video": sds((b, d.num_frames, d.crop, d.crop, 3), jnp.uint8)}, None
  codec = NeuralCodec.load(c.codec) if c.get("input", "codes") != "rgb" else None
  if c.trainer == "latent_aug":
    from cv.trainers import latent_aug  # pylint: disable=g-import-not-at-top
    task = latent_aug.make_task(c, codec, [], [])
    return c, task, {"video": sds((b, d.num_frames, d.crop, d.crop, 3), jnp.uint8)}, None
  if c.trainer in ("s3d_cls", "coin_framewise"):
    from cv.trainers import coin_framewise, s3d_cls  # pylint: disable=g-import-not-at-top
    data = _shapes(c, codec, NUM_CLASSES[c.trainer])
    model = s3d_cls.build_model(c, len(data.class_names), codec,
                                temporal_pool=c.trainer == "s3d_cls")
    features, embed = s3d_cls.make_features(c, codec)
    dtype = jnp.uint8 if c.input == "rgb" else jnp.uint8 if codec.bits <= 8 else jnp.uint16
    batch = {data.input_key: sds((b, *data.example_shape), dtype)}
    if c.trainer == "s3d_cls":
      task = s3d_cls.make_task(c, data, model, features, embed)
      batch["label"] = sds((b,), jnp.int32)
    else:
      task = coin_framewise.make_task(c, data, model, features, embed)
      batch["labels"] = sds((b, d.num_frames), jnp.int32)
      batch["frame_mask"] = sds((b, d.num_frames), jnp.float32)
    return c, task, batch, None
  if c.trainer == "past_future":
    from cv.models import past_future as pf  # pylint: disable=g-import-not-at-top
    from cv.trainers import past_future  # pylint: disable=g-import-not-at-top
    sf, tf = codec.spatial_factor, codec.temporal_factor
    n = c.data.num_chunks or (4 if args.smoke else 360)
    width = int(d.short_side * WALK_ASPECT) // sf
    data = _Walks(chunk_shape=(d.chunk_frames // tf, d.short_side // sf, width,
                               codec.num_codebooks), num_chunks=n, group=min(c.group, n))
    model = past_future.build_model(c, n)
    features = past_future.codes_features(codec)
    task = past_future.make_task(c, data, model, features)
    batch = {"codes": sds((b, n, *data.chunk_shape), jnp.uint8)}

    def embed_loop_flops(state: Any) -> float:
      """The walk's forward embedding is a loop over chunks (`lax.map`), which XLA's cost
      analysis counts once: the FLOPs of the other n - 1 chunks."""
      one = jax.jit(lambda p, x: model.apply({"params": p}, features(x),
                                             method=pf.PastFuture.embed))
      chunk = sds((b, *data.chunk_shape), jnp.uint8)
      return (n - 1) * _flops(one.lower(state.params, chunk).compile())

    return c, task, batch, embed_loop_flops
  raise ValueError(f"cost: no abstract batch for trainer {c.trainer!r}")


def _shapes(config: Any, codec: Any, num_classes: int) -> Any:
  """What an S3D trainer's task reads from its data (an `InputData` whose example shape and
  classes come from the config and codec; no dataset is opened)."""
  from cv.trainers import s3d_cls  # pylint: disable=g-import-not-at-top
  d = config.data
  data = s3d_cls.InputData()
  data.config = config
  data.class_names = [f"class{i}" for i in range(num_classes)]
  if config.input == "rgb":
    data.example_shape = (d.num_frames, d.crop, d.crop, 3)
  else:
    tf, sf = codec.temporal_factor, codec.spatial_factor
    data.example_shape = (d.num_frames // tf, d.crop // sf, d.crop // sf, codec.num_codebooks)
  return data


class _Walks:
  """The shapes past_future's task reads from its data (no walk is opened)."""

  def __init__(self, chunk_shape: tuple[int, ...], num_chunks: int, group: int):
    self.chunk_shape, self.num_chunks, self.group = chunk_shape, num_chunks, group
    self.max_chunks = num_chunks


def _flops(compiled: Any) -> float:
  ca = compiled.cost_analysis()
  ca = ca[0] if isinstance(ca, (list, tuple)) else ca
  return float(ca.get("flops", float("nan")))


def _tree_bytes(tree: Any) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
                 if hasattr(x, "shape")))


def _run(name: str, module: str, arg: str, args: argparse.Namespace) -> dict[str, Any]:
  """Compiles one run's train step and returns its figures (prefixed by the caller)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  with contextlib.redirect_stdout(sys.stderr):
    c, task, batch, correction = build(name, module, arg, args)
  state = jax.eval_shape(task.init, jax.random.PRNGKey(0))
  lowered = jax.jit(task.train_step, donate_argnums=0).lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  flops = _flops(compiled)
  loop_flops = correction(state) if correction is not None else 0.0
  flops += loop_flops
  b = next(iter(batch.values())).shape[0]
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
          + mem.temp_size_in_bytes)
  out: dict[str, Any] = {
      "config": f"{module}.py:{arg}" + (",smoke" if args.smoke else ""),
      "dtype": c.get("dtype", "float32"),
      "global_batch": int(c.batch_size), "device_batch": int(b),
      "batch_shape": "x".join(map(str, next(iter(batch.values())).shape)),
      "total_steps": int(c.total_steps),
      "params_bytes": _tree_bytes(state.params), "opt_state_bytes": _tree_bytes(state.opt_state),
      "model_state_bytes": _tree_bytes(state.model_state),
      "parameters": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params))),
      "batch_bytes": _tree_bytes(batch),
      "argument_bytes": int(mem.argument_size_in_bytes),
      "output_bytes": int(mem.output_size_in_bytes),
      "alias_bytes": int(mem.alias_size_in_bytes),
      "temp_bytes": int(mem.temp_size_in_bytes), "peak_bytes": int(peak),
      "flops": flops, "loop_flops_added": loop_flops, "compile_s": compile_s,
  }
  for acc, peak_flops in PEAKS:
    steps = UTILIZATION * peak_flops / flops
    out[f"{acc}/steps_per_s"] = steps
    out[f"{acc}/clips_per_s_per_device"] = steps * b
    out[f"{acc}/hours_total_steps"] = c.total_steps / steps / 3600
  if args.time:
    if peak > args.max_gib * 2**30:
      log(f"[cost] {name}: peak {peak / 2**30:.1f} GiB > --max_gib {args.max_gib}: not run")
      out["cpu_step_s"] = float("nan")
    else:
      log(f"[cost] {name}: running the step on this CPU ({args.repeats} timed calls)")
      concrete = jax.jit(task.init)(jax.random.PRNGKey(0))
      zeros = {k: np.zeros(v.shape, v.dtype) for k, v in batch.items()}
      step = jax.jit(task.train_step)
      stats = timing.time_fn(step, concrete, zeros, repeats=args.repeats)
      out["cpu_step_s"] = stats["mean_s"]
      out["cpu_step_s_min"] = stats["min_s"]
      out["cpu_compile_and_first_s"] = stats["warmup_s"]
      del concrete, step
  out["peak_rss_mb"] = timing.peak_rss_mb()
  del compiled, lowered, task
  gc.collect()
  return out


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Compiles every run in --runs; prints the tables; returns the figures."""
  from cv.benchmarks.step import use_single_device  # pylint: disable=g-import-not-at-top
  use_single_device()
  figures: dict[str, Any] = {"devices": args.devices, "utilization": UTILIZATION,
                             "dtype_override": args.dtype, "runs": ",".join(args.runs)}
  for acc, peak in PEAKS:
    figures[f"peak_flops/{acc}"] = peak
  for name, module, arg in RUNS:
    if name not in args.runs:
      continue
    log(f"[cost] {name}: {module}.py:{arg}: building and compiling the train step (abstract)")
    r = _run(name, module, arg, args)
    log(f"[cost] {name}: {r['flops'] / 1e9:,.1f} GFLOP/step, peak {r['peak_bytes'] / 2**30:.2f} "
        f"GiB per device (compiled in {r['compile_s']:.0f} s)")
    figures.update({f"{name}/{k}": v for k, v in r.items()})
  print(format_tables(figures, [n for n, _, _ in RUNS if n in args.runs]))
  return figures


def _gib(value: float) -> str:
  return f"{value / 2**30:.2f}"


def format_tables(figures: dict[str, Any], names: list[str]) -> str:
  """The `cost` figure: memory per device, then FLOPs and projections, and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  mem_rows, speed_rows = [], []
  for n in names:
    p = n + "/"
    mem_rows.append([f"`{figures[p + 'config']}`", figures[p + "dtype"],
                     f"{figures[p + 'device_batch']} of {figures[p + 'global_batch']}",
                     f"{figures[p + 'parameters']:,}", _gib(figures[p + "params_bytes"]),
                     _gib(figures[p + "opt_state_bytes"]), _gib(figures[p + "model_state_bytes"]),
                     _gib(figures[p + "batch_bytes"]), _gib(figures[p + "temp_bytes"]),
                     _gib(figures[p + "peak_bytes"])])
    row = [n, f"{figures[p + 'flops'] / 1e12:.3g}"]
    row += [fmt(figures[f"{p}{acc}/steps_per_s"]) for acc, _ in PEAKS]
    row += [fmt(figures[f"{p}H100_SXM/clips_per_s_per_device"]),
            fmt(figures[f"{p}H100_SXM/hours_total_steps"]),
            f"{figures[p + 'total_steps']:,}"]
    if p + "cpu_step_s" in figures:
      cpu = figures[p + "cpu_step_s"]
      row.append("does not fit" if cpu != cpu else fmt(cpu))
    speed_rows.append(row)
  mem = timing.markdown_table(
      ["config", "dtype", "batch/device", "parameters", "params GiB", "optimizer GiB",
       "model state GiB", "batch GiB", "temporaries GiB", "peak GiB/device"], mem_rows,
      align="llrrrrrrrr")
  headers = ["run", "TFLOP/step/device"] + [f"steps/s @40% {acc}" for acc, _ in PEAKS] + [
      "clips/s/device H100", f"hours on {figures['devices']} H100", "total steps"]
  if speed_rows and len(speed_rows[0]) > len(headers):
    headers.append("s/step this CPU")
  speed = timing.markdown_table(headers, speed_rows)
  notes = [
      f"Per device: the global batch split over {figures['devices']} data-parallel devices; "
      "compiled train step (jax.jit(train_step, donate_argnums=0).lower(...).compile()) on "
      "abstract inputs (jax.eval_shape state, ShapeDtypeStruct batch) for the CPU backend; "
      "another backend's fusion and layouts change temporaries somewhat, not parameters or "
      "optimizer state.",
      "peak = arguments + outputs - donated (aliased) + temporaries (XLA memory_analysis); "
      "temporaries hold the activations kept for the backward pass.",
      "FLOPs: XLA cost_analysis (a multiply-add = 2 FLOPs); loops are counted once by XLA, so "
      "past_future adds its per-chunk embedding loop back (`loop_flops_added`). Steps/s = "
      f"{UTILIZATION:.0%} x bf16 dense peak / FLOPs per step: A100 312, H100 SXM 989, TPU v5e "
      "197 TFLOP/s.",
      "past_future on CPU unrolls its chunk groups into one program (accelerators run them as "
      "a lax.scan, one group's activations at a time), so its temporaries here are an upper "
      "bound for accelerators.",
  ]
  return mem + "\n" + speed + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
