"""A virtual camera that films a photo the way real footage moves and looks.

A clip is one or more *shots* (a cut starts a new shot, often on another photo). Within a shot
the camera combines a pan (static, slow or fast), a zoom, a slow roll, hand-held shake (a smooth
random walk in position and angle), an exposure / white-balance drift (fades), and optical
effects: motion blur along the pan, defocus, and sensor noise. The scale (photo pixels per frame
pixel) is drawn log-uniformly between slight upsampling and the widest view the photo allows, so
each photo is seen at several scales: the full view of a 2048-px photo and its native detail.

Everything is a pure function of a `numpy.random.Generator` and the photo, so a corpus is
reproducible from its seed. Geometry reuses the demo camera (`cv.data.demo.camera`): a camera
state (center, scale, angle) maps output pixels to photo pixels.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from cv.data.demo import camera as demo_camera

# Smallest scale (photo px per frame px): 1/0.7 = 1.43x upsampling at most (soft footage).
MIN_SCALE = 0.7


@dataclasses.dataclass(frozen=True)
class Shot:
  """One continuous shot of a photo: everything needed to render its frames (JSON-friendly)."""
  photo: int            # index into the corpus's photo list
  num_frames: int
  matrices: tuple       # [T][2][3] photo px <- frame px maps
  gains: tuple          # [T][3] per-channel gain (exposure x white balance)
  bias: float           # added after the gain (lift), in 8-bit levels
  motion_blur: tuple    # (length px, angle deg) or () for none; along the pan
  defocus: tuple        # [T] Gaussian sigma in px (0 = sharp), or () for none
  noise: float          # std of Gaussian sensor noise in 8-bit levels (0 = none)


def _smooth_walk(rng: np.random.Generator, n: int, dims: int, amplitude: float,
                 smoothness: float) -> np.ndarray:
  """[n, dims] hand-held shake: AR(1)-filtered white noise scaled to std `amplitude`."""
  if amplitude <= 0 or n < 2:
    return np.zeros((n, dims))
  noise = rng.standard_normal((n + 16, dims))
  out = np.zeros_like(noise)
  for t in range(1, len(noise)):
    out[t] = smoothness * out[t - 1] + noise[t]
  out = out[16:]
  out -= out.mean(0, keepdims=True)
  std = out.std()
  return out * (amplitude / std) if std > 0 else out


def _path(rng: np.random.Generator, n: int, frame: tuple[int, int]):
  """Relative camera path of a shot: (disp [n,2] frame px, log-scale [n], angle [n] deg, speed)."""
  t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
  kind = rng.choice(4, p=[0.2, 0.4, 0.3, 0.1])  # static, slow, fast, very fast pan
  speed = (0.0, rng.uniform(0.3, 2.0), rng.uniform(2.0, 6.0), rng.uniform(6.0, 14.0))[kind]
  direction = rng.uniform(0, 2 * math.pi)
  velocity = speed * np.array([math.cos(direction), math.sin(direction)])
  disp = t[:, None] * velocity[None, :]
  # Pans often ease in / out (a curved path): add a small quadratic term.
  disp += (t[:, None] ** 2) * rng.normal(0, 0.02, 2)[None, :] * (speed > 0)
  log_s = np.zeros(n)
  if rng.random() < 0.3:
    log_s = t * rng.choice([-1.0, 1.0]) * rng.uniform(0.004, 0.03)
  angle = np.full(n, float(np.clip(rng.normal(0, 3.0), -10, 10)))
  if rng.random() < 0.2:
    angle = angle + t * rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 1.0)
  if rng.random() < 0.6:  # hand-held
    amp = rng.uniform(0.3, 3.0) * min(frame) / 128.0
    disp = disp + _smooth_walk(rng, n, 2, amp, rng.uniform(0.5, 0.9))
    angle = angle + _smooth_walk(rng, n, 1, rng.uniform(0.05, 0.5), 0.8)[:, 0]
  return disp, log_s, angle, speed, math.degrees(direction)


def _matrices(disp, log_s, angle, scale: float, frame: tuple[int, int]) -> np.ndarray:
  """Camera maps with the middle frame at `scale` and the photo origin at the path's center."""
  scales = scale * np.exp(log_s)
  theta = np.deg2rad(angle)
  rot = np.stack([np.cos(theta) * disp[:, 0] - np.sin(theta) * disp[:, 1],
                  np.sin(theta) * disp[:, 0] + np.cos(theta) * disp[:, 1]], -1)
  centers = scales[:, None] * rot
  return demo_camera.camera_matrices(centers, scales, angle, frame)


