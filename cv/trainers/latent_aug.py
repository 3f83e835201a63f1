"""`latent_aug` trainer: learns augmentations in the compressed space (paper §3.4, §4.5).

A frozen codec (E, D) maps a clip x to codebook latents E(x). The augmentation network A
(`cv.models.aug_net`) learns A(E(x), p) ≈ E(T(x, p)): the latents of the pixel-augmented clip,
for random parameters p of the configured augmentation (`cv.augment.ops`). Loss: mean squared
error in latent space (`config.loss.latent`) plus, optionally, between D(A(E(x), p)) and
T(x, p) in pixels through the frozen decoder (`config.loss.pixels`).

Evaluation on held-out clips, each with fixed random parameters: PSNR and SSIM of
D(A(E(x), p)) ("learned") against two targets — T(x, p) itself ("_vs_pixels") and the codec's
own rendering of the augmented clip D(E(T(x, p))) ("_vs_codec"; the best any latent-space method
can do, because D cannot produce detail the codec loses) — and the same scores for the
baselines: no-op D(E(x)), for crops nearest-neighbour cropping of the code grid ("nearest",
the paper's baseline [44]), for geometric augmentations the bilinear warp of the latents
("warp", which `model.geometric_prior` feeds to the network as its starting point), and the
slow route a latent augmentation replaces, D(E(T(D(E(x)), p))) ("pixel_route": decode, augment
the pixels, encode again; paper Table 8). TensorBoard images: original, pixel-augmented,
codec-rendered target, learned, baselines.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from cv.augment import ops
from cv.augment.latent import apply_net, build_net, init_net, net_options, write_info
from cv.codec import shipped
from cv.codec.neural import NeuralCodec
from cv.data import datasets, pipeline
from cv.lib import evaluate as eval_lib
from cv.lib import loop, metrics, optim, reporting
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState


def _sampling_ranges(config: mlc.ConfigDict) -> dict[str, Any]:
  return {k: tuple(v) if isinstance(v, (list, tuple)) else v
          for k, v in config.aug.ranges.to_dict().items()}


def make_task(config: mlc.ConfigDict, codec: NeuralCodec, train_records: list[dict],
              eval_records: list[dict]) -> loop.Task:
  data = config.data
  spec = ops.resolve_spec(config.aug.name)
  ranges = _sampling_ranges(config)
  clip = datasets.clip_spec(data)
  if clip.crop % codec.spatial_factor or clip.num_frames % codec.temporal_factor:
    raise ConfigError(f"config.data.crop={clip.crop} / num_frames={clip.num_frames} must be "
                      f"multiples of the codec's factors ({codec.spatial_factor}, "
                      f"{codec.temporal_factor})")
  grid = (clip.num_frames // codec.temporal_factor, clip.crop // codec.spatial_factor,
          clip.crop // codec.spatial_factor)
  latent_dim = codec.latent_dim
  net = build_net(config.model, latent_dim)
  options = net_options(config.model)

  def augment(params, lat, p):  # A(E(x), p)
    return apply_net(net, params, lat, p, spec, **options)

  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  cvars = codec.variables
  w_latent, w_pixels = float(config.loss.latent), float(config.loss.pixels)
  if w_latent <= 0 and w_pixels <= 0:
    raise ConfigError("config.loss.latent and config.loss.pixels are both 0: nothing to learn")
  pixel_target = config.loss.pixel_target
  if pixel_target not in ("pixels", "codec"):
    raise ConfigError(f"config.loss.pixel_target={pixel_target!r}: choose 'pixels' (T(x, p)) or "
                      f"'codec' (D(E(T(x, p))))")

  def encode(x):  # [0, 1] frames -> codebook latents of their codes (frozen codec)
    codes = codec.model.apply(cvars, x, method="encode")["codes"]  # any codec arch
    return jax.lax.stop_gradient(codec.latents(codes)), codes

  def decode(lat):
    return codec.model.apply(cvars, lat, method="decode")

  def init(rng: jax.Array) -> TrainState:
    p_rng, s_rng = jax.random.split(rng)
    params = init_net(net, p_rng, jnp.zeros((1, *grid, latent_dim)), spec, **options)
    return TrainState.create(params=params, tx=tx, rng=s_rng)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    x = batch["video"].astype(jnp.float32) / 255.0
    p = ops.sample_params(state.step_rng(), spec, x.shape[0], **ranges)
    xt = ops.apply_pixels(x, p, spec)
    lat, _ = encode(x)
    target, _ = encode(xt)
    if w_pixels > 0 and pixel_target == "codec":
      xt = jax.lax.stop_gradient(decode(target))

    def loss_fn(params):
      pred = augment(params, lat, p)
      l_lat = jnp.mean((pred - target) ** 2)
      l_pix = jnp.mean((decode(pred) - xt) ** 2) if w_pixels > 0 else jnp.zeros(())
      return w_latent * l_lat + w_pixels * l_pix, (l_lat, l_pix)

    (loss, (l_lat, l_pix)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    noop = jnp.mean((lat - target) ** 2)
    out = dict(loss=loss, latent_mse=l_lat, noop_latent_mse=noop,
               latent_mse_ratio=l_lat / jnp.maximum(noop, 1e-12), grad_norm=optax.global_norm(grads))
    if w_pixels > 0:
      out["pixel_mse"] = l_pix
    return state.apply_gradients(grads), out

  has_crop = "crop" in spec
  geometric = any(n in ops.GEOMETRIC for n in spec)

  @jax.jit
  def eval_fn(params, video, p):
    x = video.astype(jnp.float32) / 255.0
    xt = ops.apply_pixels(x, p, spec)
    lat, codes = encode(x)
    target_lat, _ = encode(xt)
    pred = augment(params, lat, p)
    outs = {"learned": decode(pred), "noop": decode(lat)}
    if has_crop:
      outs["nearest"] = decode(ops.nearest_crop(lat, p, spec))
    if geometric:  # bilinear warp of the latents alone: what the network adds on top of it
      outs["warp"] = decode(ops.warp_grid(lat, p, spec))
    # The slow route a latent augmentation replaces (paper Table 8): decode, augment the
    # pixels, encode again.
    outs["pixel_route"] = decode(encode(ops.apply_pixels(
        jnp.clip(outs["noop"], 0.0, 1.0), p, spec))[0])
    codec_target = jnp.clip(decode(target_lat), 0.0, 1.0)
    scores = {"latent_mse_learned": jnp.mean((pred - target_lat) ** 2, axis=(1, 2, 3, 4)),
              "latent_mse_noop": jnp.mean((lat - target_lat) ** 2, axis=(1, 2, 3, 4))}
    for name, y in outs.items():
      y = jnp.clip(y, 0.0, 1.0)
      outs[name] = y
      for ref_name, ref in (("pixels", xt), ("codec", codec_target)):
        scores[f"ssim_{name}_vs_{ref_name}"] = metrics.ssim(ref, y)
        scores[f"psnr_{name}_vs_{ref_name}"] = metrics.psnr(ref, y)
    return scores, {"original": x, "pixel_augmented": xt, "codec_target": codec_target, **outs}

  load = pipeline.LoadClip(clip, train=True, strict=data.strict)
  eval_load = pipeline.LoadClip(clip, train=False, strict=data.strict)

  def evaluate(state: TrainState):
    means, images = metrics.MaskedMean(), {}

    def predict(batch):
      p = eval_params(batch["position"])
      scores, vids = jax.device_get(eval_fn(state.params, batch["video"], p))
      real = np.flatnonzero(batch["mask"] > 0)
      if not images and len(real):  # the first real clips of this process (the chief writes)
        images["augmentations"] = augmentation_grid(
            {k: v[real] for k, v in vids.items()}, config.num_images)
      return scores

    eval_lib.run(pipeline.eval_batches(eval_records, eval_load,
                                       global_batch=config.eval_batch_size,
                                       num_threads=data.num_threads),
                 predict, lambda scores, b: means.add(scores, b["mask"]))
    return {**means.result(), "num_clips": means.count}, images

  def eval_params(positions: np.ndarray) -> jax.Array:
    """Fixed augmentation parameters of the held-out clips at `positions` of the split, so every
    evaluation scores the same task with any process count: clip i gets row i % B of the
    parameters drawn for block i // B (B = eval batch size); flips always happen (an unflipped
    clip would score the no-op as perfect)."""
    g = config.eval_batch_size
    key = jax.random.PRNGKey(config.seed + 1)
    blocks = {int(b): np.asarray(ops.sample_params(jax.random.fold_in(key, int(b)), spec, g,
                                                   **{**ranges, "flip_prob": 1.0}))
              for b in np.unique(positions // g)}
    return jnp.asarray(np.stack([blocks[int(i) // g][int(i) % g] for i in positions]))

  return loop.Task(init=init, train_step=train_step, evaluate=evaluate,
                   make_train_iter=lambda: pipeline.config_train_iterator(train_records, load,
                                                                          config),
                   data_stats=lambda: {"skipped_videos": load.num_skipped}, schedule=schedule)


ROWS = ("original", "pixel_augmented", "codec_target", "learned", "pixel_route", "nearest",
        "warp", "noop")


def augmentation_grid(videos: dict[str, np.ndarray], n: int, max_frames: int = 4) -> np.ndarray:
  """[n, R*H, F*W, 3] uint8: per clip, rows of frames — original, pixel-augmented T(x, p), the
  codec's rendering D(E(T(x, p))), learned D(A(E(x), p)), then the baselines."""
  rows = [r for r in ROWS if r in videos]
  t = videos["original"].shape[1]
  idx = np.linspace(0, t - 1, min(t, max_frames)).astype(int)
  out = []
  for i in range(min(n, videos["original"].shape[0])):
    strips = [np.concatenate(list(np.asarray(videos[r][i])[idx]), axis=1) for r in rows]
    out.append(np.concatenate(strips, axis=0))
  return (np.clip(np.stack(out), 0, 1) * 255 + 0.5).astype(np.uint8)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the augmentation network described by `config` in `workdir` (resuming if possible)."""
  try:
    spec = ops.resolve_spec(config.aug.name)
  except ValueError as e:
    raise ConfigError(f"config.aug.name: {e}") from None
  codec = NeuralCodec.load(config.codec)
  reporting.console(f"latent_aug: augmentation {'+'.join(spec)} ({ops.param_dim(spec)} "
                    f"parameters), frozen codec {shipped.describe(config.codec)} (id "
                    f"{codec.codec_id}, latents of {codec.latent_dim} channels)")
  train, evals = datasets.clip_sources(config.data)
  task = make_task(config, codec, train.records, evals.records)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    write_info(workdir, spec, _sampling_ranges(config), codec.codec_id, codec.latent_dim,
               **net_options(config.model))
  final = loop.run(config, workdir, task)
  if "eval/ssim_learned_vs_codec" in final:
    line = (f"final: SSIM learned {final['eval/ssim_learned_vs_codec']:.3f} vs no-op "
            f"{final['eval/ssim_noop_vs_codec']:.3f}")
    if "eval/ssim_nearest_vs_codec" in final:
      line += f" vs nearest crop {final['eval/ssim_nearest_vs_codec']:.3f}"
    if "eval/ssim_warp_vs_codec" in final:
      line += f" vs latent warp {final['eval/ssim_warp_vs_codec']:.3f}"
    line += f" vs decode-augment-encode {final['eval/ssim_pixel_route_vs_codec']:.3f}"
    line += (f" (to the codec's rendering of the augmented clip); to the pixel target: learned "
             f"{final['eval/ssim_learned_vs_pixels']:.3f}, no-op "
             f"{final['eval/ssim_noop_vs_pixels']:.3f}")
    reporting.console(line)
  return final
