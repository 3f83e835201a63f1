"""Orbax checkpoints of train state + Grain iterator state + progress metadata
(docs/design.md: A run, Reliability).

A step folder is written to a temporary name and renamed by Orbax when complete, so a run killed
mid-save resumes from the previous complete step. The Grain iterator position is saved in the same
step, which makes the resumed data order identical to an uninterrupted run.

Faults a cluster user meets are one line each, never a traceback storm:
- a step that cannot be read (truncated array files after a power cut, a garbled iterator state
  or metadata) is moved aside as `<step>.corrupt-<time>` (never deleted) and the newest readable
  step is restored (`restore_latest`); with none left, `NoCheckpointError` (exit status 2);
- a save that fails (full disk, any OSError) raises `WriteError` naming the step folder and the
  cause; Orbax writes into a temporary folder, so the previous checkpoints stay untouched.
Orbax logs every such failure with long tracebacks from several threads: they are filtered out
(`_OrbaxNoise`) unless absl logging is at INFO or finer (`--verbosity=0`), since the error itself
is raised and reported.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging as py_logging
import os
import re
import shutil
import sys
import time
from typing import Any, Iterator

import grain
import orbax.checkpoint as ocp
from absl import logging

from cv.lib import distributed, fileio
from cv.lib.errors import CheckpointError, NoCheckpointError, WriteError

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


class _OrbaxNoise(py_logging.Filter):
  """Drops Orbax/TensorStore log records that repeat, with tracebacks, an error this module
  raises and reports in one line: all of them inside `_quiet()` (a restore attempt), and those
  at ERROR level or carrying an exception elsewhere (failures of background saves). Nothing is
  dropped when absl logging is at INFO or finer (the user asked for details)."""

  quiet = 0

  def filter(self, record: py_logging.LogRecord) -> bool:
    if logging.get_verbosity() >= logging.INFO:
      return True
    if record.name == "asyncio":  # the other reads of a failed restore, reported at exit
      # The task is Orbax's or a bare TensorStore read (then only its error names TensorStore).
      text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
      return "/orbax/" not in text.replace(os.sep, "/") and "tensorstore" not in text.lower()
    path = record.pathname.replace(os.sep, "/")
    if "/orbax/" not in path and "/tensorstore/" not in path:
      return True
    if self.quiet:
      return False
    return not (record.levelno >= py_logging.ERROR or record.exc_info)


_NOISE = _OrbaxNoise()
py_logging.getLogger("absl").addFilter(_NOISE)
py_logging.getLogger("asyncio").addFilter(_NOISE)


_HOOKED = False


def _drop_closed_loop_noise() -> None:
  """After a failed restore, TensorStore reads that were still in flight complete later and try
  to wake Orbax's finished event loop, which Python reports as 'Exception ignored ...
  RuntimeError: Event loop is closed' with a traceback, at any later moment. That is noise about
  an attempt already reported in one line: drop it (unless absl logging is at INFO or finer).
  Installed once, for the process, when a run looks for a checkpoint to restore."""
  global _HOOKED
  if _HOOKED:
    return
  _HOOKED = True
  previous = sys.unraisablehook

  def hook(unraisable):
    e = unraisable.exc_value
    if (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"
        and logging.get_verbosity() < logging.INFO):
      return
    previous(unraisable)

  sys.unraisablehook = hook


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  _NOISE.quiet += 1
  try:
    yield
  finally:
    _NOISE.quiet -= 1


def _one_line(e: BaseException, limit: int = 300) -> str:
  """The innermost cause of `e` as one short line (Orbax wraps the TensorStore error that says
  what is wrong in several layers of generic exceptions)."""
  seen = []
  while e is not None and e not in seen:
    seen.append(e)
    e = e.__cause__ or (e.__context__ if not e.__suppress_context__ else None)
  for err in reversed(seen):  # innermost first, the first with a message
    text = " ".join(str(err).split())
    if text:
      text = f"{type(err).__name__}: {text}" if not isinstance(err, OSError) else text
      return text if len(text) <= limit else text[:limit - 3] + "..."
  return type(seen[0]).__name__


class _Unreadable(Exception):
  """Internal: a checkpoint step whose files cannot be read (corrupt or incomplete)."""


def _key_name(k: Any) -> str:
  for attr in ("name", "key", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _shapes(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{path of names: shape} of the array leaves of `tree` (dataclass fields, dict keys and
  sequence indices alike, so a saved tree's metadata compares with the target state)."""
  import jax
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if hasattr(leaf, "shape"):
      out[tuple(_key_name(k) for k in path)] = tuple(leaf.shape)
  return out


