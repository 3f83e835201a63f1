"""Shared test utilities: running `cv.main` as a user would, reading checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Fast, less optimised compilation for every test process (conftest and `main_env`): tests run
# each program a few times at tiny sizes, and the deep models (S3D) otherwise spend most of a
# smoke run compiling.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def main_env(devices: int = 4) -> dict[str, str]:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE_FLAGS}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("CV_DEMO_DIR", os.path.join(ROOT, ".cache", "test_demo"))
  env.setdefault("CV_CODES_DIR", os.path.join(ROOT, ".cache", "test_codes"))
  return env


def main_cmd(config: str, workdir: str, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "cv.main", f"--config={config}", f"--workdir={workdir}", *overrides]


def run_main(config: str, workdir: str, *overrides: str, timeout: int = 600, devices: int = 4
             ) -> subprocess.CompletedProcess:
  return subprocess.run(main_cmd(config, workdir, *overrides), cwd=ROOT, env=main_env(devices),
                        capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_processes(config: str, workdir: str, *overrides: str, processes: int = 2,
                    devices_per_process: int = 2, heartbeat: int = 10, shutdown: int = 15,
                    port: int | None = None) -> list[subprocess.Popen]:
  """Starts `processes` copies of `cv.main` joined by jax.distributed on 127.0.0.1 (each with
  `devices_per_process` fake CPU devices), as a user launches a multi-process run."""
  port = port or free_port()
  return start_commands([
      main_cmd(config, workdir, *overrides, f"--coordinator_address=127.0.0.1:{port}",
               f"--num_processes={processes}", f"--process_id={i}",
               f"--heartbeat_timeout={heartbeat}", f"--shutdown_timeout={shutdown}",
               "--initialization_timeout=120") for i in range(processes)], devices_per_process)


def wait_all(procs: list[subprocess.Popen], timeout: int = 600
             ) -> list[subprocess.CompletedProcess]:
  """Waits for every process (text pipes); on a timeout or any error all are killed, so a test
  never leaves a peer behind waiting on the coordinator."""
  out = []
  try:
    for p in procs:
      stdout, stderr = p.communicate(timeout=timeout)
      out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.communicate()
  return out


def start_commands(cmds: list[list[str]], devices_per_process: int = 1
                   ) -> list[subprocess.Popen]:
  """Starts each command from the repository root with the test environment (text pipes)."""
  env = main_env(devices_per_process)
  return [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for cmd in cmds]


def run_processes(config: str, workdir: str, *overrides: str, timeout: int = 600, **kwargs
                  ) -> list[subprocess.CompletedProcess]:
  """`start_processes`, then waits for all (killing them all on timeout)."""
  return wait_all(start_processes(config, workdir, *overrides, **kwargs), timeout)


def load_state(ckpt_dir: str, step: int) -> dict:
  """The saved train state of `step` as a nested dict of numpy arrays."""
  import jax
  from cv.lib import checkpoint
  state, _ = checkpoint.load_state_tree(os.path.dirname(os.path.abspath(ckpt_dir)), step)
  return jax.tree.map(np.asarray, state)


def finished_steps(ckpt_dir: str) -> list[int]:
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())


def write_clip(path: str, n: int = 12, h: int = 36, w: int = 48, seed: int = 0) -> None:
  """A small real mp4 of a random texture sliding right by 2 px per frame."""
  from cv.data.writer import write_video
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
  write_video(path, (np.roll(base, 2 * i, axis=1) for i in range(n)), 25)


def regression_task(signal_at: int | None = None):
  """A tiny linear-regression `loop.Task` on a Grain iterator (checkpoint and resume tests run
  it in-process in seconds). With `signal_at`, SIGTERM arrives while step `signal_at` is logged
  (the main thread, inside the loop), as a cluster's notice would between two steps."""
  import signal  # pylint: disable=g-import-not-at-top

  import grain  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from cv.lib import loop  # pylint: disable=g-import-not-at-top
  from cv.lib.train_state import TrainState  # pylint: disable=g-import-not-at-top

  tx = optax.adam(0.05)
  logged = [0]

  def init(rng):
    return TrainState.create(params={"w": jnp.ones((4,)), "b": jnp.zeros(())}, tx=tx, rng=rng)

  def train_step(state, batch):
    def loss_fn(p):
      return jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)
    loss, g = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(g), {"loss": loss}

  def make_iter():
    def example(i):
      return {"x": np.sin(np.arange(4, dtype=np.float32) + i), "y": np.float32(np.cos(i))}
    return iter(grain.MapDataset.range(10**6).map(example).to_iter_dataset().batch(4))

  def data_stats():
    logged[0] += 1
    if logged[0] == signal_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return {}

  return loop.Task(init=init, train_step=train_step, make_train_iter=make_iter,
                   data_stats=data_stats)


def regression_config(total: int, ckpt_every: int):
  """The run config of `regression_task`: log every step, checkpoint every `ckpt_every`."""
  from cv.configs import common  # pylint: disable=g-import-not-at-top
  c = common.base_config("test", total_steps=total, log_every=1, ckpt_every=ckpt_every,
                         eval_every=0)
  c.batch_size = 4
  return c
