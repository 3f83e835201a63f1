"""DeepMind's released codec (Wiles et al. 2022) in flax.linen, for their converted checkpoints.

The released checkpoints (`tools/import_dm.py`, docs/deepmind.md) were trained with Haiku's
`CompressionConvEncoderDecoder`; this module computes the same function so their weights give
the same codes and reconstructions here. Architecture (as their code defines it; docs/deepmind.md):

  encoder  n convs `conv_i` (kernel `kernel_shape`, stride `stride`, no bias; ReLU after all but
           the last), channels bot/2^(n-1) ... bot (doubling); then `extra_encode_conv_layers`
           pre-activation residual blocks (ReLU -> conv `extra_encode_conv_kernel` to
           bot*res_bot_mult -> ReLU -> 1x1x1 conv back to bot -> + input; no ReLU after the
           stack); optional tanh.
  quantise K = bot / vq_embedding_dims codebooks of N entries (K = 1 without multi-codebook);
           the channels are split *interleaved* (codebook i sees channels i, i+K, i+2K, ...) and
           the K quantised outputs are concatenated *block-wise* ([q_0 | q_1 | ...]); codes are
           the K nearest-entry indices stacked on the last axis.
  decoder  `extra_decode_conv_layers` residual blocks as above; then n transposed convs
           `decoder_i` (kernel `kernel_shape`, stride `stride`, SAME padding to exactly stride x
           the input size, with bias; ReLU after all but the last), channels mirroring the
           encoder and ending in 3; then `last_linearity` (a `jax.nn` function by name, '' =
           identity).

Every convolution pads by *reflection* of (k-1)//2 per side and then runs VALID when `padding`
is 'VALID' (their i3d.Unit3D trick), else SAME with zeros. Inputs and outputs are videos in
[0, 1] (no normalisation), shape [B, T, H, W, 3]; H and W must be multiples of
`spatial_factor`. The codec is frozen here: the EMA codebooks are the `vq` collection and are
never updated (DeepMind released no training code).
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# model_kwargs of their constructor that change nothing at inference (stored, unused, or only
# affecting the unused per-layer VQs), and switches asserted off in their code.
IGNORED_KWARGS = ("bot_channels_code_index", "use_ratio_for_codebooks", "attention_resolutions",
                  "extra_decode_conv_use_bn", "vq_decay")
MUST_BE_OFF = ("use_attention", "use_skips", "skips_one_embedding", "use_normalized_embeddings")


def _triple(v: Any, name: str) -> tuple[int, int, int]:
  t = tuple(int(x) for x in v)
  if len(t) != 3:
    raise ValueError(f"{name} must have 3 entries (T, H, W), got {v!r}")
  return t


class DMUnit(nn.Module):
  """Their i3d.Unit3D without normalisation: (reflect pad +) Conv3D, no bias. Kernels of time
  extent 1 run as 2-D convolutions over frames (several times faster on CPU, same result)."""
  features: int
  kernel: tuple[int, int, int]
  strides: tuple[int, int, int] = (1, 1, 1)
  padding: str = "VALID"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.padding == "VALID":
      pads = [(0, 0)] + [((k - 1) // 2, (k - 1) // 2) for k in self.kernel] + [(0, 0)]
      if any(p != (0, 0) for p in pads):
        x = jnp.pad(x, pads, mode="reflect")
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel, x.shape[-1], self.features), jnp.float32)
    b, t, h, w, c = x.shape
    if self.kernel[0] == 1 and self.strides[0] == 1:
      y = jax.lax.conv_general_dilated(x.reshape(b * t, h, w, c), kernel[0], self.strides[1:],
                                       self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return y.reshape(b, t, *y.shape[1:])
    return jax.lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def transpose_padding(size_in: int, size_out: int, kernel: int, stride: int) -> tuple[int, int]:
  """Explicit (before, after) padding of a transposed convolution that maps `size_in` to exactly
  `size_out` and is the transpose of a SAME convolution from `size_out` to `size_in`."""
  forward_total = max((-(-size_out // stride) - 1) * stride + kernel - size_out, 0)
  before = kernel - 1 - forward_total // 2
  after = (size_out + kernel - 1) - ((size_in - 1) * stride + 1) - before
  return before, after


class DMConvTranspose(nn.Module):
  """Transposed Conv3D with bias to exactly `strides` x the input size (SAME), as their decoder
  uses it. `kernel` has the forward layout [kt, kh, kw, in, out]."""
  features: int
  kernel: tuple[int, int, int]
  strides: tuple[int, int, int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    b, t, h, w, c = x.shape
    sizes = (t, h, w)
    pads = [transpose_padding(n, n * s, k, s) for n, k, s in zip(sizes, self.kernel, self.strides)]
    if self.kernel[0] == 1 and self.strides[0] == 1:
      y = jax.lax.conv_transpose(x.reshape(b * t, h, w, c), kernel[0], self.strides[1:], pads[1:],
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
      y = y.reshape(b, t, *y.shape[1:])
    else:
      y = jax.lax.conv_transpose(x, kernel, self.strides, pads,
                                 dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    return y + bias


def _residual_stack(m: "DMEncoder | DMDecoder", x: jax.Array, prefix: str) -> jax.Array:
  """`m.num_res_blocks` pre-activation residual blocks (relu -> conv -> relu -> 1x1 conv, added),
  created inside `m`'s compact call under their Haiku names `<prefix>_res_{0,1}_<i>`."""
  for i in range(m.num_res_blocks):
    h = DMUnit(m.res_hidden, m.res_kernel, padding=m.padding,
               name=f"{prefix}_res_0_{i}")(nn.relu(x))
    h = DMUnit(m.bot_channels, (1, 1, 1), padding=m.padding,
               name=f"{prefix}_res_1_{i}")(nn.relu(h))
    x = x + h
  return x


