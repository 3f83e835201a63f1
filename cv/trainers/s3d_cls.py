"""`s3d_cls` trainer: an S3D-G video classifier trained on codes, RGB or reconstructions.

The project's headline (paper §3.3, §4.3, Tables 2, 4, 6): the same standard network learns
from the neural codes of a video instead of its pixels. `config.input` picks what it sees:
  codes  integer codes from code shards (encoded once from `config.data` by `config.codec` and
         cached, see `cv.codec.code_cache`), embedded with the codec's frozen codebooks
         (`config.codes.embed = "codec"`) or with embeddings learned here ("learned"); the S3D
         stem skips the strides the codec already applied, so inner shapes match the RGB model;
  rgb    decoded video frames (the baseline);
  recon  the codes decoded back to pixels by the frozen codec (paper Table 6).
Loss: softmax cross-entropy (optional label smoothing). Evaluation averages class probabilities
over views of each held-out video (`config.eval_views`: temporal clips x spatial crops
[x flips], paper Table 4) and reports top-1/top-5, mean per-class accuracy, the loss and the
single-view top-1, with a confusion-matrix image in TensorBoard.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from cv.augment.latent import LatentAugmenter
from cv.codec.neural import NeuralCodec
from cv.data import code_clips, code_shards, datasets, pipeline
from cv.codec import code_cache
from cv.lib import distributed, loop, metrics, optim
from cv.trainers import _images
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState
from cv.models.code_input import CodeEmbed
from cv.models.s3d import S3D, check_mixed_blocks
from cv.models.vqvae import VQVAE

INPUTS = ("codes", "rgb", "recon")


def build_model(config: mlc.ConfigDict, num_classes: int, codec: NeuralCodec | None, *,
                temporal_pool: bool = True) -> S3D:
  """S3D-G over `config.input` (codes: stem strides adapted to the codec's factors)."""
  m = config.model
  if config.input == "codes":
    return S3D(num_classes=num_classes, width=m.width, mode="codes", dropout=m.dropout,
               gating=m.gating, input_factors=(codec.temporal_factor, codec.spatial_factor),
               temporal_pool=temporal_pool, mixed_blocks=_mixed_blocks(m))
  return S3D(num_classes=num_classes, width=m.width, mode="rgb", dropout=m.dropout,
             gating=m.gating, temporal_pool=temporal_pool, mixed_blocks=_mixed_blocks(m))


def _mixed_blocks(m: mlc.ConfigDict) -> tuple[str, ...] | None:
  if not m.mixed_blocks:
    return None  # all nine
  try:
    return check_mixed_blocks(m.mixed_blocks)
  except ValueError as e:
    raise ConfigError(f"config.model.{e}") from None


def load_codec(config: mlc.ConfigDict) -> NeuralCodec | None:
  """The frozen codec of `config.codec` (None for input=rgb, which needs none)."""
  if config.input == "rgb":
    return None
  codec = NeuralCodec.load(config.codec)
  print(f"codec: {config.codec or 'shipped demo codec'} (id {codec.codec_id}, nominal CR "
        f"{codec.nominal_cr():.0f})", flush=True)
  return codec


def _to_rgb_input(video: jax.Array) -> jax.Array:
  """uint8 (or [0, 1] float) frames -> float in [-1, 1], the S3D input range."""
  x = video.astype(jnp.float32)
  if jnp.issubdtype(video.dtype, jnp.integer):
    x = x / 255.0
  return x * 2.0 - 1.0


def load_augmenter(config: mlc.ConfigDict, codec: NeuralCodec | None) -> LatentAugmenter | None:
  """The learned latent augmentation of `config.aug.workdir` (None when unset)."""
  if not config.aug.workdir:
    return None
  if config.input != "codes" or config.codes.embed != "codec":
    raise ConfigError("config.aug.workdir (learned latent augmentation) needs input=codes with "
                      "config.codes.embed='codec': it transforms the codec's latents")
  aug = LatentAugmenter.load(config.aug.workdir)
  aug.check_codec(codec.codec_id, f"config.aug.workdir={config.aug.workdir}")
  views = aug_views(config, aug)
  print(f"augmentation: learned {'+'.join(aug.spec)} from {config.aug.workdir} (train: "
        f"{'random' if config.aug.train else 'off'}, eval: "
        f"{'off' if views is None else f'{len(views)} views'})", flush=True)
  return aug


def aug_views(config: mlc.ConfigDict, aug: LatentAugmenter | None) -> jax.Array | None:
  """Parameter rows of the learned-augmentation views averaged at evaluation (None: no views)."""
  if aug is None or not config.aug.eval_views:
    return None
  return aug.views(num_crops=config.aug.eval_crops, flips=config.aug.eval_flips)


def make_features(config: mlc.ConfigDict, codec: NeuralCodec | None
                  ) -> tuple[Callable[[Any, dict], jax.Array], CodeEmbed | None]:
  """(features(params, batch) -> network input, learned embedding module or None).

  The frozen codec's variables are constants of the jitted step; only learned embeddings are
  trained (they live in params['embed']).
  """
  if config.input == "rgb":
    return (lambda params, batch: _to_rgb_input(batch["video"])), None
  cvars = codec.variables
  if config.input == "recon":
    def recon(params, batch):
      video = codec.model.apply(cvars, batch["codes"].astype(jnp.int32), method=VQVAE.decode_codes)
      return _to_rgb_input(jnp.clip(jax.lax.stop_gradient(video), 0.0, 1.0))
    return recon, None
  if config.codes.embed == "codec":
    return (lambda params, batch: jax.lax.stop_gradient(codec.latents(batch["codes"]))), None
  if config.codes.embed == "learned":
    embed = CodeEmbed(codec.num_codebooks, codec.num_entries, config.codes.embed_dim)
    return (lambda params, batch: embed.apply({"params": params["embed"]}, batch["codes"])), embed
  raise ConfigError(f"config.codes.embed={config.codes.embed!r} is not known; use 'codec' (the "
                    f"codec's frozen codebooks) or 'learned'")


class InputData:
  """What the data of every classifier on codes / RGB provides to its task: the batch key of the
  network input and a dummy batch of one example for initialisation."""
  config: mlc.ConfigDict
  example_shape: tuple[int, ...]

  @property
  def input_key(self) -> str:
    return "video" if self.config.input == "rgb" else "codes"

  def dummy_batch(self) -> dict[str, jax.Array]:
    dtype = jnp.uint8 if self.config.input == "rgb" else jnp.int32
    return {self.input_key: jnp.zeros((1, *self.example_shape), dtype)}


def check_code_window(data: mlc.ConfigDict, codec: NeuralCodec) -> tuple[int, int]:
  """(temporal, spatial) factors of `codec`, after checking that `data`'s clip fits its grid."""
  tf, sf = codec.temporal_factor, codec.spatial_factor
  if data.num_frames % tf or data.crop % sf:
    raise ConfigError(f"config.data.num_frames={data.num_frames} and config.data.crop="
                      f"{data.crop} must be multiples of the codec's temporal factor {tf} and "
                      f"spatial factor {sf}")
  return tf, sf


def make_init(data: InputData, model: S3D, features: Callable, embed: CodeEmbed | None,
              tx: optax.GradientTransformation) -> Callable[[jax.Array], TrainState]:
  """rng -> the initial TrainState: S3D params (+ learned code embeddings) and BN statistics."""
  def init(rng: jax.Array) -> TrainState:
    p_rng, d_rng, e_rng, s_rng = jax.random.split(rng, 4)
    params = {}
    batch = data.dummy_batch()
    if embed is not None:
      params["embed"] = embed.init(e_rng, batch["codes"])["params"]
    variables = model.init({"params": p_rng, "dropout": d_rng}, features(params, batch),
                           train=False)
    params["s3d"] = variables["params"]
    return TrainState.create(params=params, tx=tx, rng=s_rng,
                             model_state={k: v for k, v in variables.items() if k != "params"})

  return init


class Data(InputData):
  """Where examples come from: code shards (codes, recon) or video files (rgb)."""

  def __init__(self, config: mlc.ConfigDict, codec: NeuralCodec | None, codec_path: str):
    data = config.data
    self.config = config
    if config.input == "rgb":
      train, evals = datasets.clip_sources(data)
      self.class_names = train.class_names
      self.train_source, self.eval_source = train.records, evals.records
      spec = datasets.clip_spec(data)
      self.train_load = pipeline.LoadClip(spec, train=True, strict=data.strict)
      self.eval_load = pipeline.LoadClip(spec, train=False, strict=data.strict)
      self.example_shape = (spec.num_frames, spec.crop, spec.crop, 3)
      self.skipped = lambda: self.train_load.num_skipped
      return
    tf, sf = check_code_window(data, codec)
    step = data.stride // code_cache.frame_stride(data, config.codes, tf)
    root, manifest = code_cache.ensure_codes(config, codec, codec_path)
    self.class_names = manifest["splits"][data.train_split]["class_names"]
    self.train_source = code_shards.code_dataset(root, data.train_split)
    self.eval_source = code_shards.code_dataset(root, data.eval_split)
    if data.max_eval_clips:
      self.eval_source = self.eval_source[:data.max_eval_clips]
    if not self.class_names:
      raise ConfigError(f"{root}: the manifest lists no classes for split {data.train_split!r}; "
                        f"encode a labelled (kinetics or folder format) dataset")
    spec = code_clips.CodeClipSpec(num_steps=data.num_frames // tf, grid=data.crop // sf,
                                   flip=config.codes.random_flip, step=step)
    self.train_load = code_clips.LoadCodeClip(spec, train=True)
    self.eval_load = code_clips.LoadCodeClip(spec, train=False)
    self.example_shape = (spec.num_steps, spec.grid, spec.grid, codec.num_codebooks)
    num_bad = sum(len(s["bad"]) for s in manifest["splits"].values())
    self.skipped = lambda: num_bad
    print(f"codes: {root}: {len(self.train_source)} train / {len(self.eval_source)} eval videos, "
          f"clips of {self.example_shape} codes (dtype {manifest['dtype']}), nominal CR "
          f"{manifest['nominal_cr']:.0f}", flush=True)


def make_task(config: mlc.ConfigDict, data: Data, model: S3D, features: Callable,
              embed: CodeEmbed | None, aug: LatentAugmenter | None = None) -> loop.Task:
  num_classes = len(data.class_names)
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  smoothing = float(config.label_smoothing)

  init = make_init(data, model, features, embed, tx)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    labels = batch["label"]

    def loss_fn(params):
      x = features(params, batch)
      if aug is not None and config.aug.train:  # a random learned augmentation per clip
        x = aug.augment(x, aug.random_params(jax.random.fold_in(state.step_rng(), 7), x.shape[0]))
      logits, new_vars = model.apply({"params": params["s3d"], **state.model_state}, x,
                                     train=True, rngs={"dropout": state.step_rng()},
                                     mutable=["batch_stats"])
      targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
      return loss, (logits, new_vars)

    (loss, (logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    out = dict(loss=loss, top1=metrics.accuracy(logits, labels).mean(),
               grad_norm=optax.global_norm(grads))
    return state.apply_gradients(grads, model_state=dict(new_vars)), out

  latent_views = aug_views(config, aug)

  @jax.jit
  def predict(params, model_state, batch):
    def probs(x):
      logits = model.apply({"params": params["s3d"], **model_state}, x, train=False)
      return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    x = features(params, batch)
    if latent_views is None:
      return probs(x)
    # Test-time averaging over learned views (e.g. linearly spaced crops) of every clip, one view
    # after another (lax.map: one compiled body, memory of one view).
    per_view = jax.lax.map(
        lambda p: probs(aug.augment(x, jnp.broadcast_to(p, (x.shape[0], p.shape[0])))),
        latent_views)
    return jnp.mean(per_view, axis=0)

  views = pipeline.view_positions(**config.eval_views.to_dict())

  def evaluate(state: TrainState):
    n = len(data.eval_source)
    sums = np.zeros((n, num_classes), np.float64)
    counts = np.zeros((n,), np.int64)
    labels = np.full((n,), -1, np.int64)
    view_hits, view_total = 0.0, 0.0
    for batch in pipeline.eval_batches(data.eval_source, data.eval_load,
                                       global_batch=config.eval_batch_size,
                                       num_threads=config.data.num_threads, views=views):
      probs = np.asarray(jax.device_get(predict(state.params, state.model_state,
                                                {data.input_key: batch[data.input_key]})))
      probs, batch = distributed.gather((probs, {k: batch[k] for k in ("mask", "index", "label")}))
      real = batch["mask"] > 0
      idx, lab = batch["index"][real], batch["label"][real]
      np.add.at(sums, idx, probs[real])
      np.add.at(counts, idx, 1)
      labels[idx] = lab
      view_hits += float((probs[real].argmax(-1) == lab).sum())
      view_total += float(real.sum())
    seen = counts > 0
    if not seen.any():
      raise ValueError("no usable evaluation clips (see the warnings above)")
    probs = sums[seen] / counts[seen, None]
    out = metrics.classification_scores(probs, labels[seen])
    out["top1_single_view"] = view_hits / view_total
    out["num_videos"] = float(seen.sum())
    out["views"] = float(len(views) * (1 if latent_views is None else len(latent_views)))
    cm = metrics.confusion_matrix(labels[seen], probs.argmax(-1), num_classes)
    return out, {"confusion_matrix": _images.confusion_image(cm)[None]}

  return loop.Task(init=init, train_step=train_step, evaluate=evaluate,
                   make_train_iter=lambda: pipeline.config_train_iterator(
                       data.train_source, data.train_load, config),
                   data_stats=lambda: {"skipped_videos": data.skipped()}, schedule=schedule)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the classifier described by `config` in `workdir` (resuming if possible)."""
  if config.input not in INPUTS:
    raise ConfigError(f"config.input={config.input!r} is not known; use one of {INPUTS}")
  codec = load_codec(config)
  data = Data(config, codec, config.codec or "demo")
  model = build_model(config, len(data.class_names), codec)
  features, embed = make_features(config, codec)
  aug = load_augmenter(config, codec)
  print(f"s3d_cls: input={config.input}, {len(data.class_names)} classes, examples "
        f"{data.example_shape}", flush=True)
  task = make_task(config, data, model, features, embed, aug)
  final = loop.run(config, workdir, task)
  if "eval/top1" in final:
    print(f"final: top-1 {final['eval/top1']:.3f} (chance {1 / len(data.class_names):.3f}), "
          f"mean class accuracy {final['eval/mean_class_accuracy']:.3f}, single-view top-1 "
          f"{final['eval/top1_single_view']:.3f} over {final['eval/num_videos']:.0f} videos x "
          f"{final['eval/views']:.0f} views", flush=True)
  return final
