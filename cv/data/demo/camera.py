"""The virtual camera: camera matrices, the motion classes and rendering frames from a texture.

A camera state (center, scale, angle) on a texture becomes a 2x3 affine map from output pixels to
texture pixels; the package docstring (`cv.data.demo`) states the conventions and what each of
`MOTIONS` does. Every dataset format renders its frames through these functions, so they define
what the generated pixels are.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import cv2
import numpy as np

MOTIONS: tuple[str, ...] = ("pan_left", "pan_right", "pan_up", "pan_down", "zoom_in",
                            "zoom_out", "rotate_cw", "rotate_ccw")

# Pan directions in the camera frame (x right, y down): where the camera moves.
PAN_DIRECTIONS = {"pan_left": (-1.0, 0.0), "pan_right": (1.0, 0.0),
                  "pan_up": (0.0, -1.0), "pan_down": (0.0, 1.0)}
# Random camera roll at the clip middle, for every class (so the angle tells nothing).
MAX_BASE_ANGLE = 15.0
# Largest sideways drift of a pan, as a fraction of its speed.
MAX_PAN_DRIFT = 0.3


def camera_matrices(centers: np.ndarray, scales: np.ndarray, angles_deg: np.ndarray,
                    frame_size: tuple[int, int]) -> np.ndarray:
  """Per-frame camera states -> [T, 2, 3] affine maps from output pixels to texture pixels.

  Args:
    centers: [T, 2] texture (x, y) seen at the frame center.
    scales: [T] texture pixels per output pixel (smaller = zoomed in).
    angles_deg: [T] camera roll in degrees; positive rolls the camera clockwise on screen.
    frame_size: (height, width) of the output frames.

  Returns:
    float64 [T, 2, 3]; use with `cv2.warpAffine(texture, m, (w, h), flags=WARP_INVERSE_MAP)`.
  """
  h, w = frame_size
  centers = np.asarray(centers, np.float64).reshape(-1, 2)
  scales = np.asarray(scales, np.float64).reshape(-1)
  theta = np.deg2rad(np.asarray(angles_deg, np.float64).reshape(-1))
  cos, sin = np.cos(theta) * scales, np.sin(theta) * scales
  a = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # [T, 2, 2]
  origin = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
  t = centers - a @ origin
  return np.concatenate([a, t[:, :, None]], axis=2)


def matrix_scale(matrices: np.ndarray) -> np.ndarray:
  """Texture pixels per output pixel of each [.., 2, 3] camera matrix (sqrt of |det|)."""
  m = np.asarray(matrices)
  return np.sqrt(np.abs(m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]))


def matrix_angle(matrices: np.ndarray) -> np.ndarray:
  """Camera roll in degrees of each [.., 2, 3] camera matrix (positive = clockwise on screen)."""
  m = np.asarray(matrices)
  return np.rad2deg(np.arctan2(m[..., 1, 0], m[..., 0, 0]))


def motion_matrices(motion: str, num_frames: int, frame_size: tuple[int, int], *, speed: float,
                    center: Sequence[float] = (0.0, 0.0), scale: float = 1.0,
                    angle: float = 0.0, drift: float = 0.0,
                    jitter: np.ndarray | None = None) -> np.ndarray:
  """Camera matrices of one motion class; pure function (no randomness inside).

  The motion is symmetric about the middle of the clip, where the camera is exactly at
  (center, scale, angle); so the middle frame's state is class-independent.

  Args:
    motion: One of `MOTIONS` (see the module docstring for the sign conventions).
    num_frames: T.
    frame_size: (height, width) of the output frames.
    speed: Per-frame speed, > 0. Pans: output pixels per frame; zooms: natural-log scale per
      frame; rotations: degrees per frame.
    center: Texture (x, y) at the frame center in the middle of the clip.
    scale: Texture pixels per output pixel in the middle of the clip.
    angle: Camera roll (degrees) in the middle of the clip.
    drift: Pans only: sideways component as a fraction of `speed` (perpendicular, in the camera
      frame), so pans are not perfectly axis-aligned.
    jitter: Optional [T, 2] per-frame camera shake, in output pixels (camera frame).

  Returns:
    float64 [T, 2, 3] maps from output pixels to texture pixels (see `camera_matrices`).
  """
  if motion not in MOTIONS:
    raise ValueError(f"motion_matrices: unknown motion {motion!r}; expected one of {MOTIONS}.")
  t = np.arange(num_frames, dtype=np.float64) - (num_frames - 1) / 2.0
  log_s = np.full(num_frames, math.log(scale))
  angles = np.full(num_frames, float(angle))
  disp = np.zeros((num_frames, 2))  # camera-frame displacement in output pixels
  if motion in PAN_DIRECTIONS:
    dx, dy = PAN_DIRECTIONS[motion]
    direction = np.array([dx - drift * dy, dy + drift * dx])
    disp = t[:, None] * speed * direction[None, :]
  elif motion == "zoom_in":
    log_s = log_s - speed * t
  elif motion == "zoom_out":
    log_s = log_s + speed * t
  elif motion == "rotate_cw":
    angles = angles + speed * t
  else:  # rotate_ccw
    angles = angles - speed * t
  if jitter is not None:
    disp = disp + np.asarray(jitter, np.float64).reshape(num_frames, 2)
  scales = np.exp(log_s)
  theta = np.deg2rad(angles)
  rot_disp = np.stack([np.cos(theta) * disp[:, 0] - np.sin(theta) * disp[:, 1],
                       np.sin(theta) * disp[:, 0] + np.cos(theta) * disp[:, 1]], -1)
  centers = np.asarray(center, np.float64)[None, :] + scales[:, None] * rot_disp
  return camera_matrices(centers, scales, angles, frame_size)


def footprint_box(matrices: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
  """[x0, y0, x1, y1]: texture-space bounding box of all frame corners of all matrices."""
  h, w = frame_size
  corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64)
  pts = np.einsum("tij,kj->tki", matrices, corners).reshape(-1, 2)
  return np.concatenate([pts.min(0), pts.max(0)])


def place_matrices(matrices: np.ndarray, scale: float, offset: np.ndarray) -> np.ndarray:
  """Scales relative matrices (texture units of output pixels) by `scale`, then shifts them."""
  out = matrices * scale
  out[:, :, 2] += offset
  return out


def fit_offset(rng: np.random.Generator, rel_box: np.ndarray, scale: float,
               tex_hw: tuple[int, int]) -> np.ndarray:
  """Random translation putting the scaled box inside the texture (1-px safety border)."""
  lo = 1.0 - rel_box[:2] * scale
  hi = np.array([tex_hw[1], tex_hw[0]], np.float64) - 2.0 - rel_box[2:] * scale
  if np.any(hi < lo):
    raise RuntimeError(f"cv.data.demo bug: camera path does not fit texture {tex_hw} at scale "
                       f"{scale:.3f}; please report it with the params used.")
  return lo + rng.random(2) * (hi - lo)


def render_frames(image: np.ndarray, matrices: np.ndarray, frame_size: tuple[int, int], *,
                  gain: float = 1.0, bias: float = 0.0) -> Iterator[np.ndarray]:
  """Yields [H, W, 3] uint8 frames seen by the camera `matrices` over `image`.

  To avoid aliasing when the camera sees the texture minified (scale > 1), the part of the
  texture the camera ever sees is first downsampled with area averaging to about scale 1; then
  every frame is a bilinear `cv2.warpAffine`. `gain`/`bias` apply a photometric change
  (saturating), like a different exposure.
  """
  h, w = frame_size
  matrices = np.asarray(matrices, np.float64)
  min_scale = float(matrix_scale(matrices).min())
  if min_scale > 1.25:
    box = footprint_box(matrices, frame_size)
    x0, y0 = (max(int(v) - 4, 0) for v in box[:2])
    x1 = min(int(math.ceil(box[2])) + 5, image.shape[1])
    y1 = min(int(math.ceil(box[3])) + 5, image.shape[0])
    crop = image[y0:y1, x0:x1]
    size = (max(int(round(crop.shape[1] / min_scale)), 1),
            max(int(round(crop.shape[0] / min_scale)), 1))
    image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    rx, ry = crop.shape[1] / size[0], crop.shape[0] / size[1]
    # Texture x -> resized x: (x - x0 + 0.5) / rx - 0.5.
    matrices = matrices.copy()
    matrices[:, 0, :] /= rx
    matrices[:, 1, :] /= ry
    matrices[:, 0, 2] += (0.5 - x0) / rx - 0.5
    matrices[:, 1, 2] += (0.5 - y0) / ry - 0.5
  image = np.ascontiguousarray(image)
  flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
  for m in matrices:
    frame = cv2.warpAffine(image, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT101)
    if gain != 1.0 or bias != 0.0:
      frame = cv2.convertScaleAbs(frame, alpha=gain, beta=bias)  # saturating; gain, bias >= 0
    yield frame


def photometric(rng: np.random.Generator) -> tuple[float, float]:
  """Per-video exposure change: gain in [0.85, 1.15], bias in [0, 12] (bias >= 0 keeps >= 0)."""
  return float(rng.uniform(0.85, 1.15)), float(rng.uniform(0.0, 12.0))
