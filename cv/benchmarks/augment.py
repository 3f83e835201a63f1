"""Figure `augment`: augmenting in latent space vs the pixel-space route (paper Table 8).

What it measures: a batch of real demo clips (the k600_s3d clip spec: 8x64x64, centre views of
the first training videos) is encoded by the shipped demo codec, and its latents (the codebook
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

from cv.benchmarks.common import fmt, log, positive_int

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
  from cv.models.vqvae import VQVAE  # pylint: disable=g-import-not-at-top

  codec = NeuralCodec.load(None)
  frames = load_clips(args.batch, args.smoke)
  b, t, h, w = frames.shape[:4]
  cvars = codec.variables

  def to_latents(v, codes):
    return codec.model.apply(v, codes, method=lambda m, c: m.quantizer.codes_to_latents(c))

  def encode(v, x):  # [0, 1] frames -> latents of their codes
    return to_latents(v, codec.model.apply(v, x, method=VQVAE.encode)["codes"])

  def decode(v, codes):  # codes -> [0, 1] frames
    return jnp.clip(codec.model.apply(v, codes, method=VQVAE.decode_codes), 0.0, 1.0)

  x = jnp.asarray(frames, jnp.float32) / 255.0
  codes = jax.jit(lambda v, x: codec.model.apply(v, x, method=VQVAE.encode)["codes"])(cvars, x)
  latents = jax.jit(to_latents)(cvars, codes)
  log(f"[augment] {b} clips of {t}x{h}x{w} -> codes {tuple(codes.shape[1:])} -> latents "
      f"{tuple(latents.shape[1:])}")

  if args.aug_workdir:
    aug = latent_lib.LatentAugmenter.load(args.aug_workdir)
    aug.check_codec(codec.codec_id, f"--aug_workdir={args.aug_workdir}")
    net, net_params, spec, ranges, weights = aug.net, aug.params, aug.spec, aug.ranges, "trained"
    options = aug.net_options
  else:  # untrained weights time the same: the default config's network, randomly initialised
    model_config = k600_latent_aug.get_config(
        f"aug={DEFAULT_AUG}" + (",smoke" if args.smoke else "")).model
    spec, ranges, weights = ops.resolve_spec(DEFAULT_AUG), {}, "random"
    options = latent_lib.net_options(model_config)
    net = latent_lib.build_net(model_config, codec.latent_dim)
    net_params = jax.jit(lambda r, lat: latent_lib.init_net(net, r, lat, spec, **options))(
        jax.random.PRNGKey(0), latents)
  p = ops.sample_params(jax.random.PRNGKey(1), spec, b, **ranges)
  video = jax.jit(decode)(cvars, codes)

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
      "batch": b, "clip": f"{t}x{h}x{w}", "repeats": args.repeats,
      "code_shape": "x".join(map(str, codes.shape[1:])),
      "latent_shape": "x".join(map(str, latents.shape[1:])),
      "augmentation": "+".join(spec), "weights": weights,
      "aug_workdir": args.aug_workdir or "",
      "aug_net_parameters": int(sum(np.size(a) for a in jax.tree.leaves(net_params))),
  }
  for name, row, _ in ROUTES:
    fn, *fn_args = calls[name]
    log(f"[augment] {row}: compile + {args.repeats} calls")
    stats = timing.time_fn(jax.jit(fn), *fn_args, repeats=args.repeats)
    figures.update({f"{name}/s_mean": stats["mean_s"], f"{name}/s_std": stats["std_s"],
                    f"{name}/s_min": stats["min_s"], f"{name}/compile_s": stats["warmup_s"],
                    f"{name}/clips_per_s": timing.per_second(b, stats)})
    log(f"[augment] {row}: {stats['mean_s']:.4f} s per batch")
  base = figures["latent_aug/s_mean"]
  for name in ("pixel_route", "decode", "encode", "pixel_augment"):
    figures[f"{name}_vs_latent_aug_ratio"] = figures[f"{name}/s_mean"] / base
  figures["peak_rss_mb"] = timing.peak_rss_mb()
  print(format_table(figures))
  return figures


def format_table(figures: dict[str, Any]) -> str:
  """The `augment` figure as a Markdown table and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  rows = []
  for name, row, what in ROUTES:
    ratio = 1.0 if name == "latent_aug" else figures[f"{name}_vs_latent_aug_ratio"]
    rows.append([row, what, fmt(figures[f"{name}/s_mean"]), fmt(figures[f"{name}/clips_per_s"]),
                 fmt(ratio)])
  table = timing.markdown_table(
      ["route", "computes", "s/batch", "clips/s", "time vs latent augment"], rows,
      align="llrrr")
  notes = [
      f"Batch of {figures['batch']} real demo clips of {figures['clip']} frames; codes "
      f"{figures['code_shape']}, latents {figures['latent_shape']} per clip (demo codec, CR "
      f"192); augmentation {figures['augmentation']} with random parameters per clip.",
      f"Network: {figures['aug_net_parameters']:,} parameters, weights: {figures['weights']}"
      + (f" ({figures['aug_workdir']})." if figures["aug_workdir"] else ".")
      + (" Untrained (model.init) weights run the same operations on the same shapes as "
         "trained ones, so the time is the same (the result is not an augmentation)."
         if figures["weights"] == "random" else ""),
      f"Times: mean of {figures['repeats']} jitted calls after a compiling warm-up, on one "
      "device-resident batch. Paper (Table 8, its hardware and sizes): 0.078 s for the network "
      "vs 3.1 s for decoding alone.",
  ]
  return table + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
