"""`past_future` trainer: hour-long video understanding on codes (paper §4.6, Appendix D).

The task (WalkingTours "Past-Future"): a long continuous walk is cut into chunks (5 s by
default) that the model sees one after another, causally. After each chunk t a query chunk is
drawn uniformly from the whole walk and randomly cropped in space; the model says whether the
query lies in the past (index <= t: already seen) or in the future. Components
(`cv.models.past_future`): an adapter (a shallow 3-D CNN over a chunk's code embeddings), a
memory (`none`; `lstm` over chunk representations; `slot`, which appends every chunk's
representation), a cross-attention core (the query attends to the memory) and a linear
predictor. Without memory the task is chance; an LSTM can at best learn the half-way heuristic
(answer "past" late in the walk: 75%); slots can solve it.

Training: one step is a batch of walks (`config.data.num_chunks` consecutive chunks each, 0 =
whole walks). A forward scan embeds every chunk and records the memory before every step; then
the steps are processed `config.group` at a time, and the gradient of each step's query loss is
taken with the memory from earlier chunks held constant (as in the paper: "backpropagation over
these chunks individually") and summed, so device memory is that of one group of chunks plus
the memory slots, however long the walk. Codes come from code shards
(encoded once, chunk by chunk, see `cv.data.walks`), so an hour of video is never held as RGB.

Evaluation runs every held-out walk whole, `config.eval.repeats` times with different query
draws, and reports accuracy, accuracy on past and on future queries, and accuracy against the
position in the walk (table scalars and a TensorBoard image).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from cv.codec import shipped
from cv.codec.neural import NeuralCodec
from cv.data import pipeline, walks
from cv.codec import code_cache
from cv.lib import loop, optim, reporting
from cv.trainers import _images
from cv.lib.errors import ConfigError
from cv.lib.train_state import TrainState
from cv.models import past_future as pf

MEMORIES = ("none", "lstm", "slot")


def build_model(config: mlc.ConfigDict, max_slots: int) -> pf.PastFuture:
  m = config.model
  if m.memory not in MEMORIES:
    raise ConfigError(f"config.model.memory={m.memory!r} is not known; use one of {MEMORIES}")
  return pf.PastFuture(memory=m.memory, dim=m.dim, adapter_features=m.adapter_features,
                       max_slots=max_slots, num_heads=m.num_heads, num_layers=m.num_layers)


def crop_queries(chunks: jax.Array, offsets: jax.Array, size: int) -> jax.Array:
  """Per-example spatial crops: chunks [B, T, H, W, C], offsets int [B, 2] -> [B, T, size, size, C]."""
  def one(x, off):
    return jax.lax.dynamic_slice(x, (0, off[0], off[1], 0), (x.shape[0], size, size, x.shape[3]))
  return jax.vmap(one)(chunks, offsets)


def draw_queries(rng: jax.Array, batch: int, num_chunks: int, grid: tuple[int, int],
                 size: int) -> tuple[jax.Array, jax.Array]:
  """(query chunk index [N, B], crop offset [N, B, 2]): one uniform query per step and walk."""
  k1, k2 = jax.random.split(rng)
  index = jax.random.randint(k1, (num_chunks, batch), 0, num_chunks)
  limit = jnp.array([grid[0] - size + 1, grid[1] - size + 1])
  offsets = jax.random.randint(k2, (num_chunks, batch, 2), 0, limit)
  return index, offsets


def memory_history(model: pf.PastFuture, params: Any, reps: jax.Array) -> Any:
  """The memory state *before* each step, stacked: reps [N, B, dim] -> state with leading [N].

  Forward only (the memory carried between chunks is a constant of each chunk's gradient).
  slot: all N slots filled with the walk's representations and count = t (slots >= t are masked
  out, so no O(N^2) copies); lstm: the LSTM states from a scan; none: the empty state.
  """
  n, b = reps.shape[:2]
  if model.memory == "slot":
    slots = jnp.broadcast_to(reps.transpose(1, 0, 2)[None], (n, b, n, reps.shape[-1]))
    return {"slots": slots, "count": jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None],
                                                       (n, b))}
  state = pf.initial_state(model.memory, b, model.dim, model.max_slots)
  if model.memory == "none":
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), state)

  def step(state, rep):
    new = model.apply({"params": params}, state, rep, method=pf.PastFuture.write)
    return new, state

  return jax.lax.scan(step, state, reps)[1]


def make_walk_pass(model: pf.PastFuture, features: Callable[[jax.Array], jax.Array],
                   query_crop: int, group: int) -> Callable:
  """walk_pass(params, codes [B, N, T', H', W', K], rng, with_grads) -> (grads or None, outputs).

  One causal pass over the chunks of a batch of walks, in two phases. (1) Forward: every chunk's
  representation and the memory state before every step (`memory_history`). (2) Per step t:
  write chunk t into the state before t, ask about query t, binary cross-entropy against "query
  index <= t"; steps are processed `group` at a time (one group after another, so device memory
  is that of one group of chunks, whatever the walk's length) and, with `with_grads`, the
  gradient of each step's loss is taken with the earlier memory held constant (per-chunk
  gradients, summed; the paper's "backpropagation over these chunks individually").
  Outputs per step: `logit`, `label` (1 = past), `query` (chunk index) [N, B]; `loss` [N].
  """
  def walk_pass(params: Any, codes: jax.Array, rng: jax.Array, with_grads: bool):
    b, n, _, h, w = codes.shape[:5]
    q_index, q_offset = draw_queries(rng, b, n, (h, w), query_crop)
    chunks = codes.swapaxes(0, 1)  # [N, B, ...]
    embed = lambda c: model.apply({"params": params}, features(c), method=pf.PastFuture.embed)
    reps = jax.lax.map(embed, chunks)
    history = memory_history(model, params, jax.lax.stop_gradient(reps))
    rows = jnp.arange(b)
    # Steps are processed `group` at a time: pad the walk to whole groups (masked out below).
    steps = -(-n // group) * group
    pad = lambda x: jnp.pad(x, [(0, steps - n)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    chunks, q_index_p, q_offset = pad(chunks), pad(q_index), pad(q_offset)
    history = jax.tree.map(pad, history)

    def group_loss(p, t0):
      t = t0 + jnp.arange(group)
      flat = lambda x: x.reshape(group * b, *x.shape[2:])
      chunk = flat(jax.lax.dynamic_slice_in_dim(chunks, t0, group))
      q_src = codes[rows[None, :], jax.lax.dynamic_slice_in_dim(q_index_p, t0, group)]
      query = crop_queries(flat(q_src), flat(jax.lax.dynamic_slice_in_dim(q_offset, t0, group)),
                           query_crop)
      state = jax.tree.map(lambda x: flat(jax.lax.dynamic_slice_in_dim(x, t0, group)), history)
      logit, _ = model.apply({"params": p}, state, features(chunk), features(query))
      label = (flat(jax.lax.dynamic_slice_in_dim(q_index_p, t0, group)) <= jnp.repeat(t, b))
      label = label.astype(jnp.float32)
      losses = optax.sigmoid_binary_cross_entropy(logit, label).reshape(group, b).mean(axis=1)
      losses = jnp.where(t < n, losses, 0.0)
      return losses.sum() / n, (logit.reshape(group, b), label.reshape(group, b), losses)

    def body(grads, t0):
      if with_grads:
        (_, (logit, label, losses)), g = jax.value_and_grad(group_loss, has_aux=True)(params, t0)
        grads = jax.tree.map(jnp.add, grads, g)
      else:
        _, (logit, label, losses) = group_loss(params, t0)
      return grads, dict(logit=logit, label=label, loss=losses)

    zeros = jax.tree.map(jnp.zeros_like, params) if with_grads else None
    if jax.default_backend() == "cpu":
      # XLA's CPU backend runs gradient convolutions inside a while loop ~30x slower than the
      # same ops outside one (measured: 61 s vs 1.8 s per step of the default config), so on CPU
      # the groups are unrolled into one program; they still run one after another.
      outs, grads = [], zeros
      for t0 in range(0, steps, group):
        grads, o = body(grads, t0)
        outs.append(o)
      out = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    else:
      grads, out = jax.lax.scan(body, zeros, jnp.arange(0, steps, group))
    out = {k: v.reshape(steps, *v.shape[2:])[:n] for k, v in out.items()}
    out["query"] = q_index
    return grads, out

  return walk_pass


def codes_features(codec: NeuralCodec) -> Callable[[jax.Array], jax.Array]:
  """Integer codes -> the codec's frozen codebook vectors (float [..., D])."""
  return lambda codes: jax.lax.stop_gradient(codec.latents(codes))


class Data:
  """Walks of the train / eval splits as code shards (encoded once, chunk by chunk)."""

  def __init__(self, config: mlc.ConfigDict, codec: NeuralCodec, codec_path: str):
    data = config.data
    if data.format != "walking_tours":
      raise ConfigError(f"config.data.format={data.format!r}: past_future trains on long "
                        f"continuous walks, i.e. a WalkingTours-format dataset "
                        f"(format='walking_tours')")
    if data.chunk_frames % codec.temporal_factor:
      raise ConfigError(f"config.data.chunk_frames={data.chunk_frames} must be a multiple of the "
                        f"codec's temporal factor {codec.temporal_factor}")
    root, manifest = code_cache.ensure_codes(config, codec, codec_path)
    self.train_walks = walks.walk_index(root, data.train_split, manifest)
    self.eval_walks = walks.walk_index(root, data.eval_split, manifest)
    shortest = min(d["length"] for d in self.train_walks)
    self.num_chunks = data.num_chunks or shortest
    if self.num_chunks > shortest:
      raise ConfigError(f"config.data.num_chunks={data.num_chunks} but the shortest training "
                        f"walk has {shortest} chunks; lower it (0 = the shortest walk)")
    self.train_load = walks.LoadWalk(root, data.train_split, self.num_chunks, train=True)
    self.eval_load = walks.LoadWalk(root, data.eval_split, 0, train=False)
    example = self.train_load(self.train_walks[0], np.random.default_rng(0))["codes"]
    self.chunk_shape = example.shape[1:]
    self.max_chunks = max(d["length"] for d in self.train_walks + self.eval_walks)
    self.group = min(config.group, self.num_chunks)
    grid = min(self.chunk_shape[1:3])
    if not 1 <= config.query_crop <= grid:
      raise ConfigError(f"config.query_crop={config.query_crop} must be in [1, {grid}] (code "
                        f"cells; the chunks' grid is {self.chunk_shape[1]}x{self.chunk_shape[2]})")
    reporting.console(f"codes: {root}: {len(self.train_walks)} train walks ({self.num_chunks} "
                      f"chunks per example), {len(self.eval_walks)} eval walks (up to "
                      f"{self.max_chunks} chunks); chunks of {self.chunk_shape} codes")


def position_accuracy(correct: np.ndarray, position: np.ndarray, bins: int
                      ) -> np.ndarray:
  """Accuracy in `bins` equal bins of position in [0, 1) (NaN for an empty bin)."""
  idx = np.minimum((position * bins).astype(int), bins - 1)
  hits = np.bincount(idx, weights=correct, minlength=bins)
  counts = np.bincount(idx, minlength=bins)
  return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def make_task(config: mlc.ConfigDict, data: Data, model: pf.PastFuture,
              features: Callable) -> loop.Task:
  tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
  walk_pass = make_walk_pass(model, features, config.query_crop, data.group)

  def init(rng: jax.Array) -> TrainState:
    p_rng, s_rng = jax.random.split(rng)
    chunk = features(jnp.zeros((1, *data.chunk_shape), jnp.int32))
    query = chunk[:, :, :config.query_crop, :config.query_crop]
    state = pf.initial_state(model.memory, 1, model.dim, model.max_slots)
    params = model.init(p_rng, state, chunk, query)["params"]
    return TrainState.create(params=params, tx=tx, rng=s_rng)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    grads, out = walk_pass(state.params, batch["codes"], state.step_rng(), True)
    correct = ((out["logit"] > 0) == (out["label"] > 0)).astype(jnp.float32)
    metrics = dict(loss=out["loss"].mean(), accuracy=correct.mean(),
                   past_fraction=out["label"].mean(), grad_norm=optax.global_norm(grads))
    return state.apply_gradients(grads), metrics

  @jax.jit
  def eval_pass(params, codes, rng):
    return walk_pass(params, codes, rng, False)[1]

  def evaluate(state: TrainState):
    correct, position, past = [], [], []
    for i, desc in enumerate(data.eval_walks):
      codes = data.eval_load(desc)["codes"]
      batch = np.broadcast_to(codes, (config.eval.repeats, *codes.shape))
      rng = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), i)
      out = jax.device_get(eval_pass(state.params, batch, rng))
      n = codes.shape[0]
      correct.append(((out["logit"] > 0) == (out["label"] > 0)).ravel())
      position.append(np.repeat(np.arange(n) / n, config.eval.repeats))
      past.append(out["label"].ravel() > 0)
    correct, position, past = (np.concatenate(x) for x in (correct, position, past))
    by_position = position_accuracy(correct.astype(np.float64), position, config.eval.bins)
    scalars = dict(accuracy=float(correct.mean()),
                   accuracy_past=float(correct[past].mean()) if past.any() else float("nan"),
                   accuracy_future=float(correct[~past].mean()) if (~past).any() else float("nan"),
                   num_walks=float(len(data.eval_walks)), num_queries=float(correct.size))
    for j, a in enumerate(by_position):
      scalars[f"accuracy_at_{j}"] = float(a)
    image = _images.curve_image(by_position, y_range=(0.0, 1.0), reference=0.5,
                                title="accuracy vs position in the walk")
    return scalars, {"accuracy_by_position": image[None]}

  def make_train_iter():
    return pipeline.config_train_iterator(data.train_walks, data.train_load, config)

  return loop.Task(init=init, train_step=train_step, evaluate=evaluate,
                   make_train_iter=make_train_iter, schedule=schedule)


def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the past/future model described by `config` in `workdir` (resuming if possible)."""
  if config.input != "codes":
    raise ConfigError(f"config.input={config.input!r}: past_future trains on codes only (an hour "
                      f"of RGB does not fit; `tools/bench.py memory` measures how far it goes)")
  codec = NeuralCodec.load(config.codec)
  reporting.console(f"codec: {shipped.describe(config.codec)} (id {codec.codec_id}, "
                    f"nominal CR {codec.nominal_cr():.0f})")
  data = Data(config, codec, config.codec or shipped.DEFAULT)
  model = build_model(config, max(data.max_chunks, data.num_chunks))
  reporting.console(f"past_future: memory={config.model.memory}, {data.num_chunks} chunks per "
                    f"training walk")
  final = loop.run(config, workdir, make_task(config, data, model, codes_features(codec)))
  if "eval/accuracy" in final:
    reporting.console(f"final: past/future accuracy {final['eval/accuracy']:.3f} (past "
                      f"{final['eval/accuracy_past']:.3f}, future "
                      f"{final['eval/accuracy_future']:.3f}) over {final['eval/num_walks']:.0f} "
                      f"held-out walks, memory={config.model.memory}")
  return final
