"""SIGTERM / Ctrl-C (issue 28): the loop finishes the step, saves it, flushes TensorBoard and exits
0; re-running resumes there and ends with the same parameters as an uninterrupted run (the
SIGKILL test's standard), also when two processes must agree on the step."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from cv.lib import loop, preemption
from cv.lib.errors import Preempted
from tests import helpers

VQ_SMOKE = "cv/configs/k600_vq.py:cr=192,smoke"


def test_stop_request_first_signal_asks_second_ctrl_c_aborts():
  before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  with preemption.StopRequest() as stop:
    assert not stop.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)
    assert stop.requested == "SIGTERM" and stop.should_stop(2)
    os.kill(os.getpid(), signal.SIGTERM)  # repeated SIGTERM: still saving, nothing more
    time.sleep(0.01)
    with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.5)
  assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def _task(signal_at: int | None = None) -> loop.Task:
  return helpers.regression_task(signal_at)


def _config(total: int):
  return helpers.regression_config(total, ckpt_every=4)


def test_sigterm_in_the_loop_saves_that_step_and_resume_is_exact(tmp_path, capsys):
  ref = str(tmp_path / "ref")
  loop.run(_config(12), ref, _task())
  wd = str(tmp_path / "w")
  with pytest.raises(Preempted) as e:
    loop.run(_config(12), wd, _task(signal_at=6))
  assert e.value.code == 0 and e.value.step == 6
  ckpt_dir = os.path.join(wd, "checkpoints")
  assert helpers.finished_steps(ckpt_dir) == [4, 6]
  out = capsys.readouterr().out
  assert f"SIGTERM: stopped after step 6 of 12; saved checkpoint {ckpt_dir}/6" in out
  assert not os.path.exists(os.path.join(wd, "metrics.json"))  # the run is not finished
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
  loop.run(_config(12), wd, _task())
  assert "Resuming from checkpoint step 6" in capsys.readouterr().out
  a = helpers.load_state(os.path.join(ref, "checkpoints"), 12)
  b = helpers.load_state(ckpt_dir, 12)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


# --- through cv.main, as a user (and a cluster) runs it ---------------------------------------

STEPS = ["--config.total_steps=24", "--config.ckpt_every=10", "--config.eval_every=0",
         "--config.log_every=1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run: one process, 4 devices."""
  wd = str(tmp_path_factory.mktemp("ref") / "w")
  r = helpers.run_main(VQ_SMOKE, wd, *STEPS)
  assert r.returncode == 0, r.stderr[-3000:]
  return helpers.load_state(os.path.join(wd, "checkpoints"), 24)


def _wait_for_step(proc: subprocess.Popen, step: int, timeout: float = 300) -> list[str]:
  """Reads `proc`'s stdout until its progress line for `step`."""
  lines, t0 = [], time.monotonic()
  for line in proc.stdout:
    lines.append(line)
    if line.startswith(f"step {step}/"):
      return lines
    assert time.monotonic() - t0 < timeout, "".join(lines[-20:])
  raise AssertionError(f"the run ended before step {step}:\n{''.join(lines[-30:])}")


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
  """The rest of stdout (read through the same buffer `_wait_for_step` used) and stderr."""
  rest = proc.stdout.read()
  proc.wait(timeout=timeout)
  return rest, proc.stderr.read()


def _stopped_step(stdout: str) -> int:
  m = re.search(r"SIGTERM: stopped after step (\d+) of 24; saved checkpoint (\S+)\. Re-run", stdout)
  assert m, stdout[-2000:]
  assert m.group(2).endswith(os.path.join("checkpoints", m.group(1)))
  return int(m.group(1))


@pytest.mark.slow
def test_sigterm_between_checkpoints_exits_0_and_resume_matches(tmp_path, reference):
  at = random.Random(os.getpid()).choice([k for k in range(3, 9)])  # before the step-10 save
  wd = str(tmp_path / "w")
  proc = subprocess.Popen(helpers.main_cmd(VQ_SMOKE, wd, *STEPS), cwd=helpers.ROOT,
                          env=helpers.main_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    _wait_for_step(proc, at)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    stdout, stderr = _finish(proc, timeout=60)
    took = time.monotonic() - t0
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0 and took < 30, (took, stderr[-3000:])
  stopped = _stopped_step(stdout)
  assert at <= stopped < 24, (at, stopped)
  ckpt_dir = os.path.join(wd, "checkpoints")
  assert stopped in helpers.finished_steps(ckpt_dir)
  assert "Traceback" not in stderr
  # TensorBoard was flushed: the event file has the train scalars of the stopped step.
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(wd, size_guidance={"tensors": 0})
  acc.Reload()
  assert max(e.step for e in acc.Tensors("train/loss")) == stopped

  r = helpers.run_main(VQ_SMOKE, wd, *STEPS)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"Resuming from checkpoint step {stopped}" in r.stdout
  resumed = helpers.load_state(ckpt_dir, 24)
  la, lb = jax.tree.leaves(reference), jax.tree.leaves(resumed)
  assert len(la) == len(lb) > 10
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path, reference):
  wd = str(tmp_path / "w")
  procs = helpers.start_processes(VQ_SMOKE, wd, *STEPS)
  try:
    _wait_for_step(procs[0], 3)
    procs[1].send_signal(signal.SIGTERM)  # the notice reaches one host only
    t0 = time.monotonic()
    outs = [_finish(procs[0], timeout=90), procs[1].communicate(timeout=90)]
    took = time.monotonic() - t0
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  for p, (so, se) in zip(procs, outs):
    assert p.returncode == 0, se[-3000:]
  assert took < 30, took
  step = _stopped_step(outs[0][0])  # process 0 prints for the run
  # Both processes saved that step (one iterator state each), and no other: they agreed on it.
  ckpt_dir = os.path.join(wd, "checkpoints")
  finished = helpers.finished_steps(ckpt_dir)
  assert step in finished and all(s == step or s % 10 == 0 for s in finished), finished
  iters = sorted(os.listdir(os.path.join(ckpt_dir, str(step), "data_iter")))
  assert [f for f in iters if f.endswith(".json")] == ["process_0-of-2.json",
                                                       "process_1-of-2.json"]

  rs = helpers.run_processes(VQ_SMOKE, wd, *STEPS)
  for r in rs:
    assert r.returncode == 0, r.stderr[-3000:]
  assert f"Resuming from checkpoint step {step}" in rs[0].stdout
  # Two processes reduce in another order than one: equal up to float rounding, as in
  # test_distributed.py.
  resumed = helpers.load_state(os.path.join(wd, "checkpoints"), 24)
  for x, y in zip(jax.tree.leaves(reference), jax.tree.leaves(resumed)):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), atol=1e-4,
                               rtol=1e-3)


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once_without_a_traceback(tmp_path):
  wd = str(tmp_path / "w")
  proc = subprocess.Popen(helpers.main_cmd(VQ_SMOKE, wd, *STEPS), cwd=helpers.ROOT,
                          env=helpers.main_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    _wait_for_step(proc, 2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = _finish(proc, timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 130, stderr[-3000:]
  assert "second SIGINT (Ctrl-C): aborted without saving" in stderr
  assert "Traceback" not in stderr and "stopped after step" not in stdout
