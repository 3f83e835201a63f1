"""The augmentation API for downstream trainers: a trained `latent_aug` network, applied on device.

  aug = LatentAugmenter.load("workdirs/k600_latent_aug_aug=crop_flip")
  p = aug.random_params(rng, batch)          # train time: random crops / flips / ...
  latents = aug.augment(latents, p)          # jittable; inside a jitted step it fuses with it
  views = aug.views(num_crops=3)             # [V, P] deterministic views for test-time averaging

Latents are the codec's codebook vectors of the codes ([B, T', H', W', C], what
`NeuralCodec.latents` returns). A network only fits the codec it was trained with: `load`
records that codec's id and `check_codec` refuses any other.

`load` also reads DeepMind's released flip network as converted by tools/import_dm.py (a folder
with `augmenter.json` whose "arch" is "dm_flip" and `params.msgpack`; `write_dm`): spec
("flip",), conditioned on the flip flag, for the latents of the codec converted with it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.serialization
import jax
import ml_collections as mlc
import numpy as np

from cv.augment import ops
from cv.lib import checkpoint, fileio
from cv.lib.errors import ConfigError
from cv.models.aug_net import AugNet

INFO_FILE = "augmenter.json"  # written by the latent_aug trainer into its workdir
DM_ARCH = "dm_flip"  # augmenter.json "arch" of DeepMind's converted flip network
DM_PARAMS_FILE = "params.msgpack"


def build_net(model: mlc.ConfigDict, latent_dim: int) -> AugNet:
  """The augmentation network of a `latent_aug` config's `model` section."""
  return AugNet(latent_dim=latent_dim, width=model.width, mlp_hidden=model.mlp_hidden,
                num_layers=model.num_layers, num_heads=model.num_heads, mlp_ratio=model.mlp_ratio,
                num_freqs=model.num_freqs)


def net_options(model: mlc.ConfigDict) -> dict[str, bool]:
  """`net_inputs`' keywords from a `latent_aug` config's `model` block (what the network sees)."""
  return dict(geometric_prior=bool(model.geometric_prior), source_phase=bool(model.source_phase))


def net_inputs(latents: jax.Array, aug_params: jax.Array, spec: tuple[str, ...], *,
               geometric_prior: bool, source_phase: bool) -> tuple[jax.Array, jax.Array | None]:
  """What the network sees for A(E(x), p): the latents, first warped like the pixels when
  `geometric_prior`, and per-cell sub-cell phase inputs (`ops.source_phase`) when
  `source_phase` and the spec moves content off the cell grid (else None)."""
  if geometric_prior:
    latents = ops.warp_grid(latents, aug_params, spec)
  features = None
  if source_phase and any(n in ops.OFF_GRID for n in spec):
    features = ops.source_phase(aug_params, spec, latents.shape[2:4])
  return latents, features


def apply_net(net: AugNet, params: Any, latents: jax.Array, aug_params: jax.Array,
              spec: tuple[str, ...], **options: bool) -> jax.Array:
  """A(E(x), p): the one definition of what a trained network computes, shared by the trainer
  and `LatentAugmenter`; `options` are `net_inputs`' keywords."""
  latents, features = net_inputs(latents, aug_params, spec, **options)
  return net.apply({"params": params}, latents, aug_params, cell_features=features)


def init_net(net: AugNet, rng: jax.Array, latents: jax.Array, spec: tuple[str, ...],
             **options: bool) -> Any:
  """Fresh network parameters for latents shaped like `latents` [B, T', H', W', C]."""
  aug_params = ops.identity_params(spec, latents.shape[0])
  latents, features = net_inputs(latents, aug_params, spec, **options)
  return net.init(rng, latents, aug_params, cell_features=features)["params"]


def write_info(workdir: str, spec: tuple[str, ...], ranges: dict[str, Any], codec_id: str,
               latent_dim: int, geometric_prior: bool, source_phase: bool) -> None:
  """Records what a `latent_aug` run's network expects, for `LatentAugmenter.load`."""
  fileio.write_json(os.path.join(workdir, INFO_FILE),
                    dict(spec=list(spec), ranges=ranges, codec_id=codec_id, latent_dim=latent_dim,
                         geometric_prior=geometric_prior, source_phase=source_phase))


