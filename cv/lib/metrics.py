"""Evaluation metrics for video codecs and classifiers, as pure jit-able JAX functions.

Image metrics (`psnr`, `mae`, `ssim`, `ms_ssim`) take two float arrays of the same shape
[..., H, W, C] with values in [0, 1] (typically videos [B, T, H, W, 3] or images [B, H, W, C]) and
return one value per example along the FIRST axis, shape [B], so that a caller can average over an
eval set whatever the batch size. All leading axes after the first (e.g. time) are treated as frames
of that example:

* `psnr` and `mae` reduce over every non-batch axis at once (PSNR is computed from the MSE of the
  whole example, not averaged per frame).
* `ssim` and `ms_ssim` are computed per frame (they are 2-D image metrics) and the per-example value
  is the mean over its frames.

Codebook metrics (`code_counts`, `stats_from_counts`) summarise how a vector quantiser uses its
entries: an evaluator accumulates histograms over many batches and computes usage/perplexity once
at the end.

`accuracy` is top-k accuracy for classifiers. The host-side (numpy, not jit-able) functions
`classification_scores` (one label per video) and `framewise_scores` (one label per frame, e.g.
COIN steps) score a whole evaluation set at once.

Shape checks happen at trace time (Python), so every function can be wrapped in `jax.jit`; integer
arguments that change the computation (`scales`, `num_entries`, `k`, ...) must be static.
"""
from __future__ import annotations

import functools
from typing import Dict, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

# PSNR is infinite for identical inputs; the MSE is floored at 1e-10 so PSNR is capped at 100 dB.
PSNR_MAX_DB = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_MAX_DB / 10.0)

# Default MS-SSIM scale weights from Wang, Simoncelli & Bovik (2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(x: jax.Array, y: jax.Array, name: str) -> tuple[jax.Array, jax.Array]:
  """Validates a pair of image arrays and returns them as float32 JAX arrays.

  Integer inputs are rejected rather than cast, because uint8 frames in [0, 255] would silently
  give wrong numbers for metrics that assume a [0, 1] range.
  """
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  if x.shape != y.shape:
    raise ValueError(f"{name}: shapes differ: {x.shape} vs {y.shape}.")
  if x.ndim < 4:
    raise ValueError(
        f"{name}: expected [B, ..., H, W, C] with at least 4 dims, got shape {x.shape}.")
  for a in (x, y):
    if not jnp.issubdtype(a.dtype, jnp.floating):
      raise TypeError(f"{name}: expected float images in [0, 1], got dtype {a.dtype}.")
  return x.astype(jnp.float32), y.astype(jnp.float32)


def _frames(x: jax.Array) -> jax.Array:
  """Flattens [B, ..., H, W, C] into a batch of frames [N, H, W, C]."""
  return x.reshape((-1,) + x.shape[-3:])


def _per_example(values: jax.Array, batch: int) -> jax.Array:
  """Averages per-frame values [N] into per-example values [batch]."""
  return values.reshape(batch, -1).mean(axis=1)


@jax.jit
def _mean_over_non_batch(z: jax.Array) -> jax.Array:
  """Mean of [B, ...] over all axes but the first -> [B]."""
  return jnp.mean(z.reshape(z.shape[0], -1), axis=1)


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean squared error per example, over all non-batch axes.

  Args:
    x: Float array [B, ..., H, W, C].
    y: Float array of the same shape.

  Returns:
    Float32 array [B].
  """
  x, y = _check_pair(x, y, "mse")
  return _mean_over_non_batch(jnp.square(x - y))


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
  """Peak signal-to-noise ratio per example, 10 * log10(1 / MSE), for data range 1.

  The MSE is taken over all non-batch axes of each example (whole video, not per frame). It is
  floored at 1e-10, so identical inputs give `PSNR_MAX_DB` (100 dB) instead of inf; this keeps
  eval-set means finite.

  Args:
    x: Float array [B, ..., H, W, C] with values in [0, 1].
    y: Float array of the same shape.

  Returns:
    Float32 array [B] in dB.
  """
  err = jnp.maximum(mse(x, y), _MSE_FLOOR)
  return -10.0 * jnp.log10(err)


def mae(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error per example, over all non-batch axes.

  Args:
    x: Float array [B, ..., H, W, C].
    y: Float array of the same shape.

  Returns:
    Float32 array [B].
  """
  x, y = _check_pair(x, y, "mae")
  return _mean_over_non_batch(jnp.abs(x - y))


