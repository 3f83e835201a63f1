"""Multi-process runs on JAX's own multi-controller runtime (`jax.distributed`;
docs/design.md, Distribution).

One Python process per host (or per GPU); every process runs the same program. This module
starts the runtime from `cv.main` flags or environment variables, and holds the few helpers the
loop and trainers need when more than one process takes part:

- `initialize`: connects to the coordinator with failure timeouts that bound how long a survivor
  waits for a dead peer (the runtime then aborts the process with a message naming the dead task).
- `local_state`: a process-local copy of a (possibly cross-process) train state, so host-side
  evaluation code runs unchanged on this process's first device.
- `gather`: concatenates per-process evaluation outputs along the leading axis, so every process
  computes the same metrics as a single process would.
- `barrier`: waits until every process reaches the same point (e.g. shared files are complete).
- `any_process`, `first_problem`: a verdict all processes agree on (a stop request, a checkpoint
  that one process cannot read), by a tiny all-gather.
- `preemption_sync_available`, `reached_preemption_sync_point`: JAX's preemption sync point (the
  runtime's preemption service catches SIGTERM in every process of a `jax.distributed` run and
  names a step at which all processes stop together).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import sys
from typing import Any

import jax
import numpy as np

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_COUNT = "JAX_NUM_PROCESSES"
ENV_INDEX = "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to join a multi-process run. `enabled` without an address: cluster auto-detection
  (TPU pod slices, SLURM, Open MPI, Kubernetes), as `jax.distributed.initialize()` does."""
  enabled: bool = False
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  initialization_timeout_s: int = 300
  heartbeat_timeout_s: int = 60
  shutdown_timeout_s: int = 60

  @classmethod
  def from_env(cls, *, enabled: bool = False, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               **timeouts: int) -> "Settings":
    """Flags win over the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID; any of them being set turns multi-process mode on."""
    env = os.environ
    address = coordinator_address or env.get(ENV_ADDRESS) or None
    count = num_processes if num_processes is not None else _env_int(ENV_COUNT)
    index = process_id if process_id is not None else _env_int(ENV_INDEX)
    on = enabled or address is not None or count is not None or index is not None
    return cls(enabled=on, coordinator_address=address, num_processes=count, process_id=index,
               **timeouts)


def add_arguments(parser: Any) -> None:
  """The multi-process options of `cv.main`, for argparse-based tools."""
  g = parser.add_argument_group("multi-process (jax.distributed)")
  g.add_argument("--distributed", action="store_true",
                 help="join a multi-process run (cluster auto-detection without the next three)")
  g.add_argument("--coordinator_address", default=None, help="HOST:PORT of process 0")
  g.add_argument("--num_processes", type=int, default=None)
  g.add_argument("--process_id", type=int, default=None)
  g.add_argument("--heartbeat_timeout", type=int, default=Settings.heartbeat_timeout_s)


def settings_from_args(args: Any) -> Settings:
  return Settings.from_env(enabled=args.distributed, coordinator_address=args.coordinator_address,
                           num_processes=args.num_processes, process_id=args.process_id,
                           heartbeat_timeout_s=args.heartbeat_timeout)


def _env_int(name: str) -> int | None:
  raw = os.environ.get(name)
  if raw in (None, ""):
    return None
  try:
    return int(raw)
  except ValueError:
    raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def check(s: Settings) -> None:
  """Clear errors for settings that cannot work, before any connection attempt."""
  if not s.enabled:
    return
  given = [s.coordinator_address is not None, s.num_processes is not None, s.process_id is not None]
  # An address alone is fine on clusters where JAX detects the count and index (e.g. SLURM).
  if (given[1] or given[2]) and not all(given):
    missing = [n for n, g in zip(("--coordinator_address", "--num_processes", "--process_id"), given)
               if not g]
    raise ValueError(f"multi-process run: also give {', '.join(missing)} (or the environment "
                     f"variables {ENV_ADDRESS}, {ENV_COUNT}, {ENV_INDEX}); give none of them on "
                     f"a cluster JAX detects by itself (TPU pod slice, SLURM, Open MPI)")
  if s.num_processes is not None:
    if s.num_processes < 1:
      raise ValueError(f"--num_processes={s.num_processes} must be at least 1")
    if not 0 <= s.process_id < s.num_processes:
      raise ValueError(f"--process_id={s.process_id} must be in [0, {s.num_processes})")
  if s.coordinator_address is not None:
    host, _, port = s.coordinator_address.rpartition(":")
    if not host or not port.isdigit():
      raise ValueError(f"--coordinator_address={s.coordinator_address!r} must be HOST:PORT, "
                       f"e.g. 10.0.0.1:1234 (the address of process 0)")


def initialize(s: Settings) -> bool:
  """Joins the multi-process run described by `s` (no-op when not enabled). Returns whether it did.

  Must run before any other JAX call. Timeouts: a peer that stops sending heartbeats for
  `heartbeat_timeout_s` makes every other process abort with the runtime's message naming it; a
  peer that raises waits at most `shutdown_timeout_s` for the others at exit.
  """
  check(s)
  if not s.enabled:
    return False
  kwargs: dict[str, Any] = dict(initialization_timeout=s.initialization_timeout_s,
                                heartbeat_timeout_seconds=s.heartbeat_timeout_s,
                                shutdown_timeout_seconds=s.shutdown_timeout_s)
  if s.coordinator_address is not None:
    kwargs.update(coordinator_address=s.coordinator_address, num_processes=s.num_processes,
                  process_id=s.process_id)
    if _is_loopback(s.coordinator_address):
      # One machine: listen on loopback only (not on every interface).
      kwargs["coordinator_bind_address"] = s.coordinator_address
  jax.distributed.initialize(**kwargs)
  if s.coordinator_address is not None and _is_loopback(s.coordinator_address):
    _loopback_cpu_collectives()
  print(f"distributed: process {jax.process_index()} of {jax.process_count()}, coordinator "
        f"{s.coordinator_address or 'auto-detected'}; a peer that dies stops this process within "
        f"~{s.heartbeat_timeout_s} s", flush=True)
  return True