class Checkpointer:
  """Saves every `save_every` steps (and on `force`), keeps the newest `keep`."""

  def __init__(self, directory: str, *, save_every: int, keep: int):
    self.directory = os.path.abspath(directory)
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(save_interval_steps=max(1, save_every),
                                             max_to_keep=max(1, keep), create=True))
    self._pending: int | None = None  # step of an asynchronous save not yet known to be complete
    self._failed = False

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def finished_steps(self) -> list[int]:
    """Steps with a complete folder on disk (ascending)."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

  def save(self, step: int, state: Any, data_iter: Any, meta: dict, *, force: bool = False) -> bool:
    """Starts saving `step` (asynchronously). A failure of this save or of the previous one
    raises `WriteError` naming the step folder and the cause (e.g. the disk is full)."""
    self.wait()  # a failed previous save is reported as that step's failure
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    try:
      saved = self._mngr.save(step, args=ocp.args.Composite(**items), force=force)
    except Exception as e:  # noqa: BLE001 - any failure to write is reported as one line
      raise self._save_error(step, e) from None
    if saved:
      self._pending = step
      logging.info("checkpoint: saving step %d to %s", step, self.directory)
    return saved

  def _save_error(self, step: int, e: BaseException) -> WriteError:
    self._failed = True
    for tmp in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
      shutil.rmtree(tmp, ignore_errors=True)  # the incomplete save: frees space, never a checkpoint
    kept = [s for s in self.finished_steps() if s != step]
    cause = ("the disk is full: " if fileio.disk_full(e) else "") + _one_line(e)
    if kept:
      after = (f"the previous checkpoints (step {', '.join(map(str, kept))}) are untouched; free "
               f"disk space (or use a --workdir with room) and re-run to resume from step "
               f"{kept[-1]}")
    else:
      after = "no earlier checkpoint exists; free disk space (or use a --workdir with room)"
    return WriteError(f"could not save checkpoint step {step} to "
                      f"{os.path.join(self.directory, str(step))}: {cause}; {after}")

  def restore(self, step: int, abstract_state: Any, data_iter: Any) -> tuple[Any, dict]:
    """Restores into `abstract_state` (ShapeDtypeStructs with target shardings) and `data_iter`.

    The state may have been saved by a different number of processes or devices: it is resharded
    onto the target shardings. The data iterator position is remapped when the process count
    changed (see `_remap_iterator`)."""
    try:
      mismatch = self._mismatch(step, abstract_state)
      if mismatch:
        raise CheckpointError(_mismatch_message(step, self.directory, mismatch))
      return self._restore(step, abstract_state, data_iter)
    except (ValueError, KeyError, TypeError, _Unreadable) as e:
      raise CheckpointError(f"could not restore checkpoint step {step} from {self.directory}: "
                            f"{_one_line(e)}") from e

  def _restore(self, step: int, abstract_state: Any, data_iter: Any) -> tuple[Any, dict]:
    """Restores `step`; Orbax/TensorStore/Grain exceptions pass through (see `restore_latest`),
    a data position that cannot be remapped to this process count is a `CheckpointError`."""
    import jax
    items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    saved_count = _iterator_process_count(os.path.join(self.directory, str(step), "data_iter"))
    remap = data_iter is not None and saved_count not in (None, jax.process_count())
    if data_iter is not None and not remap:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
    if remap:
      _remap_iterator(os.path.join(self.directory, str(step), "data_iter"), saved_count, step,
                      data_iter)
    meta = restored.meta
    if not isinstance(meta, dict):
      raise _Unreadable(f"its metadata is {type(meta).__name__}, not a JSON object")
    return restored.state, dict(meta)

  def _mismatch(self, step: int, abstract_state: Any) -> str | None:
    """Why the saved state of `step` is not `abstract_state`'s model (different leaves or shapes),
    from its metadata; None if it matches. Raises `_Unreadable` if the metadata cannot be read."""
    path = os.path.join(self.directory, str(step), "state")
    try:
      meta = ocp.StandardCheckpointHandler().metadata(_epath(path))
      tree = meta.tree if hasattr(meta, "tree") else meta
      saved = _shapes(tree)
    except Exception as e:  # noqa: BLE001 - unreadable metadata: a corrupt step
      raise _Unreadable(_one_line(e)) from None
    want = _shapes(abstract_state)
    if saved == want:
      return None
    missing = sorted(set(want) - set(saved))
    extra = sorted(set(saved) - set(want))
    if missing or extra:
      first = "/".join((missing or extra)[0])
      return (f"{len(missing)} array(s) of this model are not in it and {len(extra)} of its "
              f"arrays are not in this model (e.g. {first})")
    k = next(k for k in want if want[k] != saved[k])
    return f"{'/'.join(k)} has shape {saved[k]} there but {want[k]} in this model"

  def restore_latest(self, abstract_state: Any, data_iter: Any) -> tuple[Any, dict, int] | None:
    """Restores the newest readable step (None if there is no checkpoint at all).

    A step whose state, iterator position or metadata cannot be read is moved aside as
    `<step>.corrupt-<time>` with a one-line warning naming the folder and the error, and the next
    older step is tried; all processes of a multi-process run agree on every verdict. A step of
    a different model is not corrupt: it raises `CheckpointError` and nothing is moved. With
    every step unreadable, raises `NoCheckpointError`."""
    steps = sorted(self._mngr.all_steps(), reverse=True)
    if not steps:
      return None
    _drop_closed_loop_noise()  # before any attempt: the noise of a failed one can come at once
    moved: list[str] = []
    for n, step in enumerate(steps):
      problem, mismatch = None, None
      try:
        with _quiet():
          mismatch = self._mismatch(step, abstract_state)
          if mismatch is None:
            state, meta = self._restore(step, abstract_state, data_iter)
      except CheckpointError:
        raise  # readable, but not for this run (e.g. an iterator state of other processes)
      except _Unreadable as e:
        problem = str(e)
      except Exception as e:  # noqa: BLE001 - whatever Orbax/TensorStore/Grain raise on bad files
        problem = _one_line(e)
      problem = distributed.first_problem(problem)
      if problem is None and mismatch:
        raise CheckpointError(_mismatch_message(step, self.directory, mismatch))
      if problem is None:
        return state, meta, step
      folder = self._move_aside(step)
      moved.append(os.path.basename(folder))
      if distributed.is_chief():
        then = (f"trying the previous one (step {steps[n + 1]})" if n + 1 < len(steps) else
                "no earlier checkpoint")
        print(f"warning: checkpoint {os.path.join(self.directory, str(step))} cannot be read "
              f"({problem}); moved aside to {folder}; {then}", file=sys.stderr, flush=True)
    raise NoCheckpointError(
        f"no readable checkpoint in {self.directory}: every step ({', '.join(map(str, steps))}) "
        f"failed to load and was moved aside ({', '.join(moved)}; nothing was deleted). Re-run "
        f"to start training from step 0, or copy a good checkpoint back into that folder")

  def _move_aside(self, step: int) -> str:
    """Renames the step folder to `<step>.corrupt-<time>` (process 0; the others wait)."""
    src = os.path.join(self.directory, str(step))
    dst = src + time.strftime(".corrupt-%Y%m%d-%H%M%S")
    if distributed.is_chief():
      n = 1
      while os.path.exists(dst):
        dst = src + time.strftime(".corrupt-%Y%m%d-%H%M%S") + f"-{n}"
        n += 1
      os.rename(src, dst)
    distributed.barrier(f"checkpoint_move_aside_{step}")
    self._mngr.reload()
    return dst

  def wait(self) -> None:
    """Blocks until the pending save is complete; `WriteError` if it failed."""
    if self._pending is None:
      return
    step, self._pending = self._pending, None
    try:
      self._mngr.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._save_error(step, e) from None

  def close(self) -> None:
    """Finishes pending writes; a failed pending save raises `WriteError`."""
    try:
      self.wait()
    finally:
      try:
        self._mngr.close()
      except Exception:  # noqa: BLE001 - the failure of a save is reported by `wait`
        if not self._failed:
          raise


def _mismatch_message(step: int, directory: str, mismatch: str) -> str:
  return (f"could not restore checkpoint step {step} from {directory}: {mismatch}. The "
          "checkpoint does not match this config (model/optimizer/data pipeline changed?). Use a "
          "new --workdir, or move the checkpoints folder away to start over.")


def _epath(path: str):
  from etils import epath
  return epath.Path(path)


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
    raise _Unreadable(f"{path}: cannot read the data iterator position ({e})") from e
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
