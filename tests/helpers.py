"""Shared test utilities: running `cv.main` as a user would, reading checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def main_env() -> dict[str, str]:
  env = dict(os.environ)
  # 4 fake devices; and fast, less optimised compilation: tests run each program a few times, and
  # the deep models (S3D) otherwise spend most of a smoke run compiling.
  env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false")
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("CV_DEMO_DIR", os.path.join(ROOT, ".cache", "test_demo"))
  env.setdefault("CV_CODES_DIR", os.path.join(ROOT, ".cache", "test_codes"))
  return env


def main_cmd(config: str, workdir: str, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "cv.main", f"--config={config}", f"--workdir={workdir}", *overrides]


def run_main(config: str, workdir: str, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
  return subprocess.run(main_cmd(config, workdir, *overrides), cwd=ROOT, env=main_env(),
                        capture_output=True, text=True, timeout=timeout)


def load_state(ckpt_dir: str, step: int) -> dict:
  """The saved train state of `step` as a nested dict of numpy arrays."""
  import orbax.checkpoint as ocp
  state = ocp.StandardCheckpointer().restore(os.path.join(ckpt_dir, str(step), "state"))
  import jax
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
