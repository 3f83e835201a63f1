"""Atomic file writes: a reader never sees a half-written file.

Everything the project exports (metrics, manifests, videos, demo data) is written to a temporary
name in the destination folder and renamed into place, so an interrupted run leaves either the old
file or the new one, never a torn one. A write that fails (a full disk, no permission) raises
`WriteError`, one line naming the file and the cause; the temporary file is removed and the file
already at `path`, if any, is untouched.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import Any, Iterator

from cv.lib.errors import WriteError


def disk_full(e: BaseException) -> bool:
  """Whether `e` (or what caused it) says the disk is full: ENOSPC, or a library's message for
  it (TensorStore and ArrayRecord report it in their own exception types)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def write_failure(path: str, e: BaseException, what: str = "file") -> WriteError | None:
  """A one-line `WriteError` for a failed write of `path` when `e` is an OSError about `path`'s
  folder (or about no file) or a full disk reported by a library; None for other exceptions
  (bugs, bad data, a missing *input* file), which should propagate."""
  if isinstance(e, WriteError):
    return e
  if not disk_full(e):
    if not isinstance(e, OSError):
      return None
    folder = os.path.dirname(os.path.abspath(path))
    if e.filename is not None and os.path.dirname(os.path.abspath(str(e.filename))) != folder:
      return None  # about another file, e.g. an input the block was reading
  cause = " ".join((e.strerror if isinstance(e, OSError) and e.strerror else str(e)).split())
  fix = ("the disk is full: free space (or write elsewhere) and re-run"
         if disk_full(e) else "check the folder exists and is writable, then re-run")
  return WriteError(f"could not write the {what} {path}: {cause}; {fix} (what was written "
                    f"before is untouched)")


@contextlib.contextmanager
def atomic_path(path: str, what: str = "file") -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

  An OSError (or a library's full-disk error) in the block or the rename becomes `WriteError`
  naming `path` (`what` names the kind of file in the message)."""
  directory = os.path.dirname(os.path.abspath(path)) or "."
  try:
    os.makedirs(directory, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=directory)
    os.close(fd)
  except OSError as e:
    raise write_failure(path, e, what) from None
  umask = os.umask(0)
  os.umask(umask)
  try:
    yield tmp
    if os.path.exists(tmp):
      os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
    os.replace(tmp, path)
  except Exception as e:  # noqa: BLE001 - only write failures are translated
    failure = write_failure(path, e, what)
    if failure is None:
      raise
    raise failure from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  """Writes `obj` as JSON to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=indent, sort_keys=True)
      f.write("\n")