class DMEncoder(nn.Module):
  """Strided convs -> residual blocks -> optional tanh (submodule names follow theirs)."""
  channels: tuple[int, ...]
  kernel_shape: tuple[int, int, int]
  stride: tuple[int, int, int]
  bot_channels: int
  res_hidden: int
  num_res_blocks: int
  res_kernel: tuple[int, int, int]
  padding: str
  use_tanh: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, c in enumerate(self.channels):
      x = DMUnit(c, self.kernel_shape, self.stride, self.padding, name=f"conv_{i}")(x)
      if i < len(self.channels) - 1:
        x = nn.relu(x)
    x = _residual_stack(self, x, "encoder")
    return jnp.tanh(x) if self.use_tanh else x


class DMDecoder(nn.Module):
  """Residual blocks -> transposed convs -> `last_linearity`."""
  channels: tuple[int, ...]  # output channels of decoder_0 .. decoder_{n-1}
  kernel_shape: tuple[int, int, int]
  stride: tuple[int, int, int]
  bot_channels: int
  res_hidden: int
  num_res_blocks: int
  res_kernel: tuple[int, int, int]
  padding: str
  last_linearity: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = _residual_stack(self, x, "decoder")
    for i, c in enumerate(self.channels):
      x = DMConvTranspose(c, self.kernel_shape, self.stride, name=f"decoder_{i}")(x)
      if i < len(self.channels) - 1:
        x = nn.relu(x)
    return getattr(jax.nn, self.last_linearity)(x) if self.last_linearity else x


