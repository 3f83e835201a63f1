"""Compression-rate arithmetic (paper §3.2 / App. E.2; docs/design.md, Models).

Nominal CR = bits of the uint8 RGB clip / bits of its code tensor at ceil(log2 N) bits per index
= 24·(T/T')·(H/H')·(W/W') / (K·log2 N). Computed from the *real* code tensor shape.
"""
from __future__ import annotations

import math
from typing import Sequence


def bits_per_index(num_entries: int) -> int:
  """Bits to store one index into a codebook of N entries: ceil(log2 N), at least 1 (exact)."""
  if int(num_entries) < 1:
    raise ValueError(f"bits_per_index: num_entries must be >= 1, got {num_entries}")
  return max(1, (int(num_entries) - 1).bit_length())


def code_bits(code_shape: Sequence[int], num_entries: int) -> int:
  """Bits to store one code tensor [T', H', W', K] bit-packed."""
  return math.prod(code_shape) * bits_per_index(num_entries)


def compression_rate(video_shape: Sequence[int], code_shape: Sequence[int], num_entries: int) -> float:
  """video_shape [T, H, W, C] of uint8 pixels vs code_shape [T', H', W', K] of N-entry indices."""
  return math.prod(video_shape) * 8 / code_bits(code_shape, num_entries)
