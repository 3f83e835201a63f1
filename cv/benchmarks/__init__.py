"""Benchmark figures: one module per figure, registered here for `tools/bench.py <figure>`.

Each module `cv/benchmarks/<figure>.py` has a docstring saying what it measures and why, a
one-line `HELP`, `add_arguments(parser)` for its flags and `run(args) -> dict` which measures,
prints its Markdown table(s) to stdout (progress goes to stderr) and returns a flat dict of
figures (name -> number, or a short string). Comparisons are always ratios of two measurements
taken in the same run on the same machine, named `*_ratio`. Speeds are printed and written,
never asserted.

Adding a figure: write `cv/benchmarks/my_figure.py` with those three names and add it to
`FIGURES` below (the CLI, `--json` and the help text come from the registry). Modules import
JAX and the data pipelines inside `run`, so building the CLI stays cheap.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from cv.benchmarks import augment, codec, cost, loader, memory, step


@dataclasses.dataclass(frozen=True)
class Figure:
  """A benchmark figure: its help line, its flags and the function that measures and prints."""
  help: str
  add_arguments: Callable[[argparse.ArgumentParser], None]
  run: Callable[[argparse.Namespace], dict[str, Any]]


def _figure(module: Any) -> Figure:
  return Figure(module.HELP, module.add_arguments, module.run)


FIGURES: dict[str, Figure] = {
    "codec": _figure(codec),
    "loader": _figure(loader),
    "step": _figure(step),
    "augment": _figure(augment),
    "memory": _figure(memory),
    "cost": _figure(cost),
}
