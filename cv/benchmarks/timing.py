"""Timing and memory helpers shared by the benchmarks in `tools/bench.py`.

Why this module exists: JAX dispatches work asynchronously, so a naive `time.perf_counter()`
around a call measures only the dispatch. `time_fn` waits for every result with
`jax.block_until_ready`, runs warm-up calls first (the first call of a jitted function compiles)
and reports the spread over repeats, so every benchmark times things the same way. Speed is
measured in benchmarks that print tables and JSON, never asserted in tests.
"""
from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time
from typing import Any, Callable, Sequence

import jax


def time_fn(fn: Callable[..., Any], *args: Any, repeats: int = 3, warmup: int = 1,
            **kwargs: Any) -> dict[str, float]:
  """Times `fn(*args, **kwargs)`, waiting for its (possibly asynchronous) JAX results.

  Args:
    fn: The function to time; its result may be any pytree (arrays are waited for).
    *args: Positional arguments for `fn`.
    repeats: Timed calls (>= 1).
    warmup: Untimed calls made first, e.g. to compile (>= 0).
    **kwargs: Keyword arguments for `fn`.

  Returns:
    {"mean_s", "std_s" (population std over the repeats), "min_s", "max_s", "repeats",
    "warmup_s" (duration of the first warm-up call, i.e. compile + run; NaN when warmup=0)}.
  """
  if repeats < 1:
    raise ValueError(f"time_fn: repeats must be >= 1, got {repeats}")
  if warmup < 0:
    raise ValueError(f"time_fn: warmup must be >= 0, got {warmup}")
  warmup_s = math.nan
  for i in range(warmup):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args, **kwargs))
    if i == 0:
      warmup_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args, **kwargs))
    times.append(time.perf_counter() - start)
  mean = sum(times) / len(times)
  std = math.sqrt(sum((t - mean) ** 2 for t in times) / len(times))
  return {"mean_s": mean, "std_s": std, "min_s": min(times), "max_s": max(times),
          "repeats": float(repeats), "warmup_s": warmup_s}


def per_second(count: float, stats: dict[str, float]) -> float:
  """Throughput (`count` items per second) from the mean time of `time_fn` stats."""
  return count / stats["mean_s"] if stats["mean_s"] > 0 else math.inf


def peak_rss_mb() -> float:
  """Peak resident memory of this process so far, in MiB (ru_maxrss: KiB on Linux, B on macOS)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def environment() -> dict[str, Any]:
  """What the numbers depend on: host, CPU count, JAX version and devices (for the JSON)."""
  try:
    cpus = len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    cpus = os.cpu_count() or 0
  devices = jax.devices()
  return {"python": platform.python_version(), "platform": platform.platform(),
          "cpus": cpus, "jax": jax.__version__, "backend": jax.default_backend(),
          "devices": len(devices), "device_kind": devices[0].device_kind,
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
  """A Markdown table; cells are str()-ed, `align` is "l" or "r" per column (default: left
  for the first column, right for the others)."""
  align = align or ["l"] + ["r"] * (len(headers) - 1)
  if len(align) != len(headers) or any(len(r) != len(headers) for r in rows):
    raise ValueError("markdown_table: every row and `align` need one entry per header")
  lines = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"
