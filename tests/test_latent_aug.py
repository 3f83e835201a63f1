"""The `latent_aug` trainer and the augmentation API downstream trainers use."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cv.augment import ops
from cv.augment.latent import LatentAugmenter
from cv.codec.neural import NeuralCodec
from cv.configs import k600_latent_aug
from cv.lib.errors import ConfigError
from cv.trainers import latent_aug
from tests import helpers


@pytest.mark.slow
def test_crop_flip_run_and_augmenter_api(tmp_path):
  wd = str(tmp_path / "aug")
  r = helpers.run_main("cv/configs/k600_latent_aug.py:aug=crop_flip,smoke", wd)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "final: SSIM learned" in r.stdout
  m = json.load(open(os.path.join(wd, "metrics.json")))
  for name in ("learned", "noop", "nearest", "warp", "pixel_route"):
    for ref in ("pixels", "codec"):
      assert 0.0 < m[f"eval/ssim_{name}_vs_{ref}"] <= 1.0
      assert m[f"eval/psnr_{name}_vs_{ref}"] > 5.0
  assert m["eval/latent_mse_learned"] >= 0.0 and m["eval/num_clips"] == 8
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(wd, size_guidance={"tensors": 0})
  acc.Reload()
  assert "eval/augmentations" in acc.Tags()["tensors"]

  aug = LatentAugmenter.load(wd)
  codec = NeuralCodec.load(None)
  assert aug.spec == ("crop", "flip") and aug.codec_id == codec.codec_id and aug.param_dim == 5
  assert aug.geometric_prior and aug.source_phase  # the network's inputs, as trained
  lat = codec.latents(np.zeros((2, 4, 4, 4, 1), np.int32))
  p = aug.random_params(jax.random.PRNGKey(0), 2)
  out = jax.jit(aug.augment)(lat, p)
  assert out.shape == lat.shape and bool(jnp.all(jnp.isfinite(out)))
  assert aug.views(num_crops=3, flips=True).shape == (6, 5)
  with pytest.raises(ConfigError, match="trained on latents of codec"):
    aug.check_codec("0" * 16, "config.aug.workdir")
  with pytest.raises(ConfigError, match="not a latent_aug run"):
    LatentAugmenter.load(str(tmp_path))

  # A downstream classifier trains with random learned crops/flips and averages learned views.
  s3d = str(tmp_path / "s3d")
  r = helpers.run_main("cv/configs/k600_s3d.py:smoke", s3d, f"--config.aug.workdir={wd}",
                       "--config.aug.eval_flips=True", "--config.total_steps=2",
                       "--config.eval_views.spatial=1", "--config.eval_views.temporal=1")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "augmentation: learned crop+flip" in r.stdout and "eval: 6 views" in r.stdout
  assert json.load(open(os.path.join(s3d, "metrics.json")))["eval/views"] == 6
  # Learned augmentations act on the codec's latents: other inputs are refused by name.
  r = helpers.run_main("cv/configs/k600_s3d.py:smoke,input=rgb", str(tmp_path / "rgb"),
                       f"--config.aug.workdir={wd}")
  assert r.returncode == 1 and "config.aug.workdir" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(ops.SPECS))
def test_every_augmentation_trains_a_step(name):
  """Each `aug=` builds and takes a finite training step whose target differs from the input."""
  config = k600_latent_aug.get_config(f"aug={name},smoke")
  codec = NeuralCodec.load(None)
  task = latent_aug.make_task(config, codec, [], [])
  state = jax.jit(task.init)(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  video = rng.integers(0, 255, (4, 4, 32, 32, 3), dtype=np.uint8)
  video = np.cumsum(video // 64, axis=2).astype(np.uint8) * 8  # smooth-ish, codec-friendly
  step = jax.jit(task.train_step)
  s1, m1 = step(state, {"video": video})
  assert np.isfinite(float(m1["loss"])) and float(m1["noop_latent_mse"]) > 0.0
  assert int(s1.step) == 1


def test_loss_weights_must_leave_something_to_learn():
  config = k600_latent_aug.get_config("aug=flip,smoke")
  config.loss.latent = 0.0
  with pytest.raises(ConfigError, match="nothing to learn"):
    latent_aug.make_task(config, NeuralCodec.load(None), [], [])


def test_pixel_loss_against_the_codec_rendering_trains_and_bad_target_is_named():
  config = k600_latent_aug.get_config("aug=flip,smoke")
  config.loss.pixels, config.loss.pixel_target = 1.0, "codec"
  codec = NeuralCodec.load(None)
  task = latent_aug.make_task(config, codec, [], [])
  state = jax.jit(task.init)(jax.random.PRNGKey(0))
  video = np.random.default_rng(1).integers(0, 255, (4, 4, 32, 32, 3), dtype=np.uint8)
  _, m = jax.jit(task.train_step)(state, {"video": video})
  assert np.isfinite(float(m["loss"])) and float(m["pixel_mse"]) > 0.0
  config.loss.pixel_target = "raw"
  with pytest.raises(ConfigError, match="config.loss.pixel_target"):
    latent_aug.make_task(config, codec, [], [])


def test_unknown_augmentation_lists_the_choices(tmp_path):
  """The name is validated once, by the trainer, before anything is loaded or written."""
  from cv.lib.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from cv.trainers import latent_aug  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match=r"config.aug.name: unknown augmentation spec 'zoom'; "
                                        r"known specs: \['brightness'"):
    latent_aug.train_and_evaluate(k600_latent_aug.get_config("aug=zoom,smoke"), str(tmp_path))
  assert not list(tmp_path.iterdir())


def test_warp_grid_moves_latents_like_pixels_and_skips_colour():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2, 6, 8, 5)), jnp.float32)
  assert jnp.array_equal(ops.warp_grid(x, ops.identity_params("crop_flip", 2), "crop_flip"), x)
  flip_all = jnp.array([[0.0, 0.0, 1.0, 1.0, 1.0]] * 2)
  assert jnp.allclose(ops.warp_grid(x, flip_all, "crop_flip"), x[:, :, :, ::-1])
  right_half = jnp.array([[0.0, 0.5, 1.0, 0.5]] * 2)  # resampled to the full grid: column 0 of
  y = ops.warp_grid(x, right_half, "crop")             # the output sits inside input column 4
  assert jnp.allclose(y[:, :, :, 1], 0.75 * x[:, :, :, 4] + 0.25 * x[:, :, :, 5], atol=1e-5)
  bright = ops.sample_params(jax.random.PRNGKey(0), "brightness", 2)
  assert jnp.array_equal(ops.warp_grid(x, bright, "brightness"), x)
