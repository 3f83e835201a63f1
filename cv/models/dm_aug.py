"""DeepMind's released augmentation network (their `NeuralTransformation`) in flax.linen.

It maps the quantised latents of a clip and a conditioning vector (for the released flip
network: one number per clip, 1 = flip) to the latents of the augmented clip, which their frozen
codec decodes (as their code defines it; docs/deepmind.md):

  cond [B, ...] -> flattened -> MLP `mlp_channels` + (C,) (ReLU between, linear output) ->
  broadcast to every (frame, cell) and concatenated *before* the latents on channels
  (d_model = 2C, tokens [B, T', L = H'W', 2C]) -> + learned absolute position embedding
  [T_max, L_max, 2C] (sliced to [:T', :L]) -> `num_layers` pre-LN blocks: time attention (every
  cell over T'), space attention (every frame over L), MLP (GELU) -> final LayerNorm -> the last
  C channels, reshaped to the input grid (optionally resized, nearest, to `output_video_shape`).

Attention: one linear per Q, K, V without bias to heads x key_size (value_size), softmax of
QK^T / sqrt(key_size), an output linear with bias. LayerNorms have eps 1e-5 (Haiku's), scale
and offset. The output is *not* re-quantised.

The position table is sized by the grid the network was trained on (their Haiku code accepts
exactly that grid). Here clips of fewer code frames use its first T' rows (the slice their code
takes), and other frame grids resample its spatial part linearly when the training grid was
square (L_max = S x S; an extension: outputs on other grids are not their network's).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _layer_norm(name: str, bias: bool) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-5, use_bias=bias, use_fast_variance=False, name=name)


class DMSpaceTimeAttention(nn.Module):
  """Multi-head attention over time (`mode='time'`: each cell attends over T') or space
  (`mode='space'`: each frame's cells attend to each other) of tokens [B, T, L, D]."""
  num_heads: int
  key_size: int
  value_size: int
  mode: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, l, d = x.shape
    heads = lambda size, name: nn.Dense(self.num_heads * size, use_bias=False, name=name)(
        x).reshape(b, t, l, self.num_heads, size)
    q, k, v = heads(self.key_size, "query"), heads(self.key_size, "key"), heads(self.value_size,
                                                                               "value")
    if self.mode == "time":
      weights = jax.nn.softmax(jnp.einsum("btlhd,bslhd->blhts", q, k) * self.key_size**-0.5)
      out = jnp.einsum("blhts,bslhd->btlhd", weights, v)
    elif self.mode == "space":
      weights = jax.nn.softmax(jnp.einsum("btlhd,btmhd->bthlm", q, k) * self.key_size**-0.5)
      out = jnp.einsum("bthlm,btmhd->btlhd", weights, v)
    else:
      raise ValueError(f"DMSpaceTimeAttention: mode={self.mode!r} must be 'time' or 'space'")
    return nn.Dense(d, name="out")(out.reshape(b, t, l, self.num_heads * self.value_size))


class DMAugNet(nn.Module):
  """Their `NeuralTransformation` + `SpatioTemporalTransformerXL` (dropout 0: inference only).

  Call signature matches `cv.models.aug_net.AugNet` so `cv.augment.latent.LatentAugmenter`
  applies it like a network trained here: (latents [B,T,H,W,C], cond [B,P]) -> latents.
  """
  latent_dim: int                         # C
  position_shape: tuple[int, int]         # (T_max, L_max) of the learned position table
  mlp_channels: Sequence[int] = (64, 64, 64)
  num_layers: int = 2
  num_heads: int = 1
  key_size: int = 128
  value_size: int = 128
  ffw_hidden_size: int = 128
  use_layer_norm_bias: bool = True
  output_video_shape: tuple[int, int] | None = None

  @nn.compact
  def __call__(self, latents: jax.Array, cond: jax.Array, out_hw: Any = None,
               cell_features: jax.Array | None = None) -> jax.Array:
    if cell_features is not None or out_hw is not None:
      raise ValueError("DMAugNet: DeepMind's network takes no per-cell features and no output "
                       "size (load it with geometric_prior=False, source_phase=False)")
    c = self.latent_dim
    if latents.ndim != 5 or latents.shape[-1] != c:
      raise ValueError(f"DMAugNet: expected latents [B,T,H,W,{c}], got {tuple(latents.shape)}")
    b, t, h, w, _ = latents.shape
    t_max, l_max = self.position_shape
    side = int(round(l_max**0.5))
    if t > t_max or (h * w != l_max and side * side != l_max):
      raise ValueError(f"DMAugNet: a latent grid of {t} frames x {h}x{w} cells does not fit the "
                       f"learned position table ({t_max} frames x {l_max} cells); use clips of at "
                       f"most {t_max} code frames and {l_max} cells per frame")
    dtype = latents.dtype
    e = cond.reshape(b, -1).astype(jnp.float32)
    sizes = tuple(self.mlp_channels) + (c,)
    for i, size in enumerate(sizes):
      e = nn.Dense(size, name=f"mlp_{i}")(e)
      if i < len(sizes) - 1:
        e = nn.relu(e)
    video = latents.astype(jnp.float32).reshape(b, t, h * w, c)
    x = jnp.concatenate([jnp.broadcast_to(e[:, None, None, :], video.shape), video], axis=-1)
    d = 2 * c
    pos = self.param("position_embedding", nn.initializers.truncated_normal(0.02),
                     (t_max, l_max, d), jnp.float32)[:t]
    if h * w != l_max:  # another grid than the training one: resample the square table
      pos = jax.image.resize(pos.reshape(t, side, side, d), (t, h, w, d), method="linear")
    x = x + pos.reshape(t, h * w, d)
    bias = self.use_layer_norm_bias
    for i in range(self.num_layers):
      attn = lambda mode, name: DMSpaceTimeAttention(self.num_heads, self.key_size,
                                                     self.value_size, mode, name=name)
      x = x + attn("time", f"h{i}_time_attn")(_layer_norm(f"h{i}_ln_time", bias)(x))
      x = x + attn("space", f"h{i}_space_attn")(_layer_norm(f"h{i}_ln_space", bias)(x))
      y = _layer_norm(f"h{i}_ln_2", bias)(x)
      y = nn.Dense(self.ffw_hidden_size, name=f"h{i}_mlp_in")(y)
      x = x + nn.Dense(d, name=f"h{i}_mlp_out")(nn.gelu(y))
    x = _layer_norm("ln_f", bias)(x)
    out = x[..., -c:].reshape(b, t, h, w, c)
    if self.output_video_shape is not None:
      oh, ow = self.output_video_shape
      out = jax.image.resize(out, (b, t, int(oh), int(ow), c), method="nearest")
    return out.astype(dtype)
