"""Entry point: `python -m cv.main --config=cv/configs/<exp>.py[:args] [--config.key=value] [--workdir=DIR]`.

Loads the config, saves it to `<workdir>/config.json`, and calls
`cv.trainers.<config.trainer>.train_and_evaluate(config, workdir)`. Re-running the same command
resumes from the newest checkpoint in the workdir.

Multi-process (one process per host or GPU, all running the same command): add
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID), or `--distributed` alone on a cluster JAX detects by itself
(TPU pod slice, SLURM). See docs/scaling.md.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys

from cv.lib import tf_env

tf_env.quiet_tensorflow()  # before anything imports TensorFlow

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. cv/configs/k600_vq.py:cr=192",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (checkpoints, TensorBoard events, metrics). "
                               "Default: workdirs/<config name>[_<args>].")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join a multi-process run (jax.distributed); "
                                 "implied by --coordinator_address or JAX_COORDINATOR_ADDRESS.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "HOST:PORT of process 0 in a multi-process run.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout", 60, "Seconds without a peer's heartbeat "
                                  "before the other processes stop with an error.")
_SHUTDOWN = flags.DEFINE_integer("shutdown_timeout", 60, "Seconds a finished process waits for "
                                 "its peers at exit.")
_INIT_TIMEOUT = flags.DEFINE_integer("initialization_timeout", 300, "Seconds to wait for every "
                                     "process to connect to the coordinator.")


def available_trainers() -> list[str]:
  import cv.trainers
  return sorted(m.name for m in pkgutil.iter_modules(cv.trainers.__path__) if not m.name.startswith("_"))


def default_workdir(config_arg: str) -> str:
  """workdirs/<config file stem>[_<args>] from the --config value."""
  path, _, args = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if args:
    name += "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", args).replace("=", "")
  return os.path.join("workdirs", name)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing that turns a misspelt `--config.key` into a one-line error naming the key."""
  try:
    return flags.FLAGS(argv)
  except AttributeError as e:  # ml_collections: unknown override key
    bad = [a for a in argv[1:] if a.startswith("--config.")]
    detail = str(e).strip("\"'").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    print(f"error: unknown config key in {' '.join(bad)}: {detail}\n"
          f"Check the spelling against the config file (see {_config_path(argv)}).", file=sys.stderr)
    sys.exit(2)
  except (flags.Error, ValueError) as e:
    msg = str(e)
    if "Traceback" in msg:  # an error raised inside get_config(arg): keep its first and last line
      lines = [l for l in msg.splitlines() if l.strip()]
      msg = f"{lines[0]} {lines[-1]}"
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _config_path(argv: list[str]) -> str:
  for a in argv:
    if a.startswith("--config="):
      return a.split("=", 1)[1].split(":")[0]
  return "the --config file"


def _start_distributed() -> bool:
  """jax.distributed from the flags/environment, before anything else touches JAX."""
  from cv.lib import distributed
  try:
    settings = distributed.Settings.from_env(
        enabled=_DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
        initialization_timeout_s=_INIT_TIMEOUT.value, heartbeat_timeout_s=_HEARTBEAT.value,
        shutdown_timeout_s=_SHUTDOWN.value)
    distributed.check(settings)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  return distributed.initialize(settings)


def main(argv: list[str]) -> None:
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # library INFO logs (Orbax, clu) are noise for users
  multiprocess = _start_distributed()
  try:
    _train(multiprocess)
  except SystemExit:
    raise
  except KeyboardInterrupt as e:  # a second Ctrl-C (the first one saves and exits with status 0)
    from cv.lib import distributed
    message = f"{e or 'interrupted'}; the newest finished checkpoint is kept"
    if multiprocess:
      distributed.abort_peers_fast(message, code=130)
    print(message, file=sys.stderr, flush=True)
    sys.exit(130)
  except BaseException as e:  # noqa: BLE001 - see below
    if not multiprocess:
      raise
    # A raising process would otherwise wait in the runtime's shutdown barrier for peers that
    # are themselves blocked in a collective waiting for it: leave at once instead, so they stop
    # within the heartbeat timeout.
    import traceback
    from cv.lib import distributed
    from cv.lib.errors import UserError
    detail = f"error: {e}" if isinstance(e, UserError) else traceback.format_exc()
    distributed.abort_peers_fast(f"{detail}\nprocess stopped; the other processes of this run "
                                 f"stop within --heartbeat_timeout={_HEARTBEAT.value} s",
                                 code=getattr(e, "exit_code", 1))


def _train(multiprocess: bool) -> None:
  import jax
  from cv.lib import fileio
  from cv.lib.errors import UserError

  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=cv/configs/k600_vq.py")
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  trainers = available_trainers()
  if config.trainer not in trainers:
    print(f"error: config.trainer={config.trainer!r} is not a trainer; available: {', '.join(trainers)}",
          file=sys.stderr)
    sys.exit(2)
  if is_chief:
    fileio.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  print(f"cv: trainer={config.trainer} workdir={os.path.abspath(workdir)}", flush=True)
  module = importlib.import_module(f"cv.trainers.{config.trainer}")
  try:
    module.train_and_evaluate(config, workdir)
  except UserError as e:
    if multiprocess:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 1))


def run() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
