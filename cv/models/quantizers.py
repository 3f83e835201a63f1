"""Vector quantisation of codec latents (docs/design.md, Models).

`VectorQuantizerEMA`: K codebooks of N entries; the latent's C channels are split into K
contiguous groups of D = C/K channels and each group is quantised by its own codebook (nearest
neighbour). Codebooks are not trained by gradients but by exponential moving averages of the
assigned encoder outputs (van den Oord et al. 2017, App. A.1) with Laplace smoothing; the encoder
gets the straight-through gradient plus a commitment loss. Entries whose EMA usage falls below
`restart_threshold` x their fair share (M/N of the M vectors in a batch) are *restarted* at random
encoder outputs of the current batch, so no code stays dead. On the first training step every
entry is unused, which initialises the codebook from data.

The EMA statistics live in the `vq` variable collection (not `params`); the trainer passes
`mutable=["vq"]` in training and stores the collection in `TrainState.model_state`.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class VectorQuantizerEMA(nn.Module):
  num_codebooks: int
  num_entries: int
  decay: float = 0.99
  commitment_cost: float = 0.25
  epsilon: float = 1e-5
  restart_threshold: float = 0.03

  @property
  def bits_per_index(self) -> int:
    return int(math.ceil(math.log2(self.num_entries)))

  def _groups(self, z: jax.Array) -> jax.Array:
    c = z.shape[-1]
    if c % self.num_codebooks:
      raise ValueError(f"latent channels {c} are not divisible by num_codebooks={self.num_codebooks}")
    return z.reshape(-1, self.num_codebooks, c // self.num_codebooks)

  def _variables(self, dim: int):
    k, n = self.num_codebooks, self.num_entries
    init = lambda: jax.random.normal(self.make_rng("params"), (k, n, dim)) * (1.0 / math.sqrt(dim))
    codebook = self.variable("vq", "codebook", init)
    cluster_size = self.variable("vq", "cluster_size", lambda: jnp.zeros((k, n), jnp.float32))
    embed_sum = self.variable("vq", "embed_sum", lambda: jnp.zeros((k, n, dim), jnp.float32))
    return codebook, cluster_size, embed_sum

  def codes_to_latents(self, codes: jax.Array) -> jax.Array:
    """[..., K] int codes -> [..., K*D] continuous latents (codebook lookup)."""
    codebook = self.get_variable("vq", "codebook")  # [K, N, D]
    k, _, d = codebook.shape
    flat = codes.reshape(-1, k)
    q = jax.vmap(lambda cb, idx: cb[idx], in_axes=(0, 1), out_axes=1)(codebook, flat)
    return q.reshape(*codes.shape[:-1], k * d)

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> dict[str, Any]:
    """z [..., C] -> dict(quantized (straight-through), codes [..., K], loss, perplexity, usage)."""
    lead = z.shape[:-1]
    zg = self._groups(z.astype(jnp.float32))  # [M, K, D]
    m, k, d = zg.shape
    codebook, cluster_size, embed_sum = self._variables(d)
    cb = codebook.value
    dist = (jnp.sum(zg**2, -1)[..., None] - 2 * jnp.einsum("mkd,knd->mkn", zg, cb)
            + jnp.sum(cb**2, -1)[None])
    codes = jnp.argmin(dist, axis=-1)  # [M, K]
    onehot = jax.nn.one_hot(codes, self.num_entries, dtype=jnp.float32)  # [M, K, N]
    q = jnp.einsum("mkn,knd->mkd", onehot, cb)
    counts = jnp.sum(onehot, axis=0)  # [K, N]

    if train and not self.is_initializing():
      cs = self.decay * cluster_size.value + (1 - self.decay) * counts
      es = self.decay * embed_sum.value + (1 - self.decay) * jnp.einsum("mkn,mkd->knd", onehot, zg)
      total = jnp.sum(cs, axis=-1, keepdims=True)
      smoothed = (cs + self.epsilon) / (total + self.num_entries * self.epsilon) * total
      new_cb = es / jnp.maximum(smoothed[..., None], 1e-12)
      # Restart dead entries at random encoder outputs of this batch.
      fair = m / self.num_entries
      dead = cs < self.restart_threshold * fair  # [K, N]
      pick = jax.random.randint(self.make_rng("vq"), (k, self.num_entries), 0, m)
      samples = jnp.take_along_axis(jnp.transpose(zg, (1, 0, 2)), pick[..., None], axis=1)  # [K,N,D]
      samples = jax.lax.stop_gradient(samples)
      # A restarted entry starts just above the threshold: if it wins no vectors it is declared
      # dead again after ~40 steps (at decay 0.99) instead of lingering.
      fresh = 1.5 * self.restart_threshold * fair
      new_cb = jnp.where(dead[..., None], samples, new_cb)
      cs = jnp.where(dead, fresh, cs)
      es = jnp.where(dead[..., None], samples * fresh, es)
      codebook.value, cluster_size.value, embed_sum.value = new_cb, cs, es

    loss = self.commitment_cost * jnp.mean((zg - jax.lax.stop_gradient(q)) ** 2)
    q_st = zg + jax.lax.stop_gradient(q - zg)
    probs = counts / m
    perplexity = jnp.mean(jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-10), axis=-1)))
    usage = jnp.mean(jnp.sum(counts > 0, axis=-1) / self.num_entries)
    return dict(quantized=q_st.reshape(*lead, k * d).astype(z.dtype),
                codes=codes.reshape(*lead, k).astype(jnp.int32),
                loss=loss, perplexity=perplexity, usage=usage, counts=counts)


class FSQ(nn.Module):
  """Finite scalar quantisation (Mentzer et al. 2023): a codebook-free alternative to VQ.

  Each of K channel groups has d = len(levels) channels; channel i is squashed by tanh to
  `levels[i]` values and rounded (straight-through gradient). The implicit codebook holds
  prod(levels) entries, so an index needs the same bits as a VQ codebook of that size — e.g.
  levels (8, 8, 4) = 256 entries = 8 bits. Nothing can collapse or die, and there is no auxiliary
  loss, no EMA state and no restarts.
  """
  num_codebooks: int
  levels: tuple[int, ...] = (8, 8, 4)
  eps: float = 1e-3

  @property
  def num_entries(self) -> int:
    return int(math.prod(self.levels))

  def _consts(self):
    levels = jnp.asarray(self.levels, jnp.float32)
    half = jnp.asarray([l // 2 for l in self.levels], jnp.float32)
    basis = jnp.asarray([math.prod(self.levels[:i]) for i in range(len(self.levels))], jnp.int32)
    return levels, half, basis

  def _bound(self, z: jax.Array) -> jax.Array:
    levels, _, _ = self._consts()
    half_l = (levels - 1) * (1 + self.eps) / 2
    offset = jnp.where(jnp.asarray(self.levels) % 2 == 0, 0.5, 0.0)
    shift = jnp.arctanh(offset / half_l)
    return jnp.tanh(z + shift) * half_l - offset

  def codes_to_latents(self, codes: jax.Array) -> jax.Array:
    """[..., K] indices -> [..., K*d] quantised values in [-1, 1]."""
    levels, half, basis = self._consts()
    digits = (codes[..., None].astype(jnp.int32) // basis) % levels.astype(jnp.int32)
    q = (digits.astype(jnp.float32) - half) / half
    return q.reshape(*codes.shape[:-1], self.num_codebooks * len(self.levels))

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> dict[str, Any]:
    del train
    d = len(self.levels)
    if z.shape[-1] != self.num_codebooks * d:
      raise ValueError(f"FSQ with levels {self.levels} needs {self.num_codebooks * d} latent "
                       f"channels, got {z.shape[-1]} (set code_dim={d})")
    lead = z.shape[:-1]
    zg = z.astype(jnp.float32).reshape(-1, self.num_codebooks, d)
    bounded = self._bound(zg)
    rounded = bounded + jax.lax.stop_gradient(jnp.round(bounded) - bounded)
    _, half, basis = self._consts()
    q = rounded / half
    digits = (jnp.round(jax.lax.stop_gradient(rounded)) + half).astype(jnp.int32)
    codes = jnp.sum(digits * basis, axis=-1)  # [M, K]
    counts = jnp.sum(jax.nn.one_hot(codes, self.num_entries, dtype=jnp.float32), axis=0)
    probs = counts / codes.shape[0]
    perplexity = jnp.mean(jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-10), axis=-1)))
    usage = jnp.mean(jnp.sum(counts > 0, axis=-1) / self.num_entries)
    return dict(quantized=q.reshape(*lead, self.num_codebooks * d).astype(z.dtype),
                codes=codes.reshape(*lead, self.num_codebooks), loss=jnp.zeros((), jnp.float32),
                perplexity=perplexity, usage=usage, counts=counts)


class ResidualVQ(nn.Module):
  """Residual vector quantisation: one model, several rates (beyond the paper).

  Level l (of `num_levels`) quantises what levels < l left over, with its own EMA codebooks
  (`VectorQuantizerEMA`, K codebooks x N entries). The codes of level l are appended on the last
  axis ([..., L*K], level-major), so the first l*K indices are a complete, lower-rate code: each
  level adds K*log2(N) bits per position and more quality. Training draws the number of active
  levels at random per step (quantiser dropout), so every prefix decodes well.
  """
  num_levels: int
  num_codebooks: int
  num_entries: int
  decay: float = 0.99
  commitment_cost: float = 0.25
  restart_threshold: float = 0.03

  def setup(self):
    self.stages = [VectorQuantizerEMA(self.num_codebooks, self.num_entries, self.decay,
                                      self.commitment_cost, restart_threshold=self.restart_threshold,
                                      name=f"level_{l}") for l in range(self.num_levels)]

  def codes_to_latents(self, codes: jax.Array) -> jax.Array:
    """[..., l*K] codes of the first l levels -> the sum of their codebook vectors."""
    levels = codes.shape[-1] // self.num_codebooks
    if levels < 1 or levels > self.num_levels or codes.shape[-1] % self.num_codebooks:
      raise ValueError(f"codes with {codes.shape[-1]} indices per position do not hold whole "
                       f"levels of {self.num_codebooks} codebooks (1..{self.num_levels} levels)")
    out = 0.0
    for l in range(levels):
      out = out + self.stages[l].codes_to_latents(
          codes[..., l * self.num_codebooks:(l + 1) * self.num_codebooks])
    return out

  def __call__(self, z: jax.Array, *, train: bool, active_levels: jax.Array | int | None = None
               ) -> dict[str, Any]:
    """Quantises z with all levels; the output sums the first `active_levels` (default all)."""
    z = z.astype(jnp.float32)
    residual, total = z, jnp.zeros_like(z)
    codes, loss, perplexity, usage, counts = [], 0.0, 0.0, 0.0, []
    active = self.num_levels if active_levels is None else active_levels
    for l, stage in enumerate(self.stages):
      out = stage(residual, train=train)
      q = jax.lax.stop_gradient(out["quantized"])  # the codebook vectors (ST value == q)
      total = total + jnp.where(l < active, q, 0.0)
      residual = residual - q
      codes.append(out["codes"])
      loss = loss + out["loss"]
      perplexity, usage = perplexity + out["perplexity"], usage + out["usage"]
      counts.append(out["counts"])
    return dict(quantized=z + jax.lax.stop_gradient(total - z),  # straight-through
                codes=jnp.concatenate(codes, axis=-1), loss=loss,
                perplexity=perplexity / self.num_levels, usage=usage / self.num_levels,
                counts=jnp.concatenate(counts, axis=0))
