"""Stop requests from the cluster or the keyboard: finish the step, save, exit cleanly
(docs/design.md, Reliability).

SLURM, Kubernetes and preemptible TPU/GPU VMs send SIGTERM some seconds before they kill a job;
a user presses Ctrl-C (SIGINT). Either becomes a *request*: the loop finishes the current step,
saves a checkpoint of it (state + Grain iterator + metadata), flushes TensorBoard and exits with
status 0, so re-running the same command resumes exactly there. A second Ctrl-C aborts at once
(KeyboardInterrupt), for when saving is not wanted or hangs.

All processes of a multi-process run must stop at the same step (a save is a collective). Where
the JAX runtime offers it (`jax.distributed` with its preemption service, on by default, which
catches SIGTERM in every process and tells the others through the coordinator), its preemption
sync point decides the step; Ctrl-C is forwarded to it as a SIGTERM to this process. Otherwise
(preemption service off), the processes share their local requests with a tiny all-gather every
`check_every` steps.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from cv.lib import distributed

NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


class StopRequest:
  """Context manager that turns SIGTERM / the first SIGINT into `requested` and restores the
  previous handlers on exit. `should_stop(step)` tells every process the same answer."""

  def __init__(self, *, check_every: int = 1, sync: bool = True,
               notice: str = "finishing the current step, then saving a checkpoint and exiting"):
    """`sync`: in a multi-process run, agree on the step (`should_stop`); without it (the
    processes work independently, e.g. encoding shards) each process handles its own signals,
    SIGTERM included. `notice`: what is printed when the first signal arrives."""
    self.check_every = max(1, int(check_every))
    self.notice = notice
    self.requested: str | None = None  # name of the signal that asked to stop
    self._previous: dict[int, Any] = {}
    self._want_sync = sync
    self._sync = False

  def __enter__(self) -> "StopRequest":
    if threading.current_thread() is not threading.main_thread():
      return self  # signal handlers can only be installed from the main thread
    self._sync = self._want_sync and distributed.preemption_sync_available()
    signals = [signal.SIGINT] if self._sync else [signal.SIGTERM, signal.SIGINT]
    for sig in signals:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      # None: a handler installed outside Python (the runtime's SIGTERM notifier) that Python
      # cannot reinstall; the default is the closest.
      signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    self._previous.clear()

  def _handle(self, signum: int, frame: Any) -> None:
    name = NAMES.get(signum, str(signum))
    if self.requested is not None:
      if signum == signal.SIGINT:
        raise KeyboardInterrupt(f"second {name}: aborted without saving")
      return  # a repeated SIGTERM: the save is under way
    self.requested = name
    print(f"\n{name} received: {self.notice} (Ctrl-C again to abort at once)", file=sys.stderr,
          flush=True)
    if self._sync and signum == signal.SIGINT:
      os.kill(os.getpid(), signal.SIGTERM)  # tell the runtime's preemption service (all processes)

  def should_stop(self, step: int) -> bool:
    """Whether to stop after `step` (the same verdict on every process; call it at every step
    on every process)."""
    if self._sync:
      if distributed.reached_preemption_sync_point(step):
        self.requested = self.requested or "SIGTERM"
        return True
      return False
    if distributed.is_multiprocess():
      if step % self.check_every:
        return False
      who = distributed.first_problem(self.requested)  # e.g. "process 1: SIGTERM", on all
      if who is not None:
        self.requested = who
      return who is not None
    return self.requested is not None
