"""`vq_codec` trainer: learns the neural codec (VQ-VAE) by reconstruction (paper §3.2).

Loss: mean squared error between the clip and its reconstruction (pixels in [0, 1]) plus the VQ
commitment loss; codebooks follow EMA updates with dead-code restarts (`cv.models.quantizers`).
Evaluation on held-out clips: PSNR, SSIM, MS-SSIM, MAE, codebook usage and perplexity, and
reconstruction images in TensorBoard. The nominal compression rate is computed from the real code
tensor shape and logged.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from cv.data import datasets, pipeline
from cv.lib import evaluate as eval_lib
from cv.lib import loop, metrics, optim, reporting
from cv.lib import precision
from cv.codec import pictures, rate
from cv.codec.neural import CodecError, NeuralCodec
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState
from cv.models.vqvae import VQVAE

REFERENCE_CLIP = (32, 256, 256, 3)  # the paper's reference clip for quoting compression rates


def build_model(config: mlc.ConfigDict) -> VQVAE:
  """The codec of `config.model`, computing in `config.dtype` (cv.lib.precision)."""
  return VQVAE(**config.model.to_dict(), dtype=precision.compute_dtype(config))


def code_shape(model: VQVAE, clip_shape: tuple[int, ...]) -> tuple[int, ...]:
  """Shape [T', H', W', K] of the code tensor of one clip of `clip_shape` (no computation)."""
  def encode(x):
    variables = model.init({"params": jax.random.PRNGKey(0), "vq": jax.random.PRNGKey(0)}, x)
    return model.apply(variables, x, method=VQVAE.encode)["codes"]
  return tuple(jax.eval_shape(encode, jax.ShapeDtypeStruct((1, *clip_shape), jnp.float32)).shape[1:])


def rate_report(model: VQVAE, clip_shape: tuple[int, ...]) -> dict[str, float]:
  """Nominal compression rates for the training clip and the paper's 32x256x256 reference clip."""
  n = model.num_entries
  cs, ref = code_shape(model, clip_shape), code_shape(model, REFERENCE_CLIP)
  out = {"nominal_cr": rate.compression_rate(clip_shape, cs, n),
         "nominal_cr_32x256x256": rate.compression_rate(REFERENCE_CLIP, ref, n),
         "bits_per_index": float(rate.bits_per_index(n)),
         "code_bytes_32x256x256": rate.code_bits(ref, n) / 8}
  if model.quantizer_type == "rvq":  # the first l levels are a code of l/L the size
    for l in range(1, model.rvq_levels):
      out[f"nominal_cr_levels{l}"] = out["nominal_cr_32x256x256"] * model.rvq_levels / l
  return out


def to_float(video: jax.Array) -> jax.Array:
  return video.astype(jnp.float32) / 255.0


def starting_variables(config: mlc.ConfigDict, model: VQVAE,
                       clip_shape: tuple[int, ...]) -> dict | None:
  """The variables of `config.init_from` (a codec file, shipped codec name or vq_codec workdir)
  to start training from, or None for a random start. Its model must be `config.model`: a
  codec of another shape is a ConfigError naming the keys that differ."""
  source = config.get("init_from")
  if not source:
    return None
  try:
    codec = NeuralCodec.load(source)
  except CodecError as e:
    raise ConfigError(f"config.init_from: {e}") from None
  theirs = {k: v for k, v in codec.model_config.items() if k != "arch"}
  ours = config.model.to_dict()
  differ = sorted(k for k in set(theirs) | set(ours)
                  if _plain(theirs.get(k)) != _plain(ours.get(k)))
  if codec.model_config.get("arch", "vqvae") != "vqvae" or differ:
    raise ConfigError(
        f"config.init_from={source!r}: that codec's model differs from config.model in "
        f"{differ or ['arch']} ({', '.join(f'{k}={theirs.get(k)!r} vs {ours.get(k)!r}' for k in differ)}); "
        f"start from a codec trained with the same model settings")
  start = {"params": codec.params, "vq": codec.vq}
  shapes = jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0),
                                                "vq": jax.random.PRNGKey(0)}, x),
                          jax.ShapeDtypeStruct((1, *clip_shape), jnp.float32))
  if jax.tree.structure(shapes) != jax.tree.structure(start) or any(
      tuple(a.shape) != tuple(np.shape(b))
      for a, b in zip(jax.tree.leaves(shapes), jax.tree.leaves(start))):
    raise ConfigError(f"config.init_from={source!r}: its variables do not fit config.model "
                      f"(written by another version of the model?)")
  reporting.console(f"init_from: codec {source} (id {codec.codec_id}; used when no checkpoint "
                    f"exists)")
  return start


def _plain(v: Any) -> Any:
  """Config values compared across JSON (tuples become lists)."""
  return list(v) if isinstance(v, (tuple, list)) else v


