"""The neural codec: a VQ-VAE with 3-D convolutions over video clips (paper §3.2;
docs/design.md, Models).

Encoder: the clip is cut into spatio-temporal patches (paper App. E.1.2: "we create
spatio-temporal patches of the videos"; `temporal_patch` x `patch` x `patch`), then stride-2
(1,4,4) convolutions through `channels`, (2+1)-D residual blocks (3x3 in space, 3 taps in time:
temporal mixing) and a 1x1x1 projection to K*D latent channels. Total downsampling:
`patch * 2**(len(channels) - 1)` in space and `temporal_patch` in time. The decoder mirrors it
with sub-pixel upsampling and more residual blocks (the paper found decoder capacity matters
more). All convolutions pad by
*reflection*, so the model works for any clip length and for frame sizes divisible by 2^n.

Inputs and reconstructions are float videos in [0, 1], shape [B, T, H, W, 3].
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cv.models.quantizers import FSQ, ResidualVQ, VectorQuantizerEMA


def _reflect_pad(x: jax.Array, kernel: Sequence[int], strides: Sequence[int]) -> jax.Array:
  """Pads the T, H, W axes of [B,T,H,W,C] by k - s (split before/after), by reflection."""
  pads = [(0, 0)]
  for k, s in zip(kernel, strides):
    total = max(k - s, 0)
    pads.append((total // 2, total - total // 2))
  pads.append((0, 0))
  if all(p == (0, 0) for p in pads):
    return x
  # Reflection needs the pad to be smaller than the axis; fall back to edge padding otherwise.
  small = any(p[0] >= n or p[1] >= n for p, n in zip(pads[1:4], x.shape[1:4]))
  return jnp.pad(x, pads, mode="edge" if small else "reflect")


class ReflectConv(nn.Module):
  """3-D convolution over [B,T,H,W,C] with reflection padding of k - s per axis, so a stride-s
  convolution divides sizes by s exactly and any clip length works.

  Kernels that are 1 in time run as 2-D convolutions over frames, and kernels that are 1 in
  space as 1-D convolutions over time: XLA's CPU backend runs these several times faster than the
  equivalent 3-D convolution (measured: 6x for a (1,4,4) kernel).
  """
  features: int
  kernel: Sequence[int]
  strides: Sequence[int] = (1, 1, 1)
  use_bias: bool = True
  dtype: Any = jnp.float32  # computation dtype (parameters stay float32)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kt, kh, kw = self.kernel
    st, sh, sw = self.strides
    x = _reflect_pad(x, self.kernel, self.strides)
    b, t, h, w, c = x.shape
    conv = lambda k, s: nn.Conv(self.features, k, s, padding="VALID", use_bias=self.use_bias,
                                dtype=self.dtype)
    if kt == 1 and st == 1:
      y = conv((kh, kw), (sh, sw))(x.reshape(b * t, h, w, c))
      return y.reshape(b, t, *y.shape[1:])
    if kh == kw == 1 and sh == sw == 1:
      y = conv((kt,), (st,))(x.transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, c))
      return y.reshape(b, h, w, y.shape[1], self.features).transpose(0, 3, 1, 2, 4)
    return conv(tuple(self.kernel), tuple(self.strides))(x)


class Upsample(nn.Module):
  """x2 upsampling in space (and optionally time) by sub-pixel convolution: a convolution to
  `features * factor` channels followed by depth-to-space. Equivalent in capacity to a strided
  transposed convolution, without its checkerboard artefacts, and much faster on CPU."""
  features: int
  temporal: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ft = 2 if self.temporal else 1
    y = ReflectConv(self.features * 4 * ft, (3 if self.temporal else 1, 3, 3),
                    dtype=self.dtype)(x)
    b, t, h, w, _ = y.shape
    y = y.reshape(b, t, h, w, ft, 2, 2, self.features)
    y = y.transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return y.reshape(b, t * ft, h * 2, w * 2, self.features)


class ResBlock(nn.Module):
  """Pre-activation (2+1)-D residual block: relu -> 3x3 spatial conv to mult*C -> relu ->
  3-tap temporal conv back to C; the temporal conv mixes neighbouring frames."""
  mult: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    h = ReflectConv(c * self.mult, (1, 3, 3), dtype=self.dtype)(nn.relu(x))
    h = ReflectConv(c, (3, 1, 1), dtype=self.dtype)(nn.relu(h))
    return x + h


def space_to_depth(x: jax.Array, pt: int, ps: int) -> jax.Array:
  """[B,T,H,W,C] -> [B,T/pt,H/ps,W/ps,pt*ps*ps*C]: non-overlapping spatio-temporal patches."""
  b, t, h, w, c = x.shape
  if t % pt or h % ps or w % ps:
    raise ValueError(f"clip of {t}x{h}x{w} frames is not divisible into {pt}x{ps}x{ps} patches; "
                     f"use crop sizes divisible by the codec's total downsampling")
  x = x.reshape(b, t // pt, pt, h // ps, ps, w // ps, ps, c)
  return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // pt, h // ps, w // ps, pt * ps * ps * c)


def depth_to_space(x: jax.Array, pt: int, ps: int) -> jax.Array:
  """Inverse of `space_to_depth`."""
  b, t, h, w, c = x.shape
  c_out = c // (pt * ps * ps)
  x = x.reshape(b, t, h, w, pt, ps, ps, c_out).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, t * pt, h * ps, w * ps, c_out)


class Encoder(nn.Module):
  """Patchify (`temporal_patch` x `patch` x `patch`) -> conv -> stride-2 (1,4,4) convs through
  `channels` -> residual blocks -> 1x1x1 projection to `latent_dim` channels.

  Working on patches keeps every activation at 1/patch of the frame size: full-resolution
  feature maps dominate memory traffic and made the step ~20x slower on CPU.
  """
  channels: Sequence[int]
  latent_dim: int
  patch: int = 4
  temporal_patch: int = 1
  num_res_blocks: int = 2
  res_mult: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = self.dtype
    x = space_to_depth(x.astype(d), self.temporal_patch, self.patch)
    x = ReflectConv(self.channels[0], (1, 3, 3), dtype=d)(x)
    for c in self.channels[1:]:
      x = ReflectConv(c, (1, 4, 4), (1, 2, 2), dtype=d)(nn.relu(x))
    for _ in range(self.num_res_blocks):
      x = ResBlock(self.res_mult, dtype=d)(x)
    return ReflectConv(self.latent_dim, (1, 1, 1), dtype=d)(nn.relu(x))


class Decoder(nn.Module):
  """Mirror of `Encoder`: conv -> residual blocks -> x2 sub-pixel upsampling through the
  channels in reverse -> conv to patch pixels -> depth-to-space."""
  channels: Sequence[int]
  patch: int = 4
  temporal_patch: int = 1
  num_res_blocks: int = 3
  res_mult: int = 2
  out_channels: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    d = self.dtype
    x = ReflectConv(self.channels[-1], (1, 3, 3), dtype=d)(z.astype(d))
    for _ in range(self.num_res_blocks):
      x = ResBlock(self.res_mult, dtype=d)(x)
    for c in reversed(self.channels[:-1]):
      x = Upsample(c, dtype=d)(nn.relu(x))
    x = ReflectConv(self.out_channels * self.temporal_patch * self.patch**2, (1, 3, 3),
                    dtype=d)(nn.relu(x))
    return depth_to_space(x, self.temporal_patch, self.patch).astype(jnp.float32)


class VQVAE(nn.Module):
  """Encoder -> quantiser (EMA VQ: K codebooks x N entries of D dims; or FSQ) -> decoder."""
  channels: Sequence[int] = (64, 128)
  patch: int = 4
  temporal_patch: int = 1
  num_codebooks: int = 1
  num_entries: int = 256
  code_dim: int = 64
  enc_res_blocks: int = 2
  dec_res_blocks: int = 3
  res_mult: int = 2
  vq_decay: float = 0.99
  commitment_cost: float = 0.25
  restart_threshold: float = 0.03
  quantizer_type: str = "vq"  # "vq" (EMA codebooks), "fsq" (codebook-free), "rvq" (residual)
  fsq_levels: Sequence[int] = (8, 8, 4)
  rvq_levels: int = 1  # residual levels of "rvq": the first l levels are a rate-l code
  # Computation dtype of the encoder and decoder (bfloat16 = mixed precision: parameters, the
  # quantiser's distances and codebooks, and the reconstruction stay float32).
  dtype: Any = jnp.float32

  def setup(self):
    if self.quantizer_type == "fsq":
      levels = tuple(int(l) for l in self.fsq_levels)
      if math.prod(levels) != self.num_entries or len(levels) != self.code_dim:
        raise ValueError(f"FSQ levels {levels} give {math.prod(levels)} entries of "
                         f"{len(levels)} dims, but the model has num_entries={self.num_entries}, "
                         f"code_dim={self.code_dim}; make them agree")
      self.quantizer = FSQ(self.num_codebooks, levels)
    elif self.quantizer_type == "rvq":
      self.quantizer = ResidualVQ(self.rvq_levels, self.num_codebooks, self.num_entries,
                                  self.vq_decay, self.commitment_cost,
                                  restart_threshold=self.restart_threshold)
    elif self.quantizer_type == "vq":
      self.quantizer = VectorQuantizerEMA(self.num_codebooks, self.num_entries, self.vq_decay,
                                          self.commitment_cost,
                                          restart_threshold=self.restart_threshold)
    else:
      raise ValueError(f"quantizer_type={self.quantizer_type!r}: use 'vq', 'fsq' or 'rvq'")
    self.encoder = Encoder(self.channels, self.num_codebooks * self.code_dim, self.patch,
                           self.temporal_patch, self.enc_res_blocks, self.res_mult,
                           dtype=self.dtype)
    self.decoder = Decoder(self.channels, self.patch, self.temporal_patch, self.dec_res_blocks,
                           self.res_mult, dtype=self.dtype)

  @property
  def codes_per_position(self) -> int:
    """Indices stored per code position: K, or L*K for residual quantisation."""
    return self.num_codebooks * (self.rvq_levels if self.quantizer_type == "rvq" else 1)

  def encode(self, video: jax.Array, *, train: bool = False,
             active_levels: jax.Array | int | None = None) -> dict[str, Any]:
    """[B,T,H,W,3] in [0,1] -> quantiser outputs (codes [B,T',H',W',K], quantized, loss, ...).

    For "rvq", `active_levels` limits the quantized output to the first levels (codes always
    hold all levels; keep the first l*K for a rate-l code)."""
    z = self.encoder(video * 2.0 - 1.0)
    if self.quantizer_type == "rvq":
      return self.quantizer(z, train=train, active_levels=active_levels)
    return self.quantizer(z, train=train)

  def decode(self, latents: jax.Array) -> jax.Array:
    """Continuous latents [B,T',H',W',K*D] -> video in [0,1] (not clipped)."""
    return self.decoder(latents) * 0.5 + 0.5

  def decode_codes(self, codes: jax.Array) -> jax.Array:
    return self.decode(self.quantizer.codes_to_latents(codes))

  def __call__(self, video: jax.Array, *, train: bool = False,
               active_levels: jax.Array | int | None = None) -> tuple[jax.Array, dict[str, Any]]:
    vq = self.encode(video, train=train, active_levels=active_levels)
    return self.decode(vq["quantized"]), vq
