"""A Haiku reference of DeepMind's compressed_vision codec and flip network, for tests only.

Written from what is known of DeepMind's released code and files (docs/deepmind.md: the codec, the
augmentation network, the checkpoint format) with the Haiku module names their code produces, so
that a pickle made here has exactly the layout of their released files: keys params, state, config,
augm_params, augm_state, augm_config; params like
`CompressionConvEncoderDecoder/~encode_embedding/conv_0/conv3_d`; state holding the EMA codebooks
`CompressionConvEncoderDecoder/~/vqvae_{i}` (embeddings [D, N] + ema_cluster_size and ema_dw);
configs as ml_collections ConfigDicts in jaxline layout. `dm-haiku` is a test-only requirement.
"""
from __future__ import annotations

import pickle
from typing import Any, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np


class Unit3D(hk.Module):
  """Conv3D without bias after reflect-padding (k-1)//2 per side when padding is VALID."""

  def __init__(self, channels: int, kernel: Sequence[int], stride: Sequence[int] = (1, 1, 1),
               relu: bool = False, padding: str = "VALID", name: str | None = None):
    super().__init__(name=name)
    self.channels, self.kernel, self.stride = channels, tuple(kernel), tuple(stride)
    self.relu, self.padding = relu, padding

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.padding == "VALID":
      pad = [(0, 0)] + [((k - 1) // 2,) * 2 for k in self.kernel] + [(0, 0)]
      x = jnp.pad(x, pad, mode="reflect")
    y = hk.Conv3D(self.channels, self.kernel, self.stride, padding=self.padding,
                  with_bias=False)(x)
    return jax.nn.relu(y) if self.relu else y


class CompressionConvEncoderDecoder(hk.Module):
  """The codec (docs/deepmind.md): stride-2 convs, pre-activation residual blocks, K EMA
  codebooks with the interleaved split and block-wise concatenation, transposed-conv decoder."""

  def __init__(self, num_channels: int = 3, bot_channels: int = 128, stride=(1, 2, 2),
               kernel_shape=(1, 4, 4), num_conv_layers: int = 1, res_bot_mult: float = 4.0,
               extra_encode_conv_layers: int = 2, extra_encode_conv_kernel=(1, 3, 3),
               extra_decode_conv_layers: int = 2, extra_decode_conv_kernel=(1, 3, 3),
               use_multicodebook: bool = True, last_linearity: str = "",
               vq_embedding_dims: int = 16, vq_num_embeddings: int = 256,
               vq_commitment_cost: float = 0.9, vq_decay: float = 0.5, padding: str = "VALID",
               use_tanh: bool = False, **unused: Any):
    super().__init__(name="CompressionConvEncoderDecoder")
    self.num_channels, self.bot = num_channels, bot_channels
    self.stride, self.kernel, self.n = tuple(stride), tuple(kernel_shape), num_conv_layers
    self.hidden = int(bot_channels * res_bot_mult)
    self.enc_layers, self.enc_kernel = extra_encode_conv_layers, extra_encode_conv_kernel
    self.dec_layers, self.dec_kernel = extra_decode_conv_layers, extra_decode_conv_kernel
    self.last = getattr(jax.nn, last_linearity) if last_linearity else (lambda x: x)
    self.padding, self.use_tanh = padding, use_tanh
    self.channels = [bot_channels // 2 ** (num_conv_layers - 1 - i) for i in range(num_conv_layers)]
    self.k = bot_channels // vq_embedding_dims if use_multicodebook else 1
    d = vq_embedding_dims if use_multicodebook else bot_channels
    self.vqs = [hk.nets.VectorQuantizerEMA(embedding_dim=d, num_embeddings=vq_num_embeddings,
                                           commitment_cost=vq_commitment_cost, decay=vq_decay,
                                           name=f"vqvae_{i}") for i in range(self.k)]

  def encode_embedding(self, x: jax.Array) -> jax.Array:
    for i, c in enumerate(self.channels):
      x = Unit3D(c, self.kernel, self.stride, relu=i < self.n - 1, padding=self.padding,
                 name=f"conv_{i}")(x)
    for i in range(self.enc_layers):
      h = Unit3D(self.hidden, self.enc_kernel, relu=True, padding=self.padding,
                 name=f"encoder_res_0_{i}")(jax.nn.relu(x))
      x = x + Unit3D(self.bot, (1, 1, 1), padding=self.padding, name=f"encoder_res_1_{i}")(h)
    return jnp.tanh(x) if self.use_tanh else x

  def decode_embedding(self, x: jax.Array) -> jax.Array:
    for i in range(self.dec_layers):
      h = Unit3D(self.hidden, self.dec_kernel, relu=True, padding=self.padding,
                 name=f"decoder_res_0_{i}")(jax.nn.relu(x))
      x = x + Unit3D(self.bot, (1, 1, 1), padding=self.padding, name=f"decoder_res_1_{i}")(h)
    outs = list(reversed([self.num_channels] + self.channels[:-1]))
    for i, c in enumerate(outs):
      shape = [s * n for s, n in zip(self.stride, x.shape[1:4])]
      x = hk.Conv3DTranspose(c, self.kernel, self.stride, shape, name=f"decoder_{i}")(x)
      if i < len(outs) - 1:
        x = jax.nn.relu(x)
    return self.last(x)

  def quantize(self, z: jax.Array, is_training: bool):
    b, t, h, w, c = z.shape
    z = z.reshape(b, t, h, w, c // self.k, self.k)  # codebook i reads channels i, i+K, ...
    outs = [vq(z[..., i], is_training=is_training) for i, vq in enumerate(self.vqs)]
    return (jnp.concatenate([o["quantize"] for o in outs], axis=4),
            jnp.stack([o["encoding_indices"] for o in outs], axis=4))

  def codes_to_quantize(self, codes: jax.Array) -> jax.Array:
    return jnp.concatenate([vq.quantize(codes[..., i]) for i, vq in enumerate(self.vqs)], axis=-1)

  def encode(self, x: jax.Array):
    _, codes = self.quantize(self.encode_embedding(x), is_training=False)
    return codes, self.codes_to_quantize(codes)

  def decode(self, codes: jax.Array) -> jax.Array:
    return self.decode_embedding(self.codes_to_quantize(codes))

  def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
    quantized, _ = self.quantize(self.encode_embedding(x), is_training)
    return self.decode_embedding(quantized)


class SpaceTimeAttention(hk.Module):
  def __init__(self, mode: str, heads: int, key_size: int, value_size: int, name: str):
    super().__init__(name=name)
    self.mode, self.heads, self.key_size, self.value_size = mode, heads, key_size, value_size

  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, l, d = x.shape
    proj = lambda size, name: hk.Linear(self.heads * size, with_bias=False, name=name)(x).reshape(
        b, t, l, self.heads, size)
    q, k, v = proj(self.key_size, "query"), proj(self.key_size, "key"), proj(self.value_size,
                                                                             "value")
    if self.mode == "time":
      w = jax.nn.softmax(jnp.einsum("btlhd,bTlhd->blhtT", q, k) / np.sqrt(self.key_size))
      out = jnp.einsum("blhtT,bTlhd->btlhd", w, v)
    else:
      w = jax.nn.softmax(jnp.einsum("btlhd,btLhd->bthlL", q, k) / np.sqrt(self.key_size))
      out = jnp.einsum("bthlL,btLhd->btlhd", w, v)
    return hk.Linear(d)(out.reshape(b, t, l, self.heads * self.value_size))


class DenseBlock(hk.Module):
  def __init__(self, hidden: int, name: str):
    super().__init__(name=name)
    self.hidden = hidden

  def __call__(self, x: jax.Array) -> jax.Array:
    h = jax.nn.gelu(hk.Linear(self.hidden)(x))  # "linear" (created first), then "linear_1"
    return hk.Linear(x.shape[-1])(h)


class SpatioTemporalTransformerXL(hk.Module):
  def __init__(self, d_model: int, positions: tuple[int, int], layers: int, heads: int,
               key_size: int, value_size: int, ffw: int):
    super().__init__(name="transformer_xl")
    self.d, self.positions, self.layers = d_model, positions, layers
    self.heads, self.key_size, self.value_size, self.ffw = heads, key_size, value_size, ffw

  def __call__(self, x: jax.Array) -> jax.Array:
    pos = hk.get_parameter("position_embedding", [*self.positions, self.d],
                           init=hk.initializers.TruncatedNormal(0.02))
    x = x + pos[:x.shape[1], :x.shape[2]]
    ln = lambda name: hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name=name)
    for i in range(self.layers):
      attn = lambda mode: SpaceTimeAttention(mode, self.heads, self.key_size, self.value_size,
                                             name=f"h{i}_{mode}_attn")
      x = x + attn("time")(ln(f"h{i}_ln_time")(x))
      x = x + attn("space")(ln(f"h{i}_ln_space")(x))
      x = x + DenseBlock(self.ffw, name=f"h{i}_mlp")(ln(f"h{i}_ln_2")(x))
    return ln("ln_f")(x)


class NeuralTransformation(hk.Module):
  """The augmentation network (docs/deepmind.md)."""

  def __init__(self, channels=(64, 64, 64), num_hidden_layers: int = 2,
               num_attention_heads: int = 1, key_size: int = 128, value_size: int = 128,
               intermediate_size: int = 128, **unused: Any):
    super().__init__(name="neural_transformation")
    self.channels, self.layers, self.heads = tuple(channels), num_hidden_layers, num_attention_heads
    self.key_size, self.value_size, self.ffw = key_size, value_size, intermediate_size

  def __call__(self, video: jax.Array, augmentation: jax.Array) -> jax.Array:
    b, t, c = video.shape[0], video.shape[1], video.shape[-1]
    e = hk.nets.MLP(self.channels + (c,))(augmentation.reshape(b, -1))
    tokens = video.reshape(b, t, -1, c)
    e = jnp.broadcast_to(e[:, None, None, :], tokens.shape)
    out = SpatioTemporalTransformerXL(2 * c, tokens.shape[1:3], self.layers, self.heads,
                                      self.key_size, self.value_size, self.ffw)(
                                          jnp.concatenate([e, tokens], axis=-1))
    return out[..., -c:].reshape(video.shape)


# ------------------------------------------------------------------------------------------------


def _random_like(shapes: Any, rng: np.random.Generator, name: str = "") -> Any:
  """Random values for an `eval_shape` tree of Haiku variables (no initialiser is compiled):
  weights ~ N(0, 1/fan_in), biases / offsets small, LayerNorm scales near 1, EMA statistics and
  counters zero, codebook embeddings uniform."""
  if hasattr(shapes, "items"):
    return {k: _random_like(v, rng, k) for k, v in shapes.items()}
  shape, dtype = tuple(shapes.shape), shapes.dtype
  if name in ("counter", "hidden", "average"):
    return np.zeros(shape, dtype)
  if name == "embeddings":
    return rng.uniform(-1.0, 1.0, shape).astype(dtype)
  if name == "scale":
    return (1.0 + 0.1 * rng.standard_normal(shape)).astype(dtype)
  if name in ("b", "offset"):
    return (0.1 * rng.standard_normal(shape)).astype(dtype)
  if name == "position_embedding":
    return (0.02 * rng.standard_normal(shape)).astype(dtype)
  fan_in = int(np.prod(shape[:-1])) or 1
  return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)


def _numpy(tree: Any) -> Any:
  """Haiku's nested mappings -> plain dicts of numpy arrays (as their pickles hold)."""
  if hasattr(tree, "items"):
    return {k: _numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


def _config(model_kwargs: dict, num_frames: int) -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.experiment_kwargs = mlc.ConfigDict()
  c.experiment_kwargs.config = mlc.ConfigDict(dict(
      model_kwargs=dict(model_kwargs),
      data=dict(num_frames=num_frames, train_batch_size=4, eval_batch_size=4)))
  c.experiment_kwargs.config.training_steps = mlc.FieldReference(1000)
  return c


def _codec_fns(model_kwargs: dict):
  def forward():
    model = CompressionConvEncoderDecoder(**model_kwargs)
    fns = {"train": lambda x: model(x, is_training=True), "encode": model.encode,
           "decode": model.decode}
    return fns["train"], fns
  return hk.multi_transform_with_state(forward)


def make_codec(model_kwargs: dict, seed: int = 0, clip: tuple[int, ...] = (1, 2, 16, 16, 3),
               ema_steps: int = 2) -> tuple[dict, dict]:
  """Random (params, state) of the codec; `ema_steps` training applies move the EMA codebooks
  away from their initialisation, as training did."""
  fns = _codec_fns(model_kwargs)
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(fns.init, jax.random.PRNGKey(seed), jnp.zeros(clip))
  params, state = (_random_like(tree, rng) for tree in shapes)
  if ema_steps:
    train = jax.jit(fns.apply["train"])
    for _ in range(ema_steps):
      _, state = train(params, state, None, rng.uniform(size=clip).astype(np.float32))
  return _numpy(params), _numpy(state)


def ref_encode(model_kwargs: dict, params: dict, state: dict, video: np.ndarray):
  """(codes [B,T',H',W',K], quantised latents) of their `encode`."""
  (codes, quantized), _ = jax.jit(_codec_fns(model_kwargs).apply["encode"])(
      params, state, None, jnp.asarray(video))
  return np.asarray(codes), np.asarray(quantized)


def ref_decode(model_kwargs: dict, params: dict, state: dict, codes: np.ndarray) -> np.ndarray:
  out, _ = jax.jit(_codec_fns(model_kwargs).apply["decode"])(params, state, None,
                                                               jnp.asarray(codes))
  return np.asarray(out)


def _aug_fn(aug_kwargs: dict):
  return hk.transform_with_state(lambda v, a: NeuralTransformation(**aug_kwargs)(v, a))


def make_aug(aug_kwargs: dict, latents_shape: tuple[int, ...], seed: int = 0) -> tuple[dict, dict]:
  """Random (params, state) of the flip network for latents of `latents_shape`."""
  shapes = jax.eval_shape(_aug_fn(aug_kwargs).init, jax.random.PRNGKey(seed),
                          jnp.zeros(latents_shape), jnp.ones((latents_shape[0], 1, 1)))
  rng = np.random.default_rng(seed)
  params, state = (_random_like(tree, rng) for tree in shapes)
  return _numpy(params), _numpy(state)


def ref_aug(aug_kwargs: dict, params: dict, state: dict, latents: np.ndarray,
            flags: np.ndarray) -> np.ndarray:
  """Their network's output for latents [B,T',H',W',C] and flip flags [B] (shape (B,1,1) as
  their demo feeds them)."""
  out, _ = jax.jit(_aug_fn(aug_kwargs).apply)(params, state, None, jnp.asarray(latents),
                                              jnp.asarray(flags, jnp.float32).reshape(-1, 1, 1))
  return np.asarray(out)


def save_checkpoint(path: str, model_kwargs: dict, params: dict, state: dict, *,
                    num_frames: int = 4, aug: tuple[dict, dict, dict] | None = None) -> None:
  """Pickles a checkpoint in their layout (`aug` = (kwargs, params, state) of a flip network)."""
  augm_params = augm_state = augm_config = None
  if aug is not None:
    kwargs, augm_params, augm_state = aug
    augm_config = mlc.ConfigDict()
    augm_config.experiment_kwargs = mlc.ConfigDict()
    augm_config.experiment_kwargs.config = mlc.ConfigDict(dict(
        augmentation=dict(network="transformer", kwargs=dict(kwargs)),
        data=dict(num_frames=num_frames)))
  ckpt = dict(params=params, state=state, config=_config(model_kwargs, num_frames),
              augm_params=augm_params, augm_state=augm_state, augm_config=augm_config)
  with open(path, "wb") as f:
    pickle.dump(ckpt, f)


def write_tfrecords(path: str, records: Sequence[dict]) -> None:
  """One shard of their compressed Kinetics-600 (docs/deepmind.md), written with TensorFlow:
  tf.train.Examples with video_id, start_sec, end_sec, compressed_repr (a serialised uint8
  tensor) and, when the record has them, label and label_id."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
  f = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
  with tf.io.TFRecordWriter(path) as writer:
    for r in records:
      feature = {"video_id": b(r["video_id"].encode()), "start_sec": f(r["start_sec"]),
                 "end_sec": f(r["end_sec"]),
                 "compressed_repr": b(tf.io.serialize_tensor(
                     tf.constant(r["codes"], tf.uint8)).numpy())}
      if "label" in r:
        feature["label"] = b(r["label"].encode())
        feature["label_id"] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=[r["label_id"]]))
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                   .SerializeToString())
