"""Parameter dataclasses of the three demo formats, validated on construction.

The fields (defaults filled in) are hashed into the cache folder name (see `cache.ensure`), so
renaming a field or changing a default changes the cache key of every dataset that uses it.
"""
from __future__ import annotations

import dataclasses
from typing import Any


def _check_range(owner: str, name: str, value: Any, positive: bool = True) -> tuple[float, float]:
  """Validates a (low, high) range field, naming it in the error."""
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{owner}.{name}={value!r}: expected a (low, high) pair of numbers.") from e
  if lo > hi or (positive and lo <= 0):
    raise ValueError(f"{owner}.{name}={value!r}: expected 0 < low <= high.")
  return lo, hi


def _check_frame(owner: str, height: int, width: int, fps: float) -> None:
  """Validates frame size and fps, which libx264 / yuv420p must accept."""
  for name, v in (("height", height), ("width", width)):
    if int(v) != v or v < 16 or v % 2:
      raise ValueError(f"{owner}.{name}={v!r}: expected an even integer >= 16 (H.264 yuv420p "
                       "needs even sizes).")
  if fps <= 0:
    raise ValueError(f"{owner}.fps={fps!r}: expected > 0.")


def _freeze(obj: Any) -> None:
  """Turns list-valued fields of a frozen dataclass into tuples (json / CLI give lists)."""
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    if isinstance(v, list):
      object.__setattr__(obj, f.name, tuple(v))


@dataclasses.dataclass(frozen=True)
class KineticsParams:
  """Parameters of the Kinetics-format camera-motion dataset (8 balanced classes).

  Speeds are per second and relative to the frame, so they mean the same thing at any
  resolution and fps: pans in frame widths per second, zooms in natural-log scale per second,
  rotations in degrees per second. `jitter` is per-frame camera shake (std, frame widths).
  """
  seed: int = 0
  train_per_class: int = 48
  validate_per_class: int = 12
  num_frames: int = 32
  fps: float = 25.0
  height: int = 96
  width: int = 128
  pan_speed: tuple[float, float] = (0.2, 0.5)
  zoom_speed: tuple[float, float] = (0.2, 0.5)
  rotate_speed: tuple[float, float] = (40.0, 100.0)
  jitter: float = 0.002
  crf: int = 18

  def __post_init__(self):
    _freeze(self)
    _check_frame("KineticsParams", self.height, self.width, self.fps)
    for name in ("pan_speed", "zoom_speed", "rotate_speed"):
      _check_range("KineticsParams", name, getattr(self, name))
    if self.num_frames < 2:
      raise ValueError(f"KineticsParams.num_frames={self.num_frames}: expected >= 2 (a motion "
                       "needs at least two frames).")
    if self.train_per_class < 0 or self.validate_per_class < 0:
      raise ValueError("KineticsParams.train_per_class / validate_per_class must be >= 0.")
    if self.jitter < 0:
      raise ValueError(f"KineticsParams.jitter={self.jitter}: expected >= 0.")

  def speed_range(self, motion: str) -> tuple[float, float]:
    """Per-frame speed range of `motion` in the units of `motion_matrices`."""
    if motion.startswith("pan"):
      lo, hi = self.pan_speed
      return lo * self.width / self.fps, hi * self.width / self.fps
    lo, hi = self.zoom_speed if motion.startswith("zoom") else self.rotate_speed
    return lo / self.fps, hi / self.fps


