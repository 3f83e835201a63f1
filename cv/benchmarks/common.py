"""Helpers shared by the benchmark figures: progress logging and flag parsing.

Kept free of heavy imports (no JAX here) so that `tools/bench.py --help` and the registry in
`cv.benchmarks` load instantly; figures import JAX and the data pipelines inside `run`.
"""
from __future__ import annotations

import argparse
import sys


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