def make_task(config: mlc.ConfigDict, model: VQVAE, train_records: list[dict],
              eval_records: list[dict]) -> loop.Task:
  data = config.data
  spec = datasets.clip_spec(data)
  clip_shape = (spec.num_frames, spec.crop, spec.crop, 3)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)

  start = starting_variables(config, model, clip_shape)

  def init(rng: jax.Array) -> TrainState:
    p_rng, v_rng, s_rng = jax.random.split(rng, 3)
    variables = model.init({"params": p_rng, "vq": v_rng}, jnp.zeros((1, *clip_shape)))
    if start is not None:  # fine-tuning: the given codec's weights and codebooks, fresh optimizer
      variables = jax.tree.map(lambda new, old: jnp.asarray(old, new.dtype), variables, start)
    return TrainState.create(params=variables["params"], tx=tx, rng=s_rng,
                             model_state={k: v for k, v in variables.items() if k != "params"})

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    x = to_float(batch["video"])

    # Residual quantisation trains every rate: a random number of active levels per step.
    active = (jax.random.randint(jax.random.fold_in(state.step_rng(), 1), (), 1,
                                 model.rvq_levels + 1) if model.quantizer_type == "rvq" else None)

    def loss_fn(params):
      (recon, vq), new_vars = model.apply({"params": params, **state.model_state}, x, train=True,
                                          active_levels=active, rngs={"vq": state.step_rng()},
                                          mutable=["vq"])
      mse = jnp.mean((recon - x) ** 2)
      return mse + vq["loss"], (new_vars, mse, vq)

    grads, (new_vars, mse, vq) = jax.grad(loss_fn, has_aux=True)(state.params)
    out = dict(loss=mse + vq["loss"], recon_mse=mse, commit_loss=vq["loss"],
               psnr=-10.0 * jnp.log10(jnp.maximum(mse, 1e-10)), perplexity=vq["perplexity"],
               usage=vq["usage"], grad_norm=optax.global_norm(grads))
    return state.apply_gradients(grads, model_state=dict(new_vars)), out

  @jax.jit
  def eval_fn(params, model_state, video):
    x = to_float(video)
    recon, vq = model.apply({"params": params, **model_state}, x)
    recon = jnp.clip(recon, 0.0, 1.0)
    scores = dict(psnr=metrics.psnr(x, recon), ssim=metrics.ssim(x, recon),
                  ms_ssim=metrics.ms_ssim(x, recon), mae=metrics.mae(x, recon))
    if model.quantizer_type == "rvq":  # quality at every rate: decode each prefix of the codes
      k = model.num_codebooks
      for l in range(1, model.rvq_levels):
        r = model.apply({"params": params, **model_state}, vq["codes"][..., :l * k],
                        method=VQVAE.decode_codes)
        scores[f"psnr_levels{l}"] = metrics.psnr(x, jnp.clip(r, 0.0, 1.0))
    # Code histograms per clip [B, K, N]: summed over real clips only (padding is masked out).
    counts = jax.vmap(lambda c: metrics.code_counts(c, model.num_entries))(vq["codes"])
    return scores, counts, recon

  # Footage corpora are cropped at their own resolution (datasets.clip_loader). Evaluation may
  # use longer and larger clips than training (`data.eval_num_frames`, `data.eval_crop`).
  load = datasets.clip_loader(data, spec, train=True)
  eval_spec = datasets.eval_clip_spec(data, spec)
  eval_load = datasets.clip_loader(data, eval_spec, train=False)
  rates = rate_report(model, clip_shape)

  def evaluate(state: TrainState):
    means, counts, images = metrics.MaskedMean(), 0, {}

    def predict(batch):
      scores, c, recon = jax.device_get(eval_fn(state.params, state.model_state, batch["video"]))
      real = np.flatnonzero(batch["mask"] > 0)[:config.num_images]
      if not images and len(real):  # the first real clips of this process (the chief writes)
        images["reconstructions"] = np.stack([
            pictures.reconstruction_grid(np.asarray(batch["video"][i]),
                                         (np.clip(recon[i], 0, 1) * 255 + 0.5).astype(np.uint8))
            for i in real])
      return scores, c

    def accumulate(out, b):
      nonlocal counts
      scores, c = out
      means.add(scores, b["mask"])
      counts = counts + np.tensordot((b["mask"] > 0).astype(np.int64), c, axes=1)

    eval_lib.run(pipeline.eval_batches(eval_records, eval_load,
                                       global_batch=config.eval_batch_size,
                                       num_threads=data.num_threads), predict, accumulate)
    out = means.result()
    out.update({f"codebook_{k}": float(v) for k, v in metrics.stats_from_counts(counts).items()})
    out.update(rates)
    out["num_clips"] = means.count
    return out, images

  return loop.Task(init=init, train_step=train_step, evaluate=evaluate,
                   make_train_iter=lambda: pipeline.config_train_iterator(train_records, load,
                                                                          config),
                   data_stats=lambda: {"skipped_videos": load.num_skipped}, schedule=schedule)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the codec described by `config` in `workdir` (resuming if possible)."""
  model = build_model(config)
  spec = datasets.clip_spec(config.data)
  rates = rate_report(model, (spec.num_frames, spec.crop, spec.crop, 3))
  reporting.console(f"codec: code tensor of a {spec.num_frames}x{spec.crop}x{spec.crop} clip is "
                    f"{code_shape(model, (spec.num_frames, spec.crop, spec.crop, 3))} with "
                    f"{model.num_entries} entries/codebook -> nominal CR "
                    f"{rates['nominal_cr']:.1f} (32x256x256 clip: CR "
                    f"{rates['nominal_cr_32x256x256']:.1f}, "
                    f"{rates['code_bytes_32x256x256']:.0f} bytes)")
  train, evals = datasets.clip_sources(config.data)
  task = make_task(config, model, train.records, evals.records)
  final = loop.run(config, workdir, task)
  if "eval/psnr" in final:
    reporting.console(f"final: PSNR {final['eval/psnr']:.2f} dB, SSIM {final['eval/ssim']:.4f}, "
                      f"MS-SSIM {final['eval/ms_ssim']:.4f}, MAE {final['eval/mae']:.4f}, "
                      f"codebook usage {final['eval/codebook_usage']:.2f}, nominal CR "
                      f"{final['eval/nominal_cr']:.1f}")
  return final
