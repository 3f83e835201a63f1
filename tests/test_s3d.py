"""S3D-G classifier: RGB and codes modes, matching internal shapes, heads, BN/dropout, gating,
parameter count, and a tiny overfit. Shape-only checks run under jax.eval_shape (no compute)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cv.models.s3d import S3D, channels, max_pool, stem_strides


def _shapes(model: S3D, shape: tuple[int, ...]) -> tuple[tuple[int, ...], dict]:
  """(logits shape, variable shapes incl. the sown 'intermediates') from one abstract trace of
  `init_with_output`: no compilation, no compute."""
  out, variables = jax.eval_shape(
      lambda: model.init_with_output(jax.random.PRNGKey(0), jnp.zeros(shape), mutable=True))
  return out.shape, variables


def _init_shapes(model: S3D, shape: tuple[int, ...]) -> dict:
  variables = dict(_shapes(model, shape)[1])
  variables.pop("intermediates", None)
  return variables


def _param_count(model: S3D, shape: tuple[int, ...]) -> int:
  return sum(p.size for p in jax.tree.leaves(_shapes(model, shape)[1]["params"]))


def _intermediates(model: S3D, shape: tuple[int, ...]) -> tuple[dict, tuple[int, ...]]:
  """Shapes of the sown feature maps and of the logits."""
  out, variables = _shapes(model, shape)
  return {k: v[0].shape for k, v in variables["intermediates"].items()}, out


def _numpy_init(shapes):
  """Materialises a pytree of shapes on the host: LeCun-normal 'kernel's, unit BN 'scale' and
  'var', zeros elsewhere (biases, BN means). The same scales as flax's init,
  but it skips compiling ~250 RNG initialisers, which alone costs tens of seconds on XLA CPU."""
  rng = np.random.default_rng(0)

  def make(path, s):
    name = getattr(path[-1], "key", None) if path else None
    if name == "kernel":
      return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(s.dtype)
    if name in ("scale", "var"):
      return np.ones(s.shape, s.dtype)
    return np.zeros(s.shape, s.dtype)

  return jax.tree_util.tree_map_with_path(make, shapes)


def _key(i: int) -> np.ndarray:
  """A raw PRNG key built on the host (no eager JAX op to compile)."""
  return np.array([0, i], dtype=np.uint32)


# Test-only XLA CPU compile options: backend optimisation level 0 and the legacy (non-MLIR)
# fusion emitters together cut this deep net's compile time by ~2-3x; the programs here run only
# a few dozen times, so their slower code costs far less than it saves.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def _compile(fn, *args):
  """jit + compile `fn` for `args` with `_FAST_COMPILE`."""
  return jax.jit(fn).lower(*args).compile(compiler_options=_FAST_COMPILE)


def test_channels_rounding():
  assert channels(64, 1.0) == 64
  assert channels(64, 0.125) == 8
  assert channels(16, 0.125) == 8  # minimum 8
  assert channels(192, 0.25) == 48
  assert channels(100, 1.0) == 104  # 12.5 rounds up


def test_stem_strides():
  assert stem_strides((1, 1)) == {"conv1": (2, 2, 2), "pool2a": (1, 2, 2), "pool3a": (1, 2, 2),
                                  "total": (2, 8, 8)}
  s = stem_strides((1, 4))
  assert (s["conv1"], s["pool2a"], s["pool3a"], s["total"]) == (
      (2, 2, 2), (1, 1, 1), (1, 1, 1), (2, 2, 2))
  assert stem_strides((1, 2))["pool2a"] == (1, 2, 2) and stem_strides((1, 2))["pool3a"] == (1, 1, 1)
  assert stem_strides((2, 8))["total"] == (1, 1, 1)
  assert stem_strides((4, 16))["total"] == (1, 1, 1)  # coarser than the stem: nothing left
  with pytest.raises(ValueError):
    stem_strides((0, 8))


def test_separable_max_pool_equals_joint_pool():
  import flax.linen as nn
  configs = [((3, 3, 3), (1, 1, 1)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))]
  x = np.random.default_rng(0).standard_normal((2, 5, 7, 6, 3)).astype(np.float32)

  @jax.jit
  def both(x):
    return [(max_pool(x, w, s), nn.max_pool(x, w, s, padding="SAME")) for w, s in configs]

  for ours, reference in both(x):
    np.testing.assert_array_equal(ours, reference)


def test_rgb_logits_and_deterministic_eval():
  model = S3D(num_classes=5, width=0.125, dropout=0.5)
  x = np.random.default_rng(0).uniform(size=(2, 8, 32, 32, 3)).astype(np.float32)
  variables = _numpy_init(_init_shapes(model, x.shape))
  forward = _compile(lambda v, x: model.apply(v, x), variables, x)  # eval: no dropout, running BN
  logits = forward(variables, x)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  np.testing.assert_array_equal(forward(variables, x), logits)


def test_param_count_and_gating():
  full = _param_count(S3D(num_classes=400), (1, 8, 64, 64, 3))
  plain = _param_count(S3D(num_classes=400, gating=False), (1, 8, 64, 64, 3))
  print(f"width=1.0, 400 classes: S3D-G {full:,} params, S3D (no gating) {plain:,}")
  assert 7_000_000 < full < 10_500_000  # the expected size of S3D-G at 400 classes
  assert plain < full  # gating adds one Dense per gated branch
  assert 0.05 < (full - plain) / full < 0.2


@pytest.fixture(scope="module")
def rgb_reference():
  return _intermediates(S3D(num_classes=7, width=0.125), (1, 8, 64, 64, 3))


@pytest.mark.parametrize("factors,shape", [((1, 8), (1, 8, 8, 8, 64)), ((2, 8), (1, 4, 8, 8, 64)),
                                           ((1, 4), (1, 8, 16, 16, 32))])
def test_codes_mode_matches_rgb_shapes(rgb_reference, factors, shape):
  rgb, rgb_out = rgb_reference
  codes, codes_out = _intermediates(
      S3D(num_classes=7, width=0.125, mode="codes", input_factors=factors), shape)
  assert rgb["mixed_3b"][1:4] == (4, 8, 8)
  assert codes["stem"] == rgb["stem"]
  assert codes["mixed_3b"] == rgb["mixed_3b"]
  assert codes["mixed_5c"] == rgb["mixed_5c"]
  assert codes_out == rgb_out == (1, 7)


def test_tiny_grids_and_temporal_logits():
  # A grid coarser than the stem (tf=4 > 2, sf=16 > 8) just gives a smaller internal grid.
  feats, out = _intermediates(
      S3D(num_classes=3, width=0.125, mode="codes", input_factors=(4, 16)), (2, 2, 2, 2, 16))
  assert feats["stem"][1:4] == (2, 2, 2) and out == (2, 3)
  feats, out = _intermediates(S3D(num_classes=3, width=0.125, temporal_pool=False),
                              (2, 16, 32, 32, 3))
  t_out = feats["mixed_5c"][1]
  assert t_out == 2 and out == (2, t_out, 3)
  with pytest.raises(ValueError, match="3 channels"):
    _intermediates(S3D(num_classes=3, width=0.125), (1, 4, 32, 32, 8))
  # Reduced-precision compute still returns float32 logits and float32 params.
  model = S3D(num_classes=3, width=0.125, dtype=jnp.bfloat16)
  out, variables = jax.eval_shape(
      lambda: model.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 4, 32, 32, 3)),
                                     mutable=True))
  assert out.shape == (1, 3) and out.dtype == jnp.float32
  assert variables["intermediates"]["mixed_3b"][0].dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))


def test_shallow_model_keeps_the_stage_poolings(rgb_reference):
  rgb, rgb_out = rgb_reference
  blocks = ("Mixed_5b", "Mixed_3b", "Mixed_4c")  # any order: the network's order is used
  feats, out = _intermediates(S3D(num_classes=7, width=0.125, mixed_blocks=blocks),
                              (1, 8, 64, 64, 3))
  assert feats["mixed_3b"] == rgb["mixed_3b"] and out == rgb_out
  assert feats["pooled"] == (1, channels(256 + 320 + 128 + 128, 0.125))  # Mixed_5b's outputs
  params = _shapes(S3D(num_classes=7, width=0.125, mixed_blocks=blocks), (1, 8, 64, 64, 3))[1]
  assert sorted(k for k in params["params"] if k.startswith("Mixed")) == sorted(blocks)
  for bad in ((), ("Mixed_6a",)):
    with pytest.raises(ValueError, match="non-empty subset"):
      _intermediates(S3D(num_classes=7, width=0.125, mixed_blocks=bad), (1, 8, 64, 64, 3))


@pytest.fixture(scope="module")
def codes_setup():
  """A tiny codes-mode classifier, 4 random clips of [4,8,8,16] codes, 2 labels, and one compiled
  Adam train step shared by the tests below (XLA CPU compiles of this deep net take seconds)."""
  model = S3D(num_classes=2, width=0.125, mode="codes", input_factors=(2, 8), dropout=0.2)
  x = np.random.default_rng(0).standard_normal((4, 4, 8, 8, 16)).astype(np.float32)
  y = np.array([0, 1, 0, 1])
  variables = _numpy_init(_init_shapes(model, x.shape))
  tx = optax.adam(3e-3)
  opt_state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),  # Adam: zero count and moments
                           jax.eval_shape(tx.init, variables["params"]))

  def loss_fn(params, batch_stats, rng):
    logits, state = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                rngs={"dropout": rng}, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

  def step(params, batch_stats, opt_state, rng):
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state["batch_stats"], opt_state, loss

  args = (variables["params"], variables["batch_stats"], opt_state, _key(0))
  return variables, opt_state, _compile(step, *args)


def test_train_updates_batch_stats_and_uses_dropout(codes_setup):
  variables, opt_state, step = codes_setup
  args = (variables["params"], variables["batch_stats"], opt_state)
  _, new_stats, _, loss_a = step(*args, _key(1))
  _, _, _, loss_b = step(*args, _key(2))
  assert float(loss_a) != float(loss_b)  # different dropout masks
  old, new = jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(new_stats)
  assert len(old) == len(new) > 0
  assert all(o.shape == n.shape for o, n in zip(old, new))
  assert any(not np.allclose(o, n) for o, n in zip(old, new))


def test_overfits_tiny_codes_batch(codes_setup):
  variables, opt_state, step = codes_setup
  params, batch_stats = variables["params"], variables["batch_stats"]
  losses = []
  for i in range(30):
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state,
                                                _key(100 + i))
    losses.append(float(loss))
  print(f"overfit loss {losses[0]:.3f} -> {losses[-1]:.3f}")
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0]
