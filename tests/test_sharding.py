"""The jitted step runs sharded over the `data` axis of 4 devices and matches 1 device."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from cv.configs import k600_vq
from cv.lib import loop, mesh as mesh_lib, sharding as sharding_lib
from cv.trainers import vq_codec


def _run(devices, steps=3):
  cfg = k600_vq.get_config("smoke")
  model = vq_codec.build_model(cfg)
  task = vq_codec.make_task(cfg, model, [], [])
  mesh = mesh_lib.make_mesh(cfg.mesh, devices)
  rng = jax.random.PRNGKey(0)
  abstract = jax.eval_shape(task.init, rng)
  state_sh = sharding_lib.state_shardings(abstract, mesh)
  batch_sh = mesh_lib.batch_sharding(mesh)
  state = jax.jit(task.init, out_shardings=state_sh)(rng)
  step = jax.jit(task.train_step, in_shardings=(state_sh, batch_sh),
                 out_shardings=(state_sh, mesh_lib.replicated(mesh)), donate_argnums=(0,))
  data = np.random.default_rng(0).integers(0, 255, (steps, 4, 4, 32, 32, 3), dtype=np.uint8)
  for i in range(steps):
    batch = loop.global_batch({"video": data[i], "label": np.zeros(4, np.int32)}, batch_sh)
    if i == 0:
      assert len(batch["video"].addressable_shards) == len(devices)
      assert batch["video"].addressable_shards[0].data.shape[0] == 4 // len(devices)
    state, metrics = step(state, batch)
  return jax.device_get(state.params), jax.device_get(state.model_state), float(metrics["loss"])


def test_four_devices_match_one():
  assert jax.device_count() == 4, "tests run with 4 fake CPU devices (see conftest.py)"
  p4, s4, l4 = _run(jax.devices())
  p1, s1, l1 = _run(jax.devices()[:1])
  # Equal up to float reduction order (sums over 4 shards vs 1).
  assert l4 == pytest.approx(l1, rel=1e-4)
  for a, b in zip(jax.tree.leaves((p4, s4)), jax.tree.leaves((p1, s1))):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_mesh_spec_errors():
  with pytest.raises(ValueError, match="needs 8 devices"):
    mesh_lib.make_mesh([("data", 8)])
  with pytest.raises(ValueError, match="at most one axis"):
    mesh_lib.make_mesh([("data", -1), ("fsdp", -1)])
  m = mesh_lib.make_mesh([("data", 2), ("fsdp", -1)])
  assert dict(m.shape) == {"data": 2, "fsdp": 2}
  # The batch is split over both data-parallel axes (data and fsdp): 2 x 2 = 4 ways.
  assert mesh_lib.batch_sharding(m).shard_shape((8, 3)) == (2, 3)


def test_fsdp_shards_large_leaves_only():
  m = mesh_lib.make_mesh([("data", 1), ("fsdp", -1)])
  tree = {"big": jax.ShapeDtypeStruct((512, 1024), np.float32),
          "small": jax.ShapeDtypeStruct((8,), np.float32)}
  sh = sharding_lib.state_shardings(tree, m, fsdp_min_size=1000)
  assert sh["big"].spec == jax.sharding.PartitionSpec(None, "fsdp")
  assert sh["small"].spec == jax.sharding.PartitionSpec()


def test_sharding_rules_place_matching_leaves_first():
  m = mesh_lib.make_mesh([("data", 2), ("fsdp", -1)])
  tree = {"params": {"conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 8, 16), np.float32),
                              "bias": jax.ShapeDtypeStruct((16,), np.float32)},
                     "big": jax.ShapeDtypeStruct((512, 1024), np.float32)}}
  rules = [(r"conv/kernel$", (None, None, None, "fsdp")), (r"big$", ())]
  sh = sharding_lib.state_shardings(tree, m, fsdp_min_size=1000, rules=rules)
  P = jax.sharding.PartitionSpec
  assert sh["params"]["conv"]["kernel"].spec == P(None, None, None, "fsdp")
  assert sh["params"]["big"].spec == P()  # a rule overrides the size-based default
  assert sh["params"]["conv"]["bias"].spec == P()
  with pytest.raises(ValueError, match="names axis 'model'"):
    sharding_lib.state_shardings(tree, m, rules=[("kernel", ("model",))])
  with pytest.raises(ValueError, match=r"params/conv/bias \(shape \(15,\)\).*does not divide"):
    sharding_lib.state_shardings({"params": {"conv": {"bias": jax.ShapeDtypeStruct((15,), np.float32)}}},
                                 m, rules=[("bias", ("fsdp",))])


@pytest.mark.slow
def test_fsdp_rules_train_through_main(tmp_path):
  """A data x fsdp mesh (tuple override from the command line) with rule-sharded encoder kernels
  trains."""
  from tests import helpers
  r = helpers.run_main("cv/configs/k600_vq.py:cr=192,smoke", str(tmp_path / "wd"),
                       "--config.total_steps=2", "--config.eval_every=0",
                       "--config.mesh=(('data', 2), ('fsdp', 2))",
                       "--config.sharding.rules=(('encoder/ReflectConv_0/Conv_0/kernel$', (None, None, None, 'fsdp')),)")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "mesh: {'data': 2, 'fsdp': 2}" in r.stdout
  bad = helpers.run_main("cv/configs/k600_vq.py:cr=192,smoke", str(tmp_path / "bad"),
                         "--config.sharding.rules=(('encoder/.*kernel$', ('model',)),)")
  assert bad.returncode == 1 and "Traceback" not in bad.stderr
  assert "names axis 'model'" in bad.stderr
