"""The `past_future` trainer: the two-phase walk pass equals per-chunk gradients computed one
chunk after another, queries and labels are causal, and every memory type runs through cv.main."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cv.models import past_future as pf
from cv.trainers import past_future as trainer
from tests import helpers

SMOKE = "cv/configs/walkingtours_past_future.py:smoke"
B, N, T, G, C, DIM, CROP = 2, 5, 2, 4, 3, 8, 3


def _setup(memory: str):
  rng = np.random.default_rng(0)
  codes = jnp.asarray(rng.integers(0, 4, (B, N, T, G, G, 1)), jnp.int32)
  table = jnp.asarray(rng.normal(size=(4, C)), jnp.float32)
  features = lambda c: table[c[..., 0]]
  model = pf.PastFuture(memory=memory, dim=DIM, adapter_features=4, max_slots=N, num_heads=2)
  chunk = features(codes[:1, 0])
  params = jax.jit(model.init)(jax.random.PRNGKey(1), pf.initial_state(memory, 1, DIM, N), chunk,
                               chunk[:, :, :CROP, :CROP])["params"]
  return model, features, codes, params


def _sequential(model, features, codes, params, rng):
  """Reference: chunk after chunk, each step's gradient with the earlier memory constant (one
  compiled step, called N times)."""
  q_index, q_offset = trainer.draw_queries(rng, B, N, (G, G), CROP)

  @jax.jit
  def step(params, state, chunk, query, label):
    def loss(p):
      logit, new = model.apply({"params": p}, state, features(chunk), features(query))
      return optax.sigmoid_binary_cross_entropy(logit, label).mean() / N, (logit, new)
    (_, (logit, new)), g = jax.value_and_grad(loss, has_aux=True)(params)
    return g, logit, new

  state = pf.initial_state(model.memory, B, DIM, N)
  grads, logits = jax.tree.map(jnp.zeros_like, params), []
  for t in range(N):
    query = trainer.crop_queries(codes[jnp.arange(B), q_index[t]], q_offset[t], CROP)
    g, logit, state = step(params, state, codes[:, t], query,
                           (q_index[t] <= t).astype(jnp.float32))
    grads = jax.tree.map(jnp.add, grads, g)
    logits.append(logit)
  return grads, jnp.stack(logits), q_index


@pytest.mark.slow
@pytest.mark.parametrize("memory,group", [("none", 2), ("lstm", 1), ("slot", 3)])
def test_walk_pass_equals_per_chunk_gradients(memory, group):
  model, features, codes, params = _setup(memory)
  rng = jax.random.PRNGKey(7)
  grads, out = jax.jit(lambda p, c: trainer.make_walk_pass(model, features, CROP, group)(
      p, c, rng, True))(params, codes)
  ref_grads, ref_logits, q_index = _sequential(model, features, codes, params, rng)
  np.testing.assert_allclose(out["logit"], ref_logits, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(out["query"], q_index)
  np.testing.assert_array_equal(out["label"], (q_index <= jnp.arange(N)[:, None]))
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
  assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))


def test_memory_history_is_the_state_before_each_step():
  model, features, codes, params = _setup("lstm")
  reps = jnp.asarray(np.random.default_rng(1).normal(size=(N, B, DIM)), jnp.float32)
  hist = trainer.memory_history(model, params, reps)
  state = pf.initial_state("lstm", B, DIM, N)
  for t in range(N):
    np.testing.assert_allclose(hist["h"][t], state["h"], atol=1e-6)
    state = model.apply({"params": params}, state, reps[t], method=pf.PastFuture.write)
  slot = trainer.memory_history(_setup("slot")[0], None, reps)
  assert slot["count"][:, 0].tolist() == list(range(N))


def test_queries_are_uniform_and_crops_in_bounds():
  index, offsets = trainer.draw_queries(jax.random.PRNGKey(0), 64, 40, (8, 10), 6)
  assert index.shape == (40, 64) and int(index.min()) == 0 and int(index.max()) == 39
  assert int(offsets[..., 0].max()) <= 2 and int(offsets[..., 1].max()) <= 4
  assert 0.4 < float((index <= jnp.arange(40)[:, None]).mean()) < 0.6  # about half are past
  chunks = jnp.arange(2 * 1 * 4 * 5).reshape(2, 1, 4, 5, 1)
  crop = trainer.crop_queries(chunks, jnp.array([[0, 0], [1, 2]]), 3)
  np.testing.assert_array_equal(crop[1, 0, :, :, 0], chunks[1, 0, 1:4, 2:5, 0])


def test_position_accuracy_bins():
  acc = trainer.position_accuracy(np.array([1, 0, 1, 1.0]), np.array([0.0, 0.1, 0.6, 0.9]), 2)
  np.testing.assert_allclose(acc, [0.5, 1.0])
  assert np.isnan(trainer.position_accuracy(np.array([1.0]), np.array([0.2]), 2)[1])


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["slot", "lstm"])  # none: the walk-pass tests above
def test_memories_train_and_evaluate_through_main(tmp_path, memory):
  wd = str(tmp_path / memory)
  extra = [] if memory == "slot" else ["--config.total_steps=2"]
  r = helpers.run_main(f"{SMOKE},memory={memory}", wd, *extra)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"memory={memory}" in r.stdout and "final: past/future accuracy" in r.stdout
  m = json.load(open(os.path.join(wd, "metrics.json")))
  for k in ("accuracy", "accuracy_past", "accuracy_future", "accuracy_at_0"):
    assert 0.0 <= m[f"eval/{k}"] <= 1.0, k
  assert m["eval/num_walks"] == 1 and m["eval/num_queries"] > 0
  if memory == "slot":
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(wd, size_guidance={"tensors": 0})
    acc.Reload()
    assert {"train/loss", "train/accuracy", "eval/accuracy",
            "eval/accuracy_by_position"} <= set(acc.Tags()["tensors"])


@pytest.mark.slow
def test_wrong_format_and_input_fail_clearly(tmp_path):
  r = helpers.run_main(SMOKE, str(tmp_path / "a"), "--config.data.format=kinetics")
  assert r.returncode != 0 and "WalkingTours-format dataset" in r.stderr
  r = helpers.run_main(SMOKE, str(tmp_path / "b"), "--config.input=rgb")
  assert r.returncode != 0 and "codes only" in r.stderr
