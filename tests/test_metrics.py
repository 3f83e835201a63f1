"""Tests for cv.lib.metrics: reference agreement (skimage/numpy), properties, shapes under jit."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage import data as skdata
from skimage import metrics as skmetrics
from skimage import transform as sktransform

from cv.lib import metrics  # pylint: disable=g-import-not-at-top


def _photo(size: int, crop: int = 0) -> np.ndarray:
  """A natural RGB photo in [0, 1] resized to size x size; `crop` shifts the window for variety."""
  img = skdata.astronaut()[crop:crop + 384, crop:crop + 384].astype(np.float64) / 255.0
  return sktransform.resize(img, (size, size), anti_aliasing=True)


def _noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return np.clip(img + sigma * rng.standard_normal(img.shape), 0.0, 1.0)


def _video_pair(b: int, t: int, size: int, sigma: float, seed: int = 0):
  """Clean and noisy videos [b, t, size, size, 3]; frames differ by crop and noise."""
  clean = np.stack([
      np.stack([_photo(size, crop=16 * (i * t + j)) for j in range(t)]) for i in range(b)])
  noisy = _noisy(clean, sigma, seed)
  return clean.astype(np.float32), noisy.astype(np.float32)


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
  return skmetrics.structural_similarity(
      a.astype(np.float64), b.astype(np.float64), channel_axis=-1, data_range=1.0,
      gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _ref_ms_ssim(a: np.ndarray, b: np.ndarray, weights) -> float:
  """Independent float64 MS-SSIM of one [H, W, C] pair (scipy Gaussian, as skimage filters).

  Uses exactly len(weights) scales, cs at the finer ones and full SSIM at the coarsest, per
  channel, then the channel mean.
  """
  c1, c2, pad = 0.01 ** 2, 0.03 ** 2, 5
  w = np.asarray(weights, np.float64)
  w = w / w.sum()
  a = a.astype(np.float64)
  b = b.astype(np.float64)
  per_channel = []
  for c in range(a.shape[-1]):
    x, y = a[..., c], b[..., c]
    value = 1.0
    for i, wi in enumerate(w):
      blur = lambda z: ndimage.gaussian_filter(z, sigma=1.5, truncate=3.5)[pad:-pad, pad:-pad]
      mx, my = blur(x), blur(y)
      vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
      cs = (2 * cxy + c2) / (vx + vy + c2)
      if i < len(w) - 1:
        term = cs.mean()
        h2, w2 = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
        y = y[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
      else:
        term = (cs * (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)).mean()
      value *= max(term, 0.0) ** wi
    per_channel.append(value)
  return float(np.mean(per_channel))


# ---------------------------------------------------------------------------- psnr / mae


def test_psnr_matches_skimage_per_example():
  x, y = _video_pair(b=3, t=2, size=32, sigma=0.05)
  y[1] = _noisy(x[1], 0.2, seed=1)  # a different quality per example
  got = np.asarray(metrics.psnr(x, y))
  want = np.array([
      skmetrics.peak_signal_noise_ratio(x[i].astype(np.float64), y[i].astype(np.float64),
                                        data_range=1.0) for i in range(3)])
  assert got.shape == (3,)
  np.testing.assert_allclose(got, want, atol=1e-3)
  assert got[1] < got[0] - 5.0  # stronger noise -> clearly lower PSNR


def test_psnr_identical_is_capped_and_finite():
  x, _ = _video_pair(b=2, t=1, size=16, sigma=0.0)
  got = np.asarray(metrics.psnr(x, x))
  np.testing.assert_allclose(got, metrics.PSNR_MAX_DB, rtol=1e-6)


def test_mae_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(4, 3, 8, 9, 3)).astype(np.float32)
  y = rng.uniform(size=(4, 3, 8, 9, 3)).astype(np.float32)
  y[2] = x[2]
  got = np.asarray(metrics.mae(x, y))
  want = np.abs(x.astype(np.float64) - y).reshape(4, -1).mean(axis=1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert got[2] == 0.0


def test_rejects_integer_images_and_shape_mismatch():
  x = np.zeros((1, 16, 16, 3), np.uint8)
  with pytest.raises(TypeError):
    metrics.psnr(x, x)
  with pytest.raises(ValueError):
    metrics.mae(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 15, 3)))


# ---------------------------------------------------------------------------- ssim


def test_ssim_matches_skimage():
  x, y = _video_pair(b=2, t=2, size=64, sigma=0.08)
  y[1, 1] = _noisy(x[1, 1], 0.25, seed=3)
  got = np.asarray(metrics.ssim(x, y))
  want = np.array([np.mean([_sk_ssim(x[i, j], y[i, j]) for j in range(2)]) for i in range(2)])
  assert got.shape == (2,)
  np.testing.assert_allclose(got, want, atol=1e-3)
  assert want.max() < 0.95  # the comparison is not between near-identical images
  assert got[1] < got[0]


# ---------------------------------------------------------------------------- ms_ssim


@pytest.mark.parametrize("h,w,scales,expected", [
    (192, 192, 5, 5),
    (176, 176, 5, 5),  # coarsest 11x11: exactly fits
    (175, 175, 5, 4),
    (64, 64, 5, 3),
    (64, 200, 5, 3),  # limited by the smaller side
    (64, 64, 2, 2),
    (11, 11, 5, 1),
    (8, 8, 5, 1),  # never below 1
    (192, 192, 1, 1),
])
def test_ms_ssim_num_scales(h, w, scales, expected):
  assert metrics.ms_ssim_num_scales(h, w, scales) == expected


def test_ms_ssim_num_scales_respects_filter_size():
  assert metrics.ms_ssim_num_scales(64, 64, 5, filter_size=7) == 4
  assert metrics.ms_ssim_num_scales(64, 64, 5, filter_size=17) == 2


def test_ms_ssim_identical_is_one():
  x, _ = _video_pair(b=2, t=1, size=64, sigma=0.0)
  np.testing.assert_allclose(np.asarray(metrics.ms_ssim(x, x)), 1.0, atol=1e-5)


def test_ms_ssim_decreases_with_noise():
  clean = _photo(64)[None].astype(np.float32)
  noise = np.random.default_rng(0).standard_normal(clean.shape)
  sigmas = [0.01, 0.03, 0.06, 0.1, 0.2, 0.4]
  noisy = np.stack([np.clip(clean + s * noise, 0, 1) for s in sigmas]).astype(np.float32)
  got = np.asarray(metrics.ms_ssim(np.repeat(clean[None], len(sigmas), 0), noisy))
  assert got.shape == (len(sigmas),)
  assert np.all(np.diff(got) < 0), got
  assert got[0] > 0.95 and got[-1] < 0.75, got


def test_ms_ssim_symmetric():
  x, y = _video_pair(b=2, t=1, size=64, sigma=0.1)
  np.testing.assert_allclose(
      np.asarray(metrics.ms_ssim(x, y)), np.asarray(metrics.ms_ssim(y, x)), atol=1e-6)


def test_ms_ssim_one_scale_equals_ssim():
  x, y = _video_pair(b=2, t=1, size=64, sigma=0.1)
  np.testing.assert_allclose(
      np.asarray(metrics.ms_ssim(x, y, scales=1)), np.asarray(metrics.ssim(x, y)), atol=1e-5)


def test_ms_ssim_matches_reference_on_192():
  x, y = _video_pair(b=1, t=1, size=192, sigma=0.1)
  got = float(metrics.ms_ssim(x, y)[0])
  want = _ref_ms_ssim(x[0, 0], y[0, 0], metrics.MS_SSIM_WEIGHTS)
  np.testing.assert_allclose(got, want, atol=1e-3)
  # 192x192 fits 5 scales: the 4-scale value is clearly different, so the match above means 5.
  four = _ref_ms_ssim(x[0, 0], y[0, 0], metrics.MS_SSIM_WEIGHTS[:4])
  assert abs(got - four) > 5e-3, (got, four)


def test_ms_ssim_small_frames_use_fewer_renormalised_scales():
  x, y = _video_pair(b=2, t=1, size=64, sigma=0.1)
  five = float(metrics.ms_ssim(x, y, scales=5)[0])
  three = float(metrics.ms_ssim(x, y, scales=3)[0])
  assert five == pytest.approx(three, abs=1e-6)
  want = _ref_ms_ssim(x[0, 0], y[0, 0], metrics.MS_SSIM_WEIGHTS[:3])
  np.testing.assert_allclose(five, want, atol=1e-3)
  # Two scales give a clearly different value (4 cannot fit: 8x8 < 11), so the match pins s == 3.
  two = _ref_ms_ssim(x[0, 0], y[0, 0], metrics.MS_SSIM_WEIGHTS[:2])
  assert abs(five - two) > 5e-3, (five, two)


def test_ms_ssim_anticorrelated_is_finite_nonnegative():
  x, _ = _video_pair(b=2, t=1, size=64, sigma=0.0)
  got = np.asarray(metrics.ms_ssim(x, 1.0 - x))
  assert np.all(np.isfinite(got)) and np.all(got >= 0.0) and np.all(got < 0.1), got


# ---------------------------------------------------------------------------- codebooks


def _codebook_stats(codes, n):
  """Usage and perplexity of `codes` as the vq_codec evaluation computes them."""
  return metrics.stats_from_counts(metrics.code_counts(codes, n))


def test_codebook_uniform_usage():
  n = 8
  codes = np.stack([np.tile(np.arange(n), 3), np.tile(np.arange(n)[::-1], 3)], -1)  # [24, 2]
  stats = _codebook_stats(codes, n)
  assert float(stats["perplexity"]) == pytest.approx(n, rel=1e-5)
  assert float(stats["usage"]) == pytest.approx(1.0)


def test_codebook_single_code():
  codes = np.full((2, 5, 3), 4, np.int32)  # leading axes flattened, K=3
  stats = _codebook_stats(codes, 16)
  assert float(stats["perplexity"]) == pytest.approx(1.0, rel=1e-6)
  assert float(stats["usage"]) == pytest.approx(1 / 16)


def test_codebook_half_entries_uniform():
  n = 16
  codes = np.tile(np.arange(0, n, 2), 4)[:, None]  # even entries only, each used 4 times
  stats = _codebook_stats(codes, n)
  assert float(stats["perplexity"]) == pytest.approx(n / 2, rel=1e-5)
  assert float(stats["usage"]) == pytest.approx(0.5)


def test_codebook_stats_average_over_codebooks_and_nonuniform():
  # Codebook 0 uses entries with counts [3, 1, 0, 0]; codebook 1 uses all 4 once.
  codes = np.array([[0, 0], [0, 1], [0, 2], [1, 3]])
  stats = _codebook_stats(codes, 4)
  p = np.array([0.75, 0.25])
  want_ppl = (np.exp(-(p * np.log(p)).sum()) + 4.0) / 2
  assert float(stats["perplexity"]) == pytest.approx(want_ppl, rel=1e-5)
  assert float(stats["usage"]) == pytest.approx((0.5 + 1.0) / 2)


def test_code_counts_and_stats_from_counts_agree_with_accumulation():
  rng = np.random.default_rng(0)
  n = 32
  probs = rng.dirichlet(np.full(n, 0.3))
  batch1 = rng.choice(n, size=(4, 6, 3), p=probs)
  batch2 = rng.choice(n, size=(5, 6, 3), p=probs)
  counts = metrics.code_counts(batch1, n) + metrics.code_counts(batch2, n)
  assert counts.shape == (3, n)
  np.testing.assert_array_equal(
      np.asarray(counts)[1], np.bincount(np.concatenate([batch1, batch2])[..., 1].ravel(),
                                         minlength=n))
  accumulated = metrics.stats_from_counts(counts)
  direct = _codebook_stats(np.concatenate([batch1, batch2]), n)
  for key in ("usage", "perplexity"):
    assert float(accumulated[key]) == pytest.approx(float(direct[key]), rel=1e-6)
  # One batch alone gives different statistics, so the agreement above is informative.
  assert float(_codebook_stats(batch1, n)["perplexity"]) != pytest.approx(
      float(direct["perplexity"]), rel=1e-3)


def test_code_counts_ignores_out_of_range_and_empty_codebook():
  counts = metrics.code_counts(np.array([[0], [3], [-1], [4], [2]]), 4)
  np.testing.assert_array_equal(np.asarray(counts), [[1, 0, 1, 1]])
  stats = metrics.stats_from_counts(np.zeros((1, 4)))
  assert float(stats["usage"]) == 0.0
  assert float(stats["perplexity"]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- accuracy


def test_accuracy_top1_top5():
  logits = np.array([
      [0.1, 0.9, 0.0, 0.2, 0.3, 0.4, 0.5],  # label 1 is top-1
      [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0],  # label 4 is 5th
      [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.0],  # label 1 is 6th
      [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # label 5 is 2nd
  ], np.float32)
  labels = np.array([1, 4, 1, 5])
  np.testing.assert_array_equal(np.asarray(metrics.accuracy(logits, labels)), [1, 0, 0, 0])
  np.testing.assert_array_equal(np.asarray(metrics.accuracy(logits, labels, k=5)), [1, 1, 0, 1])
  np.testing.assert_array_equal(np.asarray(metrics.accuracy(logits, labels, k=2)), [1, 0, 0, 1])


# ---------------------------------------------------------------------------- jit / shapes


@pytest.mark.parametrize("name", ["psnr", "mae", "ssim", "ms_ssim"])
def test_image_metrics_jit_on_video_batch(name):
  x, y = _video_pair(b=2, t=2, size=64, sigma=0.1)
  y[1] = _noisy(x[1], 0.3, seed=5)  # examples differ, so the permutation check below is informative
  fn = getattr(metrics, name)
  jitted = jax.jit(fn)(jnp.asarray(x), jnp.asarray(y))
  eager = fn(x, y)
  assert jitted.shape == (2,)
  assert abs(float(jitted[0] - jitted[1])) > 1e-2
  assert jitted.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-6)
  # Per-video value is the frame mean (ssim-type) / whole-video value (psnr, mae): check the
  # batch layout by permuting examples.
  perm = np.array([1, 0])
  np.testing.assert_allclose(
      np.asarray(jax.jit(fn)(x[perm], y[perm])), np.asarray(jitted)[perm], rtol=1e-5, atol=1e-6)


def test_ssim_video_value_is_frame_mean():
  x, y = _video_pair(b=1, t=2, size=64, sigma=0.1)
  y[0, 1] = _noisy(x[0, 1], 0.3, seed=7)
  per_frame = np.asarray(metrics.ssim(x[0][:, None], y[0][:, None]))  # frames as examples
  assert per_frame.std() > 0.01
  assert float(metrics.ssim(x, y)[0]) == pytest.approx(per_frame.mean(), abs=1e-6)
  per_frame_ms = np.asarray(metrics.ms_ssim(x[0][:, None], y[0][:, None]))
  assert float(metrics.ms_ssim(x, y)[0]) == pytest.approx(per_frame_ms.mean(), abs=1e-6)


def test_codebook_and_accuracy_jit():
  rng = np.random.default_rng(1)
  codes = jnp.asarray(rng.integers(0, 16, size=(2, 4, 8, 8, 2)))
  stats = jax.jit(lambda c: metrics.stats_from_counts(metrics.code_counts(c, 16)))(codes)
  eager = _codebook_stats(codes, 16)
  for key in ("usage", "perplexity"):
    assert stats[key].shape == ()
    assert float(stats[key]) == pytest.approx(float(eager[key]), rel=1e-6)
  assert 1.0 < float(stats["perplexity"]) <= 16.0
  logits = jnp.asarray(rng.standard_normal((5, 10)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, size=5))
  acc = jax.jit(metrics.accuracy, static_argnames="k")(logits, labels, k=3)
  assert acc.shape == (5,)
  np.testing.assert_array_equal(np.asarray(acc), np.asarray(metrics.accuracy(logits, labels, k=3)))
