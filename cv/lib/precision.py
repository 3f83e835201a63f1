"""`config.dtype`: the compute precision of a trainer's network.

"float32" (the default) computes everything in float32. "bfloat16" is mixed precision:
activations, convolutions and matmuls in bfloat16 (what accelerators run at full speed: A100,
H100 and TPU tensor cores), while parameters, optimizer state, BatchNorm statistics, VQ
codebooks and losses stay float32, so updates are not lost to rounding. Models take the result
as their `dtype` (flax's computation dtype; `param_dtype` stays float32).
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections as mlc

from cv.lib.errors import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: mlc.ConfigDict) -> Any:
  """The jnp dtype named by `config.dtype` (float32 when the config has none)."""
  name = config.get("dtype", "float32")
  if name not in DTYPES:
    raise ConfigError(f"config.dtype={name!r} is not supported; use one of {sorted(DTYPES)} "
                      f"('bfloat16' = mixed precision: bf16 compute, float32 parameters)")
  return DTYPES[name]
