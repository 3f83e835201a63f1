"""The benchmark CLI (`tools/bench.py`) and its timing helpers (`cv.benchmarks.timing`).

These tests check that the benchmarks run and report well-formed figures; they never assert a
speed (speed is what the benchmarks themselves print).
"""
import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from cv.benchmarks import FIGURES
from cv.benchmarks import timing
from tests.helpers import ROOT, main_env, run_main

BENCH = os.path.join(ROOT, "tools", "bench.py")


def _bench(tmp_path, *args: str, timeout: int = 600) -> tuple[str, dict]:
  """Runs `tools/bench.py *args --json ...` as a user would; returns (stdout, JSON report)."""
  out = tmp_path / "out.json"
  result = subprocess.run([sys.executable, BENCH, *args, "--json", str(out)], cwd=str(tmp_path),
                          env=main_env(), capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["figure"] == args[0]
  assert report["environment"]["cpus"] >= 1 and report["environment"]["wall_s"] > 0
  return result.stdout, report


def _row_names(stdout: str) -> list[str]:
  """First cells of the Markdown table rows printed on stdout (header rows included, rules not)."""
  return [line.split("|")[1].strip() for line in stdout.splitlines() if line.startswith("| ")]


def _check_ratios(figures: dict, expected: list[str]) -> None:
  """Every expected ratio is there and positive; every `*_ratio` is a positive number."""
  for key in expected:
    assert key in figures, (key, sorted(figures))
  for key, value in figures.items():
    if key.endswith("_ratio"):
      assert isinstance(value, float) and 0 < value < math.inf, (key, value)


def test_time_fn_counts_calls_and_returns_non_negative_stats():
  calls = []

  def fn(x, scale=1.0):
    calls.append(x)
    return jnp.ones((4,)) * x * scale  # a JAX result: time_fn must wait for it

  stats = timing.time_fn(fn, 2.0, repeats=3, warmup=2, scale=0.5)
  assert len(calls) == 5 and all(c == 2.0 for c in calls)
  for key in ("mean_s", "std_s", "min_s", "max_s", "warmup_s"):
    assert stats[key] >= 0, (key, stats)
  assert stats["min_s"] <= stats["mean_s"] <= stats["max_s"]
  assert stats["repeats"] == 3

  calls.clear()
  stats = timing.time_fn(fn, 1.0, repeats=1, warmup=0)
  assert len(calls) == 1 and stats["std_s"] == 0 and math.isnan(stats["warmup_s"])
  with pytest.raises(ValueError):
    timing.time_fn(fn, 1.0, repeats=0)


def test_small_helpers():
  assert timing.peak_rss_mb() > 0
  assert timing.per_second(10, {"mean_s": 2.0}) == 5.0
  table = timing.markdown_table(["a", "b"], [[1, 2.5]])
  assert table.splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2.5 |"]
  env = timing.environment()
  assert env["cpus"] >= 1 and env["backend"]


def test_codec_figure_writes_json(tmp_path):
  out = tmp_path / "out.json"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "bench.py"), "codec", "--rates", "192",
       "--size", "64", "--frames", "8", "--repeats", "1", "--json", str(out)],
      cwd=str(tmp_path), env=main_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| ours cr=192 | trained |" in result.stdout, result.stdout
  report = json.loads(out.read_text())
  assert report["figure"] == "codec" and report["args"]["rates"] == [192]
  figures = report["figures"]
  assert (figures["frames"], figures["height"], figures["width"]) == (8, 64, 64)
  fps_keys = ["cr192/encode_fps", "cr192/decode_fps", "jpeg_q50/encode_fps",
              "jpeg_q50/decode_fps", "h264_crf28/encode_fps", "h264_crf28/decode_fps"]
  for key in fps_keys:
    assert figures[key] > 0, key
  ratio_keys = [f"cr192/ours_{op}_vs_{c}_ratio" for op in ("encode", "decode")
                for c in ("jpeg", "h264")]
  for key in ratio_keys:
    assert figures[key] > 0, key
  assert figures["cr192/weights"] == "trained"
  assert figures["cr192/nominal_cr"] == 192.0
  # 8x64x64 -> 8x8x8 codes of 8 bits: 512 bytes, plus the .cvz header.
  assert figures["cr192/nominal_bytes"] == 512
  assert figures["cr192/payload_bytes"] == 512
  assert figures["cr192/cvz_bytes"] > 512
  assert 0 < figures["cr192/actual_cr"] < 192
  assert figures["cr192/nominal_bytes_32x256x256"] == 32 * 32 * 32
  # The demo codec carries code frequencies: its --entropy file, never bigger than bit-packing
  # (one mode byte per chunk aside), and the lossless stage's speed.
  assert "--entropy bytes/clip" in result.stdout
  assert figures["cr192/entropy_mode"] in ("packed", "range", "context")
  assert figures["cr192/entropy_cvz_bytes"] <= figures["cr192/cvz_bytes"] + 1
  assert figures["cr192/entropy_actual_cr"] >= figures["cr192/actual_cr"] * 0.99
  assert figures["cr192/entropy_encode_fps"] > 0 and figures["cr192/entropy_decode_fps"] > 0
  assert figures["peak_rss_mb"] > 0


