"""A trained neural codec as a self-contained object: load, encode video to codes, decode.

A codec file (`.cvcodec`, msgpack) holds the model config, the parameters, the VQ codebooks and the
code frequencies measured on its training data (for entropy coding). `NeuralCodec.load()` without a
path loads the default codec shipped in `cv/assets/` (`cr192`); `from_workdir` loads the
newest checkpoint of a `vq_codec` run; a shipped codec name (`demo`, `cr30`, `cr192`, `cr768`:
cv.codec.shipped) loads that asset. Encoding works on any frame size and clip length: frames are
edge-padded to multiples of the codec's downsampling and cut into fixed-size chunks (one compiled
program), and decoding crops back to the original size.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any, Iterator

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from cv.lib import checkpoint, fileio

from cv.codec import rate, shipped
from cv.models import dm_codec
from cv.models.vqvae import VQVAE

FORMAT_VERSION = 1


class CodecError(ValueError):
  """A codec file or checkpoint that cannot be used (the message names it and the fix)."""


def _canonical(obj: Any) -> str:
  return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass
class NeuralCodec:
  """A frozen VQ-VAE with its variables. `model_config` are the `VQVAE` constructor arguments
  (or, with "arch": "dm", those of DeepMind's codec `cv.models.dm_codec.DMCodec`)."""
  model_config: dict
  params: Any
  vq: Any
  code_counts: np.ndarray | None = None  # [K, N] code frequencies on training data
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    cfg = dict(self.model_config)
    # `arch` selects the network: this project's VQVAE (default), or DeepMind's released codec
    # converted by tools/import_dm.py ("dm", cv.models.dm_codec).
    arch = cfg.pop("arch", "vqvae")
    if arch == "dm":
      self.model = dm_codec.build(cfg)
    elif arch == "vqvae":
      cfg["channels"] = tuple(cfg["channels"])
      self.model = VQVAE(**cfg)
    else:
      raise CodecError(f"codec arch {arch!r} is not known ('vqvae' or 'dm'); update cv")
    self._encode = jax.jit(lambda v, x: self.model.apply(v, x, method="encode")["codes"])
    self._decode = jax.jit(lambda v, c: self.model.apply(v, c, method="decode_codes"))

  # ----------------------------------------------------------------------------- identity
  @property
  def variables(self) -> dict:
    return {"params": self.params, "vq": self.vq} if self.vq else {"params": self.params}

  @property
  def config_hash(self) -> str:
    return hashlib.sha256(_canonical(self.model_config).encode()).hexdigest()[:16]

  @functools.cached_property
  def codec_id(self) -> str:
    """Changes whenever the weights or codebooks change (hash of config + variables; computed
    once: a codec's weights are frozen)."""
    h = hashlib.sha256(self.config_hash.encode())
    for leaf in jax.tree.leaves(self.variables):
      h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]

  # ----------------------------------------------------------------------------- geometry
  @property
  def num_codebooks(self) -> int:
    """Indices per code position (K, or L*K for a residual-quantisation codec)."""
    return int(self.model.codes_per_position)

  @property
  def num_levels(self) -> int:
    """Rates this codec serves: residual levels (1 unless quantizer_type is "rvq")."""
    return int(self.model.rvq_levels) if self.model.quantizer_type == "rvq" else 1

  def level_codebooks(self, levels: int | None) -> int:
    """Indices per position of a code made of the first `levels` levels (None: all)."""
    levels = self.num_levels if levels is None else int(levels)
    if not 1 <= levels <= self.num_levels:
      raise ValueError(f"levels={levels}: this codec has {self.num_levels} residual level(s)")
    return levels * int(self.model.num_codebooks)

  @functools.cached_property
  def latent_dim(self) -> int:
    """Channels of `latents(codes)`: what downstream models and augmentations see per cell."""
    codes = jax.ShapeDtypeStruct((1, self.num_codebooks), jnp.int32)
    return int(jax.eval_shape(self.latents, codes).shape[-1])

  @property
  def num_entries(self) -> int:
    return int(self.model.num_entries)

  @property
  def bits(self) -> int:
    return rate.bits_per_index(self.num_entries)

  @property
  def spatial_factor(self) -> int:
    if isinstance(self.model, dm_codec.DMCodec):
      return self.model.spatial_factor
    return int(self.model.patch) * 2 ** (len(self.model.channels) - 1)

  @property
  def temporal_factor(self) -> int:
    if isinstance(self.model, dm_codec.DMCodec):
      return self.model.temporal_factor
    return int(self.model.temporal_patch)

  def code_shape(self, t: int, h: int, w: int, levels: int | None = None
                 ) -> tuple[int, int, int, int]:
    """Code tensor shape for a (padded) clip of t x h x w frames (first `levels` levels)."""
    return (t // self.temporal_factor, h // self.spatial_factor, w // self.spatial_factor,
            self.level_codebooks(levels))

  def padded_size(self, h: int, w: int) -> tuple[int, int]:
    f = self.spatial_factor
    return -(-h // f) * f, -(-w // f) * f

  def nominal_cr(self, t: int = 32, h: int = 256, w: int = 256, levels: int | None = None) -> float:
    return rate.compression_rate((t, h, w, 3), self.code_shape(t, h, w, levels), self.num_entries)

  # ----------------------------------------------------------------------------- coding
  def pad(self, frames: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """Edge-pads uint8 [T,H,W,3] to the codec grid (and to `num_frames` frames)."""
    t, h, w = frames.shape[:3]
    ph, pw = self.padded_size(h, w)
    tt = num_frames if num_frames is not None else -(-t // self.temporal_factor) * self.temporal_factor
    if tt % self.temporal_factor:
      raise ValueError(f"chunk of {tt} frames is not a multiple of the codec's temporal patch "
                       f"{self.temporal_factor}")
    if (tt, ph, pw) == (t, h, w):
      return frames
    return np.pad(frames, ((0, tt - t), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")

  def encode(self, frames: np.ndarray, num_frames: int | None = None,
             levels: int | None = None) -> np.ndarray:
    """uint8 [T,H,W,3] (any size) -> integer codes [T',H',W',K] of the padded clip (of the first
    `levels` residual levels: a lower rate)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"expected uint8 frames [T,H,W,3], got shape {frames.shape}")
    x = jnp.asarray(self.pad(frames, num_frames), jnp.float32)[None] / 255.0
    codes = np.asarray(self._encode(self.variables, x)[0])[..., :self.level_codebooks(levels)]
    return codes.astype(np.uint16 if self.bits <= 16 else np.uint32)

  def decode(self, codes: np.ndarray, size: tuple[int, int, int] | None = None) -> np.ndarray:
    """Codes [T',H',W',K] -> uint8 frames, cropped to `size` = (T, H, W) when given."""
    k = int(self.model.num_codebooks)
    if codes.ndim != 4 or codes.shape[-1] % k or not k <= codes.shape[-1] <= self.num_codebooks:
      raise ValueError(f"expected codes [T',H',W',{self.num_codebooks}] (or whole residual levels "
                       f"of {k}), got {codes.shape}")
    if codes.size and int(codes.max()) >= self.num_entries:
      raise ValueError(f"code index {int(codes.max())} >= codebook size {self.num_entries}: "
                       f"these codes were made by a different codec")
    video = self._decode(self.variables, jnp.asarray(codes, jnp.int32)[None])[0]
    video = np.asarray(jnp.clip(video * 255.0 + 0.5, 0, 255)).astype(np.uint8)
    if size is not None:
      t, h, w = size
      video = video[:t, :h, :w]
    return video

  def latents(self, codes: jax.Array) -> jax.Array:
    """Codebook embeddings [..., K*D] of integer codes (on device, for downstream models)."""
    return self.model.apply(self.variables, jnp.asarray(codes, jnp.int32),
                            method=lambda m, c: m.quantizer.codes_to_latents(c))

  def iter_encode(self, chunks: Iterator[np.ndarray], levels: int | None = None
                  ) -> Iterator[tuple[np.ndarray, int]]:
    """Encodes a stream of equal-size frame chunks with bounded memory; yields (codes, frames).

    All full chunks share one compiled program; a shorter last chunk compiles once more.
    """
    for chunk in chunks:
      yield self.encode(chunk, levels=levels), int(chunk.shape[0])

  # ----------------------------------------------------------------------------- files
  def save(self, path: str) -> None:
    """Writes the codec to one file (atomically)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": _canonical(self.model_config),
        "info": _canonical(self.info),
        "params": jax.tree.map(np.asarray, self.params),
        "vq": jax.tree.map(np.asarray, self.vq),
        "code_counts": (np.zeros((0,), np.int64) if self.code_counts is None
                        else np.asarray(self.code_counts, np.int64)),
    }
    with fileio.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(payload))

  @classmethod
  def load(cls, path: str | None = None) -> "NeuralCodec":
    """Loads a codec file, a `vq_codec` workdir, a shipped codec by name, or (None) the default
    shipped codec."""
    path = shipped.resolve(path)
    if os.path.isdir(path):
      return cls.from_workdir(path)
    if not os.path.exists(path):
      raise CodecError(f"{path}: codec file not found; pass a .cvcodec file, a vq_codec workdir "
                       f"or a shipped codec name ({', '.join(shipped.SHIPPED)}; omit it for "
                       f"{shipped.DEFAULT})")
    try:
      with open(path, "rb") as f:
        payload = flax.serialization.msgpack_restore(f.read())
    except Exception as e:  # msgpack raises several unrelated types on garbage
      raise CodecError(f"{path}: not a codec file ({type(e).__name__}: {e})") from None
    version = int(payload.get("format_version", -1))
    if version != FORMAT_VERSION:
      raise CodecError(f"{path}: codec format version {version}, this code reads version "
                       f"{FORMAT_VERSION}; re-export the codec with tools/export_codec.py")
    model_config = json.loads(payload["model_config"])
    counts = np.asarray(payload["code_counts"])
    codec = cls(model_config, payload["params"], payload["vq"],
                counts if counts.size else None, json.loads(payload["info"]))
    expected = codec.info.get("config_hash")
    if expected and expected != codec.config_hash:
      raise CodecError(f"{path}: config hash {codec.config_hash} does not match the recorded "
                       f"{expected}; the file was edited or corrupted")
    return codec

  @classmethod
  def shipped_with_id(cls, codec_id: str) -> "NeuralCodec | None":
    """The shipped codec whose `codec_id` is `codec_id` (the id a `.cvz` header records), or
    None: lets a file written with any shipped codec decompress without naming it. Loads only
    the codec the id table names (cv.codec.shipped)."""
    try:
      name = shipped.name_of_id(codec_id)
    except ValueError as e:
      raise CodecError(f"{shipped.ids_path()}: not a JSON id table ({e}); restore it with git "
                       f"checkout, or pass --codec") from None
    if name is None or not os.path.exists(shipped.path_of(name)):
      return None
    codec = cls.load(name)
    if codec.codec_id != codec_id:
      raise CodecError(f"{shipped.ids_path()} records {codec_id} for "
                       f"{name}, but {shipped.path_of(name)} has id {codec.codec_id}; the asset "
                       f"was replaced without tools/export_codec.py: re-export it, or pass --codec")
    return codec

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "NeuralCodec":
    """The codec of a `vq_codec` run: its config.json and newest (or given) checkpoint."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.exists(cfg_path):
      raise CodecError(f"{workdir}: no config.json; is this a vq_codec workdir?")
    config = mlc.ConfigDict(json.load(open(cfg_path)))
    if config.trainer != "vq_codec":
      raise CodecError(f"{workdir}: trainer is {config.trainer!r}, not a vq_codec run")
    try:
      state, step = checkpoint.load_state_tree(workdir, step)
    except FileNotFoundError as e:
      raise CodecError(str(e)) from None
    model_config = config.model.to_dict()
    model_config["channels"] = list(model_config["channels"])
    info = {"source": os.path.abspath(workdir), "step": step, "trained_clip":
            [config.data.num_frames, config.data.crop, config.data.crop]}
    codec = cls(model_config, state["params"], state["model_state"].get("vq", {}), None, info)
    codec.info["config_hash"] = codec.config_hash
    return codec
