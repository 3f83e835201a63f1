"""Optimizer and learning-rate schedule from config (optimizer by optax name)."""
from __future__ import annotations

import ml_collections as mlc
import optax


def make_schedule(cfg: mlc.ConfigDict, total_steps: int) -> optax.Schedule:
  """`cfg.schedule`: 'cosine' (linear warmup then cosine to 0) or 'constant' (after warmup)."""
  warmup = int(cfg.warmup_steps)
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(total_steps, warmup + 1),
                                              end_value=cfg.lr * cfg.get("final_lr_frac", 0.0))
  if cfg.schedule == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)),
                                 optax.constant_schedule(cfg.lr)], [warmup])
  raise ValueError(f"config.optim.schedule={cfg.schedule!r} is not known; use 'cosine' or 'constant'")


def make_optimizer(cfg: mlc.ConfigDict, total_steps: int) -> tuple[optax.GradientTransformation,
                                                                    optax.Schedule]:
  """Builds `clip_by_global_norm -> optax.<cfg.name>(schedule, **cfg.kwargs)`."""
  schedule = make_schedule(cfg, total_steps)
  if not hasattr(optax, cfg.name):
    raise ValueError(f"config.optim.name={cfg.name!r} is not an optax optimizer (e.g. adam, adamw, sgd)")
  opt = getattr(optax, cfg.name)(schedule, **dict(cfg.get("kwargs", {})))
  chain = [opt]
  if cfg.get("grad_clip", 0.0):
    chain.insert(0, optax.clip_by_global_norm(cfg.grad_clip))
  return optax.chain(*chain), schedule
