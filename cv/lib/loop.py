"""The training loop every trainer shares (docs/design.md: A run, Distribution, Reliability).

A trainer describes *what* is learned as a `Task` (init, step, data, evaluation); this module owns
*how*: the mesh, born-sharded state, the jitted step with buffer donation, global batches from
process-local data, the NaN/Inf guard, TensorBoard/console reporting, Orbax checkpoints with the
Grain iterator state, exact resume, the evaluation cadence and the final `metrics.json`.

Faults (docs/design.md, Reliability): an unreadable newest checkpoint is moved aside and the
previous one restored
(`Checkpointer.restore_latest`); SIGTERM or a first Ctrl-C finishes the current step, saves it,
flushes TensorBoard and exits with status 0 (`preemption.StopRequest`, `errors.Preempted`); a
save that cannot be written (full disk) stops with one line naming the step folder and keeps
the previous checkpoints.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import ml_collections as mlc
import numpy as np
from clu import periodic_actions

from cv.lib import checkpoint as ckpt_lib
from cv.lib import distributed
from cv.lib import fileio
from cv.lib import mesh as mesh_lib
from cv.lib import preemption
from cv.lib import reporting
from cv.lib import sharding as sharding_lib
from cv.lib.errors import NonFiniteError, Preempted, WriteError
from cv.lib.train_state import TrainState

Batch = Mapping[str, np.ndarray]
EvalOutput = tuple[dict[str, float], dict[str, np.ndarray]]


@dataclasses.dataclass
class Task:
  """What a trainer hands to `run`.

  init: rng -> TrainState. Traced once under `jax.eval_shape` and jitted with the state shardings.
  train_step: (state, global batch) -> (state, scalar metrics). Pure; jitted with donation.
  make_train_iter: builds a fresh, checkpointable iterator (Grain) of process-local numpy batches
    whose leading dimension is the per-process batch size.
  evaluate: (state) -> (scalars, images), run on the host at the eval cadence and at the end; in a
    multi-process run on every process, with a process-local state; `cv.lib.evaluate.run` reads
    each process's share of the split and gathers the outputs so all processes agree.
  data_stats: optional () -> scalars about the input (e.g. skipped bad videos), logged with train.
  """
  init: Callable[[jax.Array], TrainState]
  train_step: Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]
  make_train_iter: Callable[[], Iterator[Batch]]
  evaluate: Callable[[TrainState], EvalOutput] | None = None
  data_stats: Callable[[], dict[str, float]] | None = None
  schedule: Callable[[int], float] | None = None


def _check_finite(step: int, scalars: Mapping[str, float], last_good: int | None, ckpt_dir: str):
  bad = sorted(k for k, v in scalars.items() if not math.isfinite(float(v)))
  if bad:
    where = (f"the last good checkpoint (step {last_good}) is kept in {ckpt_dir}"
             if last_good is not None else "no checkpoint was written yet")
    raise NonFiniteError(
        f"training diverged at step {step}: non-finite {', '.join(bad)} "
        f"({', '.join(f'{k}={scalars[k]}' for k in bad)}). Stopped; {where}. Lower config.optim.lr, "
        "set config.optim.grad_clip, or check the input data; re-running resumes from that checkpoint.")


def global_batch(batch: Batch, sharding: jax.sharding.NamedSharding) -> dict[str, jax.Array]:
  """Assembles the global batch from this process's slice (leading axis is the batch)."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def run(config: mlc.ConfigDict, workdir: str, task: Task) -> dict[str, float]:
  """Trains `task` to `config.total_steps`, resuming from `workdir` if it holds a checkpoint.

  Returns the final metrics (also written to `<workdir>/metrics.json`).
  """
  total = int(config.total_steps)
  mesh = mesh_lib.make_mesh(config.mesh)
  batch_sh, repl = mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)
  is_chief = jax.process_index() == 0
  reporting.console(f"mesh: {dict(mesh.shape)} over {mesh.size} {jax.devices()[0].platform} "
                    f"device(s), {jax.process_count()} process(es)")

  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(task.init, rng)
  state_sh = sharding_lib.state_shardings(abstract, mesh,
                                         fsdp_min_size=config.sharding.fsdp_min_size,
                                         rules=[tuple(r) for r in config.sharding.get("rules", [])])
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, state_sh)

  data_iter = task.make_train_iter()
  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt = ckpt_lib.Checkpointer(ckpt_dir, save_every=config.ckpt_every, keep=config.keep_ckpts)
  restored = ckpt.restore_latest(abstract, data_iter)
  latest = restored[2] if restored is not None else None
  train_time = 0.0
  if restored is not None:
    state, meta, _ = restored
    train_time = float(meta.get("train_time_s", 0.0))
    reporting.console(f"Resuming from checkpoint step {latest} in {ckpt_dir}")
  else:
    state = jax.jit(task.init, out_shardings=state_sh)(rng)
  first_step = int(jax.device_get(state.step))
  last_good = latest

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  reporting.console(f"parameters: {n_params:,}; training steps {first_step} -> {total}")

  writer = reporting.create_writer(workdir)
  if latest is None:
    writer.write_hparams(_flat_hparams(config))
  report = periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                           every_steps=config.log_every)
  console = reporting.ConsoleProgress(total, first_step)

  step_fn = jax.jit(task.train_step, in_shardings=(state_sh, batch_sh),
                    out_shardings=(state_sh, repl), donate_argnums=(0,))

  def evaluate(step: int) -> dict[str, float]:
    if task.evaluate is None:
      return {}
    with console.pause():
      t0 = time.monotonic()
      # In a multi-process run every process evaluates on a local copy of the state: trainers
      # combine their per-process outputs with `cv.lib.evaluate.run`.
      scalars, images = task.evaluate(distributed.local_state(state))
      scalars = {f"eval/{k}": float(v) for k, v in scalars.items()}
      writer.write_scalars(step, scalars)
      if images:
        writer.write_images(step, {f"eval/{k}": v for k, v in images.items()})
      writer.flush()
      reporting.console(f"eval @ step {step}: "
                        + ", ".join(f"{k[5:]} {v:.4f}" for k, v in scalars.items())
                        + f" ({time.monotonic() - t0:.1f}s)")
    return scalars

  def save(step: int) -> None:
    with console.pause():
      meta = dict(step=step, total_steps=total,
                  train_time_s=train_time + time.monotonic() - t_start,
                  examples_seen=step * int(config.batch_size))
      ckpt.save(step, state, data_iter, meta, force=True)

  train_scalars: dict[str, float] = {}
  eval_scalars: dict[str, float] = {}
  t_start = time.monotonic()
  stop = preemption.StopRequest()
  failed = True
  try:
    with mesh, stop:
      for step in range(first_step + 1, total + 1):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
          batch = global_batch(next(data_iter), batch_sh)
          state, metrics = step_fn(state, batch)
        report(step)
        is_last = step == total
        save_now = step % config.ckpt_every == 0 or is_last
        eval_now = (config.eval_every and step % config.eval_every == 0) or is_last
        if step % config.log_every == 0 or save_now or eval_now:
          train_scalars = {f"train/{k}": float(v) for k, v in jax.device_get(metrics).items()}
          _check_finite(step, train_scalars, last_good, ckpt_dir)
          if task.schedule is not None:
            train_scalars["train/lr"] = float(task.schedule(step - 1))
          if task.data_stats is not None:
            train_scalars.update({f"data/{k}": float(v) for k, v in task.data_stats().items()})
          writer.write_scalars(step, train_scalars)
          console(step, {k.split("/", 1)[1]: v for k, v in train_scalars.items()
                         if k.startswith("train/")})
        if eval_now:
          eval_scalars = evaluate(step)
        if save_now:
          save(step)
          last_good = step
        if stop.should_stop(step) and not is_last:
          if not save_now:
            save(step)
          ckpt.wait()
          writer.flush()
          message = (f"{stop.requested}: stopped after step {step} of {total}; saved checkpoint "
                     f"{os.path.join(ckpt_dir, str(step))}. Re-run the same command to resume.")
          reporting.console(message)
          raise Preempted(message, step)
      if first_step >= total:
        reporting.console(f"Training already complete at step {first_step}; re-running the final "
                          f"evaluation.")
        eval_scalars = evaluate(first_step)
    failed = False
  finally:
    # Finish pending (async) checkpoint writes even when training stops with an error, so the last
    # good checkpoint is complete on disk.
    try:
      ckpt.close()
    except WriteError as e:
      if not failed:
        raise
      print(f"error: {e}", file=sys.stderr, flush=True)  # do not hide the error in flight
    finally:
      writer.flush()
      writer.close()

  final = {"step": float(max(first_step, total)), **train_scalars, **eval_scalars}
  if is_chief:
    fileio.write_json(os.path.join(workdir, "metrics.json"), final)
  return final


def _flat_hparams(config: mlc.ConfigDict) -> dict[str, Any]:
  """Config as flat TensorBoard hparams (lists become strings)."""
  out = {}

  def visit(prefix, node):
    for k, v in node.items():
      name = f"{prefix}{k}"
      if isinstance(v, (dict, mlc.ConfigDict)):
        visit(name + ".", v)
      elif isinstance(v, (bool, int, float, str)):
        out[name] = v
      elif v is None:
        out[name] = ""
      else:
        out[name] = str(v)

  visit("", config)
  return out
