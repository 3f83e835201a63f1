"""Helpers shared by every config: `:arg` parsing and the defaults of a run.

Config files follow the big_vision convention: `get_config(arg)` receives the raw string after the
first ':' of `--config=path.py:arg`, parses it with `parse_arg` into typed values and builds an
`ml_collections.ConfigDict`. Every config supports `smoke` (tiny sizes, a few steps) for tests.
"""
from __future__ import annotations

from typing import Any

import ml_collections as mlc


def _convert(name: str, raw: str, default: Any) -> Any:
  """Converts `raw` to the type of `default`, with an error that names the argument."""
  try:
    if isinstance(default, bool):
      low = raw.lower()
      if low in ("1", "true", "yes", "on", ""):
        return True
      if low in ("0", "false", "no", "off"):
        return False
      raise ValueError(raw)
    if isinstance(default, int):
      return int(raw)
    if isinstance(default, float):
      return float(raw)
  except ValueError:
    raise ValueError(f"config argument {name}={raw!r}: expected a {type(default).__name__} "
                     f"(default {default!r})") from None
  return raw


def parse_arg(arg: str | None, **spec: Any) -> mlc.ConfigDict:
  """Parses `'k=v,flag,...'` into a ConfigDict whose keys and types come from `spec`.

  A bare `flag` sets a boolean to True; a single value without `=` fills the first key. Unknown
  keys are an error that lists the valid ones, so a typo never silently falls back to a default.
  """
  values = dict(spec)
  if arg:
    first = next(iter(spec)) if spec else None
    for i, item in enumerate(a for a in arg.split(",") if a):
      if "=" in item:
        key, raw = item.split("=", 1)
      elif item in spec and isinstance(spec[item], bool):
        key, raw = item, "true"
      elif i == 0 and first is not None:
        key, raw = first, item
      else:
        raise ValueError(f"config argument {item!r} is not valid; expected key=value with keys "
                         f"{sorted(spec)}")
      key = key.strip()
      if key not in spec:
        raise ValueError(f"unknown config argument {key!r}; valid arguments: {sorted(spec)}")
      values[key] = _convert(key, raw.strip(), spec[key])
  return mlc.ConfigDict(values)


# S3D-G's inception blocks at smoke size: one per stage (a third of the compile time; the stage
# poolings stay, so shapes match the full model's). Empty = all nine (cv.models.s3d.MIXED).
S3D_SMOKE_BLOCKS = ("Mixed_3b", "Mixed_4b", "Mixed_5b")


# Compute precision of the S3D and codec trainers (`config.dtype`): "float32", or "bfloat16" =
# mixed precision (bfloat16 activations and matmuls, float32 parameters, optimizer state, losses).
DTYPES = ("float32", "bfloat16")

# What the paper states about its datasets and schedules (App. C, E.4), for the `paper` recipes.
K600_TRAIN_CLIPS = 400_000  # "Kinetics600 has about 400k video clips for training"
COIN_TRAIN_VIDEOS = 9_030   # COIN's official training split (11,827 videos, 2,797 for testing)
K600_EPOCHS = 135           # "trained for 60 epochs on COIN and 135 epochs on Kinetics600"
COIN_EPOCHS = 60


def epochs_to_steps(epochs: int, examples: int, batch_size: int) -> int:
  """Steps of `epochs` passes over `examples` at `batch_size` (rounded up)."""
  return -(-epochs * examples // batch_size)


def s3d_model_config(width: float, smoke: bool) -> mlc.ConfigDict:
  """`config.model` of the S3D-G trainers (s3d_cls, coin_framewise)."""
  return mlc.ConfigDict(dict(
      width=0.125 if smoke else width,  # channel multiplier; 1.0 = the paper's S3D-G
      dropout=0.3,
      gating=True,
      mixed_blocks=S3D_SMOKE_BLOCKS if smoke else (),  # names from cv.models.s3d.MIXED; () = all
  ))


def base_config(trainer: str, *, total_steps: int, log_every: int, ckpt_every: int,
                eval_every: int) -> mlc.ConfigDict:
  """The loop settings every run has (seed, mesh, cadences); trainers add their own sections.

  The cadences (in steps) are the caller's: every experiment has its own length."""
  c = mlc.ConfigDict()
  c.trainer = trainer
  c.seed = 0
  # Mesh: list of (axis name, size); -1 takes the remaining devices. Batches are split over
  # `data` (and `fsdp` when present); params are replicated unless sharded by `sharding`.
  c.mesh = (("data", -1),)
  # Parameter placement (cv/lib/sharding.py): `rules` = [(path regex, spec tuple)], first match
  # wins; otherwise leaves of >= fsdp_min_size elements split over an `fsdp` mesh axis.
  c.sharding = mlc.ConfigDict(dict(fsdp_min_size=2**18, rules=()))
  c.total_steps = total_steps
  c.log_every = log_every
  c.ckpt_every = ckpt_every
  c.keep_ckpts = 2
  c.eval_every = eval_every
  return c


def clip_data_config(**overrides: Any) -> mlc.ConfigDict:
  """The `config.data` section shared by clip-based trainers (read by cv.data.datasets)."""
  d = mlc.ConfigDict(dict(
      format="kinetics",
      root=mlc.config_dict.placeholder(str),  # unset = the demo data
      train_split="train",
      eval_split="validate",
      num_frames=8,
      stride=2,
      target_fps=mlc.config_dict.placeholder(float),
      short_side=64,
      crop=64,
      strict=False,
      num_threads=2,
      prefetch=4,
      worker_count=0,
      max_skips_in_row=100,  # a loader that skips this many videos in a row stops the run
      max_eval_clips=0,
      demo=dict(seed=0),
  ))
  d.update(overrides)
  return d
