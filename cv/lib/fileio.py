"""Atomic file writes: a reader never sees a half-written file.

Everything the project exports (metrics, manifests, videos, demo data) is written to a temporary
name in the destination folder and renamed into place, so an interrupted run leaves either the old
file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds."""
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  base, ext = os.path.splitext(os.path.basename(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=directory)
  os.close(fd)
  umask = os.umask(0)
  os.umask(umask)
  try:
    yield tmp
    if os.path.exists(tmp):
      os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  """Writes `obj` as JSON to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=indent, sort_keys=True)
      f.write("\n")
