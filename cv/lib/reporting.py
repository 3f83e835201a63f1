"""Metric writers (TensorBoard via clu), the console progress line and chief-only printing.

In a multi-process run every process runs the same program; messages about the run as a whole
(progress, evaluations, what a trainer set up) go through `console`, which prints on process 0
only, so N processes do not print everything N times. Problems of one process (warnings, errors)
are still printed by the process that meets them.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Mapping, TextIO

import jax
import numpy as np
from clu import metric_writers


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard + log writer on process 0; other processes only log."""
  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0,
                                              asynchronous=True)


def console(message: str, *, file: TextIO | None = None) -> None:
  """Prints `message` (flushed) on process 0 only; `file` defaults to stdout."""
  if jax.process_index() == 0:
    print(message, file=file or sys.stdout, flush=True)


def format_duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ConsoleProgress:
  """Prints `step 120/1500 (8%) | loss 0.012 | 3.1 steps/s | ETA 7m12s` lines.

  Rates are measured over the steps since the previous line, so compile time and evaluations
  (paused with `pause()`) do not distort the ETA.
  """

  def __init__(self, total_steps: int, first_step: int):
    self.total = total_steps
    self._last_step = first_step
    self._last_time = time.monotonic()
    self._paused = 0.0
    self.rate = float("nan")

  def pause(self) -> "_Pause":
    return _Pause(self)

  def __call__(self, step: int, scalars: Mapping[str, Any]) -> str:
    now = time.monotonic()
    elapsed = now - self._last_time - self._paused
    if step > self._last_step and elapsed > 0:
      self.rate = (step - self._last_step) / elapsed
    self._last_step, self._last_time, self._paused = step, now, 0.0
    eta = (self.total - step) / self.rate if self.rate == self.rate and self.rate > 0 else float("nan")
    parts = [f"step {step}/{self.total} ({100 * step / max(1, self.total):.0f}%)"]
    parts += [f"{k} {_fmt(v)}" for k, v in scalars.items()]
    parts.append(f"{self.rate:.2f} steps/s" if self.rate == self.rate else "-- steps/s")
    parts.append(f"ETA {format_duration(eta)}" if eta == eta else "ETA --")
    line = " | ".join(parts)
    console(line)
    return line


class _Pause:
  def __init__(self, progress: ConsoleProgress):
    self._p = progress

  def __enter__(self):
    self._t = time.monotonic()

  def __exit__(self, *exc):
    self._p._paused += time.monotonic() - self._t


def _fmt(v: Any) -> str:
  v = float(np.asarray(v))
  if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
    return f"{v:.3e}"
  return f"{v:.4f}"
