"""Device mesh and the standard shardings of a run (docs/design.md, Distribution).

`config.mesh` is a list of `(axis_name, size)`; one size may be -1 (all remaining devices). The
global batch is split over the `data` and `fsdp` axes; parameters are replicated unless the
sharding rules (`cv.lib.sharding`) place them on `fsdp`.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from cv.lib.errors import ConfigError

BATCH_AXES = ("data", "fsdp")


def make_mesh(spec: Sequence[Sequence], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a Mesh from `[(name, size), ...]` over `devices` (default: all devices)."""
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(str(n) for n, _ in spec)
  sizes = [int(s) for _, s in spec]
  if len(set(names)) != len(names):
    raise ConfigError(f"config.mesh {list(spec)}: axis names must be unique")
  if sizes.count(-1) > 1:
    raise ConfigError(f"config.mesh {list(spec)}: at most one axis may have size -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"config.mesh {list(spec)}: {len(devices)} devices are not divisible by "
                       f"the fixed axes ({known})")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ConfigError(f"config.mesh {list(spec)} needs {math.prod(sizes)} devices but "
                     f"{len(devices)} are available; use -1 for one axis to take the rest")
  arr = np.asarray(devices, dtype=object).reshape(sizes)
  return Mesh(arr, names, axis_types=(AxisType.Auto,) * len(names))


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data-parallel axes, the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())

