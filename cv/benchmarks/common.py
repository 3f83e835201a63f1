"""Helpers shared by the benchmark figures: progress logging and flag parsing.

Kept free of heavy imports (no JAX here) so that `tools/bench.py --help` and the registry in
`cv.benchmarks` load instantly; figures import JAX and the data pipelines inside `run`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any


def log(msg: str) -> None:
  """Progress on stderr, so stdout holds only the tables."""
  print(msg, file=sys.stderr, flush=True)


def int_list(text: str) -> list[int]:
  """argparse type: "30,192,768" -> [30, 192, 768]."""
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
  if not values:
    raise argparse.ArgumentTypeError("expected at least one value")
  return values


def float_list(text: str) -> list[float]:
  """argparse type: "0.5,1,5" -> [0.5, 1.0, 5.0] (finite numbers)."""
  try:
    values = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
  if not values:
    raise argparse.ArgumentTypeError("expected at least one value")
  if any(v != v or v in (float("inf"), float("-inf")) for v in values):
    raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
  return values


def int_at_least(minimum: int):
  """argparse type factory: an integer >= `minimum`."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value

  return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def choice_list(choices: tuple[str, ...]):
  """argparse type factory: "a,b" -> ["a", "b"], each one of `choices`, no repeats."""

  def parse(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in choices]
    if bad or not values:
      raise argparse.ArgumentTypeError(
          f"expected a comma-separated subset of {','.join(choices)}, got {text!r}")
    if len(set(values)) != len(values):
      raise argparse.ArgumentTypeError(f"repeated value in {text!r}")
    return values

  return parse


def fmt(value: float, digits: int = 3) -> str:
  """A number for a table cell: `digits` significant digits, thousands separators when large."""
  if value != value:  # NaN
    return "nan"
  if abs(value) >= 10 ** digits:
    return f"{value:,.0f}"
  return f"{value:.{digits}g}"


def checkout_env() -> dict[str, str]:
  """The parent's environment with this checkout importable (`cv` may not be installed)."""
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
  return env


def run_child(module: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
  """Runs `cv.benchmarks.<module>.child_main(spec_path, out_path)` in a fresh Python process, so
  its peak RSS and caches are its own, and returns the JSON it wrote.

  Raises RuntimeError whose first line says how the process ended, then its last output.
  """
  with tempfile.TemporaryDirectory() as tmp:
    spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
    with open(spec_path, "w") as f:
      json.dump(spec, f)
    code = (f"import sys; from cv.benchmarks import {module}; "
            f"{module}.child_main(sys.argv[1], sys.argv[2])")
    proc = subprocess.run([sys.executable, "-c", code, spec_path, out_path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if proc.returncode != 0 or not os.path.exists(out_path):
      how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
             else f"exit {proc.returncode}")
      raise RuntimeError(f"{module}: the {spec['pipeline']} process failed ({how})\n"
                         f"{proc.stdout[-3000:]}")
    with open(out_path) as f:
      return json.load(f)
