"""Lossless temporal-context entropy coding of code indices (a `.cvz` chunk mode).

Consecutive latent frames of a video mostly repeat each other's codes: on held-out clips 63-73% of
the indices equal the index at the same place one latent frame earlier. The static tables of
`cv.codec.entropy` cannot see that; this model predicts every index of latent frame t >= 1 from the
3x3 neighbourhood of its place in frame t-1 (the centre for still content, the neighbours for
motion of up to one cell):

    p(x) = w[k, 0] * probs[k, x] + sum_j w[k, j] * [x == context_j]     j = 1..9

`probs` are the codec's stored code frequencies (so every index stays encodable) and the mixture
weights w[k] are fitted to the chunk by EM on the encoder side and stored in it (uint16, 20 bytes
for K = 1). Frame 0 uses `probs` alone, so every chunk decodes on its own. Decoding is one
vectorised range-coder call per latent frame and codebook: no per-index Python loop. On the
default held-out clips this halves the bytes of static range coding (see docs/results.md).

Stream layout (part of the file format): K x 10 little-endian uint16 weights, then one
`constriction.stream.queue.RangeEncoder` stream as little-endian uint32 words holding frame 0
(codebook 0 in C order over (H', W'), then codebook 1, ...) under `Categorical(probs[k])`, then for
t = 1..T'-1 and each codebook k, frame t's indices in C order under the per-index mixture above,
in blocks of rows whose [rows * W', N] probability matrix has at most `_MAX_MATRIX` entries.
All models are built with `perfect=False`, as in `cv.codec.entropy`.
"""
from __future__ import annotations

from typing import Sequence

import constriction
import numpy as np

from cv.codec import entropy

# Offsets (dy, dx) into the previous latent frame that serve as contexts; edge-padded at borders.
NEIGHBOURHOOD = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
NUM_COMPONENTS = 1 + len(NEIGHBOURHOOD)  # the static table plus one component per context
_WEIGHT_SCALE = 65535
_EM_ITERS = 40
_EM_MAX_SAMPLES = 1 << 18  # indices used to fit the weights (a strided subset of longer chunks)
_MAX_MATRIX = 1 << 22  # float64 entries per probability matrix handed to the range coder (32 MB)


def contexts(prev: np.ndarray) -> np.ndarray:
  """The `NEIGHBOURHOOD` indices of each place of latent frame `prev` [H, W] -> [H, W, 9]."""
  h, w = prev.shape
  padded = np.pad(prev, 1, mode="edge")
  return np.stack([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in NEIGHBOURHOOD], -1)


