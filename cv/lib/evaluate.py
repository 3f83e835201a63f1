"""One evaluation harness for every trainer: batches -> predict -> host -> gather -> accumulate.

The trainers that score held-out clips (`vq_codec`, `latent_aug`, `s3d_cls`, `coin_framewise`)
differ only in what they predict and how they add it up; the rest is here, once:

- every process reads only its share of the evaluation split (the batch source, e.g.
  `cv.data.pipeline.EvalBatches`) and predicts on its own batches with a process-local state;
- all processes run the same number of steps: a process whose share is exhausted asks the
  source for a fully masked `padding()` batch while any other still has one (a tiny all-gather
  per step, nothing in a single process);
- per-example outputs and the batch keys the caller needs are gathered (every dtype kept), so
  every process accumulates the same global batch; its rows are put in a process-count-independent
  order (real examples by `position`, their place in the split, then the masked ones), so with
  the same global batch size and no skipped clip the accumulators see exactly what a single
  process sees, float sums included (with skipped clips the batches regroup: the same examples,
  sums equal up to rounding).

Library code: the batch source and the callables come from the trainer (lib imports only lib).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import jax
import numpy as np

from cv.lib import distributed

Batch = Mapping[str, np.ndarray]


class BatchSource(Protocol):
  """Where `run` gets this process's evaluation batches from.

  Iterating yields process-local batches with a float `mask` (1 = real example, 0 = padding)
  and an integer `position` (the example's place in the whole split) besides the inputs.
  """

  def __iter__(self) -> Iterator[Batch]:
    ...

  def padding(self) -> Batch:
    """A batch shaped like the others with every example masked out."""
    ...

  def no_examples_error(self) -> Exception:
    """The error to raise when no process found a usable example."""
    ...


def canonical_order(mask: np.ndarray, position: np.ndarray) -> np.ndarray:
  """Row order of a gathered batch that does not depend on the process count: real rows
  (mask > 0) by increasing position, then the masked ones (stable)."""
  return np.lexsort((np.asarray(position), np.asarray(mask) <= 0))


def run(batches: BatchSource, predict: Callable[[Batch], Any],
        accumulate: Callable[[Any, dict[str, np.ndarray]], None], *,
        keys: Sequence[str] = ()) -> int:
  """Evaluates every example of `batches` once over all processes; returns how many were real.

  Args:
    batches: this process's batch source (see `BatchSource`).
    predict: process-local batch -> pytree of per-example outputs (leading axis = the batch),
      e.g. a jitted model call on a process-local state; fetched to the host here.
    accumulate: (outputs, meta) -> None, called once per step on every process with the
      gathered global batch in canonical order: `outputs` is `predict`'s pytree, `meta` holds
      `mask`, `position` and the batch entries named in `keys`. Masked rows must be ignored
      (their values are copies of real examples).
    keys: batch entries (e.g. labels, video index) `accumulate` needs besides the outputs.

  Raises:
    `batches.no_examples_error()` when no process had a usable example.
  All processes must call it together (it runs collectives in a multi-process run).
  """
  it = iter(batches)
  total = 0.0
  while True:
    batch = next(it, None)
    if not distributed.any_process(batch is not None):
      break
    if batch is None:
      batch = batches.padding()
    n = len(batch["mask"])
    out = jax.tree.map(np.asarray, jax.device_get(predict(batch)))
    for leaf in jax.tree.leaves(out):
      if leaf.ndim == 0 or leaf.shape[0] != n:
        raise ValueError(f"evaluate.run: every output of predict must have the batch ({n}) as "
                         f"its leading axis, got shape {leaf.shape}")
    meta = {k: np.asarray(batch[k]) for k in ("mask", "position", *keys)}
    out, meta = distributed.gather((out, meta))
    order = canonical_order(meta["mask"], meta["position"])
    out, meta = jax.tree.map(lambda x: x[order], (out, meta))
    total += float(np.sum(meta["mask"] > 0))
    accumulate(out, meta)
  if total == 0:
    raise batches.no_examples_error()
  return int(total)