@dataclasses.dataclass
class LatentAugmenter:
  """A frozen augmentation network with its spec, sampling ranges and codec."""
  spec: tuple[str, ...]
  net: Any  # AugNet, or cv.models.dm_aug.DMAugNet for DeepMind's flip network
  params: Any
  ranges: dict[str, Any]
  codec_id: str
  geometric_prior: bool = True
  source_phase: bool = False

  @property
  def param_dim(self) -> int:
    return ops.param_dim(self.spec)

  @property
  def net_options(self) -> dict[str, bool]:
    """`net_inputs`' keywords: which inputs this network was trained with."""
    return dict(geometric_prior=self.geometric_prior, source_phase=self.source_phase)

  def augment(self, latents: jax.Array, params: jax.Array) -> jax.Array:
    """Latents [B,T',H',W',C] transformed as the clip would be by `params` [B, P]."""
    return apply_net(self.net, self.params, latents, params, self.spec, **self.net_options)

  def random_params(self, rng: jax.Array, batch: int) -> jax.Array:
    """Random parameters [batch, P] from the ranges the network was trained on."""
    return ops.sample_params(rng, self.spec, batch, **self.ranges)

  def views(self, num_crops: int = 3, flips: bool = True) -> jax.Array:
    """Deterministic views [V, P] (linearly spaced crops x flips) for test-time averaging."""
    return ops.eval_views(self.spec, num_crops=num_crops, flips=flips)

  def check_codec(self, codec_id: str, where: str) -> None:
    if codec_id != self.codec_id:
      raise ConfigError(f"{where}: the augmentation network was trained on latents of codec "
                        f"{self.codec_id}, but this run uses codec {codec_id}; train a latent_aug "
                        f"run with this codec (--config.codec=...) or use its codec")

  @classmethod
  def load(cls, workdir: str, step: int | None = None) -> "LatentAugmenter":
    """The network of a finished `latent_aug` run in `workdir` (newest or given checkpoint)."""
    workdir = os.path.expanduser(workdir)
    cfg_path, info_path = (os.path.join(workdir, f) for f in ("config.json", INFO_FILE))
    if not os.path.exists(cfg_path) and os.path.exists(info_path):
      info = json.load(open(info_path))
      if info.get("arch") == DM_ARCH:
        return cls._load_dm(workdir, info)
    for path in (cfg_path, info_path):
      if not os.path.exists(path):
        raise ConfigError(f"{path} not found: {workdir} is not a latent_aug run; train one with "
                          f"python -m cv.main --config=cv/configs/k600_latent_aug.py")
    config = mlc.ConfigDict(json.load(open(cfg_path)))
    if config.trainer != "latent_aug":
      raise ConfigError(f"{workdir}: trainer is {config.trainer!r}, not a latent_aug run")
    info = json.load(open(info_path))
    try:
      state, _ = checkpoint.load_state_tree(workdir, step)
    except FileNotFoundError as e:
      raise ConfigError(str(e)) from None
    return cls(spec=tuple(info["spec"]), net=build_net(config.model, info["latent_dim"]),
               params=state["params"], ranges=dict(info["ranges"]), codec_id=info["codec_id"],
               geometric_prior=bool(info["geometric_prior"]),
               # Runs from before the option have no key: their networks never saw the phase.
               source_phase=bool(info.get("source_phase", False)))

  @classmethod
  def _load_dm(cls, workdir: str, info: dict[str, Any]) -> "LatentAugmenter":
    """DeepMind's flip network as `write_dm` stored it."""
    from cv.codec import dm_import  # pylint: disable=g-import-not-at-top
    path = os.path.join(workdir, DM_PARAMS_FILE)
    if not os.path.exists(path):
      raise ConfigError(f"{path} not found: re-run tools/import_dm.py on the flip checkpoint")
    with open(path, "rb") as f:
      params = flax.serialization.msgpack_restore(f.read())
    return cls(spec=tuple(info["spec"]), net=dm_import.build_augmenter(info["net"]), params=params,
               ranges=dict(info["ranges"]), codec_id=info["codec_id"], geometric_prior=False,
               source_phase=False)


def write_dm(folder: str, net: dict[str, Any], params: Any, codec_id: str, source: str) -> None:
  """Writes DeepMind's converted flip network (`cv.codec.dm_import.augmenter_from_checkpoint`)
  as a folder `LatentAugmenter.load` reads: flip flag in, transformed latents of codec
  `codec_id` out; training samples flips with probability 0.5."""
  os.makedirs(folder, exist_ok=True)
  with fileio.atomic_path(os.path.join(folder, DM_PARAMS_FILE)) as tmp:
    with open(tmp, "wb") as f:
      f.write(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))
  fileio.write_json(os.path.join(folder, INFO_FILE),
                    dict(arch=DM_ARCH, spec=["flip"], ranges={"flip_prob": 0.5}, codec_id=codec_id,
                         latent_dim=int(net["latent_dim"]), geometric_prior=False,
                         source_phase=False, net=net, source=source))
