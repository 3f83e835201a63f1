"""Tests for cv.models.aug_net.AugNet: any grid size, out_hw, identity at init, learns a flip."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cv.models.aug_net import AugNet, fourier_features


def _normal(shape, seed=0):
  # numpy, not jax.random: compiling the random kernels per shape costs seconds on CPU.
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _compile(fn, *args):
  """jit-compiles fn for args at XLA optimisation level 0: these programs are tiny, so on CPU
  compiling them at the default level costs far more time than running them."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


C = 8  # latent channels


@pytest.fixture(scope="module")
def net_and_params():
  """One small AugNet initialised once on [2,4,8,8,C] latents and flip conditioning [2,1]."""
  net = AugNet(latent_dim=C, width=32, mlp_hidden=32, num_heads=2)
  # An rbg key: XLA compiles its random-bit generator much faster than threefry's.
  args = (jax.random.key(0, impl="unsafe_rbg"), jnp.zeros((2, 4, 8, 8, C)), jnp.zeros((2, 1)))
  return net, _compile(net.init, *args)(*args)


@pytest.mark.parametrize("shape,out_hw", [
    ((2, 4, 8, 8, C), None),
    ((2, 4, 6, 10, C), None),
    ((2, 2, 8, 8, C), None),
    ((1, 2, 4, 4, C), (6, 10)),
])
def test_any_grid_size_and_identity_at_init(net_and_params, shape, out_hw):
  net, params = net_and_params
  z = _normal(shape, seed=1)
  cond = _normal((shape[0], 1), seed=2)
  out = _compile(functools.partial(net.apply, out_hw=out_hw), params, z, cond)(params, z, cond)
  b, t, h, w, c = shape
  oh, ow = out_hw or (h, w)
  assert out.shape == (b, t, oh, ow, c)
  # Zero-initialised output projection: the untrained net returns its (resampled) input,
  # exactly (the resize inside the compiled program may round differently from an eager one).
  if out_hw is None:
    np.testing.assert_array_equal(out, z)
  else:
    np.testing.assert_allclose(out, jax.image.resize(z, (b, t, oh, ow, c), "linear"), atol=1e-6)


def test_fourier_features_are_size_agnostic():
  f = fourier_features(2, 4, 8, num_freqs=3)
  assert f.shape == (2, 4, 8, 18)
  g = fourier_features(2, 8, 8, num_freqs=3)
  # Same normalised coordinates -> same features: x features agree for equal widths.
  np.testing.assert_allclose(f[0, 0, :, 12:], g[0, 0, :, 12:], atol=1e-6)
  # Row y=1 of a 4-row grid (centre 3/8) sits between rows 2 and 3 of an 8-row grid.
  assert not np.allclose(f[0, 1, 0, 6:12], g[0, 1, 0, 6:12])


def test_bad_inputs_raise(net_and_params):
  net, params = net_and_params
  with pytest.raises(ValueError, match="latents"):
    net.apply(params, jnp.zeros((2, 4, 8, 8, 3)), jnp.zeros((2, 1)))
  with pytest.raises(ValueError, match="cond"):
    net.apply(params, jnp.zeros((2, 4, 8, 8, C)), jnp.zeros((3, 1)))


def test_cell_features_are_inputs_and_shape_checked():
  net = AugNet(latent_dim=C, width=16, mlp_hidden=16, num_heads=2)
  z, cond = _normal((2, 4, 8, 8, C), seed=4), jnp.zeros((2, 1))
  feats = _normal((2, 1, 8, 8, 3), seed=5)  # a size-1 time axis broadcasts over T
  params = net.init(jax.random.key(0, impl="unsafe_rbg"), z, cond, cell_features=feats)
  assert params["params"]["in_proj"]["kernel"].shape[0] == C + 16 + 3
  # Give the (zero-initialised) output projection random weights (constant ones would cancel
  # against the LayerNorm before it); then the features change the output.
  params = jax.tree_util.tree_map_with_path(
      lambda path, a: 0.1 * _normal(a.shape, seed=6) if "out_proj" in str(path) else a, params)
  a = net.apply(params, z, cond, cell_features=feats)
  b = net.apply(params, z, cond, cell_features=-feats)
  assert a.shape == z.shape and float(jnp.abs(a - b).max()) > 1e-3
  with pytest.raises(ValueError, match="cell_features"):
    net.apply(params, z, cond, cell_features=_normal((2, 1, 4, 4, 3)))


def test_learns_a_flip_and_uses_cond(net_and_params):
  net, params = net_and_params
  # Two random clips, each seen with and without the flip, so fitting requires using cond.
  z = jnp.repeat(_normal((2, 2, 4, 4, C), seed=3), 2, axis=0)
  cond = jnp.array([[0.0], [1.0], [0.0], [1.0]])
  target = jnp.where(cond[:, :, None, None, None] > 0.5, z[:, :, :, ::-1], z)
  tx = optax.adam(3e-3)

  def loss_fn(p):
    return jnp.mean((net.apply(p, z, cond) - target) ** 2)

  def train(p):
    """60 Adam steps in one program (a scan), returning the final params and every loss."""
    def step(carry, _):
      p, s = carry
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, s = tx.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), loss
    (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), None, length=60)
    return p, losses, net.apply(p, z, cond)

  params, losses, out = _compile(train, params)(params)
  final = float(jnp.mean((out - target) ** 2))
  assert final < 0.3 * float(losses[0]), (float(losses[0]), final)
  # After training the output depends on the conditioning: p=1 flips, p=0 does not.
  out0, out1 = out[0::2], out[1::2]  # the same clips with p=0 and p=1
  clips = z[0::2]
  flipped = clips[:, :, :, ::-1]
  assert float(jnp.abs(out1 - out0).mean()) > 0.5 * float(jnp.abs(flipped - clips).mean())
  assert float(jnp.mean((out1 - flipped) ** 2)) < 0.3 * float(jnp.mean((out1 - clips) ** 2))
  assert float(jnp.mean((out0 - clips) ** 2)) < 0.3 * float(jnp.mean((out0 - flipped) ** 2))