def ssim(
    x: jax.Array,
    y: jax.Array,
    *,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
  """Structural similarity per example: per-frame SSIM averaged over the example's frames.

  Uses `dm_pix.ssim` (Gaussian window, valid filtering, max_val=1). Per frame it is the mean of the
  SSIM map over pixels and channels; this matches `skimage.metrics.structural_similarity` with
  `gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1`.

  Args:
    x: Float array [B, ..., H, W, C] with values in [0, 1]; H, W >= filter_size.
    y: Float array of the same shape.
    filter_size: Gaussian window size.
    filter_sigma: Gaussian window standard deviation.
    k1: Luminance stabiliser constant.
    k2: Contrast stabiliser constant.

  Returns:
    Float32 array [B].
  """
  x, y = _check_pair(x, y, "ssim")
  _check_min_size(x.shape, filter_size, "ssim")
  per_frame = _ssim_per_frame(
      _frames(x), _frames(y), filter_size=filter_size, filter_sigma=float(filter_sigma),
      k1=float(k1), k2=float(k2))
  return _per_example(per_frame, x.shape[0])


# The per-frame kernels are jitted so that eager calls (tests, notebooks) run as one compiled
# computation instead of dozens of dispatched ops; inside an outer jit they are simply inlined.
@functools.partial(jax.jit, static_argnames=("filter_size", "filter_sigma", "k1", "k2"))
def _ssim_per_frame(
    a: jax.Array, b: jax.Array, *, filter_size: int, filter_sigma: float, k1: float, k2: float
) -> jax.Array:
  """dm_pix SSIM of frames [N, H, W, C] -> [N]."""
  return pix.ssim(a, b, max_val=1.0, filter_size=filter_size, filter_sigma=filter_sigma,
                  k1=k1, k2=k2)


def _check_min_size(shape: Sequence[int], filter_size: int, name: str) -> None:
  h, w = shape[-3], shape[-2]
  if min(h, w) < filter_size:
    raise ValueError(f"{name}: frames {h}x{w} are smaller than the {filter_size}-tap filter.")


def ms_ssim_num_scales(h: int, w: int, scales: int, filter_size: int = 11) -> int:
  """Number of MS-SSIM scales that fit an H x W frame.

  Scale i (0-based) has size floor(H / 2^i) x floor(W / 2^i) (2x2 average pooling, odd trailing
  rows/columns dropped). Returns the largest s <= `scales` whose coarsest scale is still at least
  `filter_size` on both sides, and at least 1 (e.g. 64x64 -> 3, 192x192 -> 5 for an 11-tap filter).

  Args:
    h: Frame height.
    w: Frame width.
    scales: Requested (maximum) number of scales.
    filter_size: SSIM window size.

  Returns:
    Number of scales in [1, max(scales, 1)].
  """
  s = 1
  while s < scales and min(h, w) // (2 ** s) >= filter_size:
    s += 1
  return s


def _gaussian_filter_1d(filter_size: int, filter_sigma: float) -> np.ndarray:
  """Normalised 1-D Gaussian taps, centred as in dm_pix.ssim (float32, like dm_pix)."""
  hw = filter_size // 2
  shift = (2 * hw - filter_size + 1) / 2
  taps = np.exp(-0.5 * ((np.arange(filter_size) - hw + shift) / filter_sigma) ** 2)
  taps = taps.astype(np.float32)
  return taps / np.sum(taps)


def _band_matrix(taps: np.ndarray, n: int) -> np.ndarray:
  """[n - k + 1, n] matrix whose rows apply the k taps at each 'valid' position.

  Built in numpy at trace time: shapes and taps are static, and an XLA-side construction would be
  constant-folded slowly at compile time.
  """
  k = taps.shape[0]
  offsets = np.arange(n)[None, :] - np.arange(n - k + 1)[:, None]
  inside = (offsets >= 0) & (offsets < k)
  return np.where(inside, taps[np.clip(offsets, 0, k - 1)], 0.0).astype(np.float32)


def _valid_blur(z: jax.Array, taps: np.ndarray) -> jax.Array:
  """Separable 'valid' Gaussian blur of [N, H, W, C] over H and W.

  Written as two banded matmuls at HIGHEST precision: one op per axis keeps compile times small
  and matches dm_pix's valid convolution to float32 rounding.
  """
  hi = jax.lax.Precision.HIGHEST
  z = jnp.einsum("oh,nhwc->nowc", _band_matrix(taps, z.shape[1]), z, precision=hi)
  return jnp.einsum("ow,nhwc->nhoc", _band_matrix(taps, z.shape[2]), z, precision=hi)


def _ssim_components(
    x: jax.Array, y: jax.Array, taps: np.ndarray, k1: float, k2: float
) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean luminance-times-cs (SSIM) and contrast-structure (cs) terms.

  Mirrors dm_pix.ssim (same window, variance clipping and constants for max_val=1), but also
  exposes the cs term that MS-SSIM needs at the finer scales.

  Args:
    x: Float32 frames [N, H, W, C].
    y: Float32 frames [N, H, W, C].
    taps: 1-D Gaussian filter.
    k1: Luminance stabiliser constant.
    k2: Contrast stabiliser constant.

  Returns:
    (ssim, cs), each [N, C]: the maps averaged over the valid spatial positions.
  """
  # One blur of the five moment images (concatenated on the channel axis) keeps the graph small.
  c = x.shape[-1]
  blurred = _valid_blur(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), taps)
  mu_x, mu_y, e_xx, e_yy, e_xy = (blurred[..., i * c:(i + 1) * c] for i in range(5))
  mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
  eps = jnp.finfo(jnp.float32).eps ** 2
  var_x = jnp.maximum(eps, e_xx - mu_xx)
  var_y = jnp.maximum(eps, e_yy - mu_yy)
  cov = e_xy - mu_xy
  cov = jnp.sign(cov) * jnp.minimum(jnp.sqrt(var_x * var_y), jnp.abs(cov))
  c1, c2 = k1 ** 2, k2 ** 2
  cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
  lum_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1)
  return jnp.mean(lum_map * cs_map, axis=(1, 2)), jnp.mean(cs_map, axis=(1, 2))


def _avg_pool_2x2(z: jax.Array) -> jax.Array:
  """2x2 average pooling of [N, H, W, C]; an odd trailing row/column is dropped."""
  n, h, w, c = z.shape
  z = z[:, :h // 2 * 2, :w // 2 * 2]
  return z.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim(
    x: jax.Array,
    y: jax.Array,
    *,
    scales: int = 5,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
  """Multi-scale SSIM (Wang, Simoncelli & Bovik, 2003) per example.

  Per frame and channel: the contrast-structure term cs_i at scales 0..s-2 and the full SSIM
  (luminance * cs) at the coarsest scale s-1, with 2x2 average pooling between scales, combined as
  prod_i max(term_i, 0) ** w_i. The result is averaged over channels, then over the frames of each
  example. Terms are clamped at 0 before the fractional powers so anti-correlated inputs give 0
  rather than NaN.

  Small frames cannot hold 5 scales with an 11-tap window (64x64 fits 3), so the number of scales
  actually used is `ms_ssim_num_scales(H, W, scales, filter_size)` and the first s weights are
  renormalised to sum to 1. Values are therefore comparable only between runs at the same frame
  size. With s == 1 this equals `ssim` (for non-negative SSIM).

  Args:
    x: Float array [B, ..., H, W, C] with values in [0, 1]; H, W >= filter_size.
    y: Float array of the same shape.
    scales: Maximum number of scales (static).
    weights: Per-scale exponents, finest first; needs at least `scales` entries (static Python
      floats).
    filter_size: Gaussian window size.
    filter_sigma: Gaussian window standard deviation.
    k1: Luminance stabiliser constant.
    k2: Contrast stabiliser constant.

  Returns:
    Float32 array [B] in [0, 1].
  """
  x, y = _check_pair(x, y, "ms_ssim")
  _check_min_size(x.shape, filter_size, "ms_ssim")
  if scales < 1:
    raise ValueError(f"ms_ssim: scales must be >= 1, got {scales}.")
  if len(weights) < scales:
    raise ValueError(f"ms_ssim: {scales} scales need as many weights, got {len(weights)}.")
  num_scales = ms_ssim_num_scales(x.shape[-3], x.shape[-2], scales, filter_size)
  per_frame = _ms_ssim_per_frame(
      _frames(x), _frames(y), weights=tuple(float(v) for v in weights[:num_scales]),
      filter_size=filter_size, filter_sigma=float(filter_sigma), k1=float(k1), k2=float(k2))
  return _per_example(per_frame, x.shape[0])


@functools.partial(
    jax.jit, static_argnames=("weights", "filter_size", "filter_sigma", "k1", "k2"))
def _ms_ssim_per_frame(
    a: jax.Array,
    b: jax.Array,
    *,
    weights: tuple[float, ...],
    filter_size: int,
    filter_sigma: float,
    k1: float,
    k2: float,
) -> jax.Array:
  """MS-SSIM of frames [N, H, W, C] -> [N], with len(weights) scales (renormalised)."""
  num_scales = len(weights)
  w = jnp.asarray(weights, jnp.float32)
  w = w / jnp.sum(w)
  taps = _gaussian_filter_1d(filter_size, filter_sigma)
  terms = []
  for i in range(num_scales):
    ssim_i, cs_i = _ssim_components(a, b, taps, k1, k2)
    if i < num_scales - 1:
      terms.append(cs_i)
      a, b = _avg_pool_2x2(a), _avg_pool_2x2(b)
    else:
      terms.append(ssim_i)
  terms = jnp.maximum(jnp.stack(terms, axis=0), 0.0)  # [S, N, C]
  per_channel = jnp.prod(terms ** w[:, None, None], axis=0)  # [N, C]
  return jnp.mean(per_channel, axis=-1)


def code_counts(codes: jax.Array, num_entries: int) -> jax.Array:
  """Histogram of code indices per codebook.

  Args:
    codes: Integer array [..., K]: K codebooks, each value in [0, num_entries). Values outside the
      range are ignored (not counted).
    num_entries: Codebook size N (static).

  Returns:
    Int32 counts [K, N]. Counts from several batches can be summed before `stats_from_counts`.
  """
  codes = jnp.asarray(codes)
  if codes.ndim < 1:
    raise ValueError("code_counts: codes must have a trailing codebook axis [..., K].")
  if not jnp.issubdtype(codes.dtype, jnp.integer):
    raise TypeError(f"code_counts: expected integer codes, got dtype {codes.dtype}.")
  return _code_counts(codes.reshape(-1, codes.shape[-1]), num_entries=num_entries)


@functools.partial(jax.jit, static_argnames="num_entries")
def _code_counts(codes: jax.Array, *, num_entries: int) -> jax.Array:
  """Counts [K, N] of flattened codes [M, K]."""
  per_book = codes.T  # [K, M]

  def hist(c: jax.Array) -> jax.Array:
    valid = ((c >= 0) & (c < num_entries)).astype(jnp.int32)
    return jnp.bincount(jnp.clip(c, 0, num_entries - 1), weights=valid, length=num_entries)

  return jax.vmap(hist)(per_book).astype(jnp.int32)


def stats_from_counts(counts: jax.Array) -> Dict[str, jax.Array]:
  """Codebook usage and perplexity from code histograms.

  Args:
    counts: Non-negative counts [K, N] (or [N] for one codebook).

  Returns:
    Dict of float32 scalars, each averaged over the K codebooks:
      usage: fraction of the N entries used at least once.
      perplexity: exp(entropy) of the normalised histogram, in [1, N]; N for uniform use, 1 when a
        single entry is used. A codebook with no counts at all has perplexity 1 and usage 0.
  """
  counts = jnp.asarray(counts, jnp.float32)
  if counts.ndim == 1:
    counts = counts[None]
  return _stats_from_counts(counts)


@jax.jit
def _stats_from_counts(counts: jax.Array) -> Dict[str, jax.Array]:
  """Jitted core of `stats_from_counts` for float counts [K, N]."""
  total = jnp.sum(counts, axis=-1, keepdims=True)
  p = counts / jnp.maximum(total, 1.0)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
  return {
      "usage": jnp.mean(jnp.mean((counts > 0).astype(jnp.float32), axis=-1)),
      "perplexity": jnp.mean(jnp.exp(entropy)),
  }


def accuracy(logits: jax.Array, labels: jax.Array, k: int = 1) -> jax.Array:
  """Top-k accuracy per example: 1.0 if the label is among the k highest logits, else 0.0.

  Ties are broken by class index (lower index first), as in `jax.lax.top_k`.

  Args:
    logits: Float array [..., num_classes] (typically [B, num_classes]).
    labels: Integer array [...] (typically [B]).
    k: Number of top classes that count as correct (static).

  Returns:
    Float32 array with the shape of `labels`.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.shape[:-1] != labels.shape:
    raise ValueError(f"accuracy: logits {logits.shape} do not match labels {labels.shape}.")
  if not 1 <= k <= logits.shape[-1]:
    raise ValueError(f"accuracy: k={k} must be in [1, {logits.shape[-1]}].")
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[..., None], axis=-1).astype(jnp.float32)


