"""Lossless entropy coding of code indices with static per-codebook probability tables.

VQ code indices are far from uniform (a few codebook entries are used much more than others), so
a range coder driven by the code frequencies measured on a dataset stores them below the fixed
`bits_for(N)` bits per index of `bitpack`. The tables are static (stored with the codec), so each
symbol costs one table lookup and decoding needs nothing but the table.

Stream layout (part of the file format): the codes [..., K] are viewed as [M, K]; codebook 0's M
symbols are encoded first (in C order), then codebook 1's, ..., all i.i.d. under
`Categorical(probs[k], perfect=False)` into one `constriction.stream.queue.RangeEncoder` stream,
stored as its little-endian uint32 words. `perfect=False` is set explicitly: it is constriction's
fast quantisation of the table and the default changed across versions, so encoder and decoder
must pin it to agree bit for bit.
"""
from __future__ import annotations

from typing import Sequence

import constriction
import numpy as np


def frequencies_to_probs(counts: np.ndarray) -> np.ndarray:
  """Per-codebook probabilities from code counts, with add-one (Laplace) smoothing.

  Smoothing gives every symbol a nonzero probability, so codes never seen while measuring the
  frequencies stay encodable (at about log2(total + N) bits each).

  Args:
    counts: [K, N] non-negative counts of index n in codebook k.

  Returns:
    float64 [K, N], each row summing to 1.
  """
  counts = np.asarray(counts)
  if counts.ndim != 2 or counts.shape[1] < 1:
    raise ValueError(f"frequencies_to_probs: counts must be [K, N], got shape {counts.shape}")
  if not np.all(np.isfinite(counts)) or np.any(counts < 0):
    raise ValueError("frequencies_to_probs: counts must be finite and non-negative")
  smoothed = counts.astype(np.float64) + 1.0
  return smoothed / smoothed.sum(axis=1, keepdims=True)


def check_probs(probs: np.ndarray) -> np.ndarray:
  """probs as float64 [K, N], or a ValueError saying how they are malformed."""
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[1] < 1:
    raise ValueError(f"entropy: probs must be [K, N], got shape {probs.shape}")
  if not np.all(np.isfinite(probs)) or np.any(probs < 0) or np.any(probs.sum(axis=1) <= 0):
    raise ValueError("entropy: probs must be finite, non-negative and have a positive sum per row; "
                     "build them with frequencies_to_probs(counts)")
  return probs


def check_codes(codes: np.ndarray, n: int, what: str) -> None:
  """Raises a ValueError (prefixed `what`) unless `codes` are integers in [0, n)."""
  if not np.issubdtype(codes.dtype, np.integer):
    raise ValueError(f"{what}: codes must be integers, got dtype {codes.dtype}")
  if codes.size == 0:
    return
  lo, hi = codes.min(), codes.max()
  if lo < 0 or hi >= n:
    bad = int(lo) if lo < 0 else int(hi)
    raise ValueError(f"{what}: code {bad} is outside the table's alphabet 0..{n - 1}; "
                     "the probability table does not belong to these codes")


def static_models(probs: np.ndarray) -> list:
  """One fixed constriction model per codebook row of probs [K, N] (`perfect=False`, see above)."""
  return [constriction.stream.model.Categorical(np.ascontiguousarray(p), perfect=False)
          for p in probs]


def encode(codes: np.ndarray, probs: np.ndarray) -> bytes:
  """Entropy-codes integer codes [..., K]; codebook k's indices use probs[k] (see module doc).

  Args:
    codes: integer array [..., K] with values in [0, N).
    probs: [K, N] probabilities (e.g. from `frequencies_to_probs`); need not be normalised.

  Returns:
    The range-coder stream; a multiple of 4 bytes (empty for no codes).
  """
  probs = check_probs(probs)
  codes = np.asarray(codes)
  k, n = probs.shape
  if codes.ndim < 1 or codes.shape[-1] != k:
    raise ValueError(f"entropy.encode: codes must be [..., {k}] to match probs [{k}, {n}], "
                     f"got shape {codes.shape}")
  check_codes(codes, n, "entropy.encode")
  flat = codes.reshape(-1, k)
  if flat.size == 0:
    return b""
  encoder = constriction.stream.queue.RangeEncoder()
  for j, model in enumerate(static_models(probs)):
    encoder.encode(np.ascontiguousarray(flat[:, j], dtype=np.int32), model)
  return np.asarray(encoder.get_compressed(), dtype="<u4").tobytes()


def decode(data: bytes, probs: np.ndarray, shape: Sequence[int]) -> np.ndarray:
  """Inverse of `encode`: the codes of `shape` (last axis K) from `data`.

  Args:
    data: bytes from `encode`.
    probs: the same [K, N] table used to encode.
    shape: the codes' shape, [..., K].

  Returns:
    uint16 array of `shape` when N <= 2**16, else uint32 (the same dtypes as `bitpack.unpack`).
  """
  probs = check_probs(probs)
  k, n = probs.shape
  shape = tuple(int(s) for s in shape)
  if not shape or shape[-1] != k:
    raise ValueError(f"entropy.decode: shape must be [..., {k}] to match probs [{k}, {n}], "
                     f"got {shape}")
  out_dtype = np.uint16 if n <= (1 << 16) else np.uint32
  m = int(np.prod(shape[:-1], dtype=np.int64))
  if m * k == 0:
    return np.zeros(shape, out_dtype)
  if len(data) % 4:
    raise ValueError(f"entropy.decode: data length {len(data)} is not a multiple of 4; "
                     "the stream is damaged or not from entropy.encode")
  decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
  out = np.empty((m, k), out_dtype)
  for j, model in enumerate(static_models(probs)):
    out[:, j] = decoder.decode(model, m)
  return out.reshape(shape)
