"""The COIN-format dataset: long videos of labelled camera-motion steps, `COIN.json` + mp4s.

Each video films one photo (its COIN class) with a camera that alternates static stretches
(background) and motion steps labelled with `MOTIONS` names, kept class-balanced.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Iterator

import numpy as np

from cv.data.demo.camera import MAX_BASE_ANGLE
from cv.data.demo.camera import MAX_PAN_DRIFT
from cv.data.demo.camera import MOTIONS
from cv.data.demo.camera import PAN_DIRECTIONS
from cv.data.demo.camera import camera_matrices
from cv.data.demo.camera import fit_offset
from cv.data.demo.camera import footprint_box
from cv.data.demo.camera import photometric
from cv.data.demo.camera import place_matrices
from cv.data.demo.camera import render_frames
from cv.data.demo.output import X264_OPTIONS
from cv.data.demo.output import youtube_id
from cv.data.demo.params import CoinParams
from cv.data.demo.textures import MIN_TEXTURE_SCALE
from cv.data.demo.textures import no_texture_error
from cv.data.demo.textures import texture_bank
from cv.data.demo.textures import texture_image
from cv.data.demo.textures import texture_pool
from cv.data.writer import write_video
from cv.lib import fileio

COIN_SUBSETS: tuple[str, ...] = ("training", "testing")
# Same-family opposite of each motion: the first fallback when a step would leave the bounds.
_OPPOSITE = {"pan_left": "pan_right", "pan_right": "pan_left", "pan_up": "pan_down",
             "pan_down": "pan_up", "zoom_in": "zoom_out", "zoom_out": "zoom_in",
             "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}
# Seed-sequence tag; each format has its own (kinetics 101, coin 202, walking tours 303), so the
# three formats never share random streams.
_COIN_TAG = 202


@dataclasses.dataclass(frozen=True)
class CoinVideo:
  """One generated COIN video: its database entry plus what is needed to render it."""
  video_id: str
  subset: str
  texture: str
  group: str
  recipe_type: int
  num_frames: int
  steps: tuple[tuple[int, int, str], ...]  # (start frame, end frame, motion); frames inclusive
  flipped: bool
  matrices: np.ndarray
  gain: float
  bias: float

  def entry(self, fps: float) -> dict[str, Any]:
    """The COIN.json database entry of this video."""
    return {
        "subset": self.subset,
        "recipe_type": self.recipe_type,
        "class": self.group,
        "duration": round(self.num_frames / fps, 6),
        "video_url": "",
        "annotation": [{"id": str(MOTIONS.index(m)),
                        "segment": [round(a / fps, 6), round(b / fps, 6)],
                        "label": m} for a, b, m in self.steps],
    }


def _coin_path(p: CoinParams, rng: np.random.Generator
               ) -> tuple[int, tuple[tuple[int, int, str], ...], np.ndarray]:
  """Random step timeline and per-frame camera states (relative units: output pixels)."""
  n = int(round(rng.uniform(*p.duration_seconds) * p.fps))

  def frames(seconds_range: tuple[float, float]) -> int:
    return max(int(round(rng.uniform(*seconds_range) * p.fps)), 1)

  center, log_s = np.zeros(2), 0.0
  angle = float(rng.uniform(-MAX_BASE_ANGLE, MAX_BASE_ANGLE))
  centers, log_scales, angles = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
  steps, f = [], frames(p.gap_seconds)
  centers[:f + 1], angles[:f + 1] = center, angle
  max_offset = p.max_offset * p.width
  while True:
    seg, gap = frames(p.segment_seconds), frames(p.gap_seconds)
    if f + seg + gap > n - 1:
      if steps:
        break
      seg = max(n - 1 - f - gap, 1)  # rounding left no room: shorten the first (only) step
    u, drift = float(rng.random()), float(rng.uniform(-MAX_PAN_DRIFT, MAX_PAN_DRIFT))
    wanted = MOTIONS[int(rng.integers(len(MOTIONS)))]
    fallback = int(rng.integers(len(MOTIONS)))
    # Per-frame increments of each candidate motion; keep those that stay inside the bounds.
    options = {}
    for motion in MOTIONS:
      v = p.speed(motion, u)
      d_center, d_log, d_angle = np.zeros(2), 0.0, 0.0
      if motion in PAN_DIRECTIONS:
        dx, dy = PAN_DIRECTIONS[motion]
        th = math.radians(angle)
        cam = v * math.exp(log_s) * np.array([dx - drift * dy, dy + drift * dx])
        d_center = np.array([math.cos(th) * cam[0] - math.sin(th) * cam[1],
                             math.sin(th) * cam[0] + math.cos(th) * cam[1]])
      elif motion.startswith("zoom"):
        d_log = -v if motion == "zoom_in" else v
      else:
        d_angle = v if motion == "rotate_cw" else -v
      if (np.linalg.norm(center + seg * d_center) <= max_offset
          and abs(log_s + seg * d_log) <= p.max_log_zoom):
        options[motion] = (d_center, d_log, d_angle)
    # Keep classes balanced: take the wanted motion, else its opposite (same family, so the
    # family frequencies stay uniform), else any motion that fits (rotations always do).
    if wanted not in options:
      wanted = _OPPOSITE[wanted]
      if wanted not in options:
        wanted = list(options)[fallback % len(options)]
    motion = wanted
    d_center, d_log, d_angle = options[motion]
    k = np.arange(1, seg + 1, dtype=np.float64)
    centers[f + 1:f + seg + 1] = center + k[:, None] * d_center
    log_scales[f + 1:f + seg + 1] = log_s + k * d_log
    angles[f + 1:f + seg + 1] = angle + k * d_angle
    steps.append((f, f + seg, motion))
    center, log_s, angle = center + seg * d_center, log_s + seg * d_log, angle + seg * d_angle
    f += seg
    end = min(f + gap, n - 1)
    centers[f + 1:end + 1], log_scales[f + 1:end + 1], angles[f + 1:end + 1] = (
        center, log_s, angle)
    f = end
  centers[f + 1:], log_scales[f + 1:], angles[f + 1:] = center, log_s, angle
  # Camera shake (not accumulated) in the camera frame.
  shake = np.clip(rng.normal(0.0, p.jitter * p.width, (n, 2)),
                  -4 * p.jitter * p.width, 4 * p.jitter * p.width)
  th = np.deg2rad(angles)
  scales = np.exp(log_scales)
  centers = centers + scales[:, None] * np.stack(
      [np.cos(th) * shake[:, 0] - np.sin(th) * shake[:, 1],
       np.sin(th) * shake[:, 0] + np.cos(th) * shake[:, 1]], -1)
  return n, tuple(steps), camera_matrices(centers, scales, angles, (p.height, p.width))


def coin_videos(params: CoinParams, subset: str) -> list[CoinVideo]:
  """All videos of one COIN subset (`training` or `testing`); deterministic."""
  if subset not in COIN_SUBSETS:
    raise ValueError(f"coin_videos: subset {subset!r} is not one of {COIN_SUBSETS}.")
  p = params
  size = (p.height, p.width)
  # Worst case footprint: any offset within max_offset, any roll, largest zoom-out.
  radius = (p.max_offset * p.width + math.hypot(p.width, p.height) / 2 * math.exp(p.max_log_zoom)
            + 4 * p.jitter * p.width * math.exp(p.max_log_zoom))
  split = "train" if subset == "training" else "validate"
  pool = texture_pool(split, np.array([2 * radius + 2, 2 * radius + 2]))
  if not pool:
    raise no_texture_error("CoinParams", split, size)
  groups = sorted({t.group for t in texture_bank()})
  count = p.num_training if subset == "training" else p.num_testing
  videos, ids = [], set()
  for i in range(count):
    rng = np.random.default_rng([p.seed, _COIN_TAG, COIN_SUBSETS.index(subset), i])
    n, steps, rel = _coin_path(p, rng)
    tex, _ = pool[int(rng.integers(len(pool)))]
    flipped = bool(rng.random() < 0.5)
    box = footprint_box(rel, size)
    ext = box[2:] - box[:2] + 2
    th, tw = tex.image.shape[:2]
    s_max = min((tw - 3) / ext[0], (th - 3) / ext[1])
    scale = s_max * math.exp(rng.uniform(math.log(max(0.5, MIN_TEXTURE_SCALE / s_max)), 0))
    offset = fit_offset(rng, box, scale, (th, tw))
    gain, bias = photometric(rng)
    salt = 0
    while (vid := youtube_id(p.seed, "coin", subset, i, salt)) in ids:
      salt += 1
    ids.add(vid)
    videos.append(CoinVideo(
        video_id=vid, subset=subset, texture=tex.name, group=tex.group,
        recipe_type=groups.index(tex.group), num_frames=n, steps=steps, flipped=flipped,
        matrices=place_matrices(rel, scale, offset), gain=gain, bias=bias))
  return videos


def coin_video_frames(params: CoinParams, video: CoinVideo) -> Iterator[np.ndarray]:
  """Renders the frames of one COIN video (what gets encoded into its mp4)."""
  return render_frames(texture_image(video.texture, video.flipped), video.matrices,
                       (params.height, params.width), gain=video.gain, bias=video.bias)


def write_coin(out_dir: str, params: CoinParams) -> None:
  """Writes the COIN-format dataset into `out_dir` (no caching; see `ensure_coin`)."""
  database = {}
  for subset in COIN_SUBSETS:
    for video in coin_videos(params, subset):
      write_video(os.path.join(out_dir, "videos", f"{video.video_id}.mp4"),
                  coin_video_frames(params, video), params.fps, crf=params.crf,
                  options=X264_OPTIONS)
      database[video.video_id] = video.entry(params.fps)
  os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
  fileio.write_json(os.path.join(out_dir, "COIN.json"), {"database": database})
