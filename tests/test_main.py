"""End-to-end runs through `python -m cv.main`, as a user runs them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from tests import helpers

VQ_SMOKE = "cv/configs/k600_vq.py:cr=192,smoke"


@pytest.mark.slow
def test_vq_codec_smoke_run_writes_everything(tmp_path):
  wd = str(tmp_path / "run")
  r = helpers.run_main(VQ_SMOKE, wd)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "final: PSNR" in r.stdout
  assert os.path.exists(os.path.join(wd, "config.json"))
  cfg = json.load(open(os.path.join(wd, "config.json")))
  assert cfg["trainer"] == "vq_codec" and cfg["cr"] == 192
  metrics = json.load(open(os.path.join(wd, "metrics.json")))
  assert metrics["step"] == 12
  assert metrics["eval/nominal_cr"] == pytest.approx(192.0)
  for k in ("eval/psnr", "eval/ssim", "eval/ms_ssim", "eval/mae", "eval/codebook_usage",
            "eval/codebook_perplexity"):
    assert np.isfinite(metrics[k]), k
  assert 5.0 < metrics["eval/psnr"] < 60.0
  assert helpers.finished_steps(os.path.join(wd, "checkpoints"))[-1] == 12

  # TensorBoard events hold scalars and the reconstruction images.
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(wd, size_guidance={"tensors": 0})
  acc.Reload()
  tags = set(acc.Tags()["tensors"])
  assert {"train/loss", "eval/psnr", "eval/reconstructions", "steps_per_sec"} <= tags, tags
  img = acc.Tensors("eval/reconstructions")[-1]
  assert img.step == 12

  # Re-running a finished run does not train again; it re-evaluates and keeps the result.
  r2 = helpers.run_main(VQ_SMOKE, wd)
  assert r2.returncode == 0, r2.stderr[-3000:]
  assert "Training already complete at step 12" in r2.stdout
  assert json.load(open(os.path.join(wd, "metrics.json")))["eval/psnr"] == pytest.approx(
      metrics["eval/psnr"], abs=1e-4)


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path):
  steps = ["--config.total_steps=40", "--config.ckpt_every=4", "--config.eval_every=0",
           "--config.log_every=4"]
  ref = str(tmp_path / "ref")
  r = helpers.run_main(VQ_SMOKE, ref, *steps)
  assert r.returncode == 0, r.stderr[-3000:]

  wd = str(tmp_path / "killed")
  ckpt_dir = os.path.join(wd, "checkpoints")
  proc = subprocess.Popen(helpers.main_cmd(VQ_SMOKE, wd, *steps), cwd=helpers.ROOT,
                          env=helpers.main_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and not any(s >= 8 for s in helpers.finished_steps(ckpt_dir)):
    assert proc.poll() is None, "run ended before it could be killed"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = helpers.finished_steps(ckpt_dir)
  assert killed_at and max(killed_at) < 40, f"the run was not interrupted: {killed_at}"

  r = helpers.run_main(VQ_SMOKE, wd, *steps)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"Resuming from checkpoint step {max(killed_at)}" in r.stdout

  a = helpers.load_state(os.path.join(ref, "checkpoints"), 40)
  b = helpers.load_state(ckpt_dir, 40)
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 10
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)


def test_unknown_trainer_lists_available(tmp_path):
  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "w"), "--config.trainer=vq_codek")
  assert r.returncode != 0
  assert "vq_codek" in r.stderr and "vq_codec" in r.stderr and "available" in r.stderr


def test_misspelt_config_key_is_named(tmp_path):
  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "w"), "--config.optim.lrr=0.1")
  assert r.returncode != 0
  assert "lrr" in r.stderr and "unknown config key" in r.stderr
  assert "Traceback" not in r.stderr


def test_misspelt_config_argument_is_named(tmp_path):
  r = helpers.run_main("cv/configs/k600_vq.py:crr=192", str(tmp_path / "w"))
  assert r.returncode != 0
  assert "crr" in r.stderr and "cr" in r.stderr


def test_bad_data_root_is_a_clear_error(tmp_path):
  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "w"), f"--config.data.root={tmp_path}/nope")
  assert r.returncode == 1
  assert "nope" in r.stderr and "config.data.root" in r.stderr


@pytest.mark.slow
def test_bad_videos_are_skipped_counted_and_strict_fails(tmp_path, kinetics_root):
  data = [f"--config.data.root={kinetics_root}", "--config.data.short_side=32",
          "--config.data.eval_split=validate", "--config.total_steps=4", "--config.eval_every=0"]
  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "skip"), *data)
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout + r.stderr
  assert "missing0000_000000_000002.mp4" in out and "empty000000_000000_000002.mp4" in out
  metrics = json.load(open(tmp_path / "skip" / "metrics.json"))
  assert metrics["data/skipped_videos"] >= 1  # decode-time failures met so far, by name
  assert "skipping unusable video" in r.stderr

  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "strict"), *data, "--config.data.strict=True")
  assert r.returncode == 1
  assert "missing0000_000000_000002.mp4" in r.stderr and "strict" in r.stderr
  assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["cr=30,tc=2,quantizer=fsq,smoke", "cr=768,smoke",
                                 "cr=768,quantizer=rvq,levels=2,smoke"])
def test_codec_variants_run_through_main(tmp_path, arg):
  wd = str(tmp_path / "w")
  r = helpers.run_main(f"cv/configs/k600_vq.py:{arg}", wd, "--config.total_steps=4",
                       "--config.eval_every=4")
  assert r.returncode == 0, r.stderr[-3000:]
  metrics = json.load(open(os.path.join(wd, "metrics.json")))
  assert np.isfinite(metrics["eval/psnr"]) and metrics["step"] == 4
  if "rvq" in arg:  # one model, two rates: quality and rate of the 1-level prefix are logged
    assert np.isfinite(metrics["eval/psnr_levels1"])
    assert metrics["eval/nominal_cr_levels1"] == pytest.approx(
        2 * metrics["eval/nominal_cr_32x256x256"])
