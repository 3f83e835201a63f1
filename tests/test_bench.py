"""The benchmark CLI (`tools/bench.py`) and its timing helpers (`cv.lib.bench`).

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

from cv.lib import bench
from tests.helpers import ROOT, main_env


def test_time_fn_counts_calls_and_returns_non_negative_stats():
  calls = []

  def fn(x, scale=1.0):
    calls.append(x)
    return jnp.ones((4,)) * x * scale  # a JAX result: time_fn must wait for it

  stats = bench.time_fn(fn, 2.0, repeats=3, warmup=2, scale=0.5)
  assert len(calls) == 5 and all(c == 2.0 for c in calls)
  for key in ("mean_s", "std_s", "min_s", "max_s", "warmup_s"):
    assert stats[key] >= 0, (key, stats)
  assert stats["min_s"] <= stats["mean_s"] <= stats["max_s"]
  assert stats["repeats"] == 3

  calls.clear()
  stats = bench.time_fn(fn, 1.0, repeats=1, warmup=0)
  assert len(calls) == 1 and stats["std_s"] == 0 and math.isnan(stats["warmup_s"])
  with pytest.raises(ValueError):
    bench.time_fn(fn, 1.0, repeats=0)


def test_small_helpers():
  assert bench.peak_rss_mb() > 0
  assert bench.per_second(10, {"mean_s": 2.0}) == 5.0
  table = bench.markdown_table(["a", "b"], [[1, 2.5]])
  assert table.splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2.5 |"]
  env = bench.environment()
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
  assert figures["peak_rss_mb"] > 0
