"""Spatial transforms for decoded clips: short-side resize and center / random crops.

Why this module exists: videos come in every size and aspect ratio, while a batch needs one
fixed shape. The standard recipe is to resize the short side (keeping the aspect ratio) and then
crop a square: randomly for training (augmentation), centrally for evaluation (determinism).
All functions take and return uint8 [T, H, W, C] numpy arrays and apply the same geometry to
every frame of the clip, so motion stays consistent.
"""
from __future__ import annotations

import cv2
import numpy as np


def _check_clip(frames: np.ndarray, name: str) -> None:
  """Raises ValueError unless `frames` is a [T, H, W, C] array."""
  if not isinstance(frames, np.ndarray) or frames.ndim != 4:
    shape = getattr(frames, "shape", None)
    raise ValueError(f"{name}: expected frames as a [T, H, W, C] numpy array, got shape {shape}; "
                     "stack single images with frames[None]")


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
  """Resizes every frame so its short side is `size`, keeping the aspect ratio (rounded).

  Uses cv2.INTER_AREA when shrinking (no aliasing) and cv2.INTER_LINEAR when growing. Returns
  `frames` unchanged if the short side already equals `size`.
  """
  _check_clip(frames, "resize_short_side")
  if size < 1:
    raise ValueError(f"resize_short_side: size must be >= 1, got {size}")
  t, h, w, c = frames.shape
  if min(h, w) == size:
    return frames
  if h <= w:
    new_h, new_w = size, max(1, int(w * size / h + 0.5))
  else:
    new_h, new_w = max(1, int(h * size / w + 0.5)), size
  interpolation = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
  out = np.empty((t, new_h, new_w, c), frames.dtype)
  for i in range(t):
    resized = cv2.resize(frames[i], (new_w, new_h), interpolation=interpolation)
    out[i] = resized.reshape(new_h, new_w, c)  # cv2 drops a trailing channel axis of size 1.
  return out


def _check_crop(frames: np.ndarray, height: int, width: int, name: str) -> None:
  """Raises ValueError if the crop is invalid or larger than the frames."""
  _check_clip(frames, name)
  if height < 1 or width < 1:
    raise ValueError(f"{name}: crop size must be >= 1, got {height}x{width}")
  h, w = frames.shape[1:3]
  if h < height or w < width:
    raise ValueError(f"{name}: frames are {h}x{w} (HxW), smaller than the {height}x{width} crop; "
                     "resize first (resize_short_side to at least the crop size) or lower the "
                     "crop size")


def center_crop(frames: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
  """Crops the central `height` x `width` window (square if width is None) of every frame."""
  width = height if width is None else width
  _check_crop(frames, height, width, "center_crop")
  h, w = frames.shape[1:3]
  top, left = (h - height) // 2, (w - width) // 2
  return frames[:, top:top + height, left:left + width]


def crop_at(frames: np.ndarray, size: int, pos: float) -> np.ndarray:
  """Crops a `size` x `size` window placed at fraction `pos` (0 = top/left, 0.5 = centre,
  1 = bottom/right) of the free range along both axes: evaluation views spread crops this way."""
  _check_crop(frames, size, size, "crop_at")
  h, w = frames.shape[1:3]
  top, left = int(round(pos * (h - size))), int(round(pos * (w - size)))
  return frames[:, top:top + size, left:left + size]


def random_crop(frames: np.ndarray, height: int, width: int | None,
                rng: np.random.Generator) -> np.ndarray:
  """Crops one uniformly random `height` x `width` window (square if None), same for all frames."""
  width = height if width is None else width
  _check_crop(frames, height, width, "random_crop")
  h, w = frames.shape[1:3]
  top = int(rng.integers(0, h - height + 1))
  left = int(rng.integers(0, w - width + 1))
  return frames[:, top:top + height, left:left + width]


def resize_and_crop(frames: np.ndarray, *, short_side: int, crop: int, train: bool,
                    rng: np.random.Generator | None = None, pos: float | None = None) -> np.ndarray:
  """Resizes the short side to `short_side`, then crops `crop` x `crop`.

  The crop is random when `train` (needs `rng`), at fraction `pos` of the free range when given
  (evaluation views), and central otherwise.
  """
  if crop > short_side:
    raise ValueError(f"resize_and_crop: crop {crop} is larger than short_side {short_side}; "
                     "set the crop size <= the resize size in the data config")
  frames = resize_short_side(frames, short_side)
  if train:
    if rng is None:
      raise ValueError("resize_and_crop: train=True needs rng=np.random.default_rng(seed)")
    return random_crop(frames, crop, crop, rng)
  if pos is not None:
    return crop_at(frames, crop, pos)
  return center_crop(frames, crop, crop)