def _is_loopback(address: str) -> bool:
  host = address.rpartition(":")[0].strip("[]")
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _loopback_cpu_collectives() -> None:
  """CPU collectives (gloo) bind the address `hostname` resolves to; on one machine whose hostname
  does not resolve to a local address that fails, so bind 127.0.0.1 explicitly. Only for the CPU
  backend; accelerators use their own collectives."""
  try:
    socket.gethostbyname(socket.gethostname())
    return  # the default works
  except OSError:
    pass
  from jax._src import distributed as jdist  # private API: only reached when the default fails
  from jax._src import xla_bridge
  from jax._src.lib import _jax
  xla_bridge.register_backend_factory(
      "cpu", lambda: xla_bridge.make_cpu_client(_jax.make_gloo_tcp_collectives(
          jdist.global_state.client, hostname="127.0.0.1")), priority=0, fail_quietly=False)


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def _host_copy(x: Any) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def local_state(state: Any) -> Any:
  """`state` with every array whole on this process's first device (identity in one process).

  All processes must call it together: leaves sharded across processes are all-gathered."""
  if not is_multiprocess():
    return state
  device = jax.local_devices()[0]
  return jax.tree.map(lambda x: jax.device_put(_host_copy(x), device)
                      if isinstance(x, (jax.Array, np.ndarray)) else x, state)


def gather(tree: Any) -> Any:
  """Concatenates every process's numpy leaves along axis 0, in process order (identity in one
  process). Leaves must have the same shape on every process; all processes must call it.

  Every dtype is kept: JAX's all-gather (without x64) would turn float64 / int64 leaves into
  32-bit ones, so 8-byte leaves travel as pairs of uint32 words."""
  if not is_multiprocess():
    return tree
  from jax.experimental import multihost_utils
  leaves, treedef = jax.tree.flatten(tree)
  leaves = [np.asarray(x) for x in leaves]
  wide = [x.dtype.itemsize == 8 for x in leaves]
  sent = [np.ascontiguousarray(x)[..., None].view(np.uint32) if w else x
          for x, w in zip(leaves, wide)]
  back = [np.asarray(b) for b in multihost_utils.process_allgather(sent, tiled=True)]
  return jax.tree.unflatten(treedef, [
      np.ascontiguousarray(b).view(x.dtype)[..., 0] if w else b
      for b, x, w in zip(back, leaves, wide)])


def barrier(name: str) -> None:
  """Blocks until every process reaches `barrier(name)` (no-op in one process)."""
  if is_multiprocess():
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def abort_peers_fast(message: str, code: int = 1) -> None:
  """Ends this process at once after an error, skipping the runtime's shutdown barrier (which
  would wait for the peers, themselves blocked waiting for this process): the peers then stop
  within the heartbeat timeout instead of hanging."""
  if message:
    print(message, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)


def is_chief() -> bool:
  """Whether this is process 0 (the one that prints shared messages and renames shared files)."""
  return jax.process_index() == 0


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is true on any (a collective: all processes must call it)."""
  if not is_multiprocess():
    return bool(flag)
  from jax.experimental import multihost_utils
  flags = multihost_utils.process_allgather(np.asarray([int(bool(flag))], np.int32), tiled=True)
  return bool(np.asarray(flags).max())


def first_problem(problem: str | None) -> str | None:
  """The problem of the lowest-numbered process that has one (prefixed with its index in a
  multi-process run), or None if none has: every process gets the same answer (a collective:
  all must call it)."""
  if not is_multiprocess():
    return problem
  from jax.experimental import multihost_utils
  data = (problem or "").encode()[:512]
  buf = np.zeros((1, 513), np.uint8)
  buf[0, 0] = 1 if problem is not None else 0
  buf[0, 1:1 + len(data)] = np.frombuffer(data, np.uint8)
  every = np.asarray(multihost_utils.process_allgather(buf, tiled=True))
  for i, row in enumerate(every):
    if row[0]:
      text = bytes(row[1:]).rstrip(b"\0").decode(errors="replace")
      return f"process {i}: {text}"
  return None


def preemption_sync_available() -> bool:
  """Whether JAX's preemption sync point works here: a multi-process run whose runtime has the
  preemption service (`jax_enable_preemption_service`, on by default), which takes over SIGTERM."""
  if not is_multiprocess():
    return False
  try:
    from jax._src import distributed as jdist  # where the runtime keeps its sync manager
    return jdist.global_state.preemption_sync_manager is not None
  except (ImportError, AttributeError):
    return False


def reached_preemption_sync_point(step: int) -> bool:
  """True on every process at the same step once any process received SIGTERM (all processes
  must call it at every step, with increasing steps)."""
  from jax.experimental import multihost_utils
  return bool(multihost_utils.reached_preemption_sync_point(step))
