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

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from cv.augment.latent import LatentAugmenter
from cv.codec import shipped
from cv.codec import code_cache
from cv.codec.neural import NeuralCodec
from cv.data import code_clips, code_shards, datasets, pipeline
from cv.lib import evaluate as eval_lib
from cv.lib import loop, metrics, optim, reporting
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState
from cv.models.code_input import CodeEmbed
from cv.models.s3d import S3D
from cv.trainers import _images
# The input helpers shared with coin_framewise (also used by cv.benchmarks.step and tests).
from cv.trainers._inputs import (InputData, build_model, check_code_window, check_input,
                                 load_codec, make_features, make_init)


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
  reporting.console(f"augmentation: learned {'+'.join(aug.spec)} from {config.aug.workdir} "
                    f"(train: {'random' if config.aug.train else 'off'}, eval: "
                    f"{'off' if views is None else f'{len(views)} views'})")
  return aug


def aug_views(config: mlc.ConfigDict, aug: LatentAugmenter | None) -> jax.Array | None:
  """Parameter rows of the learned-augmentation views averaged at evaluation (None: no views)."""
  if aug is None or not config.aug.eval_views:
    return None
  return aug.views(num_crops=config.aug.eval_crops, flips=config.aug.eval_flips)


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
    reporting.console(f"codes: {root}: {len(self.train_source)} train / {len(self.eval_source)} "
                      f"eval videos, clips of {self.example_shape} codes (dtype "
                      f"{manifest['dtype']}), nominal CR {manifest['nominal_cr']:.0f}")


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
    view_hits = []

    def accumulate(probs: np.ndarray, b: dict[str, np.ndarray]) -> None:
      real = b["mask"] > 0
      idx, lab = b["index"][real], b["label"][real]
      np.add.at(sums, idx, probs[real])
      np.add.at(counts, idx, 1)
      labels[idx] = lab
      view_hits.append(probs[real].argmax(-1) == lab)

    batches = pipeline.eval_batches(data.eval_source, data.eval_load,
                                    global_batch=config.eval_batch_size,
                                    num_threads=config.data.num_threads, views=views)
    eval_lib.run(batches, lambda b: predict(state.params, state.model_state,
                                            {data.input_key: b[data.input_key]}),
                 accumulate, keys=("index", "label"))
    seen = counts > 0
    probs = sums[seen] / counts[seen, None]
    out = metrics.classification_scores(probs, labels[seen])
    out["top1_single_view"] = float(np.concatenate(view_hits).mean())
    out["num_videos"] = float(seen.sum())
    out["views"] = float(len(views) * (1 if latent_views is None else len(latent_views)))
    cm = metrics.confusion_matrix(labels[seen], probs.argmax(-1), num_classes)
    return out, {"confusion_matrix": _images.confusion_image(cm, data.class_names)[None]}

  return loop.Task(init=init, train_step=train_step, evaluate=evaluate,
                   make_train_iter=lambda: pipeline.config_train_iterator(
                       data.train_source, data.train_load, config),
                   data_stats=lambda: {"skipped_videos": data.skipped()}, schedule=schedule)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains the classifier described by `config` in `workdir` (resuming if possible)."""
  check_input(config)
  codec = load_codec(config)
  data = Data(config, codec, config.codec or shipped.DEFAULT)
  model = build_model(config, len(data.class_names), codec)
  features, embed = make_features(config, codec)
  aug = load_augmenter(config, codec)
  reporting.console(f"s3d_cls: input={config.input}, {len(data.class_names)} classes, examples "
                    f"{data.example_shape}")
  task = make_task(config, data, model, features, embed, aug)
  final = loop.run(config, workdir, task)
  if "eval/top1" in final:
    reporting.console(
        f"final: top-1 {final['eval/top1']:.3f} (chance {1 / len(data.class_names):.3f}), mean "
        f"class accuracy {final['eval/mean_class_accuracy']:.3f}, single-view top-1 "
        f"{final['eval/top1_single_view']:.3f} over {final['eval/num_videos']:.0f} videos x "
        f"{final['eval/views']:.0f} views")
  return final