@dataclasses.dataclass(frozen=True)
class CoinParams:
  """Parameters of the COIN-format dataset: long videos of labelled camera-motion steps.

  Each video is one photo (its COIN `class`) explored by a camera that alternates static
  stretches (`gap_seconds`, unannotated background) with motion steps (`segment_seconds`, labelled
  with a `MOTIONS` name). Speeds have the units of `KineticsParams` (per second, frame-relative).
  The camera stays within `max_offset` frame widths of its start and within exp(+-`max_log_zoom`)
  of its start zoom, so long videos never leave the photo.
  """
  seed: int = 0
  num_training: int = 24
  num_testing: int = 8
  duration_seconds: tuple[float, float] = (20.0, 40.0)
  segment_seconds: tuple[float, float] = (2.0, 4.0)
  gap_seconds: tuple[float, float] = (1.0, 2.5)
  fps: float = 10.0
  height: int = 96
  width: int = 128
  pan_speed: tuple[float, float] = (0.05, 0.12)
  zoom_speed: tuple[float, float] = (0.05, 0.12)
  rotate_speed: tuple[float, float] = (10.0, 30.0)
  jitter: float = 0.002
  max_offset: float = 0.5
  max_log_zoom: float = 0.5
  crf: int = 18

  def __post_init__(self):
    _freeze(self)
    _check_frame("CoinParams", self.height, self.width, self.fps)
    for name in ("duration_seconds", "segment_seconds", "gap_seconds", "pan_speed",
                 "zoom_speed", "rotate_speed"):
      _check_range("CoinParams", name, getattr(self, name))
    need = self.segment_seconds[1] + 2 * self.gap_seconds[1]
    if self.duration_seconds[0] < need:
      raise ValueError(f"CoinParams.duration_seconds={self.duration_seconds}: the shortest video "
                       f"must fit one step and two gaps ({need:g} s); raise duration_seconds or "
                       "lower segment_seconds / gap_seconds.")
    if min(self.segment_seconds[0], self.gap_seconds[0]) * self.fps < 1:
      raise ValueError("CoinParams: segment_seconds and gap_seconds must last >= 1 frame each "
                       f"at fps={self.fps}.")
    if self.num_training < 0 or self.num_testing < 0 or self.jitter < 0:
      raise ValueError("CoinParams.num_training / num_testing / jitter must be >= 0.")

  def speed(self, motion: str, u: float) -> float:
    """Per-frame speed of `motion` at quantile `u` in [0, 1] of its range."""
    if motion.startswith("pan"):
      lo, hi = self.pan_speed
      k = self.width / self.fps
    else:
      lo, hi = self.zoom_speed if motion.startswith("zoom") else self.rotate_speed
      k = 1.0 / self.fps
    return (lo + u * (hi - lo)) * k


@dataclasses.dataclass(frozen=True)
class WalkingToursParams:
  """Parameters of the WalkingTours-format dataset: long continuous walks, no labels.

  Each walk moves over its own mosaic canvas of `grid` x `grid` photo tiles (crossfaded seams),
  each tile `tile_size` frame widths wide. The camera path is a random walk with momentum:
  smoothly varying heading and speed (mean `speed` frame widths per second), an occasional
  sharp turn (about every `turn_every` s), zoom changes (about every `zoom_every` s, within
  exp(+-`max_log_zoom`)) and a gentle roll sway; it steers away from the canvas edge. No cuts.
  """
  seed: int = 0
  num_walks: int = 2
  length_seconds: float = 300.0
  fps: float = 10.0
  height: int = 64
  width: int = 64
  speed: float = 0.25
  grid: int = 8
  tile_size: float = 4.0
  turn_every: float = 30.0
  zoom_every: float = 20.0
  max_log_zoom: float = 0.35
  crf: int = 18

  def __post_init__(self):
    _freeze(self)
    _check_frame("WalkingToursParams", self.height, self.width, self.fps)
    if self.length_seconds <= 0 or self.num_walks < 0:
      raise ValueError("WalkingToursParams.length_seconds must be > 0 and num_walks >= 0.")
    if self.grid < 2 or self.tile_size <= 0 or self.speed <= 0:
      raise ValueError("WalkingToursParams: need grid >= 2, tile_size > 0 and speed > 0.")

  @property
  def num_frames(self) -> int:
    return int(round(self.length_seconds * self.fps))
