"""Codec model: shapes, patches, rate arithmetic, the EMA quantiser and dead-code restarts."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv.codec import rate
from cv.models import vqvae
from cv.models.quantizers import VectorQuantizerEMA


def test_space_to_depth_roundtrip():
  x = jnp.arange(2 * 4 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 4, 8, 8, 3)
  y = vqvae.space_to_depth(x, 2, 4)
  assert y.shape == (2, 2, 2, 2, 2 * 16 * 3)
  np.testing.assert_array_equal(vqvae.depth_to_space(y, 2, 4), x)
  # A patch holds exactly the pixels of its block.
  np.testing.assert_array_equal(np.sort(np.asarray(y[0, 0, 0, 0])),
                                np.sort(np.asarray(x[0, :2, :4, :4].reshape(-1))))


def test_space_to_depth_rejects_indivisible():
  with pytest.raises(ValueError, match="not divisible"):
    vqvae.space_to_depth(jnp.zeros((1, 4, 10, 8, 3)), 1, 4)


@pytest.mark.parametrize("channels,k,n,tp", [((16, 16), 1, 256, 1), ((16, 16, 16), 2, 256, 1),
                                              ((16, 16), 4, 32, 2)])
def test_codec_shapes_and_rate(channels, k, n, tp):
  model = vqvae.VQVAE(channels=channels, num_codebooks=k, num_entries=n, code_dim=4,
                      temporal_patch=tp, enc_res_blocks=1, dec_res_blocks=1)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 32, 32, 3))
  v = model.init({"params": jax.random.PRNGKey(1), "vq": jax.random.PRNGKey(2)}, x)
  recon, vq = model.apply(v, x)
  down = 4 * 2 ** (len(channels) - 1)
  assert vq["codes"].shape == (2, 4 // tp, 32 // down, 32 // down, k)
  assert recon.shape == x.shape
  cr = rate.compression_rate((4, 32, 32, 3), vq["codes"].shape[1:], n)
  assert cr == pytest.approx(24 * tp * down * down / (k * np.log2(n)))
  # decode_codes(codes) reproduces the reconstruction from the quantised latents.
  again = model.apply(v, vq["codes"], method=vqvae.VQVAE.decode_codes)
  np.testing.assert_allclose(again, recon, atol=1e-5)


def test_rate_arithmetic_matches_paper_examples():
  # CR=192: 32x256x256 clip -> 32x32x32 codes, one codebook of 256 entries.
  assert rate.compression_rate((32, 256, 256, 3), (32, 32, 32, 1), 256) == 192
  assert rate.compression_rate((32, 256, 256, 3), (32, 16, 16, 1), 256) == 768
  assert rate.code_bits((32, 32, 32, 1), 256) // 8 == 32768
  assert rate.bits_per_index(8192) == 13 and rate.bits_per_index(257) == 9


def _apply_vq(q, variables, z, rng, train=True):
  return q.apply(variables, z, train=train, rngs={"vq": rng}, mutable=["vq"])


def test_quantizer_nearest_neighbour_and_straight_through():
  q = VectorQuantizerEMA(num_codebooks=2, num_entries=8)
  z = jax.random.normal(jax.random.PRNGKey(0), (64, 6))
  v = q.init({"params": jax.random.PRNGKey(1)}, z, train=False)
  out = q.apply(v, z, train=False)
  cb = np.asarray(v["vq"]["codebook"])  # [K, N, D]
  zg = np.asarray(z).reshape(64, 2, 3)
  for k in range(2):
    d = ((zg[:, k, None, :] - cb[k][None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.asarray(out["codes"])[:, k], d.argmin(-1))
  # Straight-through: d(sum quantized)/dz == 1 everywhere.
  g = jax.grad(lambda z: q.apply(v, z, train=False)["quantized"].sum())(z)
  np.testing.assert_allclose(g, np.ones_like(g))


def test_ema_pulls_codebook_to_data_and_restarts_dead_codes():
  q = VectorQuantizerEMA(num_codebooks=1, num_entries=16, decay=0.9)
  # Data in 4 tight clusters far from the random initial codebook.
  centers = np.array([[5, 5], [-5, 5], [5, -5], [-5, -5]], np.float32)
  rng = np.random.default_rng(0)
  z = jnp.asarray(np.repeat(centers, 64, 0) + 0.01 * rng.standard_normal((256, 2)), jnp.float32)
  v = q.init({"params": jax.random.PRNGKey(0)}, z, train=False)
  for i in range(30):
    out, upd = _apply_vq(q, v, z, jax.random.PRNGKey(i))
    v = {"vq": upd["vq"]}
  out = q.apply(v, z, train=False)
  # Every cluster is reconstructed almost exactly, so the commitment error is tiny.
  err = np.abs(np.asarray(out["quantized"]) - np.asarray(z)).max()
  assert err < 0.1
  # The first step restarts every (unused) entry at data points: all entries sit near a cluster.
  cb = np.asarray(v["vq"]["codebook"][0])
  dist = np.min(((cb[:, None] - centers[None]) ** 2).sum(-1), axis=1)
  assert np.all(dist < 0.5), dist
  # Restarted entries are used: more than one entry per cluster, all 16 in use.
  assert len(np.unique(np.asarray(out["codes"]))) > 4


def test_quantizer_rejects_bad_channel_split():
  q = VectorQuantizerEMA(num_codebooks=3, num_entries=8)
  with pytest.raises(ValueError, match="not divisible by num_codebooks=3"):
    q.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((4, 8)), train=False)


def test_fsq_codes_roundtrip_and_straight_through():
  from cv.models.quantizers import FSQ
  q = FSQ(num_codebooks=2, levels=(8, 5, 4))
  z = jax.random.normal(jax.random.PRNGKey(0), (500, 6)) * 3
  v = q.init({"params": jax.random.PRNGKey(1)}, z, train=True)
  out = q.apply(v, z, train=True)
  codes = np.asarray(out["codes"])
  assert codes.min() >= 0 and codes.max() < 160 and q.num_entries == 160
  assert len(np.unique(codes[:, 0])) > 100  # large inputs reach (almost) every level combination
  lat = q.apply(v, out["codes"], method=FSQ.codes_to_latents)
  np.testing.assert_allclose(lat, out["quantized"], atol=1e-6)
  assert float(np.abs(np.asarray(out["quantized"])).max()) <= 1.0
  g = jax.grad(lambda z: q.apply(v, z, train=True)["quantized"].sum())(z)
  g = np.asarray(g)  # gradient flows through the rounding (tanh'-scaled; ~0 only when saturated)
  assert np.all(g >= 0) and np.mean(g > 1e-6) > 0.9


def test_fsq_codec_trains_one_step():
  model = vqvae.VQVAE(channels=(16, 16), num_codebooks=1, num_entries=256, code_dim=3,
                      quantizer_type="fsq", fsq_levels=(8, 8, 4), enc_res_blocks=1, dec_res_blocks=1)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 32, 32, 3))
  v = model.init({"params": jax.random.PRNGKey(1)}, x)
  assert set(v) == {"params"}  # no codebook state
  recon, vq = model.apply(v, x)
  assert recon.shape == x.shape and vq["codes"].shape == (2, 4, 4, 4, 1)
  with pytest.raises(ValueError, match="make them agree"):
    vqvae.VQVAE(num_entries=512, code_dim=3, quantizer_type="fsq").init(
        {"params": jax.random.PRNGKey(1)}, x)


def test_residual_vq_levels_are_prefix_codes_with_more_quality():
  model = vqvae.VQVAE(channels=(16, 16), num_codebooks=1, num_entries=16, code_dim=8,
                      quantizer_type="rvq", rvq_levels=3, enc_res_blocks=1, dec_res_blocks=1)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 32, 32, 3))
  v = model.init({"params": jax.random.PRNGKey(1), "vq": jax.random.PRNGKey(2)}, x)
  # A few EMA steps fit the codebooks to this batch.
  for i in range(5):
    _, upd = model.apply(v, x, train=True, rngs={"vq": jax.random.PRNGKey(10 + i)}, mutable=["vq"])
    v = {"params": v["params"], **upd}
  z = model.apply(v, x, method=lambda m, x: m.encoder(x * 2 - 1))
  errs = []
  for l in (1, 2, 3):
    vq = model.apply(v, x, active_levels=l, method=vqvae.VQVAE.encode)
    assert vq["codes"].shape[-1] == 3  # codes hold every level
    lat = model.apply(v, vq["codes"][..., :l], method=lambda m, c: m.quantizer.codes_to_latents(c))
    np.testing.assert_allclose(lat, vq["quantized"], atol=1e-4)  # prefix decodes to that rate
    errs.append(float(jnp.mean((lat - z) ** 2)))
  assert errs[0] > errs[1] > errs[2], errs  # more levels, closer to the encoder output
  assert model.codes_per_position == 3
