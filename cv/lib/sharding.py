"""Where each leaf of the train state lives on the mesh.

Default: replicated. When the mesh has an `fsdp` axis, every leaf with at least
`config.sharding.fsdp_min_size` elements is split along its largest dimension that the `fsdp` size
divides (ZeRO-3 style); smaller leaves stay replicated. Shardings are computed from shapes only
(`jax.eval_shape`), so state is born sharded and never materialised on one device.
"""
from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def _leaf_spec(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> P:
  if "fsdp" not in mesh.axis_names or mesh.shape["fsdp"] == 1:
    return P()
  size = 1
  for d in shape:
    size *= d
  if size < min_size:
    return P()
  n = mesh.shape["fsdp"]
  for dim in sorted(range(len(shape)), key=lambda i: -shape[i]):
    if shape[dim] % n == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(abstract_state: Any, mesh: Mesh, *, fsdp_min_size: int = 2**18) -> Any:
  """A tree of NamedShardings matching `abstract_state` (a tree of ShapeDtypeStructs)."""
  return jax.tree.map(
      lambda leaf: NamedSharding(mesh, _leaf_spec(tuple(leaf.shape), mesh, fsdp_min_size)),
      abstract_state)
