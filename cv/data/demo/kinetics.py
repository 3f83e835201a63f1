"""The Kinetics-format dataset: short camera-motion clips, `{split}.csv` + `{split}/*.mp4`.

Each clip films one texture with one of the `MOTIONS`, which is its label; the crop scale is
chosen independently of the class so that a single frame does not reveal the label.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Iterator

import numpy as np

from cv.data.demo.camera import MAX_BASE_ANGLE
from cv.data.demo.camera import MAX_PAN_DRIFT
from cv.data.demo.camera import MOTIONS
from cv.data.demo.camera import fit_offset
from cv.data.demo.camera import footprint_box
from cv.data.demo.camera import motion_matrices
from cv.data.demo.camera import photometric
from cv.data.demo.camera import place_matrices
from cv.data.demo.camera import render_frames
from cv.data.demo.output import X264_OPTIONS
from cv.data.demo.output import youtube_id
from cv.data.demo.params import KineticsParams
from cv.data.demo.textures import MIN_TEXTURE_SCALE
from cv.data.demo.textures import no_texture_error
from cv.data.demo.textures import texture_image
from cv.data.demo.textures import texture_pool
from cv.data.writer import write_video
from cv.lib import fileio

KINETICS_HEADER: tuple[str, ...] = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_SPLITS: tuple[str, ...] = ("train", "validate")
# Seed-sequence tag; each format has its own (kinetics 101, coin 202, walking tours 303), so the
# three formats never share random streams.
_KINETICS_TAG = 101


@dataclasses.dataclass(frozen=True)
class KineticsClip:
  """One generated clip: annotation row plus everything needed to render it."""
  label: str
  youtube_id: str
  time_start: int
  time_end: int
  split: str
  texture: str
  flipped: bool
  matrices: np.ndarray  # [T, 2, 3], texture pixels of the (possibly flipped) texture
  gain: float
  bias: float

  @property
  def filename(self) -> str:
    return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}.mp4"


def _kinetics_reference_extent(p: KineticsParams) -> np.ndarray:
  """Worst-case (x, y) footprint in output pixels over all classes at the top speeds.

  Used to pick the crop scale independently of the class (a rotation clip must not look more
  zoomed-in than a pan clip, or one frame would reveal the label).
  """
  size = (p.height, p.width)
  ext = np.zeros(2)
  for motion in MOTIONS:
    speed = p.speed_range(motion)[1]
    for angle in np.linspace(-MAX_BASE_ANGLE, MAX_BASE_ANGLE, 7):
      for drift in (-MAX_PAN_DRIFT, MAX_PAN_DRIFT):
        m = motion_matrices(motion, p.num_frames, size, speed=speed, angle=angle, drift=drift)
        box = footprint_box(m, size)
        ext = np.maximum(ext, box[2:] - box[:2])
  return ext + 2 * 4 * p.jitter * p.width + 2  # +-4 sigma shake, +1 px each side


def kinetics_clips(params: KineticsParams, split: str) -> list[KineticsClip]:
  """All clips of one split (`train` or `validate`), in class order; deterministic."""
  if split not in KINETICS_SPLITS:
    raise ValueError(f"kinetics_clips: split {split!r} is not one of {KINETICS_SPLITS}.")
  p = params
  size = (p.height, p.width)
  pool = texture_pool(split, _kinetics_reference_extent(p))
  if not pool:
    raise no_texture_error("KineticsParams", split, size)
  per_class = p.train_per_class if split == "train" else p.validate_per_class
  split_idx = KINETICS_SPLITS.index(split)
  clip_seconds = math.ceil(p.num_frames / p.fps - 1e-9)
  clips, ids = [], set()
  for c, motion in enumerate(MOTIONS):
    for i in range(per_class):
      rng = np.random.default_rng([p.seed, _KINETICS_TAG, split_idx, c, i])
      tex, s_ref = pool[int(rng.integers(len(pool)))]
      flipped = bool(rng.random() < 0.5)
      lo, hi = p.speed_range(motion)
      speed = float(rng.uniform(lo, hi))
      angle = float(rng.uniform(-MAX_BASE_ANGLE, MAX_BASE_ANGLE))
      drift = float(rng.uniform(-MAX_PAN_DRIFT, MAX_PAN_DRIFT))
      jitter = np.clip(rng.normal(0.0, p.jitter * p.width, (p.num_frames, 2)),
                       -4 * p.jitter * p.width, 4 * p.jitter * p.width)
      # Crop: 30%..100% (log-uniform, linear size) of the largest region the path fits in.
      scale = s_ref * math.exp(rng.uniform(math.log(max(0.3, MIN_TEXTURE_SCALE / s_ref)), 0))
      rel = motion_matrices(motion, p.num_frames, size, speed=speed, angle=angle, drift=drift,
                            jitter=jitter)
      box = footprint_box(rel, size)
      th, tw = tex.image.shape[:2]
      # The reference extent is sampled at a few angles/drifts: clamp in case this path is wider.
      scale = min(scale, (tw - 3) / (box[2] - box[0]), (th - 3) / (box[3] - box[1]))
      offset = fit_offset(rng, box, scale, (th, tw))
      gain, bias = photometric(rng)
      time_start = int(rng.integers(0, 600))
      salt = 0
      while (yid := youtube_id(p.seed, "kinetics", split, c, i, salt)) in ids:
        salt += 1
      ids.add(yid)
      clips.append(KineticsClip(
          label=motion, youtube_id=yid, time_start=time_start,
          time_end=time_start + clip_seconds, split=split, texture=tex.name, flipped=flipped,
          matrices=place_matrices(rel, scale, offset), gain=gain, bias=bias))
  return clips


def kinetics_clip_frames(params: KineticsParams, clip: KineticsClip) -> Iterator[np.ndarray]:
  """Renders the frames of one clip (what gets encoded into its mp4)."""
  return render_frames(texture_image(clip.texture, clip.flipped), clip.matrices,
                       (params.height, params.width), gain=clip.gain, bias=clip.bias)


def write_kinetics(out_dir: str, params: KineticsParams) -> None:
  """Writes the Kinetics-format dataset into `out_dir` (no caching; see `ensure_kinetics`)."""
  for split in KINETICS_SPLITS:
    clips = kinetics_clips(params, split)
    for clip in clips:
      write_video(os.path.join(out_dir, split, clip.filename),
                  kinetics_clip_frames(params, clip), params.fps, crf=params.crf,
                  options=X264_OPTIONS)
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    rows = sorted(clips, key=lambda cl: (cl.label, cl.youtube_id))
    with fileio.atomic_path(os.path.join(out_dir, f"{split}.csv")) as tmp:
      with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(KINETICS_HEADER)
        for cl in rows:
          writer.writerow([cl.label, cl.youtube_id, cl.time_start, cl.time_end, cl.split])
