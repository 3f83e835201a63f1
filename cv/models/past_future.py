"""Past-Future model for the WalkingTours task (Compressed Vision, Wiles et al. 2022, Appendix D).

A long continuous video is split into chunks (5 s each) that the model sees in order, causally.
At each step t a *query* chunk is drawn from anywhere in the video (and randomly cropped in
space); the label says whether the query lies in the past (chunk index <= t, already seen: label
1) or in the future (label 0). The model has four parts:

  Adapter    a shallow separable 3-D CNN over one chunk's code embeddings [B,T,H,W,C], mean
             pooled over T,H,W to a representation [B, dim]. The SAME adapter embeds memory
             chunks and queries; mean pooling makes it indifferent to the query's crop size.
  Memory     what the model keeps of the chunks seen so far, as a pytree *state* the trainer
             carries through `jax.lax.scan`:
               none  no memory (the task is then at chance: a control);
               lstm  an LSTM over chunk representations, read as its hidden state h;
               slot  deterministic write: each chunk's representation is appended to an
                     external memory of `max_slots` slots; reading is learned by the core.
             The none and slot reads offer a learned "null" token (for `none` the only token),
             so attention is defined even before anything has been written.
  Core       cross-attention: the query representation attends over the memory tokens
             (pre-LayerNorm transformer layers, query-only residual stream). No positional
             encodings: slots carry no explicit chunk index.
  Predictor  one linear layer to a single logit (past = 1).

All modules are pure functions of their inputs (LayerNorm, no BatchNorm), so they can run inside
`lax.scan` with per-chunk gradients without threading mutable batch statistics.

Usage (one causal step per chunk; `state` is a plain dict of arrays):

  model = PastFuture(memory="slot", dim=128, max_slots=64)
  state = initial_state("slot", batch, 128, 64)
  variables = model.init(key, state, chunk, query)          # traces __call__: all params
  rep = model.apply(variables, chunk, method=PastFuture.embed)
  state = model.apply(variables, state, rep, method=PastFuture.write)
  logit = model.apply(variables, state, query_rep, method=PastFuture.predict)
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cv.models.s3d import Conv

MEMORY_KINDS: tuple[str, ...] = ("none", "lstm", "slot")

State = dict[str, jax.Array]


def check_memory_kind(kind: str) -> None:
  """Raises a ValueError naming the valid kinds if `kind` is not one of MEMORY_KINDS."""
  if kind not in MEMORY_KINDS:
    raise ValueError(f"unknown memory kind {kind!r}; valid kinds: {', '.join(MEMORY_KINDS)}")


def initial_state(memory: str, batch: int, dim: int, max_slots: int = 1) -> State:
  """The empty memory state of `memory` kind for `batch` sequences (pure zeros, no params).

  none -> {"dummy": [B, 1]} (a leaf so that `lax.scan` has something to carry);
  lstm -> {"c": [B, dim], "h": [B, dim]};
  slot -> {"slots": [B, max_slots, dim], "count": int32 [B]} (`count` slots are filled).
  """
  check_memory_kind(memory)
  if memory == "none":
    return {"dummy": jnp.zeros((batch, 1), jnp.float32)}
  if memory == "lstm":
    return {"c": jnp.zeros((batch, dim), jnp.float32), "h": jnp.zeros((batch, dim), jnp.float32)}
  if max_slots < 1:
    raise ValueError(f"slot memory needs max_slots >= 1, got {max_slots}")
  return {"slots": jnp.zeros((batch, max_slots, dim), jnp.float32),
          "count": jnp.zeros((batch,), jnp.int32)}


class Adapter(nn.Module):
  """Shallow separable 3-D CNN: chunk code embeddings [B,T,H,W,C] -> representation [B, out_dim].

  Two blocks of [1x3x3 conv -> LayerNorm -> relu -> 3x1x1 conv (temporal stride) -> LayerNorm ->
  relu]; the second block's 1x3x3 conv has spatial stride 2. Then a mean over T,H,W (any grid or
  crop size >= 1 works), Dense(out_dim) and LayerNorm. Convolutions are the CPU-friendly `Conv`
  of `cv.models.s3d` (2-D over frames / 1-D over time; never a full 3-D kernel). `dtype` is the
  computation dtype of the convolutions; the pooled features and the output are float32.
  """
  features: int = 64
  out_dim: int = 128
  temporal_stride: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 5:
      raise ValueError(f"Adapter expects [B,T,H,W,C], got shape {x.shape}")
    x = x.astype(self.dtype)
    for spatial_stride in (1, 2):
      x = Conv(self.features, (1, 3, 3), (1, spatial_stride, spatial_stride), dtype=self.dtype)(x)
      x = nn.relu(nn.LayerNorm(dtype=self.dtype)(x))
      x = Conv(self.features, (3, 1, 1), (self.temporal_stride, 1, 1), dtype=self.dtype)(x)
      x = nn.relu(nn.LayerNorm(dtype=self.dtype)(x))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    x = nn.Dense(self.out_dim)(x)
    return nn.LayerNorm()(x)


class Memory(nn.Module):
  """Memory of chunk representations with a pytree state (see `initial_state`).

  `write(state, rep)` stores one representation [B, dim]; `read(state)` returns the tokens the
  core attends over, [B, M, dim], with a validity mask [B, M]. The none and slot reads start
  with a learned null token (always valid), so attention is defined even for an empty memory;
  the lstm read is its hidden state h alone (zeros before the first write).

  Slot memory writes chunk n into slot n. When all `max_slots` slots are full further writes are
  DROPPED (the oldest chunks are kept, `count` stays at max_slots); no index ever goes out of
  bounds. Size `max_slots` to the number of chunks per sequence to never lose one.
  """
  kind: str
  dim: int
  max_slots: int = 1

  def __post_init__(self) -> None:
    check_memory_kind(self.kind)
    if self.kind == "slot" and self.max_slots < 1:
      raise ValueError(f"slot memory needs max_slots >= 1, got {self.max_slots}")
    super().__post_init__()

  def setup(self) -> None:
    if self.kind == "lstm":
      self.cell = nn.OptimizedLSTMCell(self.dim)
    else:
      self.null = self.param("null", nn.initializers.normal(0.02), (self.dim,))

  def initial_state(self, batch: int) -> State:
    """The empty state for this memory (same as the module-level `initial_state`)."""
    return initial_state(self.kind, batch, self.dim, self.max_slots)

  def write(self, state: State, rep: jax.Array) -> State:
    """Stores `rep` [B, dim]: none -> unchanged; lstm -> one LSTM step; slot -> append."""
    if self.kind == "none":
      return state
    rep = rep.astype(jnp.float32)
    if self.kind == "lstm":
      (c, h), _ = self.cell((state["c"], state["h"]), rep)
      return {"c": c, "h": h}
    slots, count = state["slots"], state["count"]
    # one_hot of count == max_slots is all zeros: a write to a full memory changes nothing.
    onehot = jax.nn.one_hot(count, self.max_slots, dtype=slots.dtype)[..., None]
    slots = slots + onehot * (rep[:, None, :] - slots)
    return {"slots": slots, "count": jnp.minimum(count + 1, self.max_slots).astype(jnp.int32)}

  def read(self, state: State) -> tuple[jax.Array, jax.Array]:
    """(tokens [B, M, dim], mask bool [B, M]). none: the null token (M = 1); lstm: h (M = 1);
    slot: the null token then all max_slots slots (M = 1 + max_slots), valid where the slot
    index < count (the null token is always valid)."""
    batch = jax.tree.leaves(state)[0].shape[0]
    true = jnp.ones((batch, 1), bool)
    if self.kind == "lstm":
      return state["h"][:, None, :], true
    null = jnp.broadcast_to(self.null, (batch, 1, self.dim))
    if self.kind == "none":
      return null, true
    valid = jnp.arange(self.max_slots)[None, :] < state["count"][:, None]
    return jnp.concatenate([null, state["slots"]], 1), jnp.concatenate([true, valid], 1)


class Core(nn.Module):
  """Cross-attention of one query vector over memory tokens.

  Per layer (pre-LayerNorm, residual on the query only):
    q = q + MultiHeadAttention(LN(q), LN(tokens), mask)
    q = q + MLP(LN(q))        (Dense(mlp_ratio * dim) -> gelu -> Dense(dim))
  Returns LN(q) [B, dim]. No positional encodings.
  """
  dim: int
  num_heads: int = 4
  num_layers: int = 1
  mlp_ratio: int = 2

  @nn.compact
  def __call__(self, query: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    q = query
    for _ in range(self.num_layers):
      attn = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.dim,
                                             out_features=self.dim)
      q = q + attn(nn.LayerNorm()(q)[:, None], nn.LayerNorm()(tokens),
                   mask=mask[:, None, None, :])[:, 0]
      y = nn.Dense(self.mlp_ratio * self.dim)(nn.LayerNorm()(q))
      q = q + nn.Dense(self.dim)(nn.gelu(y))
    return nn.LayerNorm()(q)


class PastFuture(nn.Module):
  """Adapter + Memory + Core + linear predictor for the WalkingTours Past-Future task.

  Methods (for `model.apply(variables, ..., method=PastFuture.<name>)`):
    embed(chunk [B,T,H,W,C]) -> rep [B, dim]           the adapter (memory chunks and queries)
    write(state, rep [B, dim]) -> state                 store one chunk in memory
    predict(state, query_rep [B, dim]) -> logit [B]     read memory, core, predictor
    __call__(state, chunk, query) -> (logit [B], state) one causal step: write chunk, then ask
  `init` traces `__call__`, which creates every parameter the memory kind needs. `dtype` is the
  adapter's convolution dtype; everything else (and the state) is float32.
  """
  memory: str = "slot"
  dim: int = 128
  adapter_features: int = 64
  max_slots: int = 1024
  num_heads: int = 4
  num_layers: int = 1
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    check_memory_kind(self.memory)
    if self.dim % self.num_heads:
      raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
    super().__post_init__()

  def setup(self) -> None:
    self.adapter = Adapter(self.adapter_features, self.dim, dtype=self.dtype)
    self.mem = Memory(self.memory, self.dim, self.max_slots)
    self.core = Core(self.dim, self.num_heads, self.num_layers)
    self.predictor = nn.Dense(1)

  def initial_state(self, batch: int) -> State:
    """The empty memory state (same as the module-level `initial_state`; needs no params)."""
    return initial_state(self.memory, batch, self.dim, self.max_slots)

  def embed(self, chunk: jax.Array) -> jax.Array:
    """Representation [B, dim] of a chunk or query crop [B,T,H,W,C]."""
    return self.adapter(chunk)

  def write(self, state: State, rep: jax.Array) -> State:
    """The memory state after storing `rep` [B, dim]."""
    return self.mem.write(state, rep)

  def predict(self, state: State, query_rep: jax.Array) -> jax.Array:
    """Past-vs-future logit [B] (past = positive) for `query_rep` [B, dim] given the memory."""
    tokens, mask = self.mem.read(state)
    return self.predictor(self.core(query_rep, tokens, mask))[:, 0]

  def __call__(self, state: State, chunk: jax.Array,
               query: jax.Array) -> tuple[jax.Array, State]:
    """One causal step: embed and write `chunk`, then classify `query`. (logit [B], new state)."""
    state = self.write(state, self.embed(chunk))
    return self.predict(state, self.embed(query)), state
