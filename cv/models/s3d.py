"""S3D-G video classifier (Xie et al. 2018, "Rethinking Spatiotemporal Feature Learning"), for
RGB clips and for the latent codes of a neural codec.

Architecture (channel counts of S3D-G at `width=1.0`; every count is multiplied by `width` and
rounded to a multiple of 8, minimum 8, see `channels`):

  Conv1      separable 7x7x7 (1x7x7 stride (1,2,2), then 7x1x1 stride (2,1,1)), 64
  MaxPool2a  1x3x3 stride (1,2,2)
  Conv2b     1x1x1, 64
  Conv2c     separable 3x3x3, 192 (+ feature gating)
  MaxPool3a  1x3x3 stride (1,2,2)
  Mixed_3b, Mixed_3c
  MaxPool4a  3x3x3 stride (2,2,2)
  Mixed_4b .. Mixed_4f
  MaxPool5a  2x2x2 stride (2,2,2)
  Mixed_5b, Mixed_5c
  global average pool over T,H,W -> dropout -> linear to `num_classes`

A Mixed block concatenates four branches: (0) 1x1x1; (1) 1x1x1 then separable 3x3x3; (2) the
same with other widths; (3) 3x3x3 max pool (stride 1) then 1x1x1. Every convolution is
conv (no bias) + BatchNorm + ReLU; a separable kxkxk convolution is 1xkxk then kx1x1, each with
its own BN + ReLU. S3D-G's *feature gating* (`gating=True`) multiplies every Mixed branch output
(and Conv2c) channel-wise by sigmoid(Dense(mean over T,H,W)) - a cheap self-attention over
channels that the paper found to help accuracy at small parameter cost.

**Codes mode** (Compressed Vision, Wiles et al. 2022, §3.3: the *same* network is trained on
codes instead of pixels, with strides adapted to the code grid). The RGB stem downsamples by 2 in
time (Conv1) and by 8 in space (Conv1, MaxPool2a and MaxPool3a, x2 each) before Mixed_3b. Codes
have already been downsampled by `input_factors = (tf, sf)` (the codec's temporal and spatial
factors), so the stem applies only what is left: temporal stride max(2 // tf, 1) and total spatial
stride max(8 // sf, 1), handed out as factors of 2 to Conv1, MaxPool2a and MaxPool3a in that order
(see `stem_strides`). Then the grid entering Mixed_3b, and so every later shape, is the same as for
the RGB clip the codes came from: RGB 8x64x64 and (tf=1, sf=8) codes on an 8x8x8 grid both reach
Mixed_3b at [4, 8, 8]. The first convolution simply takes the code embedding's C channels as input.
If tf > 2 or sf > 8 the codes are coarser than the RGB stem's output and the internal grid is
just smaller by the excess factor (all pools and convolutions pad SAME, so tiny grids work).
Conv1's spatial kernel keeps its *pixel* footprint (`codes_kernel`): 7 pixels are less than one
cell of an 8x-downsampled grid, so on CR-192 codes Conv1 is a per-cell projection followed by its
7-tap temporal convolution. (A 7x7 kernel over 64-channel code embeddings would cost more than the
whole RGB stem and look 56 pixels wide.) Every other kernel is unchanged.

CPU speed: XLA's CPU backend runs 3-D convolutions very slowly, so convolutions whose kernel is 1
in time run as 2-D convolutions over frames, those whose kernel is 1 in space as 1-D convolutions
over time, and 1x1x1 convolutions as `nn.Dense`; S3D is fully separable, so no 3-D convolution is
ever built. Max pools likewise run as a 2-D pool over time then a 2-D pool over frames (exactly
equal to the joint SAME pool: max is separable and SAME padding is per axis).

Intermediate feature maps are sown into the 'intermediates' collection under 'stem' (the input of
Mixed_3b), 'mixed_3b', 'mixed_4f', 'mixed_5c' and 'pooled' (the features the classifier sees);
retrieve them with `model.apply(..., mutable=['intermediates'])`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3  # as the TF-Slim S3D-G

# Mixed block widths at width 1.0: (branch0, (branch1 reduce, out), (branch2 reduce, out), branch3).
MIXED: dict[str, tuple[int, tuple[int, int], tuple[int, int], int]] = {
    "Mixed_3b": (64, (96, 128), (16, 32), 32),
    "Mixed_3c": (128, (128, 192), (32, 96), 64),
    "Mixed_4b": (192, (96, 208), (16, 48), 64),
    "Mixed_4c": (160, (112, 224), (24, 64), 64),
    "Mixed_4d": (128, (128, 256), (24, 64), 64),
    "Mixed_4e": (112, (144, 288), (32, 64), 64),
    "Mixed_4f": (256, (160, 320), (32, 128), 128),
    "Mixed_5b": (256, (160, 320), (32, 128), 128),
    "Mixed_5c": (384, (192, 384), (48, 128), 128),
}


def check_mixed_blocks(blocks: Sequence[str]) -> tuple[str, ...]:
  """`blocks` as a tuple if it is a non-empty subset of MIXED's names, else a ValueError."""
  blocks = tuple(blocks)
  if not blocks or set(blocks) - set(MIXED):
    raise ValueError(f"mixed_blocks={blocks!r}: use a non-empty subset of {tuple(MIXED)}")
  return blocks