def plan_shot(rng: np.random.Generator, photo_index: int, photo_hw: tuple[int, int],
              num_frames: int, frame: tuple[int, int]) -> Shot:
  """Draws one shot of `num_frames` frames of size `frame` (h, w) over a photo of `photo_hw`."""
  ph, pw = photo_hw
  disp, log_s, angle, speed, direction = _path(rng, num_frames, frame)
  rel = _matrices(disp, log_s, angle, 1.0, frame)
  box = demo_camera.footprint_box(rel, frame)  # at scale 1, centered on 0
  extent = np.maximum(box[2:] - box[:2], 1.0)
  s_max = min((pw - 4) / extent[0], (ph - 4) / extent[1])
  for _ in range(12):  # the motion is too wide for this photo: calm it down until it fits
    if s_max >= MIN_SCALE:
      break
    disp, log_s, angle = disp * 0.5, log_s * 0.5, angle * 0.5
    speed *= 0.5
    rel = _matrices(disp, log_s, angle, 1.0, frame)
    box = demo_camera.footprint_box(rel, frame)
    extent = np.maximum(box[2:] - box[:2], 1.0)
    s_max = min((pw - 4) / extent[0], (ph - 4) / extent[1])
  s_min = min(MIN_SCALE, s_max)
  scale = float(math.exp(rng.uniform(math.log(s_min), math.log(max(s_max, s_min)))))
  m = _matrices(disp, log_s, angle, scale, frame)
  box = demo_camera.footprint_box(m, frame)
  m = demo_camera.place_matrices(m, 1.0, demo_camera.fit_offset(rng, box, 1.0, (ph, pw)))
  # Photometric: exposure x white balance, drifting during the shot 30% of the time (fades).
  wb = rng.uniform(0.92, 1.08, 3)
  g0 = rng.uniform(0.75, 1.2)
  g1 = rng.uniform(0.55, 1.3) if rng.random() < 0.3 else g0
  gains = np.linspace(g0, g1, num_frames)[:, None] * wb[None, :]
  bias = float(rng.uniform(-8.0, 8.0))
  motion_blur: tuple = ()
  if speed > 0 and rng.random() < 0.5:
    motion_blur = (float(speed * rng.uniform(0.3, 1.0)), direction)
  defocus: tuple = ()
  r = rng.random()
  if r < 0.08:  # rack focus: sharp <-> soft during the shot
    a, b = rng.uniform(0.0, 2.5, 2)
    defocus = tuple(float(v) for v in np.linspace(a, b, num_frames))
  elif r < 0.16:
    defocus = (float(rng.uniform(0.4, 1.5)),) * num_frames
  noise = float(rng.uniform(0.5, 3.0)) if rng.random() < 0.25 else 0.0
  return Shot(photo=photo_index, num_frames=num_frames,
              matrices=tuple(map(tuple, np.round(m, 9).reshape(num_frames, 6).tolist())),
              gains=tuple(tuple(g) for g in np.round(gains, 6).tolist()), bias=round(bias, 4),
              motion_blur=tuple(round(v, 4) for v in motion_blur), defocus=defocus,
              noise=round(noise, 4))


def _motion_kernel(length: float, angle_deg: float) -> np.ndarray:
  """Normalised line kernel of `length` px along `angle_deg` (a camera exposure during a pan)."""
  size = int(math.ceil(length)) | 1
  k = np.zeros((size, size), np.float32)
  c = size // 2
  dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
  for s in np.linspace(-length / 2, length / 2, max(int(length * 4), 2)):
    x, y = int(round(c + s * dx)), int(round(c + s * dy))
    if 0 <= x < size and 0 <= y < size:
      k[y, x] += 1.0
  return k / k.sum()


def render_shot(shot: Shot, image: np.ndarray, frame: tuple[int, int], seed: int) -> np.ndarray:
  """Renders a shot as uint8 [T, H, W, 3]; `seed` drives the sensor noise only."""
  m = np.asarray(shot.matrices, np.float64).reshape(shot.num_frames, 2, 3)
  frames = np.stack(list(demo_camera.render_frames(image, m, frame)))
  x = frames.astype(np.float32)
  if shot.motion_blur and shot.motion_blur[0] >= 1.5:
    kernel = _motion_kernel(*shot.motion_blur)
    x = np.stack([cv2.filter2D(f, -1, kernel, borderType=cv2.BORDER_REFLECT101) for f in x])
  if shot.defocus:
    x = np.stack([cv2.GaussianBlur(f, (0, 0), s) if s >= 0.3 else f
                  for f, s in zip(x, shot.defocus)])
  x = x * np.asarray(shot.gains, np.float32)[:, None, None, :] + np.float32(shot.bias)
  if shot.noise > 0:
    x = x + np.random.default_rng(seed).standard_normal(x.shape, np.float32) * shot.noise
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)
