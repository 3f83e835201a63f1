"""What the S3D-G trainers (`s3d_cls`, `coin_framewise`) feed their network: codes, RGB or
reconstructions (trainer-private; one definition instead of one trainer importing another).

`config.input` picks the input, checked once by `check_input`:
  codes  integer codes from code shards, embedded with the codec's frozen codebooks
         (`config.codes.embed = "codec"`) or with embeddings learned by the trainer ("learned");
         the S3D stem skips the strides the codec already applied, so inner shapes match RGB;
  rgb    decoded video frames (the baseline);
  recon  the codes decoded back to pixels by the frozen codec (paper Table 6).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

from cv.codec import shipped
from cv.codec.neural import NeuralCodec
from cv.lib import precision, reporting
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState
from cv.models.code_input import CodeEmbed
from cv.models.s3d import S3D, check_mixed_blocks
from cv.models.vqvae import VQVAE

INPUTS = ("codes", "rgb", "recon")
EMBEDDINGS = ("codec", "learned")


def check_input(config: mlc.ConfigDict) -> None:
  """Stops with a `ConfigError` naming the key when `config.input` (or, for codes,
  `config.codes.embed`) is not one of the known values."""
  if config.input not in INPUTS:
    raise ConfigError(f"config.input={config.input!r} is not known; use one of {INPUTS}")
  if config.input == "codes" and config.codes.embed not in EMBEDDINGS:
    raise ConfigError(f"config.codes.embed={config.codes.embed!r} is not known; use 'codec' (the "
                      f"codec's frozen codebooks) or 'learned'")


def build_model(config: mlc.ConfigDict, num_classes: int, codec: NeuralCodec | None, *,
                temporal_pool: bool = True) -> S3D:
  """S3D-G over `config.input` (codes: stem strides adapted to the codec's factors)."""
  m = config.model
  common = dict(num_classes=num_classes, width=m.width, dropout=m.dropout, gating=m.gating,
                temporal_pool=temporal_pool, mixed_blocks=_mixed_blocks(m),
                dtype=precision.compute_dtype(config))  # config.dtype: float32 | bfloat16
  if config.input == "codes":
    return S3D(mode="codes", input_factors=(codec.temporal_factor, codec.spatial_factor),
               **common)
  return S3D(mode="rgb", **common)


def _mixed_blocks(m: mlc.ConfigDict) -> tuple[str, ...] | None:
  if not m.mixed_blocks:
    return None  # all nine
  try:
    return check_mixed_blocks(m.mixed_blocks)
  except ValueError as e:
    raise ConfigError(f"config.model.{e}") from None


def load_codec(config: mlc.ConfigDict) -> NeuralCodec | None:
  """The frozen codec of `config.codec` (None for input=rgb, which needs none)."""
  if config.input == "rgb":
    return None
  codec = NeuralCodec.load(config.codec)
  reporting.console(f"codec: {shipped.describe(config.codec)} (id {codec.codec_id}, "
                    f"nominal CR {codec.nominal_cr():.0f})")
  return codec


def to_rgb_input(video: jax.Array) -> jax.Array:
  """uint8 (or [0, 1] float) frames -> float in [-1, 1], the S3D input range."""
  x = video.astype(jnp.float32)
  if jnp.issubdtype(video.dtype, jnp.integer):
    x = x / 255.0
  return x * 2.0 - 1.0


def make_features(config: mlc.ConfigDict, codec: NeuralCodec | None
                  ) -> tuple[Callable[[Any, dict], jax.Array], CodeEmbed | None]:
  """(features(params, batch) -> network input, learned embedding module or None).

  The frozen codec's variables are constants of the jitted step; only learned embeddings are
  trained (they live in params['embed']).
  """
  check_input(config)
  if config.input == "rgb":
    return (lambda params, batch: to_rgb_input(batch["video"])), None
  cvars = codec.variables
  if config.input == "recon":
    def recon(params, batch):
      video = codec.model.apply(cvars, batch["codes"].astype(jnp.int32), method=VQVAE.decode_codes)
      return to_rgb_input(jnp.clip(jax.lax.stop_gradient(video), 0.0, 1.0))
    return recon, None
  if config.codes.embed == "codec":
    return (lambda params, batch: jax.lax.stop_gradient(codec.latents(batch["codes"]))), None
  embed = CodeEmbed(codec.num_codebooks, codec.num_entries, config.codes.embed_dim)
  return (lambda params, batch: embed.apply({"params": params["embed"]}, batch["codes"])), embed


class InputData:
  """What the data of every classifier on codes / RGB provides to its task: the batch key of the
  network input and a dummy batch of one example for initialisation."""
  config: mlc.ConfigDict
  example_shape: tuple[int, ...]

  @property
  def input_key(self) -> str:
    return "video" if self.config.input == "rgb" else "codes"

  def dummy_batch(self) -> dict[str, jax.Array]:
    dtype = jnp.uint8 if self.config.input == "rgb" else jnp.int32
    return {self.input_key: jnp.zeros((1, *self.example_shape), dtype)}


def check_code_window(data: mlc.ConfigDict, codec: NeuralCodec) -> tuple[int, int]:
  """(temporal, spatial) factors of `codec`, after checking that `data`'s clip fits its grid."""
  tf, sf = codec.temporal_factor, codec.spatial_factor
  if data.num_frames % tf or data.crop % sf:
    raise ConfigError(f"config.data.num_frames={data.num_frames} and config.data.crop="
                      f"{data.crop} must be multiples of the codec's temporal factor {tf} and "
                      f"spatial factor {sf}")
  return tf, sf


def make_init(data: InputData, model: S3D, features: Callable, embed: CodeEmbed | None,
              tx: optax.GradientTransformation) -> Callable[[jax.Array], TrainState]:
  """rng -> the initial TrainState: S3D params (+ learned code embeddings) and BN statistics."""
  def init(rng: jax.Array) -> TrainState:
    p_rng, d_rng, e_rng, s_rng = jax.random.split(rng, 4)
    params = {}
    batch = data.dummy_batch()
    if embed is not None:
      params["embed"] = embed.init(e_rng, batch["codes"])["params"]
    variables = model.init({"params": p_rng, "dropout": d_rng}, features(params, batch),
                           train=False)
    params["s3d"] = variables["params"]
    return TrainState.create(params=params, tx=tx, rng=s_rng,
                             model_state={k: v for k, v in variables.items() if k != "params"})

  return init
