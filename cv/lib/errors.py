"""Errors a user can act on. `cv.main` prints them without a traceback."""


class UserError(Exception):
  """Base class: the message names the cause and the fix."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (the message names the key)."""


class NonFiniteError(UserError, FloatingPointError):
  """Loss or gradients became NaN/Inf; training stopped, the last good checkpoint is kept."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint that cannot be restored into this run (the message says how to proceed)."""