def test_cli_lists_every_figure():
  assert set(FIGURES) == {"codec", "loader", "step", "augment", "memory", "cost"}
  result = subprocess.run([sys.executable, BENCH, "--help"], env=main_env(), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  for name in FIGURES:
    assert name in result.stdout
  bad = subprocess.run([sys.executable, BENCH, "step", "--inputs", "codes,pixels"],
                       env=main_env(), capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and "codes,rgb,recon" in bad.stderr


def test_loader_figure_writes_json(tmp_path):
  stdout, report = _bench(tmp_path, "loader", "--smoke", "--batch", "4", "--batches", "3",
                          "--warmup", "1")
  assert report["args"]["batch"] == 4 and report["args"]["smoke"] is True
  figures = report["figures"]
  for name in ("rgb", "codes"):
    for key in ("clips_per_s", "s_per_batch", "first_batch_s", "elapsed_s",
                "storage_bytes_per_clip", "example_bytes", "peak_rss_mb",
                "rss_after_imports_mb"):
      assert figures[f"{name}/{key}"] > 0, (name, key)
    assert figures[f"{name}/dtype"] == "uint8"
  # Smoke clips: 4x32x32x3 frames vs 4x4x4x1 codes of the demo codec (8x8 pixels per code).
  assert figures["clip"] == "4x32x32" and figures["code_clip"] == "4x4x4x1"
  assert figures["rgb/example_bytes"] == 4 * 32 * 32 * 3
  assert figures["codes/example_bytes"] == 4 * 4 * 4
  assert figures["rgb_vs_codes_example_bytes_ratio"] == 192
  assert figures["codes/record_bytes"] > 4 * 4 * 4  # whole videos, with their metadata
  assert figures["codes/storage_bytes_per_clip"] >= figures["codes/record_bytes"]
  _check_ratios(figures, ["codes_vs_rgb_clips_per_s_ratio", "rgb_vs_codes_bytes_per_clip_ratio",
                          "rgb_vs_codes_record_bytes_ratio", "rgb_vs_codes_peak_rss_ratio"])
  rows = _row_names(stdout)
  assert rows[:3] == ["pipeline", "rgb (video files)", "codes (code shards)"], rows
  assert "codes vs rgb clips/s" in rows
  assert "codes: encoding" not in stdout  # progress goes to stderr, stdout is the tables


_STEP_KEYS = ("train_step_s", "train_clips_per_s", "train_compile_s", "inference_s",
              "inference_clips_per_s", "inference_compile_s", "parameters", "input_bytes",
              "peak_rss_mb")


@pytest.mark.slow
def test_step_figure_codes_vs_rgb(tmp_path):
  stdout, report = _bench(tmp_path, "step", "--smoke", "--batch", "2", "--repeats", "1",
                          "--inputs", "codes,rgb")
  figures = report["figures"]
  assert report["args"]["inputs"] == ["codes", "rgb"]
  # The default single CPU device, although the tests' XLA_FLAGS ask for 4.
  assert figures["devices"] == 1 and report["environment"]["devices"] == 1
  for inp in ("codes", "rgb"):
    for key in _STEP_KEYS:
      assert figures[f"{inp}/{key}"] > 0, (inp, key)
  assert figures["codes/input_shape"] == "2x4x4x4x1" and figures["codes/input_dtype"] == "uint8"
  assert figures["rgb/input_shape"] == "2x4x32x32x3"
  assert figures["input_bytes_rgb_vs_codes_ratio"] == 192
  _check_ratios(figures, ["train_step_codes_vs_rgb_speedup_ratio",
                          "inference_codes_vs_rgb_speedup_ratio",
                          "input_bytes_rgb_vs_codes_ratio"])
  assert "train_step_recon_vs_rgb_speedup_ratio" not in figures
  rows = _row_names(stdout)
  assert rows[:3] == ["input", "codes", "rgb"], rows
  assert "codes vs rgb" in rows


@pytest.mark.slow
def test_step_figure_recon(tmp_path):
  stdout, report = _bench(tmp_path, "step", "--smoke", "--batch", "2", "--repeats", "1",
                          "--inputs", "recon")
  figures = report["figures"]
  for key in _STEP_KEYS:
    assert figures[f"recon/{key}"] > 0, key
  assert figures["recon/input_shape"] == "2x4x4x4x1"  # codes in, decoded inside the step
  assert not [k for k in figures if k.endswith("_ratio")]  # no RGB run to compare with
  assert _row_names(stdout)[:2] == ["input", "recon"]


_ROUTES = ("latent_aug", "pixel_route", "decode", "encode", "pixel_augment")


def _check_augment(stdout: str, figures: dict, weights: str) -> None:
  for route in _ROUTES:
    for key in ("s_mean", "clips_per_s", "compile_s"):
      assert figures[f"{route}/{key}"] > 0, (route, key)
  assert figures["batch"] == 2 and figures["clip"] == "4x32x32"
  assert figures["code_shape"] == "4x4x4x1" and figures["latent_shape"] == "4x4x4x64"
  assert figures["augmentation"] == "crop+flip" and figures["weights"] == weights
  assert figures["aug_net_parameters"] > 0
  _check_ratios(figures, ["pixel_route_vs_latent_aug_ratio", "decode_vs_latent_aug_ratio",
                          "encode_vs_latent_aug_ratio"])
  rows = _row_names(stdout)
  assert rows == ["route", "latent augment (network)", "pixel route", "decode alone",
                  "encode alone", "pixel augment alone"], rows
  assert f"weights: {weights}" in stdout


def test_augment_figure_writes_json(tmp_path):
  stdout, report = _bench(tmp_path, "augment", "--smoke", "--batch", "2", "--repeats", "1")
  assert report["args"]["aug_workdir"] is None
  _check_augment(stdout, report["figures"], "random")


@pytest.mark.slow
def test_augment_figure_with_a_trained_network(tmp_path):
  workdir = str(tmp_path / "aug")
  r = run_main("cv/configs/k600_latent_aug.py:aug=crop_flip,smoke", workdir,
               "--config.total_steps=2", "--config.eval_every=2", "--config.ckpt_every=2")
  assert r.returncode == 0, r.stderr[-3000:]
  stdout, report = _bench(tmp_path, "augment", "--smoke", "--batch", "2", "--repeats", "1",
                          "--aug_workdir", workdir)
  _check_augment(stdout, report["figures"], "trained")


@pytest.mark.slow
def test_memory_figure_codes_vs_rgb(tmp_path):
  stdout, report = _bench(tmp_path, "memory", "--smoke", "--minutes=0.25")
  assert report["args"]["smoke"] is True and report["args"]["minutes"] == [0.25]
  figures = report["figures"]
  assert figures["minutes"] == "0.25" and figures["memory"] == "slot"
  lengths = ("0.25min",)
  for length in lengths:
    p = length + "/"
    assert figures[p + "chunks"] > 0 and figures[p + "group"] >= 1
    for name in ("codes", "rgb"):
      q = f"{p}{name}/"
      assert figures[q + "status"] == "ok", figures[q + "status"]
      for key in ("input_bytes", "peak_rss_bytes", "peak_rss_mb", "compile_s", "s_per_pass",
                  "parameters"):
        assert figures[q + key] > 0, (q, key)
      assert figures[q + "input_dtype"] == "uint8"
      assert figures[q + "input_shape"].startswith(f"1x{figures[p + 'chunks']}x")
    # The whole walk: codes of the demo codec (one 8-bit code per 8x8 pixels) vs 32x32 RGB.
    assert figures[p + "codes/input_bytes"] < figures[p + "rgb/input_bytes"]
    assert figures[p + "rgb/input_bytes"] == 192 * figures[p + "codes/input_bytes"]
    assert figures[p + "rgb/input_bytes"] == figures[p + "rgb/estimated_input_bytes"]
    assert figures[p + "rgb/input_shape"].endswith("x4x32x32x3")
    assert figures[p + "codes/input_shape"].endswith("x4x4x4x1")
  _check_ratios(figures, [f"{length}/rgb_vs_codes_{r}_ratio" for length in lengths
                          for r in ("peak_rss", "input_bytes", "pass_time")])
  rows = _row_names(stdout)
  assert rows[:3] == ["walk", "0.25 min", "0.25 min"], rows
  assert "[memory]" not in stdout  # progress goes to stderr, stdout is the tables


def test_memory_figure_groups_and_rgb_that_does_not_fit():
  from cv.benchmarks import memory
  assert memory.resolve_group(None, 30, 720) == 30  # the config's
  assert memory.resolve_group(0, 30, 720) == 120  # auto: ceil(720 / 6)
  assert memory.resolve_group(0, 30, 7) == 2
  assert memory.resolve_group(None, 30, 12) == 12  # never more than the walk has
  pixels = jnp.arange(2 * 16 * 8 * 3, dtype=jnp.int32).reshape(1, 2, 16, 8, 3) % 256
  feats = memory.space_to_depth_features(8)(pixels.astype(jnp.uint8))
  assert feats.shape == (1, 2, 2, 1, 192) and feats.dtype == jnp.float32
  # Patch (1, 0) starts at pixel row 8; channels 3..5 are the next pixel to the right.
  assert float(feats[0, 0, 1, 0, 0]) == pytest.approx(float(pixels[0, 0, 8, 0, 0]) / 255)
  assert float(feats[0, 0, 0, 0, 3]) == pytest.approx(float(pixels[0, 0, 0, 1, 0]) / 255)
  assert float(feats[0, 0, 0, 0, 24]) == pytest.approx(float(pixels[0, 0, 1, 0, 0]) / 255)
  figures = {"chunk_frames": 4, "stride": 5, "memory": "slot", "model_dim": 16, "repeats": 1,
             "60min/chunks": 720, "60min/group": 120, "60min/frame_size": "64x64",
             "60min/chunk_seconds": 5.0, "60min/rgb/estimated_input_bytes": 88473600,
             "60min/rgb/status": "skipped: 0.1 GiB of pixels > --rgb_max_gib 0.01",
             "60min/codes/status": "ok", "60min/codes/input_shape": "1x720x10x8x8x1",
             "60min/codes/input_dtype": "uint8", "60min/codes/input_bytes": 460800,
             "60min/codes/peak_rss_mb": 900.0, "60min/codes/compile_s": 30.0,
             "60min/codes/s_per_pass": 9.0, "60min/codes/rss_after_imports_mb": 700.0}
  text = memory.format_tables(figures, [60.0])
  assert "| 60 min | rgb (decoded pixels) | 720 | - | 88,473,600 (est.) | skipped |" in text
  assert "rgb vs codes" not in text and "60 min, rgb: skipped" in text
