"""Tests for cv.augment.ops: parameter vectors, pixel transforms, test views, nearest_crop.

Inputs are built and results checked in numpy: on CPU every distinct eager jax op compiles on
first use, which would cost more than the transforms under test.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv.augment import ops

ALL = ("crop", "flip", "brightness", "saturation", "rotation")


def _video(b=2, t=2, h=16, w=16, seed=0):
  return np.random.default_rng(seed).uniform(size=(b, t, h, w, 3)).astype(np.float32)


def _apply(video, params, spec):
  return np.asarray(ops.apply_pixels(video, np.asarray(params, np.float32), spec))


def _crop(grid, params, spec, out_hw=None):
  return np.asarray(ops.nearest_crop(grid, np.asarray(params, np.float32), spec, out_hw))


def _int_grid(b=1, t=2, h=8, w=8):
  """Cell (y, x) holds 100 * y + x."""
  cells = np.arange(h)[:, None] * 100 + np.arange(w)[None, :]
  return np.broadcast_to(cells[None, None, :, :, None], (b, t, h, w, 1)).astype(np.int32)


@pytest.mark.parametrize("spec", list(ops.SPECS.values()) + [ALL])
def test_identity_params_give_input_back(spec):
  v = _video()
  out = _apply(v, ops.identity_params(spec, 2), spec)
  assert out.shape == v.shape
  np.testing.assert_allclose(out, v, atol=1e-5)


def test_param_dims_and_spec_names():
  assert [ops.param_dim(n) for n in ALL] == [4, 1, 1, 1, 1]
  assert ops.param_dim("crop_flip") == ops.param_dim(("crop", "flip")) == 5
  assert ops.SPECS["crop_flip"] == ("crop", "flip")
  assert ops.param_slices(ALL)["rotation"] == slice(7, 8)
  np.testing.assert_array_equal(ops.identity_params("crop_flip", 2), [[0, 0, 1, 1, 0]] * 2)
  with pytest.raises(ValueError, match="unknown augmentation"):
    ops.param_dim(("crop", "zoom"))
  with pytest.raises(ValueError, match="unknown augmentation spec"):
    ops.param_dim("zoom")
  with pytest.raises(ValueError, match="repeats"):
    ops.param_dim(("flip", "flip"))
  with pytest.raises(ValueError, match="expected params"):
    ops.apply_pixels(_video(), np.zeros((2, 4), np.float32), "crop_flip")


def test_flip():
  v = _video()
  flipped = _apply(v, [[1.0], [1.0]], "flip")
  np.testing.assert_array_equal(flipped, v[:, :, :, ::-1])
  np.testing.assert_array_equal(_apply(flipped, [[1.0], [1.0]], "flip"), v)
  mixed = _apply(v, [[1.0], [0.0]], "flip")  # per-example parameters
  np.testing.assert_array_equal(mixed[0], v[0, :, :, ::-1])
  np.testing.assert_array_equal(mixed[1], v[1])


def test_brightness_adds_delta_and_clips():
  v = _video()
  out = _apply(v, [[0.3], [-0.2]], "brightness")
  np.testing.assert_allclose(out[0], np.clip(v[0] + 0.3, 0, 1), atol=1e-6)
  np.testing.assert_allclose(out[1], np.clip(v[1] - 0.2, 0, 1), atol=1e-6)
  assert out.min() >= 0.0 and out.max() <= 1.0
  assert (out[0] == 1.0).any() and (out[1] == 0.0).any()  # clipping happened


def test_saturation_zero_factor_gives_grey():
  v = _video()
  out = _apply(v, [[-1.0], [-1.0]], "saturation")  # factor 0
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
  np.testing.assert_allclose(out[..., 1], out[..., 2], atol=1e-5)
  np.testing.assert_allclose(out.max(-1), v.max(-1), atol=1e-5)  # HSV value is kept


def test_crop_full_box_and_left_half():
  v = _video()
  np.testing.assert_allclose(_apply(v, [[0.0, 0.0, 1.0, 1.0]] * 2, "crop"), v, atol=1e-6)
  left = _apply(v, [[0.0, 0.0, 1.0, 0.5]] * 2, "crop")
  # The left half upsampled x2 along W (bilinear, half-pixel centres, edge clamp).
  src = np.clip(0.5 * np.arange(16) - 0.25, 0, 7)
  i0 = np.floor(src).astype(int)
  i1 = np.minimum(i0 + 1, 7)
  frac = (src - i0)[:, None]
  expected = v[:, :, :, i0] * (1 - frac) + v[:, :, :, i1] * frac
  # The last column samples between the half's last pixel and its right neighbour, which the
  # crop sees (it is inside the frame) and an isolated upsampled half does not.
  np.testing.assert_allclose(left[:, :, :, :-1], expected[:, :, :, :-1], atol=1e-5)
  np.testing.assert_allclose(left, expected, atol=0.3)


def test_rotation():
  v = _video(h=17, w=17)
  np.testing.assert_allclose(_apply(v, [[0.0], [0.0]], "rotation"), v, atol=1e-6)
  out = _apply(v, [[0.5], [0.5]], "rotation")  # 15 degrees
  diff = np.abs(out - v)
  assert diff[:, :, 8, 8].max() < 1e-5  # the exact centre does not move
  centre = diff[:, :, 7:10, 7:10].mean()
  corners = diff[:, :, [0, 1, 15, 16]][:, :, :, [0, 1, 15, 16]].mean()
  assert centre < 0.5 * corners and corners > 0.1


def test_rotation_direction_is_counter_clockwise():
  img = np.zeros((1, 1, 9, 9, 3), np.float32)
  img[..., 4, 7, :] = 1.0  # right of the centre
  out = _apply(img, [[3.0]], "rotation")  # +90 degrees
  assert tuple(np.argwhere(out[0, 0, :, :, 0] > 0.5)[0]) == (1, 4)  # now above the centre


@pytest.mark.parametrize("name", list(ops.SPECS))
def test_sample_params_shapes_and_ranges(name):
  spec = ops.SPECS[name]
  p = np.asarray(ops.sample_params(jax.random.PRNGKey(3), spec, 256))
  assert p.shape == (256, ops.param_dim(spec))
  assert np.all(np.isfinite(p))
  sl = ops.param_slices(spec)
  eps = 1e-5
  if "crop" in sl:
    y0, x0, h, w = p[:, sl["crop"]].T
    assert np.all(y0 >= 0) and np.all(x0 >= 0) and np.all(h <= 1) and np.all(w <= 1)
    assert np.all(y0 + h <= 1 + eps) and np.all(x0 + w <= 1 + eps)
    assert np.all(h * w >= 0.25 - eps) and np.all(h * w <= 1 + eps)
    unclipped = (h < 1) & (w < 1)
    ratio = w[unclipped] / h[unclipped]
    assert np.all(ratio >= 0.75 - eps) and np.all(ratio <= 4 / 3 + eps)
    assert np.ptp(y0) > 0.05 and np.ptp(h * w) > 0.3
  if "flip" in sl:
    assert set(np.unique(p[:, sl["flip"]])) == {0.0, 1.0}
  if "brightness" in sl:
    d = p[:, sl["brightness"]]
    assert d.min() >= -0.4 - eps and d.max() <= 0.4 + eps
  if "saturation" in sl:
    s = p[:, sl["saturation"]]
    assert s.min() >= -0.8 - eps and s.max() <= 0.8 + eps
  if "rotation" in sl:
    r = p[:, sl["rotation"]]
    assert r.min() >= -1 - eps and r.max() <= 1 + eps and np.ptp(r) > 1.0


def test_sample_params_custom_ranges_and_errors():
  key = jax.random.PRNGKey(0)
  p = np.asarray(ops.sample_params(key, ALL, 64, crop_area=(1.0, 1.0), crop_aspect=[1, 1],
                                   flip_prob=0.0, brightness_delta=(0.1, 0.1),
                                   rotation_degrees=(-3, 3)))
  np.testing.assert_allclose(p[:, 0:4], np.tile([[0.0, 0.0, 1.0, 1.0]], (64, 1)), atol=1e-5)
  assert p[:, 4].max() == 0.0
  np.testing.assert_allclose(p[:, 5], 0.1, atol=1e-6)
  assert np.abs(p[:, 7]).max() <= 0.1 + 1e-6
  # Same rng -> same crop boxes whatever the composition.
  a = np.asarray(ops.sample_params(key, "crop", 256))
  b = np.asarray(ops.sample_params(key, "crop_flip", 256))
  np.testing.assert_array_equal(a, b[:, :4])
  with pytest.raises(ValueError, match="unknown sampling ranges"):
    ops.sample_params(key, "crop", 2, crop_scale=(0.1, 1))
  with pytest.raises(ValueError, match="crop_area"):
    ops.sample_params(key, "crop", 2, crop_area=(0.0, 1.0))


def test_eval_views():
  assert ops.eval_views("crop").shape == (3, 4)
  assert ops.eval_views("flip").shape == (2, 1)
  assert ops.eval_views("crop_flip").shape == (6, 5)
  assert ops.eval_views("crop_flip", flips=False).shape == (3, 5)
  assert ops.eval_views("crop_flip", num_crops=1).shape == (2, 5)
  for name in ("brightness", "saturation", "rotation"):
    np.testing.assert_array_equal(ops.eval_views(name), ops.identity_params(name, 1))
  v = np.asarray(ops.eval_views("crop_flip"))
  np.testing.assert_array_equal(v[:, 4], [0, 1, 0, 1, 0, 1])
  np.testing.assert_allclose(v[::2, 1], [0.0, 0.1, 0.2], atol=1e-6)  # spaced along x
  np.testing.assert_allclose(v[:, 0], 0.1, atol=1e-6)  # centred in y
  np.testing.assert_allclose(v[:, 2:4], 0.8, atol=1e-6)
  # Landscape frames: full-height squares spaced along the width.
  wide = np.asarray(ops.eval_views("crop", crop_scale=1.0, frame_hw=(100, 200)))
  np.testing.assert_allclose(wide, [[0, 0, 1, 0.5], [0, 0.25, 1, 0.5], [0, 0.5, 1, 0.5]],
                             atol=1e-6)
  # Views are valid parameters.
  assert _apply(_video(b=6), v, "crop_flip").shape == (6, 2, 16, 16, 3)


def test_nearest_crop_integer_grid():
  g = _int_grid()
  right = ops.nearest_crop(g, np.array([[0.0, 0.5, 1.0, 0.5]], np.float32), "crop", (8, 4))
  assert right.dtype == jnp.int32 and right.shape == (1, 2, 8, 4, 1)
  right = np.asarray(right)
  np.testing.assert_array_equal(right[0, 0, 0, :, 0], [4, 5, 6, 7])
  np.testing.assert_array_equal(right[0, 1, :, 0, 0], np.arange(8) * 100 + 4)
  # Full box -> identity; top-left quarter at full resolution repeats each cell twice.
  np.testing.assert_array_equal(_crop(g, ops.identity_params("crop", 1), "crop"), g)
  quarter = _crop(g, [[0.0, 0.0, 0.5, 0.5]], "crop")
  np.testing.assert_array_equal(quarter[0, 0, 0, :, 0], [0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_array_equal(quarter[0, 0, :, 0, 0], [0, 0, 100, 100, 200, 200, 300, 300])
  # Flip reverses W, in spec order; other augmentations are ignored.
  cf = _crop(g, [[0.0, 0.5, 1.0, 0.5, 1.0]], "crop_flip", (8, 4))
  np.testing.assert_array_equal(cf[0, 0, 0, :, 0], [7, 6, 5, 4])
  fc = _crop(g, [[1.0, 0.0, 0.0, 1.0, 0.5]], ("flip", "crop"), (8, 4))
  np.testing.assert_array_equal(fc[0, 0, 0, :, 0], [7, 6, 5, 4])  # left half of flipped frame
  np.testing.assert_array_equal(_crop(g, [[0.4, 0.9]], ("brightness", "rotation")), g)


def test_nearest_crop_on_float_latents():
  z = np.random.default_rng(0).normal(size=(2, 2, 4, 6, 5)).astype(np.float32)
  out = _crop(z, [[1.0], [0.0]], "flip")
  np.testing.assert_array_equal(out[0], z[0, :, :, ::-1])
  np.testing.assert_array_equal(out[1], z[1])


def test_everything_jits():
  """sample -> pixels -> nearest crop in one jitted program (params traced), same as eager."""
  v = _video()
  g = _int_grid(b=2)

  @jax.jit
  def pipeline(rng, video, grid):
    p = ops.sample_params(rng, ALL, 2)
    return p, ops.apply_pixels(video, p, ALL), ops.nearest_crop(grid, p, ALL, (4, 4))

  p, out, crop = pipeline(jax.random.PRNGKey(1), v, g)
  np.testing.assert_array_equal(p, ops.sample_params(jax.random.PRNGKey(1), ALL, 2))
  np.testing.assert_allclose(out, _apply(v, p, ALL), atol=1e-5)
  np.testing.assert_array_equal(crop, _crop(g, p, ALL, (4, 4)))
  assert crop.shape == (2, 2, 4, 4, 1) and crop.dtype == jnp.int32


def test_source_phase_gives_the_sub_cell_position_each_output_cell_samples():
  fn = jax.jit(ops.source_phase, static_argnums=(1, 2, 3))
  # The left half of an 8-wide grid, zoomed x2: output column j samples input column
  # 0.5 * j - 0.25 (clamped at the edge, like the pixels); rows stay on the grid.
  f = np.asarray(fn(jnp.array([[0.0, 0.0, 1.0, 0.5]]), ("crop",), (4, 8), 1))
  assert f.shape == (1, 1, 4, 8, 4)  # [sin y, sin x, cos y, cos x] for one harmonic
  src_x = np.clip(0.5 * np.arange(8) - 0.25, 0.0, 7.0)
  np.testing.assert_allclose(f[0, 0, 2, :, 1], np.sin(2 * np.pi * src_x), atol=1e-5)
  np.testing.assert_allclose(f[0, 0, 2, :, 3], np.cos(2 * np.pi * src_x), atol=1e-5)
  np.testing.assert_allclose(f[0, 0, :, :, 0], 0.0, atol=1e-5)
  np.testing.assert_allclose(f[0, 0, :, :, 2], 1.0, atol=1e-5)
  # Flips and colour changes keep every cell on the grid: phase 0 everywhere.
  g = np.asarray(fn(jnp.array([[1.0, 0.3]]), ("flip", "brightness"), (4, 6), 2))
  assert g.shape == (1, 1, 4, 6, 8)
  np.testing.assert_allclose(g[..., :4], 0.0, atol=1e-5)
  np.testing.assert_allclose(g[..., 4:], 1.0, atol=1e-5)
