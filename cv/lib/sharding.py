"""Where each leaf of the train state lives on the mesh.

Rules, in order:
1. `config.sharding.rules`: a list of `(regex, spec)`; the first regex that matches a leaf's path
   (e.g. `params/s3d/Mixed_5c/.../kernel`, also `opt_state/...` for its optimizer moments) gives
   its PartitionSpec as a tuple of mesh axis names or None per dimension, e.g.
   `(".*/kernel$", (None, None, None, None, "fsdp"))`. `()` replicates.
2. Otherwise, when the mesh has an `fsdp` axis, every leaf with at least
   `config.sharding.fsdp_min_size` elements is split along its largest dimension that the `fsdp`
   size divides (ZeRO-3 style); smaller leaves stay replicated.
Shardings are computed from shapes only (`jax.eval_shape`), so state is born sharded and never
materialised on one device.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cv.lib.errors import ConfigError

Rule = tuple[str, Sequence[str | None]]


def _fsdp_spec(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> P:
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


def path_name(path: Any) -> str:
  """`params/s3d/Conv_0/kernel` from a jax tree path."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _rule_spec(name: str, shape: tuple[int, ...], mesh: Mesh, rules: Sequence[Rule]) -> P | None:
  for pattern, spec in rules:
    if not re.search(pattern, name):
      continue
    spec = tuple(spec)
    if len(spec) > len(shape):
      raise ConfigError(f"config.sharding.rules: {pattern!r} -> {spec} has {len(spec)} entries but "
                       f"{name} has shape {shape}")
    for dim, axis in enumerate(spec):
      if axis is None:
        continue
      if axis not in mesh.axis_names:
        raise ConfigError(f"config.sharding.rules: {pattern!r} -> {spec} names axis {axis!r}, not "
                         f"in config.mesh {dict(mesh.shape)}")
      if shape[dim] % mesh.shape[axis]:
        raise ConfigError(f"config.sharding.rules: {pattern!r} splits dimension {dim} of {name} "
                         f"(shape {shape}) over {axis!r} of size {mesh.shape[axis]}, which does "
                         f"not divide it")
    return P(*spec)
  return None


def state_shardings(abstract_state: Any, mesh: Mesh, *, fsdp_min_size: int = 2**18,
                    rules: Sequence[Rule] = ()) -> Any:
  """A tree of NamedShardings matching `abstract_state` (a tree of ShapeDtypeStructs)."""
  def leaf(path, x):
    shape = tuple(x.shape)
    spec = _rule_spec(path_name(path), shape, mesh, rules) if rules else None
    return NamedSharding(mesh, spec if spec is not None else _fsdp_spec(shape, mesh, fsdp_min_size))

  return jax.tree_util.tree_map_with_path(leaf, abstract_state)
