"""Errors a user can act on. `cv.main` prints them without a traceback."""


class UserError(Exception):
  """Base class: the message names the cause and the fix."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (the message names the key)."""


class NonFiniteError(UserError, FloatingPointError):
  """Loss or gradients became NaN/Inf; training stopped, the last good checkpoint is kept."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint that cannot be restored into this run (the message says how to proceed)."""


class NoCheckpointError(CheckpointError):
  """Every checkpoint of a run is unreadable (each was moved aside, none deleted)."""
  exit_code = 2


class WriteError(UserError, OSError):
  """A file or checkpoint could not be written (full disk, permissions): what was written before
  is untouched; the message names the path and the cause."""


class Preempted(SystemExit):
  """Work stopped on SIGTERM / Ctrl-C after saving what it had (the training loop: a checkpoint
  of the current step, `step`; the dataset encoder: the finished shards).

  A `SystemExit` with status 0: the process ends cleanly (no traceback; the message was printed)
  and re-running the same command resumes."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(0)
    self.message, self.step = message, step
