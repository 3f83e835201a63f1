"""Entry point: `python -m cv.main --config=cv/configs/<exp>.py[:args] [--config.key=value] [--workdir=DIR]`.

Loads the config, saves it to `<workdir>/config.json`, and calls
`cv.trainers.<config.trainer>.train_and_evaluate(config, workdir)`. Re-running the same command
resumes from the newest checkpoint in the workdir.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. cv/configs/k600_vq.py:cr=192",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (checkpoints, TensorBoard events, metrics). "
                               "Default: workdirs/<config name>[_<args>].")


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


def main(argv: list[str]) -> None:
  del argv
  from cv.lib import fileio
  from cv.lib.errors import UserError

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # library INFO logs (Orbax, clu) are noise for users
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=cv/configs/k600_vq.py")
  workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  os.makedirs(workdir, exist_ok=True)
  trainers = available_trainers()
  if config.trainer not in trainers:
    print(f"error: config.trainer={config.trainer!r} is not a trainer; available: {', '.join(trainers)}",
          file=sys.stderr)
    sys.exit(2)
  fileio.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  print(f"cv: trainer={config.trainer} workdir={os.path.abspath(workdir)}", flush=True)
  module = importlib.import_module(f"cv.trainers.{config.trainer}")
  try:
    module.train_and_evaluate(config, workdir)
  except UserError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def run() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