def channels(c: int, width: float) -> int:
  """`c * width` rounded (half up) to a multiple of 8, at least 8 (keeps tiny test models valid)."""
  return max(8, int(c * width / 8 + 0.5) * 8)


def stem_strides(input_factors: Sequence[int] = (1, 1)) -> dict[str, tuple[int, int, int]]:
  """(T, H, W) strides of the stem layers for an input downsampled by `input_factors`.

  `input_factors = (tf, sf)` is the (temporal, spatial) downsampling of the input relative to RGB
  frames: (1, 1) for RGB, the codec's (temporal_factor, spatial_factor) for codes. The RGB stem
  strides by 2 in time and 8 in space before Mixed_3b; only the remainder is applied here:
  temporal stride max(2 // tf, 1) on Conv1, and the spatial remainder max(8 // sf, 1) split into
  factors of 2 over Conv1, MaxPool2a and MaxPool3a, in that order.

  Returns {'conv1': (t, s, s), 'pool2a': (1, s, s), 'pool3a': (1, s, s),
  'total': (t, s, s)} where 'total' is the stem's overall stride.

  >>> stem_strides((1, 1))['conv1'], stem_strides((1, 4))['pool2a'], stem_strides((2, 8))['total']
  ((2, 2, 2), (1, 1, 1), (1, 1, 1))
  """
  if len(input_factors) != 2:
    raise ValueError(f"input_factors must be (temporal, spatial), got {input_factors!r}")
  tf, sf = (int(f) for f in input_factors)
  if tf < 1 or sf < 1:
    raise ValueError(f"input_factors must be positive, got {input_factors!r}")
  t = max(2 // tf, 1)
  remaining = max(8 // sf, 1)
  spatial = []
  for _ in range(3):
    s = 2 if remaining >= 2 else 1
    spatial.append(s)
    remaining //= s
  s1, s2, s3 = spatial
  return {"conv1": (t, s1, s1), "pool2a": (1, s2, s2), "pool3a": (1, s3, s3),
          "total": (t, s1 * s2 * s3, s1 * s2 * s3)}


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int]) -> jax.Array:
  """SAME max pool over the T, H, W axes of [B,T,H,W,C]; exactly equal to
  `flax.linen.max_pool(x, window, strides, padding="SAME")`.

  Max is separable (and SAME padding is per axis), so the pool runs over time as a 2-D pool with
  window (k, 1) on [B, T, H*W, C], then over space as a 2-D pool on frames [B*T, H, W, C]. On XLA's
  CPU backend this runs ~1.5x faster, forward and backward, than the joint 5-D pool.
  """
  (wt, wh, ww), (st, sh, sw) = window, strides
  if wt > 1 or st > 1:
    b, t, h, w, c = x.shape
    x = nn.max_pool(x.reshape(b, t, h * w, c), (wt, 1), (st, 1), padding="SAME")
    x = x.reshape(b, -1, h, w, c)
  if wh > 1 or ww > 1 or sh > 1 or sw > 1:
    b, t, h, w, c = x.shape
    y = nn.max_pool(x.reshape(b * t, h, w, c), (wh, ww), (sh, sw), padding="SAME")
    x = y.reshape(b, t, *y.shape[1:])
  return x


def codes_kernel(kernel: int, spatial_factor: int) -> int:
  """Spatial size, in code cells, of Conv1's `kernel`-pixel kernel on a grid whose cells already
  summarise `spatial_factor` pixels each: the smallest odd size covering kernel / factor cells.

  RGB 7 px -> 7; sf=2 -> 5; sf=4 -> 3; sf>=8 -> 1 (a cell already sees more than 7x7 pixels
  through the codec's encoder, so Conv1 becomes a per-cell projection).
  """
  return 2 * math.ceil((kernel / spatial_factor - 1) / 2) + 1


