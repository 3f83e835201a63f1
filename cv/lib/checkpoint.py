"""Orbax checkpoints of train state + Grain iterator state + progress metadata (DESIGN §4, §8).

A step folder is written to a temporary name and renamed by Orbax when complete, so a run killed
mid-save resumes from the previous complete step. The Grain iterator position is saved in the same
step, which makes the resumed data order identical to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

import grain
import orbax.checkpoint as ocp
from absl import logging

from cv.lib.errors import CheckpointError

# Replica-parallel saving splits each replicated array across its replicas so they copy to host in
# parallel; every split compiles a slice per (shape, device), which for small arrays costs far
# more than it saves (seconds per checkpoint of a model with many small, distinct shapes). Only
# arrays with at least this many bytes per replica slice are split.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _register_array_handler() -> None:
  import jax
  from orbax.checkpoint._src.metadata import array_metadata_store
  from orbax.checkpoint._src.serialization import type_handler_registry
  type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(
      jax.Array,
      ocp.type_handlers.ArrayHandler(
          min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES,
          array_metadata_store=array_metadata_store.Store()),
      override=True, ignore_warnings=True)


_register_array_handler()


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
    """Restores into `abstract_state` (ShapeDtypeStructs with target shardings) and `data_iter`.

    The state may have been saved by a different number of processes or devices: it is resharded
    onto the target shardings. The data iterator position is remapped when the process count
    changed (see `_remap_iterator`)."""
    import jax
    items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    saved_count = _iterator_process_count(os.path.join(self.directory, str(step), "data_iter"))
    remap = data_iter is not None and saved_count not in (None, jax.process_count())
    if data_iter is not None and not remap:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f"could not restore checkpoint step {step} from {self.directory}: {e}\n"
          "The checkpoint does not match this config (model/optimizer/data pipeline changed?). "
          "Use a new --workdir, or delete the checkpoints folder to start over.") from e
    if remap:
      _remap_iterator(os.path.join(self.directory, str(step), "data_iter"), saved_count, step,
                      data_iter)
    return restored.state, dict(restored.meta)

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


_ITER_FILE = re.compile(r"process_(\d+)-of-(\d+)\.json$")


def _iterator_process_count(folder: str) -> int | None:
  """How many processes wrote the iterator states in `folder` (None if there are none)."""
  if not os.path.isdir(folder):
    return None
  counts = {int(m.group(2)) for m in map(_ITER_FILE.match, os.listdir(folder)) if m}
  return counts.pop() if len(counts) == 1 else None


def _remap_iterator(folder: str, saved_count: int, step: int, data_iter: Any) -> None:
  """Positions `data_iter` after `step` global batches when the run resumes with a different
  process count. Every process reads its own slice of every global batch (`pipeline.train_iterator`),
  so a position saved as `next_index` (examples of this process consumed) scales with the
  per-process batch: saved_local = next_index / step, local = saved_local * saved_count / count."""
  import jax
  path = os.path.join(folder, f"process_0-of-{saved_count}.json")
  try:
    with open(path) as f:
      saved = json.loads(f.read())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: cannot read the data iterator position ({e})") from e
  count = jax.process_count()
  if not (isinstance(saved, dict) and set(saved) == {"next_index"} and step > 0):
    raise CheckpointError(
        f"{path}: this checkpoint was written by {saved_count} process(es) and this run has "
        f"{count}; its data iterator state ({str(saved)[:80]}) cannot be remapped (it comes from "
        f"multiprocess data workers). Resume with {saved_count} process(es), or set "
        f"config.data.worker_count=0 for runs that change their process count.")
  local_saved, rest = divmod(int(saved["next_index"]), step)
  total = local_saved * saved_count
  if rest or total % count:
    raise CheckpointError(
        f"{path}: the global batch ({total} examples, from {saved_count} process(es)) cannot be "
        f"split over {count} processes; resume with a process count that divides it")
  data_iter.set_state({"next_index": step * (total // count)})
  logging.warning("checkpoint step %d was written by %d process(es), resuming with %d: data "
                  "position remapped to the same global batch", step, saved_count, count)


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
