"""Orbax checkpoints of train state + Grain iterator state + progress metadata (DESIGN §4, §8).

A step folder is written to a temporary name and renamed by Orbax when complete, so a run killed
mid-save resumes from the previous complete step. The Grain iterator position is saved in the same
step, which makes the resumed data order identical to an uninterrupted run.
"""
from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """Saves every `save_every` steps (and on `force`), keeps the newest `keep`."""

  def __init__(self, directory: str, *, save_every: int, keep: int):
    self.directory = os.path.abspath(directory)
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(save_interval_steps=max(1, save_every),
                                             max_to_keep=max(1, keep), create=True))

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state: Any, data_iter: Any, meta: dict, *, force: bool = False) -> bool:
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    saved = self._mngr.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
      logging.info("checkpoint: saving step %d to %s", step, self.directory)
    return saved

  def restore(self, step: int, abstract_state: Any, data_iter: Any) -> tuple[Any, dict]:
    """Restores into `abstract_state` (ShapeDtypeStructs with target shardings) and `data_iter`."""
    items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise RuntimeError(
          f"could not restore checkpoint step {step} from {self.directory}: {e}\n"
          "The checkpoint does not match this config (model/optimizer/data pipeline changed?). "
          "Use a new --workdir, or delete the checkpoints folder to start over.") from e
    return restored.state, dict(restored.meta)

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def finished_steps(workdir: str) -> list[int]:
  """Steps with a complete checkpoint in `<workdir>/checkpoints` (ascending)."""
  ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())


def load_state_tree(workdir: str, step: int | None = None) -> tuple[dict, int]:
  """(train state as a nested dict of arrays on one device, step) of a finished run's newest
  (or given) checkpoint: for tools and downstream trainers that reuse a model frozen."""
  import jax
  steps = finished_steps(workdir)
  if not steps:
    raise FileNotFoundError(f"{workdir}: no finished checkpoint in "
                            f"{os.path.join(workdir, 'checkpoints')}; train the run first")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise FileNotFoundError(f"{workdir}: no checkpoint of step {step}; available: {steps}")
  path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state")
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(path)
  tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), tree)
  return ckptr.restore(path, target), step
