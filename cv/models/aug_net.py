"""The augmentation network: applies an augmentation directly to codec latents (paper §3.4,
App. B.4).

Given the latents z of a video x and an augmentation's parameter vector p (see
`cv.augment.ops`), it predicts the latents of the augmented video T(x, p), so augmentations can
be applied to stored compressed videos without decoding them. Architecture:

  p [B,P] -> MLP (3 hidden layers) -> broadcast over (T, H, W), concatenated to the latents
  (and optional per-cell features, e.g. sub-cell phases) on channels -> Dense to `width` ->
  + positional embedding -> `num_layers` blocks of divided space-time attention -> LayerNorm ->
  Dense to the latent channels (zero-initialised) -> + z.

Latents are float [B, T, H, W, C] (the codec's grid, 8x smaller than the frames in space).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def fourier_features(t: int, h: int, w: int, num_freqs: int) -> np.ndarray:
  """Sinusoidal features [t, h, w, 6 * num_freqs] (float32) of normalised cell-centre coordinates.

  Coordinates are (i + 0.5) / N in [0, 1] per axis (t/T, y/H, x/W); each is expanded to
  sin / cos(pi * 2^k * c) for k = 0 .. num_freqs - 1, laid out as [time | y | x] blocks of
  2 * num_freqs (sines then cosines). The k = 0 pair is monotonic over [0, 1], so absolute
  position (e.g. left vs right, needed for a flip) is unambiguous; higher k give the fine
  resolution a linear projection of raw coordinates could not. Computed with numpy: the grid
  size is static, so the features are compile-time constants.
  """
  def axis(n: int) -> np.ndarray:
    c = (np.arange(n, dtype=np.float64) + 0.5) / n
    angles = c[:, None] * (np.pi * 2.0 ** np.arange(num_freqs))[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)  # [n, 2F]

  ft, fy, fx = axis(t), axis(h), axis(w)
  f = 2 * num_freqs
  return np.concatenate([
      np.broadcast_to(ft[:, None, None, :], (t, h, w, f)),
      np.broadcast_to(fy[None, :, None, :], (t, h, w, f)),
      np.broadcast_to(fx[None, None, :, :], (t, h, w, f)),
  ], axis=-1).astype(np.float32)


class DividedSpaceTimeBlock(nn.Module):
  """One TimeSformer-style block on [B, T, H, W, D]: temporal attention (each spatial position
  attends over T), then spatial attention (each frame attends over its H*W cells), then an MLP;
  each sub-layer is pre-LayerNorm with a residual connection. Dividing the attention costs
  O(T^2 + (HW)^2) per cell instead of O((THW)^2) for joint attention."""
  num_heads: int
  mlp_ratio: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, h, w, d = x.shape
    # Temporal attention: sequences over T, one per (batch, y, x).
    y = nn.LayerNorm(name="ln_time")(x)
    y = y.transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, d)
    y = nn.MultiHeadDotProductAttention(self.num_heads, qkv_features=d, name="attn_time")(y)
    x = x + y.reshape(b, h, w, t, d).transpose(0, 3, 1, 2, 4)
    # Spatial attention: sequences over H*W, one per (batch, t).
    y = nn.LayerNorm(name="ln_space")(x).reshape(b * t, h * w, d)
    y = nn.MultiHeadDotProductAttention(self.num_heads, qkv_features=d, name="attn_space")(y)
    x = x + y.reshape(b, t, h, w, d)
    # MLP.
    y = nn.LayerNorm(name="ln_mlp")(x)
    y = nn.Dense(d * self.mlp_ratio, name="mlp_in")(y)
    y = nn.Dense(d, name="mlp_out")(nn.gelu(y))
    return x + y


class AugNet(nn.Module):
  """conditioning vector -> MLP (3 hidden layers) -> broadcast over time and space and
  concatenated to the latents on channels -> linear to `width` -> 2-layer transformer with
  divided space-time attention -> linear to latent channels (+ the input latents as a
  residual, so the identity is easy to learn).

  Positional embeddings: fixed sinusoidal features of the *normalised* cell-centre coordinates
  (t/T, y/H, x/W in [0, 1]) projected by a Dense and added after the input projection. A learned
  table would tie the net to the one grid size it was trained on; normalised coordinates give a
  cell the same embedding at any resolution (a 6x10 or 8x8 grid, 2 or 4 latent frames), so one
  set of parameters serves every clip length, frame size and `out_hw`, and geometric
  augmentations (crop, flip, rotation), which are defined in frame-relative coordinates, are
  expressed in the same units as the positions.

  `out_hw`: when given and different from the input grid, the latents are first resampled to
  `out_hw` (`jax.image.resize`, linear) and the network (and the residual) work on the
  resampled latents, e.g. to emit a crop at another resolution.

  Identity at initialisation: the final projection to latent channels is initialised to zeros
  (kernel and bias), so the untrained network returns its (resampled) input latents exactly;
  training then only has to learn the change an augmentation makes.
  """
  latent_dim: int           # C of the latents in and out
  width: int = 128          # transformer width
  mlp_hidden: int = 128
  num_layers: int = 2
  num_heads: int = 4
  mlp_ratio: int = 2
  # Sinusoidal frequencies per coordinate axis: 0.5, 1, 2, 4 cycles over the clip / frame.
  # Frequencies above a grid's Nyquist limit (N/2 cycles for N cells) alias, and aliased
  # features differ between grid sizes, so a few octaves suit latent grids of ~8-32 cells.
  num_freqs: int = 4

  @nn.compact
  def __call__(self, latents: jax.Array, cond: jax.Array,
               out_hw: tuple[int, int] | None = None,
               cell_features: jax.Array | None = None) -> jax.Array:
    """latents [B,T,H,W,C], cond [B,P] -> predicted augmented latents [B,T,H_out,W_out,C].

    `cell_features` [B, T or 1, H_out, W_out, F]: optional per-cell inputs concatenated to the
    latents (e.g. `cv.augment.ops.source_phase`); a size-1 time axis broadcasts over T.
    """
    if latents.ndim != 5 or latents.shape[-1] != self.latent_dim:
      raise ValueError(f"AugNet: expected latents [B,T,H,W,{self.latent_dim}], got "
                       f"{tuple(latents.shape)}")
    b, t, h, w, c = latents.shape
    if cond.ndim != 2 or cond.shape[0] != b:
      raise ValueError(f"AugNet: expected cond [{b}, P], got {tuple(cond.shape)}")
    if out_hw is not None and tuple(out_hw) != (h, w):
      h, w = int(out_hw[0]), int(out_hw[1])
      latents = jax.image.resize(latents, (b, t, h, w, c), method="linear")
    dtype = latents.dtype
    latents = latents.astype(jnp.float32)

    # Conditioning MLP: 3 hidden layers, then a linear output embedding.
    e = cond.astype(jnp.float32)
    for i in range(3):
      e = nn.gelu(nn.Dense(self.mlp_hidden, name=f"cond_hidden{i}")(e))
    e = nn.Dense(self.mlp_hidden, name="cond_out")(e)
    e = jnp.broadcast_to(e[:, None, None, None, :], (b, t, h, w, self.mlp_hidden))

    inputs = [latents, e]
    if cell_features is not None:
      if (cell_features.ndim != 5 or cell_features.shape[0] != b
          or cell_features.shape[1] not in (1, t) or cell_features.shape[2:4] != (h, w)):
        raise ValueError(f"AugNet: expected cell_features [{b}, {t} or 1, {h}, {w}, F], got "
                         f"{tuple(cell_features.shape)}")
      inputs.append(jnp.broadcast_to(cell_features.astype(jnp.float32),
                                     (b, t, h, w, cell_features.shape[-1])))
    x = nn.Dense(self.width, name="in_proj")(jnp.concatenate(inputs, axis=-1))
    pos = nn.Dense(self.width, name="pos_proj")(fourier_features(t, h, w, self.num_freqs))
    x = x + pos[None]
    for i in range(self.num_layers):
      x = DividedSpaceTimeBlock(self.num_heads, self.mlp_ratio, name=f"block{i}")(x)
    x = nn.LayerNorm(name="ln_out")(x)
    delta = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros,
                     bias_init=nn.initializers.zeros, name="out_proj")(x)
    return (latents + delta).astype(dtype)
