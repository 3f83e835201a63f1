"""Loop machinery with a tiny task: NaN guard keeps the last good checkpoint; metrics.json; resume
at the checkpointed step with the same end state as an uninterrupted run."""
from __future__ import annotations

import json
import os
import re

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cv.configs import common
from cv.lib import loop
from cv.lib.errors import NonFiniteError
from cv.lib.train_state import TrainState
from tests import helpers


def _task(nan_from_step: int | None) -> loop.Task:
  tx = optax.sgd(0.1)

  def init(rng):
    return TrainState.create(params={"w": jnp.ones((4,))}, tx=tx, rng=rng)

  def train_step(state, batch):
    def loss_fn(p):
      return jnp.mean((batch["x"] @ p["w"] - 1.0) ** 2)
    loss, g = jax.value_and_grad(loss_fn)(state.params)
    if nan_from_step is not None:
      loss = jnp.where(state.step + 1 >= nan_from_step, jnp.nan, loss)
    return state.apply_gradients(g), {"loss": loss}

  def make_iter():
    ds = grain.MapDataset.range(10**6).map(
        lambda i: {"x": np.full((4,), (i % 7) / 7.0, np.float32)})
    return iter(ds.to_iter_dataset().batch(4))

  def evaluate(state):
    return {"w_sum": float(jnp.sum(state.params["w"]))}, {}

  return loop.Task(init=init, train_step=train_step, make_train_iter=make_iter, evaluate=evaluate)


def _config(total=10):
  c = common.base_config("test", total_steps=total, log_every=1, ckpt_every=2, eval_every=0)
  c.batch_size = 4
  return c


def test_nan_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path):
  wd = str(tmp_path)
  with pytest.raises(NonFiniteError) as e:
    loop.run(_config(), wd, _task(nan_from_step=5))
  msg = str(e.value)
  assert "step 5" in msg and "loss" in msg and "step 4" in msg and "config.optim.lr" in msg
  assert helpers.finished_steps(os.path.join(wd, "checkpoints")) == [2, 4]
  assert not os.path.exists(os.path.join(wd, "metrics.json"))


def test_run_writes_metrics_and_resumes_where_it_stopped(tmp_path, capsys):
  ref = str(tmp_path / "uninterrupted")
  want = loop.run(_config(total=8), ref, _task(None))
  capsys.readouterr()
  wd = str(tmp_path / "resumed")
  final = loop.run(_config(total=6), wd, _task(None))
  m = json.load(open(os.path.join(wd, "metrics.json")))
  assert m["step"] == 6 and m["eval/w_sum"] == pytest.approx(final["eval/w_sum"])
  assert np.isfinite(m["train/loss"])
  first = capsys.readouterr().out
  assert "step 1/6" in first and "Resuming" not in first
  # Continuing to more steps restores step 6 (state and data position) and trains only 7 and 8.
  final2 = loop.run(_config(total=8), wd, _task(None))
  out = capsys.readouterr().out
  assert "Resuming from checkpoint step 6" in out and "training steps 6 -> 8" in out
  steps = [int(x) for x in re.findall(r"^step (\d+)/8 ", out, re.M)]
  assert steps == [7, 8], out
  assert final2["step"] == 8
  assert helpers.finished_steps(os.path.join(wd, "checkpoints"))[-1] == 8
  # ... and ends exactly where the uninterrupted run did (a fresh start would have printed steps
  # 1-6 above; a resume with the data stream rewound would end elsewhere: each step sees other
  # inputs).
  assert final2["train/loss"] == want["train/loss"]
  a = helpers.load_state(os.path.join(ref, "checkpoints"), 8)
  b = helpers.load_state(os.path.join(wd, "checkpoints"), 8)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_checkpoint_of_small_replicated_arrays_compiles_nothing(tmp_path, caplog):
  """Orbax would split every replicated array over its replicas, compiling a slice per shape and
  device (seconds per save for a model with many small shapes); small arrays are saved whole."""
  from cv.lib import checkpoint
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  assert mesh.size == 4
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = {f"p{i}": jax.device_put(jnp.full((i + 1, 3), float(i)), repl) for i in range(8)}
  ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, keep=1)
  with jax.log_compiles(True), caplog.at_level("WARNING"):
    ckpt.save(1, state, None, {"step": 1}, force=True)
    ckpt.wait()
  compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
  assert not compiled, compiled[:3]
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
  restored, meta = ckpt.restore(1, abstract, None)
  ckpt.close()
  assert meta == {"step": 1}
  for k, v in state.items():
    np.testing.assert_array_equal(np.asarray(restored[k]), np.asarray(v))