class DMQuantizer(nn.Module):
  """K frozen codebooks ([K, N, D] in the `vq` collection) with the interleaved channel split and
  block-wise concatenation of their codec. Nearest entry by squared L2 distance computed as
  |x|^2 - 2 x.e + |e|^2, as Haiku's VectorQuantizerEMA does (same ties, same codes)."""
  num_codebooks: int
  num_entries: int
  code_dim: int
  commitment_cost: float = 0.9

  def setup(self):
    k, n, d = self.num_codebooks, self.num_entries, self.code_dim
    init = lambda: jax.random.uniform(self.make_rng("params"), (k, n, d), jnp.float32,
                                      -math.sqrt(3 / d), math.sqrt(3 / d))
    self.codebook = self.variable("vq", "codebook", init)

  def _codebook(self) -> jax.Array:
    return jnp.asarray(self.codebook.value)

  def codes_to_latents(self, codes: jax.Array) -> jax.Array:
    """[..., K] integer codes -> [..., K*D] latents [e_0 | e_1 | ...] (what the decoder reads)."""
    codebook = self._codebook()
    parts = [codebook[i][codes[..., i]] for i in range(self.num_codebooks)]
    return jnp.concatenate(parts, axis=-1)

  def __call__(self, z: jax.Array, *, train: bool = False) -> dict[str, Any]:
    """z [..., K*D] -> dict(quantized [..., K*D], codes [..., K], loss, perplexity, usage, counts).

    `train` only switches the straight-through estimator on (the codebooks never change)."""
    k, n, d = self.num_codebooks, self.num_entries, self.code_dim
    if z.shape[-1] != k * d:
      raise ValueError(f"DMQuantizer: expected {k * d} latent channels, got {z.shape[-1]}")
    codebook = self._codebook()
    lead = z.shape[:-1]
    groups = z.astype(jnp.float32).reshape(-1, d, k)  # codebook i reads channels i, i+K, ...
    codes, quantized, losses, counts = [], [], [], []
    for i in range(k):
      x = groups[..., i]  # [M, D]
      e = codebook[i].T   # [D, N], their layout
      dist = (jnp.sum(x**2, axis=1, keepdims=True) - 2 * jnp.matmul(x, e)
              + jnp.sum(e**2, axis=0, keepdims=True))
      idx = jnp.argmax(-dist, axis=1)
      q = codebook[i][idx]
      losses.append(self.commitment_cost * jnp.mean((jax.lax.stop_gradient(q) - x) ** 2))
      quantized.append(x + jax.lax.stop_gradient(q - x) if train else q)
      codes.append(idx)
      counts.append(jnp.sum(jax.nn.one_hot(idx, n, dtype=jnp.float32), axis=0))
    counts = jnp.stack(counts)  # [K, N]
    probs = counts / max(groups.shape[0], 1)
    perplexity = jnp.mean(jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-10), axis=-1)))
    return dict(quantized=jnp.concatenate(quantized, axis=-1).reshape(*lead, k * d),
                codes=jnp.stack(codes, axis=-1).reshape(*lead, k).astype(jnp.int32),
                loss=jnp.mean(jnp.stack(losses)), perplexity=perplexity,
                usage=jnp.mean(jnp.sum(counts > 0, axis=-1) / n), counts=counts)


