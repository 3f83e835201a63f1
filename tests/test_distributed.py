"""Multi-process runs on jax.distributed over 127.0.0.1 (CPU collectives), as users launch them:
two `cv.main` processes with 2 fake CPU devices each must train like one process with 4 devices,
resume on another device count, and stop (not hang) when a peer dies."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time

import jax
import numpy as np
import pytest

from cv.lib import checkpoint, distributed
from tests import helpers

VQ_SMOKE = "cv/configs/k600_vq.py:cr=192,smoke"
S3D_SMOKE = "cv/configs/k600_s3d.py:smoke"


def _ok(results):
  for i, r in enumerate(results):
    assert r.returncode == 0, f"process {i}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


def _eval_value(stdout: str, step: int, key: str) -> float:
  m = re.search(rf"eval @ step {step}: .*?\b{key} ([-\d.e]+)", stdout)
  assert m, f"no 'eval @ step {step}' line with {key} in:\n{stdout[-2000:]}"
  return float(m.group(1))


def _assert_states_close(a: dict, b: dict, atol: float) -> None:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), atol=atol,
                               rtol=1e-3)


@pytest.mark.slow
def test_vq_codec_two_processes_match_one_and_resume_on_another_device_count(tmp_path):
  common = ["--config.total_steps=16", "--config.ckpt_every=8", "--config.eval_every=8",
            "--config.log_every=4"]
  ref = str(tmp_path / "ref")
  r = helpers.run_main(VQ_SMOKE, ref, *common)
  assert r.returncode == 0, r.stderr[-3000:]

  multi = str(tmp_path / "multi")
  rs = helpers.run_processes(VQ_SMOKE, multi, *common)
  _ok(rs)
  assert "mesh: {'data': 4} over 4 cpu device(s), 2 process(es)" in rs[0].stdout
  # The two processes evaluate the held-out set together (each loads its share) and agree with
  # the single process; only process 0 prints the run's lines.
  for step in (8, 16):
    assert _eval_value(rs[0].stdout, step, "psnr") == pytest.approx(
        _eval_value(r.stdout, step, "psnr"), abs=1e-3)
    assert _eval_value(rs[0].stdout, step, "num_clips") == _eval_value(r.stdout, step,
                                                                       "num_clips")
  assert "eval @ step" not in rs[1].stdout and "mesh:" not in rs[1].stdout
  # Each checkpoint is written by both processes (one iterator state each).
  it_files = sorted(os.listdir(os.path.join(multi, "checkpoints", "8", "data_iter")))
  assert [f for f in it_files if f.endswith(".json")] == ["process_0-of-2.json",
                                                          "process_1-of-2.json"]
  # Same parameters as the single process up to float reduction order.
  for step in (8, 16):
    _assert_states_close(helpers.load_state(os.path.join(ref, "checkpoints"), step),
                         helpers.load_state(os.path.join(multi, "checkpoints"), step), atol=1e-4)
  a = json.load(open(os.path.join(ref, "metrics.json")))
  b = json.load(open(os.path.join(multi, "metrics.json")))
  for k in ("train/loss", "eval/psnr", "eval/ssim"):
    assert b[k] == pytest.approx(a[k], rel=1e-4), k

  # The 2-process checkpoint of step 8 resumes in ONE process with 2 devices: state resharded,
  # data position remapped, and training ends where the uninterrupted single-process run did.
  shutil.rmtree(os.path.join(multi, "checkpoints", "16"))
  os.remove(os.path.join(multi, "metrics.json"))
  r2 = helpers.run_main(VQ_SMOKE, multi, *common, devices=2)
  assert r2.returncode == 0, r2.stderr[-3000:]
  assert "Resuming from checkpoint step 8" in r2.stdout
  assert "over 2 cpu device(s), 1 process(es)" in r2.stdout
  _assert_states_close(helpers.load_state(os.path.join(ref, "checkpoints"), 16),
                       helpers.load_state(os.path.join(multi, "checkpoints"), 16), atol=1e-3)
  b = json.load(open(os.path.join(multi, "metrics.json")))
  assert b["step"] == 16
  for k in ("train/loss", "eval/psnr", "eval/ssim"):
    assert b[k] == pytest.approx(a[k], rel=2e-3), k

  # A checkpoint of another model is refused with a message, not a traceback.
  r3 = helpers.run_main("cv/configs/k600_vq.py:cr=768,smoke", multi, "--config.total_steps=20")
  assert r3.returncode == 1 and "Traceback" not in r3.stderr, r3.stderr[-2000:]
  assert "could not restore checkpoint step 16" in r3.stderr


@pytest.mark.slow
def test_s3d_cls_two_processes_match_one(tmp_path):
  common = ["--config.total_steps=3", "--config.log_every=1"]
  ref = str(tmp_path / "ref")
  r = helpers.run_main(S3D_SMOKE, ref, *common)
  assert r.returncode == 0, r.stderr[-3000:]
  multi = str(tmp_path / "multi")
  rs = helpers.run_processes(S3D_SMOKE, multi, *common)
  _ok(rs)
  a = json.load(open(os.path.join(ref, "metrics.json")))
  for step in (1, 2, 3):  # per-step losses agree (printed by process 0 only)
    pat = rf"step {step}/3 .*?\| loss ([\d.e-]+)"
    assert float(re.search(pat, rs[0].stdout).group(1)) == pytest.approx(
        float(re.search(pat, r.stdout).group(1)), rel=1e-3), (step, rs[0].stdout[-1500:])
  assert not re.search(r"^step \d+/3", rs[1].stdout, re.M), rs[1].stdout[-1500:]
  b = json.load(open(os.path.join(multi, "metrics.json")))
  for k in ("train/loss", "eval/top1", "eval/top5", "eval/loss", "eval/num_videos"):
    assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-6), k
  _assert_states_close(helpers.load_state(os.path.join(ref, "checkpoints"), 3),
                       helpers.load_state(os.path.join(multi, "checkpoints"), 3), atol=1e-2)


@pytest.mark.slow
def test_killed_process_stops_the_other_within_the_heartbeat_timeout(tmp_path):
  wd = str(tmp_path / "run")
  procs = helpers.start_processes(VQ_SMOKE, wd, "--config.total_steps=100000",
                                  "--config.ckpt_every=2", "--config.eval_every=0", heartbeat=10)
  try:
    t0 = time.monotonic()
    while not helpers.finished_steps(os.path.join(wd, "checkpoints")):
      assert procs[0].poll() is None and procs[1].poll() is None, "a process ended early"
      assert time.monotonic() - t0 < 300, "training did not start"
      time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    _, stderr = procs[0].communicate(timeout=120)
    waited = time.monotonic() - t_kill
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.communicate()
  assert procs[0].returncode != 0
  assert waited < 60, f"survivor took {waited:.0f} s to stop"
  assert re.search(r"heartbeat|unhealthy|Terminating process", stderr), stderr[-3000:]


@pytest.mark.slow
def test_encode_dataset_over_jax_distributed(tmp_path, kinetics_root):
  out = str(tmp_path / "codes")
  port = helpers.free_port()
  rs = helpers.wait_all(helpers.start_commands([
      [sys.executable, "tools/encode_dataset.py", f"--root={kinetics_root}", f"--out={out}",
       "--splits=train", "--num_shards=3", "--quiet", f"--coordinator_address=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}", "--heartbeat_timeout=10"] for i in range(2)]),
      timeout=300)
  for r in rs:
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote" in r.stdout and "manifest.json" in r.stdout  # both know the run is complete
  from cv.data import code_shards
  manifest = code_shards.load_manifest(out)
  split = manifest["splits"]["train"]
  assert len(split["shards"]) == 3
  ds = code_shards.code_dataset(out, "train")
  ids = [ds[i]["video_id"] for i in range(len(ds))]
  rows = open(os.path.join(kinetics_root, "train.csv")).read().strip().splitlines()[1:]
  # Every CSV row is encoded exactly once or listed as bad (the fixture has both kinds).
  assert len(ids) == len(set(ids)) == split["num_records"] > 0
  assert len(split["bad"]) >= 4
  assert split["num_records"] + len(split["bad"]) == len(rows)


def test_settings_from_flags_and_environment(monkeypatch):
  for k in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_INDEX):
    monkeypatch.delenv(k, raising=False)
  assert not distributed.Settings.from_env().enabled
  monkeypatch.setenv(distributed.ENV_ADDRESS, "10.0.0.1:1234")
  monkeypatch.setenv(distributed.ENV_COUNT, "4")
  monkeypatch.setenv(distributed.ENV_INDEX, "3")
  s = distributed.Settings.from_env(process_id=2)  # a flag wins over the environment
  assert (s.enabled, s.coordinator_address, s.num_processes, s.process_id) == (
      True, "10.0.0.1:1234", 4, 2)
  distributed.check(s)
  with pytest.raises(ValueError, match="--process_id=5 must be in"):
    distributed.check(distributed.Settings.from_env(process_id=5))
  monkeypatch.delenv(distributed.ENV_INDEX)
  with pytest.raises(ValueError, match="also give --process_id"):
    distributed.check(distributed.Settings.from_env())
  with pytest.raises(ValueError, match="HOST:PORT"):
    distributed.check(distributed.Settings.from_env(coordinator_address="10.0.0.1", process_id=0))
  monkeypatch.setenv(distributed.ENV_INDEX, "x")
  with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
    distributed.Settings.from_env()


def test_main_rejects_incomplete_multiprocess_flags(tmp_path):
  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "wd"), "--num_processes=2")
  assert r.returncode == 2
  assert "also give --coordinator_address, --process_id" in r.stderr


class _Iter:
  def __init__(self):
    self.state = None

  def set_state(self, state):
    self.state = state


def _iter_files(folder, count, state):
  os.makedirs(folder)
  for i in range(count):
    with open(os.path.join(folder, f"process_{i}-of-{count}.json"), "w") as f:
      json.dump(state, f)


def test_iterator_position_is_remapped_to_a_new_process_count(tmp_path):
  folder = str(tmp_path / "data_iter")
  _iter_files(folder, 2, {"next_index": 5 * 3})  # 5 steps, 3 examples per process (global 6)
  assert checkpoint._iterator_process_count(folder) == 2
  it = _Iter()
  checkpoint._remap_iterator(folder, 2, 5, it)  # this test runs in 1 process
  assert it.state == {"next_index": 5 * 6}


def test_unmappable_iterator_state_is_a_clear_error(tmp_path):
  folder = str(tmp_path / "data_iter")
  _iter_files(folder, 2, {"workers": [1, 2], "next_index": 4})
  with pytest.raises(RuntimeError, match="written by 2 process.*worker_count=0"):
    checkpoint._remap_iterator(folder, 2, 2, _Iter())
  folder3 = str(tmp_path / "odd")
  _iter_files(folder3, 3, {"next_index": 7})  # 7 examples in 2 steps: not a whole batch per step
  with pytest.raises(RuntimeError, match="cannot be split"):
    checkpoint._remap_iterator(folder3, 3, 2, _Iter())
