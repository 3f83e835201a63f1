"""Learned embeddings of integer codes: the alternative to the codec's frozen codebooks.

Downstream models read codes either through the codec's own codebook vectors (frozen; what the
decoder sees) or through embeddings learned with the task (paper §3.3 compares both). This module
is the learned variant: one table of `num_entries` x `features` per codebook, concatenated.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class CodeEmbed(nn.Module):
  """[..., K] integer codes -> [..., K * features] learned embeddings."""
  num_codebooks: int
  num_entries: int
  features: int

  @nn.compact
  def __call__(self, codes: jax.Array) -> jax.Array:
    if codes.shape[-1] != self.num_codebooks:
      raise ValueError(f"CodeEmbed: codes have {codes.shape[-1]} indices per position, expected "
                       f"{self.num_codebooks} (the codec's codebooks)")
    table = self.param("table", nn.initializers.normal(1.0),
                       (self.num_codebooks, self.num_entries, self.features))
    codes = codes.astype(jnp.int32)
    parts = [table[k][codes[..., k]] for k in range(self.num_codebooks)]
    return jnp.concatenate(parts, axis=-1)
