"""The WalkingTours-format dataset: long, unlabelled, continuous camera walks, `walk_*.mp4`.

Each walk films its own mosaic of photos and is streamed to disk frame by frame, so an hour-long
walk never sits in memory.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Iterator

import cv2
import numpy as np

from cv.data.demo.output import X264_OPTIONS
from cv.data.demo.params import WalkingToursParams
from cv.data.demo.textures import texture_bank
from cv.data.writer import write_video

_log = logging.getLogger(__name__)

# Seed-sequence tag; each format has its own (kinetics 101, coin 202, walking tours 303), so the
# three formats never share random streams.
_WALK_TAG = 303
# Walk random draws are made this many frames at a time (part of the generated data: keep fixed).
_WALK_CHUNK = 1024


def _maybe_flip(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  """Mirrors `image` left-right with probability 1/2 (more varied mosaic tiles)."""
  return image[:, ::-1] if rng.random() < 0.5 else image


def _mosaic(rng: np.random.Generator, p: WalkingToursParams) -> np.ndarray:
  """A (grid * tile)^2 RGB canvas of random photo crops with linear crossfades at the seams."""
  tile = int(round(p.tile_size * max(p.height, p.width)))
  feather = max(tile // 8, 1)
  full = tile + 2 * feather
  bank = [t for t in texture_bank() if min(t.image.shape[:2]) >= 0.75 * full] or list(
      texture_bank())
  side = p.grid * tile
  acc = np.zeros((side + 2 * feather, side + 2 * feather, 3), np.float32)
  wsum = np.zeros(acc.shape[:2] + (1,), np.float32)
  ramp = np.minimum(np.arange(full) + 0.5, full - np.arange(full) - 0.5) / (2 * feather)
  ramp = np.clip(ramp, 0.0, 1.0).astype(np.float32)
  weight = (ramp[:, None] * ramp[None, :])[:, :, None]
  order = []
  for r in range(p.grid):
    for c in range(p.grid):
      if not order:
        order = list(rng.permutation(len(bank)))
      tex = bank[order.pop()].image
      th, tw = tex.shape[:2]
      crop_side = int(min(th, tw) * rng.uniform(0.5, 1.0))
      crop_side = max(crop_side, min(th, tw, int(0.75 * full)))
      y0, x0 = int(rng.integers(th - crop_side + 1)), int(rng.integers(tw - crop_side + 1))
      crop = _maybe_flip(rng, tex[y0:y0 + crop_side, x0:x0 + crop_side])
      interp = cv2.INTER_AREA if crop_side > full else cv2.INTER_CUBIC
      patch = cv2.resize(np.ascontiguousarray(crop), (full, full), interpolation=interp)
      acc[r * tile:r * tile + full, c * tile:c * tile + full] += patch * weight
      wsum[r * tile:r * tile + full, c * tile:c * tile + full] += weight
  canvas = acc[feather:feather + side, feather:feather + side] / np.maximum(
      wsum[feather:feather + side, feather:feather + side], 1e-6)
  return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def walk_frames(params: WalkingToursParams, index: int) -> Iterator[np.ndarray]:
  """Yields the [H, W, 3] uint8 frames of walk `index` one by one; deterministic.

  Memory stays bounded for any length: only the mosaic canvas and one chunk of random draws
  (`_WALK_CHUNK` frames, a fixed constant so the path never depends on how it is consumed) are
  held.
  """
  p = params
  rng = np.random.default_rng([p.seed, _WALK_TAG, index])
  canvas = _mosaic(rng, p)
  side = canvas.shape[0]
  fps, n = p.fps, p.num_frames
  h, w = p.height, p.width
  radius = math.hypot(w, h) / 2 * math.exp(p.max_log_zoom) + 2
  lo, hi = radius, side - 1 - radius
  mid = side / 2.0
  soft = 0.5 * (hi - lo) * 0.7  # distance from the center beyond which the walker turns back

  def ou(tau_s: float) -> tuple[float, float]:
    a = math.exp(-1.0 / (tau_s * fps))
    return a, math.sqrt(1 - a * a)

  a_turn, b_turn = ou(2.0)
  a_speed, b_speed = ou(3.0)
  a_roll, b_roll = ou(4.0)
  zoom_alpha = 1 - math.exp(-1.0 / (1.5 * fps))
  v_mean = p.speed * w / fps  # output pixels per frame
  turn_std = math.radians(10.0) / fps  # heading-rate std, rad per frame
  pos = mid + (rng.random(2) - 0.5) * soft
  heading = float(rng.uniform(-math.pi, math.pi))
  omega, speed_z, roll_z = 0.0, 0.0, 0.0
  log_s, log_target = 0.0, 0.0
  turn_left, turn_rate = 0, 0.0
  flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
  origin = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
  for start in range(0, n, _WALK_CHUNK):
    k = min(_WALK_CHUNK, n - start)
    noise = rng.standard_normal((k, 3))
    events = rng.random((k, 2))
    draws = rng.random((k, 4))
    for j in range(k):
      # Heading: smooth random turning + occasional sharp turn + steering away from the edge.
      omega = a_turn * omega + b_turn * turn_std * noise[j, 0]
      if turn_left == 0 and events[j, 0] < 1.0 / (p.turn_every * fps):
        turn_left = max(int((2 + 2 * draws[j, 0]) * fps), 1)
        turn_rate = math.radians(45 + 75 * draws[j, 1]) * (1 if draws[j, 2] < 0.5 else -1)
        turn_rate /= turn_left
      steer = 0.0
      to_mid = mid - pos
      dist = float(np.hypot(*to_mid))
      if dist > soft:
        diff = (math.atan2(to_mid[1], to_mid[0]) - heading + math.pi) % (2 * math.pi) - math.pi
        steer = diff * min((dist - soft) / (0.15 * soft), 1.0) * (2.0 / fps)
      heading += omega + steer + (turn_rate if turn_left else 0.0)
      turn_left = max(turn_left - 1, 0)
      # Speed and zoom.
      speed_z = a_speed * speed_z + b_speed * noise[j, 1]
      v = v_mean * max(1.0 + 0.3 * speed_z, 0.2)
      if events[j, 1] < 1.0 / (p.zoom_every * fps):
        log_target = (draws[j, 3] * 2 - 1) * p.max_log_zoom
      log_s += zoom_alpha * (log_target - log_s)
      scale = math.exp(log_s)
      pos = np.clip(pos + v * scale * np.array([math.cos(heading), math.sin(heading)]), lo, hi)
      roll_z = a_roll * roll_z + b_roll * noise[j, 2]
      th = math.radians(4.0 * roll_z)
      a = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
      m = np.concatenate([a, (pos - a @ origin)[:, None]], axis=1)
      yield cv2.warpAffine(canvas, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT101)


def write_walking_tours(out_dir: str, params: WalkingToursParams) -> None:
  """Writes the WalkingTours-format dataset into `out_dir` (no caching)."""
  os.makedirs(out_dir, exist_ok=True)
  for i in range(params.num_walks):
    t0 = time.time()
    n = write_video(os.path.join(out_dir, f"walk_{i:03d}.mp4"), walk_frames(params, i),
                    params.fps, crf=params.crf, options=X264_OPTIONS)
    dt = time.time() - t0
    _log.info("WalkingTours: walk_%03d.mp4, %d frames in %.1f s (%.0f frames/s).", i, n, dt,
              n / max(dt, 1e-9))