class Conv(nn.Module):
  """Bias-free SAME convolution over [B,T,H,W,C], run as the cheapest equivalent op on CPU.

  1x1x1 -> Dense; 1xkxk -> 2-D convolution over frames [B*T,H,W,C]; kx1x1 -> 1-D convolution over
  time [B*H*W,T,C]; anything else -> 3-D convolution. A stride on an axis whose kernel size is 1 is
  a slice (SAME output size ceil(n / s), taps 0, s, 2s, ...).
  """
  features: int
  kernel: tuple[int, int, int] = (1, 1, 1)
  strides: tuple[int, int, int] = (1, 1, 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kt, kh, kw = self.kernel
    st, sh, sw = self.strides
    if kt == 1 and st > 1:
      x = x[:, ::st]
    if kh == kw == 1 and (sh > 1 or sw > 1):
      x = x[:, :, ::sh, ::sw]
    b, t, h, w, c = x.shape
    if kt == 1 and kh == kw == 1:
      return nn.Dense(self.features, use_bias=False, dtype=self.dtype)(x)
    if kt == 1:
      y = nn.Conv(self.features, (kh, kw), (sh, sw), padding="SAME", use_bias=False,
                  dtype=self.dtype)(x.reshape(b * t, h, w, c))
      return y.reshape(b, t, *y.shape[1:])
    if kh == kw == 1:
      y = nn.Conv(self.features, (kt,), (st,), padding="SAME", use_bias=False,
                  dtype=self.dtype)(x.transpose(0, 2, 3, 1, 4).reshape(b * h * w, t, c))
      return y.reshape(b, h, w, y.shape[1], self.features).transpose(0, 3, 1, 2, 4)
    return nn.Conv(self.features, (kt, kh, kw), (st, sh, sw), padding="SAME", use_bias=False,
                   dtype=self.dtype)(x)


class Unit(nn.Module):
  """Conv (no bias) + BatchNorm + ReLU, the building block of every S3D convolution."""
  features: int
  kernel: tuple[int, int, int] = (1, 1, 1)
  strides: tuple[int, int, int] = (1, 1, 1)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = Conv(self.features, self.kernel, self.strides, dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                     dtype=self.dtype)(x)
    return nn.relu(x)


class SepConv(nn.Module):
  """Separable kxkxk convolution: 1xkxk (spatial stride) then kx1x1 (temporal stride), each a Unit
  with `features` outputs. The factorisation that gives S3D its name. `spatial_kernel` overrides
  the spatial size (codes mode, see `codes_kernel`)."""
  features: int
  kernel: int = 3
  spatial_stride: int = 1
  temporal_stride: int = 1
  spatial_kernel: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    k, s = self.kernel, self.spatial_stride
    ks = k if self.spatial_kernel is None else self.spatial_kernel
    x = Unit(self.features, (1, ks, ks), (1, s, s), dtype=self.dtype, name="spatial")(x, train)
    return Unit(self.features, (k, 1, 1), (self.temporal_stride, 1, 1), dtype=self.dtype,
                name="temporal")(x, train)


class SelfGating(nn.Module):
  """S3D-G feature gating: x * sigmoid(Dense(mean of x over T,H,W)), one gate per channel."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    context = jnp.mean(x, axis=(1, 2, 3))
    gate = nn.sigmoid(nn.Dense(x.shape[-1], dtype=self.dtype)(context))
    return x * gate[:, None, None, None, :].astype(x.dtype)


class Mixed(nn.Module):
  """Inception block with separable 3x3x3 convolutions and (optionally) gated branches."""
  b0: int
  b1: tuple[int, int]
  b2: tuple[int, int]
  b3: int
  gating: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    d = self.dtype
    # The three 1x1x1 convolutions that read x (branch 0, and the reductions of branches 1 and 2)
    # run as one Dense + one BatchNorm over their concatenated channels, then split: identical
    # maths (BN is per channel), one bigger matmul, fewer ops to compile and launch.
    y = Unit(self.b0 + self.b1[0] + self.b2[0], dtype=d, name="branch012_1x1")(x, train)
    y0, y1, y2 = jnp.split(y, [self.b0, self.b0 + self.b1[0]], axis=-1)
    y1 = SepConv(self.b1[1], dtype=d, name="branch1_sep")(y1, train)
    y2 = SepConv(self.b2[1], dtype=d, name="branch2_sep")(y2, train)
    y3 = Unit(self.b3, dtype=d, name="branch3")(max_pool(x, (3, 3, 3), (1, 1, 1)), train)
    ys = [y0, y1, y2, y3]
    if self.gating:
      ys = [SelfGating(dtype=d, name=f"branch{i}_gating")(y) for i, y in enumerate(ys)]
    return jnp.concatenate(ys, axis=-1)


class S3D(nn.Module):
  """S3D-G classifier over RGB clips [B,T,H,W,3] or code features [B,T',H',W',C].

  Attributes:
    num_classes: number of logits.
    width: channel multiplier (counts rounded to multiples of 8, min 8); 1.0 is the paper's model.
    mode: "rgb" (input float frames, C must be 3) or "codes" (float features of codes, any C,
      e.g. the codebook embeddings of a VQ-VAE's codes).
    input_factors: (temporal, spatial) downsampling of the input relative to RGB frames; for codes,
      the codec's (temporal_factor, spatial_factor). Sets the stem strides (`stem_strides`) so that
      internal shapes match the RGB model's.
    dropout: dropout rate before the classifier (uses the 'dropout' rng when train=True).
    gating: S3D-G feature gating (False gives plain S3D).
    temporal_pool: True: average over T,H,W, logits [B, num_classes]. False: average over H,W only
      and return per-time-step logits [B, T_out, num_classes] (T_out = the final grid's length).
    mixed_blocks: the inception blocks to keep (names from `MIXED`, any order; None = all nine,
      the paper's model). Stage poolings stay, so a shallower model keeps the output grid; the
      smoke configs use three blocks (one per stage) to keep test compilation short.
    dtype: computation dtype (params stay float32); logits are returned in float32.

  BatchNorm uses batch statistics when train=True (pass mutable=['batch_stats']) and running
  averages (momentum 0.9) otherwise.
  """
  num_classes: int
  width: float = 1.0
  mode: str = "rgb"
  input_factors: tuple[int, int] = (1, 1)
  dropout: float = 0.2
  gating: bool = True
  temporal_pool: bool = True
  mixed_blocks: tuple[str, ...] | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.mode not in ("rgb", "codes"):
      raise ValueError(f"mode must be 'rgb' or 'codes', got {self.mode!r}")
    if x.ndim != 5:
      raise ValueError(f"expected input [B,T,H,W,C], got shape {x.shape}")
    if self.mode == "rgb" and x.shape[-1] != 3:
      raise ValueError(f"rgb mode expects 3 channels, got shape {x.shape}")
    d = self.dtype

    def ch(c: int) -> int:
      return channels(c, self.width)

    strides = stem_strides(self.input_factors)
    x = x.astype(d)
    st, ss, _ = strides["conv1"]
    x = SepConv(ch(64), kernel=7, spatial_stride=ss, temporal_stride=st,
                spatial_kernel=codes_kernel(7, self.input_factors[1]), dtype=d,
                name="Conv1")(x, train)
    x = max_pool(x, (1, 3, 3), strides["pool2a"])
    x = Unit(ch(64), dtype=d, name="Conv2b")(x, train)
    x = SepConv(ch(192), dtype=d, name="Conv2c")(x, train)
    if self.gating:
      x = SelfGating(dtype=d, name="Conv2c_gating")(x)
    x = max_pool(x, (1, 3, 3), strides["pool3a"])
    self.sow("intermediates", "stem", x)

    keep = set(check_mixed_blocks(MIXED if self.mixed_blocks is None else self.mixed_blocks))
    pooled = set()
    for name, (b0, (r1, b1), (r2, b2), b3) in MIXED.items():
      if name not in keep:
        continue
      stage = name[6]  # the stage's pooling comes before its first block, kept or not
      if stage == "4" and stage not in pooled:
        x = max_pool(x, (3, 3, 3), (2, 2, 2))  # MaxPool4a
      elif stage == "5" and stage not in pooled:
        x = max_pool(x, (2, 2, 2), (2, 2, 2))  # MaxPool5a
      pooled.add(stage)
      x = Mixed(ch(b0), (ch(r1), ch(b1)), (ch(r2), ch(b2)), ch(b3), gating=self.gating, dtype=d,
                name=name)(x, train)
      if name in ("Mixed_3b", "Mixed_4f", "Mixed_5c"):
        self.sow("intermediates", name.lower(), x)

    x = jnp.mean(x, axis=(1, 2, 3) if self.temporal_pool else (2, 3))
    self.sow("intermediates", "pooled", x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=d, name="logits")(x)
    return x.astype(jnp.float32)