class DMCodec(nn.Module):
  """Their `CompressionConvEncoderDecoder` (field names = their model_kwargs)."""
  bot_channels: int = 128
  num_conv_layers: int = 1
  stride: tuple[int, int, int] = (1, 2, 2)
  kernel_shape: tuple[int, int, int] = (1, 4, 4)
  res_bot_mult: float = 4.0
  extra_encode_conv_layers: int = 2
  extra_encode_conv_kernel: tuple[int, int, int] = (1, 3, 3)
  extra_decode_conv_layers: int = 2
  extra_decode_conv_kernel: tuple[int, int, int] = (1, 3, 3)
  use_multicodebook: bool = True
  vq_embedding_dims: int = 16
  vq_num_embeddings: int = 256
  vq_commitment_cost: float = 0.9
  last_linearity: str = ""
  padding: str = "VALID"
  use_tanh: bool = False
  num_channels: int = 3

  # --- the attributes NeuralCodec reads (shared with cv.models.vqvae.VQVAE)
  quantizer_type = "vq"
  rvq_levels = 1

  @property
  def num_codebooks(self) -> int:
    return self.bot_channels // self.vq_embedding_dims if self.use_multicodebook else 1

  @property
  def code_dim(self) -> int:
    return self.vq_embedding_dims if self.use_multicodebook else self.bot_channels

  @property
  def num_entries(self) -> int:
    return int(self.vq_num_embeddings)

  @property
  def codes_per_position(self) -> int:
    return self.num_codebooks

  @property
  def spatial_factor(self) -> int:
    return int(self.stride[1]) ** int(self.num_conv_layers)

  @property
  def temporal_factor(self) -> int:
    return int(self.stride[0]) ** int(self.num_conv_layers)

  @property
  def conv_channels(self) -> tuple[int, ...]:
    n = self.num_conv_layers
    return tuple(self.bot_channels // 2 ** (n - 1 - i) for i in range(n))

  def setup(self):
    if self.stride[1] != self.stride[2]:
      raise ValueError(f"DMCodec: stride {self.stride} must be equal in H and W")
    if self.use_multicodebook and self.bot_channels % self.vq_embedding_dims:
      raise ValueError(f"DMCodec: bot_channels={self.bot_channels} is not a multiple of "
                       f"vq_embedding_dims={self.vq_embedding_dims}")
    if self.last_linearity and not callable(getattr(jax.nn, self.last_linearity, None)):
      raise ValueError(f"DMCodec: last_linearity={self.last_linearity!r} is not a jax.nn function")
    hidden = int(self.bot_channels * self.res_bot_mult)
    self.encoder = DMEncoder(self.conv_channels, self.kernel_shape, self.stride, self.bot_channels,
                             hidden, self.extra_encode_conv_layers, self.extra_encode_conv_kernel,
                             self.padding, self.use_tanh)
    self.quantizer = DMQuantizer(self.num_codebooks, self.num_entries, self.code_dim,
                                 self.vq_commitment_cost)
    out = tuple(reversed((self.num_channels,) + self.conv_channels[:-1]))
    self.decoder = DMDecoder(out, self.kernel_shape, self.stride, self.bot_channels, hidden,
                             self.extra_decode_conv_layers, self.extra_decode_conv_kernel,
                             self.padding, self.last_linearity)

  def encode(self, video: jax.Array, *, train: bool = False, **_: Any) -> dict[str, Any]:
    """[B,T,H,W,3] in [0,1] -> quantiser outputs (codes [B,T',H',W',K], quantized, loss...)."""
    if video.ndim != 5 or video.shape[-1] != self.num_channels:
      raise ValueError(f"DMCodec: expected video [B,T,H,W,{self.num_channels}], got "
                       f"{tuple(video.shape)}")
    return self.quantizer(self.encoder(video), train=train)

  def decode(self, latents: jax.Array) -> jax.Array:
    """Quantised latents [B,T',H',W',K*D] -> video (in [0,1] for a trained codec; unclipped)."""
    return self.decoder(latents)

  def decode_codes(self, codes: jax.Array) -> jax.Array:
    return self.decode(self.quantizer.codes_to_latents(codes))

  def __call__(self, video: jax.Array, *, train: bool = False, **_: Any
               ) -> tuple[jax.Array, dict[str, Any]]:
    vq = self.encode(video, train=train)
    return self.decode(vq["quantized"]), vq


def build(config: dict[str, Any]) -> DMCodec:
  """A `DMCodec` from the keyword dict stored in a converted `.cvcodec` (lists become tuples)."""
  cfg = dict(config)
  for key in ("stride", "kernel_shape", "extra_encode_conv_kernel", "extra_decode_conv_kernel"):
    if key in cfg:
      cfg[key] = _triple(cfg[key], key)
  return DMCodec(**cfg)


def from_model_kwargs(model_kwargs: dict[str, Any]) -> dict[str, Any]:
  """Their `config.experiment_kwargs.config.model_kwargs` -> `DMCodec` keywords (JSON-able).

  Raises ValueError naming the key for switches this port cannot reproduce (attention, skips,
  normalised embeddings: asserted off in their code too; BatchNorm and the 2x time compression,
  whose decoder path is broken in their code) and for keys their constructor does not take.
  """
  fields = {f for f in DMCodec.__dataclass_fields__ if f not in ("parent", "name")}
  out: dict[str, Any] = {}
  for key, value in model_kwargs.items():
    if key in IGNORED_KWARGS:
      continue
    if key in MUST_BE_OFF or key in ("extra_encode_conv_use_bn", "use_time_compression_2x"):
      if value:
        raise ValueError(f"model_kwargs.{key}={value!r} is not supported by this port (only "
                         f"False is: the released codecs are plain conv VQ-VAEs)")
      continue
    if key not in fields:
      raise ValueError(f"model_kwargs.{key} is not an argument of their codec; is this a "
                       f"compressed_vision checkpoint?")
    if key in ("stride", "kernel_shape", "extra_encode_conv_kernel", "extra_decode_conv_kernel"):
      value = list(_triple(value, f"model_kwargs.{key}"))
    elif key in ("padding", "last_linearity"):
      value = str(value or "")
    elif key in ("res_bot_mult", "vq_commitment_cost"):
      value = float(value)
    elif key in ("use_multicodebook", "use_tanh"):
      value = bool(value)
    else:
      value = int(value)
    out[key] = value
  if out.get("padding", "VALID") not in ("VALID", "SAME"):
    raise ValueError(f"model_kwargs.padding={out['padding']!r}: expected 'VALID' or 'SAME'")
  last = out.get("last_linearity", "")
  if last and not callable(getattr(jax.nn, last, None)):
    raise ValueError(f"model_kwargs.last_linearity={last!r} is not a jax.nn function")
  expected_shapes(out)  # the geometry checks of DMCodec.setup, before any weight is read
  return out


def expected_shapes(config: dict[str, Any]) -> dict[str, Any]:
  """Shapes of every variable of `build(config)` ({'params': ..., 'vq': ...}), for checking
  converted weights before they are used."""
  model = build(config)
  video = jnp.zeros((1, model.temporal_factor, model.spatial_factor, model.spatial_factor,
                     model.num_channels))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), video))
  return jax.tree.map(lambda s: tuple(s.shape), shapes)
