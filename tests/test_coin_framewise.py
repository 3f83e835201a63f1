"""The `coin_framewise` trainer through cv.main: codes and RGB runs on the demo COIN videos, the
metrics and images it reports, and what a user sees for bad annotation input."""
from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from cv.trainers.coin_framewise import frame_logits
from tests import helpers
from tests.helpers import write_clip

SMOKE = "cv/configs/coin_framewise.py:smoke"


def _metrics(wd: str) -> dict:
  return json.load(open(os.path.join(wd, "metrics.json")))


def test_frame_logits_interpolate_steps_to_frames():
  steps = jnp.array([[[0.0, 4.0], [4.0, 0.0]]])  # 2 steps -> 8 frames
  out = np.asarray(frame_logits(steps, 8))
  assert out.shape == (1, 8, 2)
  np.testing.assert_allclose(out[0, :, 0], [0, 0, 0.5, 1.5, 2.5, 3.5, 4, 4])
  assert (np.diff(out[0, :, 0]) >= 0).all()  # monotone between the step centres


@pytest.mark.slow
def test_codes_run_reports_framewise_metrics_and_images(tmp_path):
  wd = str(tmp_path / "codes")
  r = helpers.run_main(SMOKE, wd)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "coin_framewise: input=codes" in r.stdout and "final: per-frame top-1" in r.stdout
  m = _metrics(wd)
  assert m["step"] == 6 and m["eval/num_videos"] == 2
  for k in ("top1_mean", "top1_std", "top5_mean", "top1_frames", "segment_accuracy",
            "majority_rate", "mean_class_accuracy"):
    assert 0.0 <= m[f"eval/{k}"] <= 1.0, k
  assert m["eval/top5_mean"] >= m["eval/top1_mean"]
  # Every frame of both test videos is scored once (5-6 s at 10 fps each).
  assert 100 <= m["eval/num_frames"] <= 120
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(wd, size_guidance={"tensors": 0})
  acc.Reload()
  assert {"train/loss", "train/frame_top1", "eval/top1_mean", "eval/segments",
          "eval/confusion_matrix"} <= set(acc.Tags()["tensors"])


def _bad_root(tmp_path, entries: dict) -> str:
  root = tmp_path / "coin"
  for i, vid in enumerate(("t0", "t1", "e0")):
    write_clip(str(root / "videos" / f"{vid}.mp4"), n=40, h=40, w=48, seed=i)
  (root / "COIN.json").write_text(json.dumps({"database": entries}))
  return str(root)


def _entry(subset, segments, duration=1.6):
  return {"subset": subset, "duration": duration,
          "annotation": [{"segment": s, "label": lab, "id": "1"} for s, lab in segments]}


@pytest.mark.slow
def test_bad_annotations_are_reported_and_the_rgb_run_goes_on(tmp_path):
  root = _bad_root(tmp_path, {
      "t0": _entry("training", [([0.2, 0.6], "cut")]),
      "t1": _entry("training", [([0.2, 9.0], "mix")]),   # ends after the video
      "tx": _entry("training", [([0.1, 0.3], "mix")]),   # video missing
      "e0": _entry("testing", [([0.5, 1.0], "cut")]),
  })
  wd = str(tmp_path / "wd")
  r = helpers.run_main(f"{SMOKE},input=rgb", wd, f"--config.data.root={root}",
                       "--config.total_steps=2")
  assert r.returncode == 0, r.stderr[-3000:]
  out = r.stdout + r.stderr
  assert "[t1]" in out and "ends after the video's end" in out
  assert "tx.mp4" in out and "file not found" in out
  m = _metrics(wd)  # the RGB input trains and evaluates on the usable videos
  assert m["step"] == 2 and m["eval/num_videos"] == 1 and 0.0 <= m["eval/top1_mean"] <= 1.0


@pytest.mark.slow
def test_unknown_subset_and_wrong_format_fail_with_a_clear_message(tmp_path):
  root = _bad_root(tmp_path, {"t0": _entry("training", []), "e0": _entry("val", [])})
  r = helpers.run_main(f"{SMOKE},input=rgb", str(tmp_path / "a"), f"--config.data.root={root}")
  assert r.returncode != 0
  assert "no video has subset 'testing'" in r.stderr and "['training', 'val']" in r.stderr
  assert "Traceback" not in r.stderr
  r = helpers.run_main(SMOKE, str(tmp_path / "b"), "--config.data.format=kinetics")
  assert r.returncode != 0 and "needs per-frame step annotations" in r.stderr