def _likelihoods(codes: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """Per-component likelihood [n, C] of the indices of frames 1.. of one codebook [T, H, W].

  Long or large chunks use every step-th index of each frame (at most about _EM_MAX_SAMPLES in
  all), built frame by frame so memory stays that of one frame's contexts."""
  t, h, w = codes.shape
  step = max(1, -(-(t - 1) * h * w // _EM_MAX_SAMPLES))
  rows = []
  for prev, cur in zip(codes[:-1], codes[1:]):
    ctx = contexts(prev).reshape(-1, len(NEIGHBOURHOOD))[::step]
    x = cur.reshape(-1)[::step]
    rows.append(np.concatenate([probs[x][:, None], (ctx == x[:, None]).astype(np.float64)], 1))
  return np.concatenate(rows)


def fit_weights(codes: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """Mixture weights for codes [T, H, W, K] under probs [K, N], quantised as stored: uint16 [K, C].

  Maximum likelihood by EM (the mixture log-likelihood is concave in the weights, so EM from
  uniform weights converges to the optimum). The static weight is at least 1 so that every index
  keeps a nonzero probability.
  """
  k = probs.shape[0]
  out = np.zeros((k, NUM_COMPONENTS), np.uint16)
  for j in range(k):
    weights = np.full(NUM_COMPONENTS, 1.0 / NUM_COMPONENTS)
    if codes.shape[0] > 1:
      lik = _likelihoods(codes[..., j], probs[j])
      for _ in range(_EM_ITERS):
        joint = lik * weights
        weights = (joint / joint.sum(axis=1, keepdims=True)).mean(axis=0)
    q = np.floor(weights * _WEIGHT_SCALE + 0.5)
    q[0] = max(q[0], 1.0)
    out[j] = q.astype(np.uint16)
  return out


def _mixture(p: np.ndarray, weights: np.ndarray, ctx: np.ndarray) -> np.ndarray:
  """Probability rows [m, N] for m places with contexts ctx [m, 9] (weights as stored, uint16)."""
  w = weights.astype(np.float64) / float(weights.sum())
  m = ctx.shape[0]
  rows = np.empty((m, p.size))
  rows[:] = w[0] * p
  ar = np.arange(m)
  for j in range(ctx.shape[1]):
    rows[ar, ctx[:, j]] += w[1 + j]
  return rows


def _frame_blocks(ctx: np.ndarray, n: int) -> list[slice]:
  """Row blocks of one latent frame ([H, W, 9] contexts) whose matrices stay under _MAX_MATRIX."""
  h, w = ctx.shape[:2]
  rows = max(1, _MAX_MATRIX // max(1, n * w))
  return [slice(r * w, min(h, r + rows) * w) for r in range(0, h, rows)]


def encode(codes: np.ndarray, probs: np.ndarray) -> bytes:
  """Context-codes integer codes [T', H', W', K] (values in [0, N)) under probs [K, N]."""
  probs = entropy.check_probs(probs)
  codes = np.asarray(codes)
  k, n = probs.shape
  if codes.ndim != 4 or codes.shape[-1] != k:
    raise ValueError(f"context_coding.encode: codes must be [T', H', W', {k}] to match probs "
                     f"[{k}, {n}], got shape {codes.shape}")
  entropy.check_codes(codes, n, "context_coding.encode")
  codes = codes.astype(np.int32)
  weights = fit_weights(codes, probs)
  encoder = constriction.stream.queue.RangeEncoder()
  for j, model in enumerate(entropy.static_models(probs) if codes.size else []):
    encoder.encode(np.ascontiguousarray(codes[0, ..., j].reshape(-1)), model)
  family = constriction.stream.model.Categorical(perfect=False)
  for t in range(1, codes.shape[0]):
    for j in range(k):
      ctx = contexts(codes[t - 1, ..., j])
      cur = codes[t, ..., j].reshape(-1)
      flat_ctx = ctx.reshape(-1, ctx.shape[-1])
      for block in _frame_blocks(ctx, n):
        encoder.encode(np.ascontiguousarray(cur[block]), family,
                       _mixture(probs[j], weights[j], flat_ctx[block]))
  words = np.asarray(encoder.get_compressed(), dtype="<u4").tobytes()
  return weights.astype("<u2").tobytes() + words


def decode(data: bytes, probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
  """Inverse of `encode`: codes of `shape` [T', H', W', K] (uint16 when N <= 2**16, else uint32)."""
  probs = entropy.check_probs(probs)
  k, n = probs.shape
  shape = tuple(int(s) for s in shape)
  if len(shape) != 4 or shape[-1] != k:
    raise ValueError(f"context_coding.decode: shape must be [T', H', W', {k}] to match probs "
                     f"[{k}, {n}], got {shape}")
  head = 2 * k * NUM_COMPONENTS
  if len(data) < head or (len(data) - head) % 4:
    raise ValueError(f"context_coding.decode: {len(data)} bytes cannot hold {k}x{NUM_COMPONENTS} "
                     f"weights and a range-coder stream; the chunk is damaged")
  weights = np.frombuffer(data[:head], dtype="<u2").reshape(k, NUM_COMPONENTS)
  if np.any(weights[:, 0] == 0):
    raise ValueError("context_coding.decode: a static weight is 0; the chunk is damaged")
  out = np.empty(shape, np.uint16 if n <= (1 << 16) else np.uint32)
  if out.size == 0:
    return out
  words = np.frombuffer(data[head:], dtype="<u4").astype(np.uint32)
  decoder = constriction.stream.queue.RangeDecoder(words)
  t_len, h, w = shape[:3]
  for j, model in enumerate(entropy.static_models(probs)):
    out[0, ..., j] = decoder.decode(model, h * w).reshape(h, w)
  family = constriction.stream.model.Categorical(perfect=False)
  for t in range(1, t_len):
    for j in range(k):
      ctx = contexts(out[t - 1, ..., j].astype(np.int64))
      flat_ctx = ctx.reshape(-1, ctx.shape[-1])
      frame = np.empty(h * w, out.dtype)
      for block in _frame_blocks(ctx, n):
        frame[block] = decoder.decode(family, _mixture(probs[j], weights[j], flat_ctx[block]))
      out[t, ..., j] = frame.reshape(h, w)
  return out