# ----------------------------------------------------------------------------- classification
def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [C, C]: row = true class, column = predicted class (host-side, numpy)."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
  return cm


def classification_scores(probs: np.ndarray, labels: np.ndarray, k: int = 5) -> Dict[str, float]:
  """Video-level scores from (view-averaged) class probabilities [N, C] and labels [N].

  top1, top{k} (k capped at C), mean per-class accuracy (classes present in `labels` only), and
  the cross-entropy of the probabilities.
  """
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
  if probs.ndim != 2 or probs.shape[0] != labels.shape[0] or probs.shape[0] == 0:
    raise ValueError(f"classification_scores: expected probs [N, C] and labels [N] with N > 0, "
                     f"got {probs.shape} and {labels.shape}")
  k = min(k, probs.shape[1])
  order = np.argsort(-probs, axis=1, kind="stable")
  top1 = order[:, 0] == labels
  topk = (order[:, :k] == labels[:, None]).any(axis=1)
  present = np.unique(labels)
  per_class = [top1[labels == c].mean() for c in present]
  nll = -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12))
  return {"top1": float(top1.mean()), f"top{k}": float(topk.mean()),
          "mean_class_accuracy": float(np.mean(per_class)), "loss": float(nll.mean())}


def label_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
  """Maximal runs of equal values in a 1-D int array, as (start, end_exclusive, value).

  Used to split per-frame labels into segments (e.g. the steps of a COIN video); runs of
  negative (unlabelled) values are returned too, callers filter them. [] for an empty array.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"label_runs: expected a 1-D label array, got shape {labels.shape}")
  if labels.size == 0:
    return []
  starts = np.concatenate([[0], np.flatnonzero(labels[1:] != labels[:-1]) + 1])
  ends = np.concatenate([starts[1:], [labels.size]])
  return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]


def _check_video(probs: np.ndarray, labels: np.ndarray, v: int,
                 num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
  """Validates video `v` of `framewise_scores`; returns float64 probs [n, C], int64 labels [n]."""
  p, y = np.asarray(probs, np.float64), np.asarray(labels)
  if p.ndim != 2 or p.shape[1] < 1:
    raise ValueError(f"framewise_scores: video {v}: expected probs [n_frames, C] with C >= 1, "
                     f"got shape {p.shape}")
  if num_classes is not None and p.shape[1] != num_classes:
    raise ValueError(f"framewise_scores: video {v}: probs have {p.shape[1]} classes, video 0 has "
                     f"{num_classes}")
  if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
    raise ValueError(f"framewise_scores: video {v}: expected integer labels [n_frames], got "
                     f"shape {y.shape} dtype {y.dtype}")
  if y.shape[0] != p.shape[0]:
    raise ValueError(f"framewise_scores: video {v}: {p.shape[0]} frames of probs but "
                     f"{y.shape[0]} labels")
  y = y.astype(np.int64)
  if y.size and y.max() >= p.shape[1]:
    raise ValueError(f"framewise_scores: video {v}: label {y.max()} >= number of classes "
                     f"{p.shape[1]}")
  return p, y


def _segment_hits(preds: np.ndarray, labels: np.ndarray, num_classes: int,
                  background: int | None) -> list[bool]:
  """Per labelled, non-background segment of one video: is its majority prediction its label?

  The majority is the most frequent argmax over the segment's frames, ties -> smallest class id.
  """
  hits = []
  for start, end, label in label_runs(labels):
    if label < 0 or (background is not None and label == background):
      continue
    votes = np.bincount(preds[start:end], minlength=num_classes)
    hits.append(int(np.argmax(votes)) == label)
  return hits


def framewise_scores(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
                     background: int | None = 0, majority_class: int | None = None,
                     k: int = 5) -> Dict[str, float]:
  """Per-frame classification scores of whole videos (COIN, "Compressed Vision" Table 3).

  Frames with a negative label are unlabelled and ignored everywhere. Ties in the probabilities
  go to the smaller class id (argmax / stable sort), as in `classification_scores`.

  Args:
    probs: per video v, float [n_v, C] per-frame class probabilities (rows sum to 1).
    labels: per video v, int [n_v] true class per frame (< 0: unlabelled).
    background: the class whose segments `segment_accuracy` skips (None: skip none).
    majority_class: the class `majority_rate` always predicts; None: the most frequent label.
    k: for the top-k scores; capped at C (the keys use the capped k).

  Returns:
    top1_mean / top1_std and top{k}_mean / top{k}_std: mean and population std over videos (with
    >= 1 labelled frame) of each video's frame accuracy; top1_frames: accuracy pooled over all
    labelled frames; mean_class_accuracy: mean over present classes of pooled per-class accuracy;
    segment_accuracy (NaN without segments) and num_segments: segments are maximal runs of one
    label >= 0 other than `background`, correct when their majority prediction is the label;
    majority_rate: pooled accuracy of always predicting the majority class; loss: mean
    -log(max(p[label], 1e-12)) over labelled frames; num_videos, num_frames.
  """
  if len(probs) != len(labels):
    raise ValueError(f"framewise_scores: {len(probs)} videos of probs but {len(labels)} of labels")
  if k < 1:
    raise ValueError(f"framewise_scores: k must be >= 1, got {k}")
  num_classes = None
  top1_videos, topk_videos, top1_frames, topk_frames = [], [], [], []
  frame_labels, nll, segment_hits = [], [], []
  for v, (p, y) in enumerate(zip(probs, labels)):
    p, y = _check_video(p, y, v, num_classes)
    num_classes = p.shape[1]
    kk = min(k, num_classes)
    order = np.argsort(-p, axis=1, kind="stable")
    segment_hits += _segment_hits(order[:, 0], y, num_classes, background)
    keep = y >= 0
    if not keep.any():
      continue
    y, order, p = y[keep], order[keep], p[keep]
    hit1 = order[:, 0] == y
    hitk = (order[:, :kk] == y[:, None]).any(axis=1)
    top1_videos.append(hit1.mean())
    topk_videos.append(hitk.mean())
    top1_frames.append(hit1)
    topk_frames.append(hitk)
    frame_labels.append(y)
    nll.append(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
  if not frame_labels:
    raise ValueError(f"framewise_scores: no labelled frames (label >= 0) in {len(labels)} videos")
  kk = min(k, num_classes)
  hit1, y = np.concatenate(top1_frames), np.concatenate(frame_labels)
  per_class = [hit1[y == c].mean() for c in np.unique(y)]
  if majority_class is None:
    majority_class = int(np.argmax(np.bincount(y)))
  return {
      "top1_mean": float(np.mean(top1_videos)), "top1_std": float(np.std(top1_videos)),
      f"top{kk}_mean": float(np.mean(topk_videos)), f"top{kk}_std": float(np.std(topk_videos)),
      "top1_frames": float(hit1.mean()),
      "mean_class_accuracy": float(np.mean(per_class)),
      "segment_accuracy": float(np.mean(segment_hits)) if segment_hits else float("nan"),
      "num_segments": float(len(segment_hits)),
      "majority_rate": float(np.mean(y == majority_class)),
      "loss": float(np.concatenate(nll).mean()),
      "num_videos": float(len(top1_videos)), "num_frames": float(len(y)),
  }


class MaskedMean:
  """Running means of per-example scores over evaluation batches whose padding `mask` is 0."""

  def __init__(self):
    self.sums: Dict[str, float] = {}
    self.count = 0.0

  def add(self, scores: Dict[str, np.ndarray], mask: np.ndarray) -> None:
    mask = np.asarray(mask, np.float64)
    for k, v in scores.items():
      self.sums[k] = self.sums.get(k, 0.0) + float(np.sum(np.asarray(v) * mask))
    self.count += float(mask.sum())

  def result(self) -> Dict[str, float]:
    if self.count == 0:
      raise ValueError("no usable evaluation clips (see the warnings above)")
    return {k: v / self.count for k, v in self.sums.items()}
