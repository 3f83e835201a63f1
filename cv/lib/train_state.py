"""The train state every trainer uses: params, optimizer state, non-trainable model state, RNG, step."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (checkpointed whole).

  `model_state` holds non-gradient variables (e.g. the VQ codebooks updated by EMA);
  `rng` is a raw uint32 key, folded with `step` inside the step so resumed runs draw the same
  randomness as uninterrupted ones.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, params: Any, tx: optax.GradientTransformation, rng: jax.Array,
             model_state: Any = None) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               model_state={} if model_state is None else model_state, rng=rng, tx=tx)

  def apply_gradients(self, grads: Any, **changes: Any) -> "TrainState":
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)

  def step_rng(self) -> jax.Array:
    """The RNG of the current step: a function of (seed, step) only."""
    return jax.random.fold_in(self.rng, self.step)
