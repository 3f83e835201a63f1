"""Keeps TensorFlow's start-up lines off stderr, so that a run's stderr holds our messages only.

clu's metric writers import TensorFlow. When it loads, TensorFlow 2.21 prints INFO lines through
absl's C++ logging (oneDNN on CPUs that have it, CPU feature notes, each with an absl preamble)
that `TF_CPP_MIN_LOG_LEVEL` alone does not silence; `cv` computes nothing with TensorFlow, so its
oneDNN kernels are switched off as well. Call before TensorFlow is imported; values the user set
win.
"""
from __future__ import annotations

import os


def quiet_tensorflow() -> None:
  """Defaults TF_CPP_MIN_LOG_LEVEL=2 and TF_ENABLE_ONEDNN_OPTS=0 in this process's environment."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
