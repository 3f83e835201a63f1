"""`coin_framewise` trainer: per-frame step classification of long videos (COIN, paper §4.4,
Table 3), on codes or on RGB.

Data: a COIN-format dataset (`config.data.format = "coin"`, the demo COIN videos when no root
is set). Every frame is labelled with the step whose annotated segment contains it, frames
outside every segment with `background` (class 0; see `cv.data.framewise`).

Model (a design choice): the S3D-G trunk of `s3d_cls` (same stem strides on codes, same
features) without temporal pooling — features are averaged over space only, and a linear head
gives logits per output time step ([B, T/8, C] for T input frames). These logits are linearly
interpolated in time back to the window's `num_frames` frames, so the loss is a per-frame
softmax cross-entropy against per-frame labels. The interpolation is what aligns the labels with
temporally compressed codes too: a window of `num_frames` frames is `num_frames / tf` code steps,
and predictions still come out per frame. Keeping the standard trunk (instead of removing its
temporal strides) keeps the cost of the Kinetics model, as the paper does; the price is that
boundaries are resolved to about 8 frames before interpolation.

Training draws random windows of `num_frames` frames from the long training videos (a random
crop of the code grid / frame too). Evaluation runs whole test videos with sliding windows
(`config.eval.hop` frames apart), averages the per-frame class probabilities where windows
overlap, and reports, as the paper does, per-frame top-1 / top-5 as mean ± std over test
videos, plus pooled frame accuracy, mean class accuracy, step-segment accuracy (majority vote
over each annotated step) and the majority-class rate for reference; TensorBoard gets an image
of predicted against true segments along the first test videos and a per-frame confusion matrix.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from cv.codec import shipped
from cv.codec import code_cache
from cv.codec.neural import NeuralCodec
from cv.data import code_shards, datasets, framewise, pipeline
from cv.lib import evaluate as eval_lib
from cv.lib import loop, metrics, optim, reporting
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState
from cv.models.code_input import CodeEmbed
from cv.models.s3d import S3D
from cv.trainers import _images
from cv.trainers._inputs import (InputData, build_model, check_code_window, check_input,
                                 load_codec, make_features, make_init)


def frame_logits(step_logits: jax.Array, num_frames: int) -> jax.Array:
  """[B, T_out, C] per-step logits -> [B, num_frames, C] by linear interpolation in time."""
  b, _, c = step_logits.shape
  return jax.image.resize(step_logits, (b, num_frames, c), method="linear")


class Data(InputData):
  """Training windows and whole test videos, from code shards (codes, recon) or video files."""

  def __init__(self, config: mlc.ConfigDict, codec: NeuralCodec | None, codec_path: str):
    data = config.data
    self.config = config
    if data.format != "coin":
      raise ConfigError(f"config.data.format={data.format!r}: coin_framewise needs per-frame "
                        f"step annotations, i.e. a COIN-format dataset (format='coin')")
    if data.target_fps:
      raise ConfigError("config.data.target_fps is not supported by coin_framewise (frames are "
                        "sampled at a fixed stride); use config.data.stride")
    if config.input == "rgb":
      reports = datasets.read_splits(datasets.resolve_root(data), "coin",
                                     [data.train_split, data.eval_split], strict=data.strict)
      train, evals = reports[data.train_split], reports[data.eval_split]
      self.class_names = train.class_names
      self.train_source = train.records
      self.eval_source = evals.records[:data.max_eval_videos or None]
      args = (data.num_frames, data.stride, data.short_side, data.crop)
      self.train_load = framewise.LoadVideoWindow(*args, train=True, strict=data.strict)
      self.eval_load = framewise.LoadVideoWindow(*args, train=False, strict=data.strict)
      self.eval_videos = [(r["video_id"], framewise.video_length(r, data.stride))
                          for r in self.eval_source]
      self.align = 1
      self.example_shape = (data.num_frames, data.crop, data.crop, 3)
      self.skipped = lambda: len(self.train_load.skipped) + len(self.eval_load.skipped)
      return
    tf, sf = check_code_window(data, codec)
    root, manifest = code_cache.ensure_codes(config, codec, codec_path)
    self.class_names = manifest["splits"][data.train_split]["class_names"]
    self.train_source = code_shards.code_dataset(root, data.train_split)
    self.eval_source = code_shards.code_dataset(root, data.eval_split)
    if data.max_eval_videos:
      self.eval_source = self.eval_source[:data.max_eval_videos]
    self.eval_videos = [(r["video_id"], int(r["num_frames"])) for r in self.eval_source]
    grid = data.crop // sf
    self.train_load = framewise.LoadCodeWindow(data.num_frames, grid, tf, train=True)
    self.eval_load = framewise.LoadCodeWindow(data.num_frames, grid, tf, train=False)
    self.align = tf
    self.example_shape = (data.num_frames // tf, grid, grid, codec.num_codebooks)
    num_bad = sum(len(s["bad"]) for s in manifest["splits"].values())
    self.skipped = lambda: num_bad
    reporting.console(f"codes: {root}: {len(self.train_source)} train / {len(self.eval_source)} "
                      f"test videos, windows of {self.example_shape} codes, nominal CR "
                      f"{manifest['nominal_cr']:.0f}")

  def eval_windows(self) -> framewise.Windows:
    hop = self.config.eval.hop or self.config.data.num_frames
    return framewise.as_windows(self.eval_source, [n for _, n in self.eval_videos],
                                self.config.data.num_frames, hop, self.align)


def make_task(config: mlc.ConfigDict, data: Data, model: S3D, features: Callable,
              embed: CodeEmbed | None) -> loop.Task:
  num_classes = len(data.class_names)
  num_frames = config.data.num_frames
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  smoothing = float(config.label_smoothing)

  init = make_init(data, model, features, embed, tx)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    labels, mask = batch["labels"], batch["frame_mask"]

    def loss_fn(params):
      out, new_vars = model.apply({"params": params["s3d"], **state.model_state},
                                  features(params, batch), train=True,
                                  rngs={"dropout": state.step_rng()}, mutable=["batch_stats"])
      logits = frame_logits(out, num_frames)
      targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
      per_frame = optax.softmax_cross_entropy(logits, targets)
      loss = jnp.sum(per_frame * mask) / jnp.maximum(jnp.sum(mask), 1.0)
      return loss, (logits, new_vars)

    (loss, (logits, new_vars)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    hits = metrics.accuracy(logits, labels)
    out = dict(loss=loss, frame_top1=jnp.sum(hits * mask) / jnp.maximum(jnp.sum(mask), 1.0),
               grad_norm=optax.global_norm(grads))
    return state.apply_gradients(grads, model_state=dict(new_vars)), out

  @jax.jit
  def predict(params, model_state, batch):
    out = model.apply({"params": params["s3d"], **model_state}, features(params, batch),
                      train=False)
    return jax.nn.softmax(frame_logits(out, num_frames), axis=-1)

  def evaluate(state: TrainState):
    lengths = [n for _, n in data.eval_videos]
    sums = [np.zeros((n, num_classes), np.float64) for n in lengths]
    counts = [np.zeros(n, np.int64) for n in lengths]
    labels = [np.full(n, -1, np.int64) for n in lengths]

    def accumulate(probs: np.ndarray, b: dict[str, np.ndarray]) -> None:
      for i in np.flatnonzero(b["mask"] > 0):
        v, start, real = int(b["index"][i]), int(b["start"][i]), b["frame_mask"][i] > 0
        frames = start + np.flatnonzero(real)
        sums[v][frames] += probs[i][real]
        counts[v][frames] += 1
        labels[v][frames] = b["labels"][i][real]

    batches = pipeline.eval_batches(data.eval_windows(), data.eval_load,
                                    global_batch=config.eval_batch_size,
                                    num_threads=config.data.num_threads)
    eval_lib.run(batches, lambda b: predict(state.params, state.model_state,
                                            {data.input_key: b[data.input_key]}),
                 accumulate, keys=("index", "start", "frame_mask", "labels"))
    seen = [v for v, c in enumerate(counts) if c.any()]
    video_probs = [sums[v][counts[v] > 0] / counts[v][counts[v] > 0, None] for v in seen]
    video_labels = [labels[v][counts[v] > 0] for v in seen]
    out = metrics.framewise_scores(video_probs, video_labels, background=0)
    preds = [p.argmax(-1) for p in video_probs]
    shown = seen[:config.eval.plot_videos]
    image = _images.segments_image(video_labels[:len(shown)], preds[:len(shown)],
                                   data.class_names, background=0,
                                   titles=[f"{data.eval_videos[v][0]}: true (top) / predicted"
                                           for v in shown])
    cm = metrics.confusion_matrix(np.concatenate(video_labels), np.concatenate(preds),
                                  num_classes)
    return out, {"segments": image[None],
                 "confusion_matrix": _images.confusion_image(cm, data.class_names)[None]}

  return loop.Task(init=init, train_step=train_step, evaluate=evaluate,
                   make_train_iter=lambda: pipeline.config_train_iterator(
                       data.train_source, data.train_load, config),
                   data_stats=lambda: {"skipped_videos": data.skipped()}, schedule=schedule)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the per-frame classifier described by `config` in `workdir` (resuming if possible)."""
  check_input(config)
  codec = load_codec(config)
  data = Data(config, codec, config.codec or shipped.DEFAULT)
  model = build_model(config, len(data.class_names), codec, temporal_pool=False)
  features, embed = make_features(config, codec)
  reporting.console(f"coin_framewise: input={config.input}, {len(data.class_names)} classes "
                    f"(incl. background), windows {data.example_shape}, "
                    f"{len(data.eval_videos)} test videos")
  final = loop.run(config, workdir, make_task(config, data, model, features, embed))
  k = min(5, len(data.class_names))
  if "eval/top1_mean" in final:
    reporting.console(
        f"final: per-frame top-1 {final['eval/top1_mean']:.3f} ± {final['eval/top1_std']:.3f}, "
        f"top-{k} {final[f'eval/top{k}_mean']:.3f} ± {final[f'eval/top{k}_std']:.3f} over "
        f"{final['eval/num_videos']:.0f} test videos (majority class "
        f"{final['eval/majority_rate']:.3f}); segment accuracy "
        f"{final['eval/segment_accuracy']:.3f}")
  return final
