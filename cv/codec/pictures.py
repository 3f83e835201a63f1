"""Pictures of what a neural codec does: code maps as colour images, side-by-side videos, grids.

Why this module exists: a compression rate and a PSNR say how well a codec works, not what it
has learned. Looking at the codes shows it: `pca_rgb` projects the codebook embedding of every
code position onto its 3 principal directions and shows them as RGB, so positions with similar
codes get similar colours (edges, flat areas and moving objects become visible structures).
`side_by_side` puts input, reconstruction and code image next to each other, frame by frame, for
a video; `reconstruction_grid` is a still image of input / reconstruction / error for reports.

All functions are plain numpy (+ OpenCV for text and colour maps) on uint8 RGB arrays; they
never touch the codec, so they work on codes from any source (a .cvz file, a code shard).
"""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from cv.lib import fileio

# Standardised components are mapped with x * _PCA_SCALE + 0.5, so +-2 standard deviations
# span the full [0, 1] range and only the outer ~5% of a Gaussian saturates.
_PCA_SCALE = 0.25
# Absolute errors are multiplied by this in the heat map: codec errors are small.
DIFF_GAIN = 4
LABELS = ("input", "reconstruction", "codes (PCA)")
GRID_LABELS = ("input", "reconstruction", f"|difference| x{DIFF_GAIN}")


def pca_rgb(latents: np.ndarray, num_components: int = 3) -> np.ndarray:
  """Colours code embeddings by their first 3 principal components.

  The PCA is fitted on all positions of `latents` at once (numpy SVD of the centred vectors), so
  colours are comparable across frames of one call, not across calls. Each component is
  standardised and mapped as `(x - mean) / std * 0.25 + 0.5`, clipped to [0, 1], to uint8; the
  first component is red, the second green, the third blue. The sign of every principal direction
  is fixed (its largest-magnitude loading is positive) rather than left to the SVD routine, so
  the colours are deterministic, e.g. the same when the positions are given in another order
  (negating all inputs inverts the colours). Components that do not exist (fewer than 3 channels or
  a rank < 3) or have zero variance are mid-grey (128).

  Args:
    latents: float array [..., C], e.g. `NeuralCodec.latents(codes[None])[0]` of shape
      [T', H', W', K*D].
    num_components: output channels (3 for RGB).

  Returns:
    uint8 array [..., num_components].
  """
  x = np.asarray(latents, np.float64)
  if x.ndim < 1 or x.shape[-1] < 1 or x.size == 0:
    raise ValueError(f"pca_rgb: expected latents [..., C] with C >= 1 and at least one position, "
                     f"got shape {x.shape}; pass codec.latents(codes[None])[0]")
  if not np.all(np.isfinite(x)):
    raise ValueError("pca_rgb: latents contain NaN or Inf; check the codec parameters")
  lead = x.shape[:-1]
  flat = x.reshape(-1, x.shape[-1])
  centred = flat - flat.mean(axis=0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  vt = vt[:num_components]
  # Deterministic sign: the largest-magnitude loading of each direction is positive.
  pivot = np.argmax(np.abs(vt), axis=1)
  vt = vt * np.where(vt[np.arange(len(vt)), pivot] < 0, -1.0, 1.0)[:, None]
  proj = centred @ vt.T  # [N, <=num_components]
  out = np.full((flat.shape[0], num_components), 0.5)
  for i in range(proj.shape[1]):
    std = proj[:, i].std()
    if std > 1e-12 * max(1.0, float(np.abs(flat).max())):
      out[:, i] = (proj[:, i] - proj[:, i].mean()) / std * _PCA_SCALE + 0.5
  out = np.clip(out, 0.0, 1.0)
  return np.round(out * 255.0).astype(np.uint8).reshape(*lead, num_components)


def _factor(full: int, coarse: int, given: int | None, name: str) -> int:
  """The up-sampling factor from `coarse` code cells to `full` pixels/frames."""
  if given is not None:
    if given < 1 or coarse * given < full:
      raise ValueError(f"{name}={given} with {coarse} code cells covers {coarse * max(given, 0)} "
                       f"< {full}; pass the codec's factor (codec.spatial_factor / "
                       f"codec.temporal_factor)")
    return int(given)
  return -(-full // coarse)  # ceil: the codes cover the edge-padded clip.


def upsample_codes(code_rgb: np.ndarray, size: tuple[int, int, int], *,
                   temporal_factor: int | None = None,
                   spatial_factor: int | None = None) -> np.ndarray:
  """Nearest-neighbour up-sampling of a code image [T',H',W',C] to frames [T,H,W,C].

  Every code cell becomes a `spatial_factor` x `spatial_factor` block repeated over
  `temporal_factor` frames, then the result is cropped to `size` (codes cover the clip after
  the codec's edge padding). Without the factors they are inferred as ceil(T / T') etc., which is
  right whenever the padding is smaller than one factor of each axis — always true for codes of
  `NeuralCodec.encode`, but pass the codec's factors when you have them.
  """
  code_rgb = np.asarray(code_rgb)
  if code_rgb.ndim != 4:
    raise ValueError(f"upsample_codes: expected a code image [T',H',W',C], got shape "
                     f"{code_rgb.shape}; use pca_rgb(codec.latents(codes[None])[0])")
  t, h, w = size
  tc, hc, wc = code_rgb.shape[:3]
  if min(tc, hc, wc) < 1:
    raise ValueError(f"upsample_codes: empty code image {code_rgb.shape}")
  ft = _factor(t, tc, temporal_factor, "temporal_factor")
  fs_h = _factor(h, hc, spatial_factor, "spatial_factor")
  fs_w = _factor(w, wc, spatial_factor, "spatial_factor")
  out = np.repeat(code_rgb, ft, axis=0)
  out = np.repeat(np.repeat(out, fs_h, axis=1), fs_w, axis=2)
  return np.ascontiguousarray(out[:t, :h, :w])


def _put_label(image: np.ndarray, text: str, max_width: int | None = None) -> None:
  """Writes `text` in the top-left corner of `image` (in place), white on a dark outline.

  The font is scaled to the image (about 1/14 of its height) and shrunk so the text fits in
  `max_width` pixels, so labels stay readable without covering small frames.
  """
  h, w = image.shape[:2]
  max_width = (max_width or w) - 4
  font = cv2.FONT_HERSHEY_SIMPLEX
  scale = max(0.25, min(h / 14 / 22, 1.0))  # Hershey simplex is ~22 px tall at scale 1.
  (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
  if tw > max_width > 0:
    scale = max(0.2, scale * max_width / tw)
  (_, th), _ = cv2.getTextSize(text, font, scale, 1)
  org = (2, 2 + th)
  # Outline = the same thin text shifted by one pixel (a thicker stroke would also widen the
  # glyph advance in OpenCV's Hershey fonts and drift away from the white text).
  for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
    cv2.putText(image, text, (org[0] + dx, org[1] + dy), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.putText(image, text, org, font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _check_pair(inputs: np.ndarray, recon: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
  inputs, recon = np.asarray(inputs), np.asarray(recon)
  if inputs.ndim != 4 or inputs.shape[-1] != 3 or inputs.shape != recon.shape:
    raise ValueError(f"{name}: expected input and reconstruction as uint8 [T,H,W,3] of the same "
                     f"shape, got {inputs.shape} and {recon.shape}; decode with "
                     f"codec.decode(codes, size=frames.shape[:3])")
  if inputs.dtype != np.uint8 or recon.dtype != np.uint8:
    raise ValueError(f"{name}: expected uint8 frames, got {inputs.dtype} and {recon.dtype}")
  return inputs, recon


def side_by_side(inputs: np.ndarray, recon: np.ndarray, code_rgb: np.ndarray, *,
                 temporal_factor: int | None = None, spatial_factor: int | None = None,
                 labels: Sequence[str] | None = LABELS) -> np.ndarray:
  """Input | reconstruction | code image, per frame, with small text labels.

  Args:
    inputs: uint8 [T, H, W, 3] original frames.
    recon: uint8 [T, H, W, 3] decoded frames.
    code_rgb: uint8 [T', H', W', 3] code image from `pca_rgb`; up-sampled with nearest
      neighbour (`upsample_codes`) so each code frame is shown for `temporal_factor` frames.
    temporal_factor: frames per code step (codec.temporal_factor); inferred when None.
    spatial_factor: pixels per code cell (codec.spatial_factor); inferred when None.
    labels: the three panel labels, or None for none.

  Returns:
    uint8 [T, H, 3W, 3].
  """
  inputs, recon = _check_pair(inputs, recon, "side_by_side")
  code_rgb = np.asarray(code_rgb)
  if code_rgb.ndim != 4 or code_rgb.shape[-1] != 3 or code_rgb.dtype != np.uint8:
    raise ValueError(f"side_by_side: expected a uint8 code image [T',H',W',3], got "
                     f"{code_rgb.shape} {code_rgb.dtype}; use pca_rgb(...)")
  t, h, w = inputs.shape[:3]
  codes = upsample_codes(code_rgb, (t, h, w), temporal_factor=temporal_factor,
                         spatial_factor=spatial_factor)
  out = np.concatenate([inputs, recon, codes], axis=2)
  if labels:
    if len(labels) != 3:
      raise ValueError(f"side_by_side: expected 3 labels, got {len(labels)}")
    for frame in out:
      for i, text in enumerate(labels):
        _put_label(frame[:, i * w:(i + 1) * w], text)  # A view: writes into `out`.
  return out


def diff_heatmap(inputs: np.ndarray, recon: np.ndarray, gain: float = DIFF_GAIN) -> np.ndarray:
  """|input - reconstruction| (mean over RGB) x `gain` as an inferno heat map, uint8 RGB."""
  err = np.abs(inputs.astype(np.int16) - recon.astype(np.int16)).mean(axis=-1) * gain
  err = np.clip(np.round(err), 0, 255).astype(np.uint8)
  flat = err.reshape(-1, err.shape[-1])  # applyColorMap wants a 2-D image.
  colour = cv2.applyColorMap(flat, cv2.COLORMAP_INFERNO)[..., ::-1]  # BGR -> RGB
  return np.ascontiguousarray(colour.reshape(*err.shape, 3))


def frame_indices(total: int, num_frames: int) -> np.ndarray:
  """`min(num_frames, total)` evenly spaced frame indices from 0 to total - 1 (inclusive)."""
  if total < 1 or num_frames < 1:
    raise ValueError(f"frame_indices: need total >= 1 and num_frames >= 1, got {total}, "
                     f"{num_frames}")
  n = min(num_frames, total)
  return np.round(np.linspace(0, total - 1, n)).astype(np.int64)


def reconstruction_grid(inputs: np.ndarray, recon: np.ndarray, num_frames: int = 8, *,
                        labels: Sequence[str] | None = GRID_LABELS) -> np.ndarray:
  """A still image: rows input / reconstruction / |difference| x4 heat map, over time.

  Args:
    inputs: uint8 [T, H, W, 3] original frames.
    recon: uint8 [T, H, W, 3] decoded frames.
    num_frames: columns; evenly spaced frames from first to last (fewer if T is smaller).
    labels: row labels written on the first column, or None.

  Returns:
    uint8 RGB image [3H, n*W, 3] with n = min(num_frames, T).
  """
  inputs, recon = _check_pair(inputs, recon, "reconstruction_grid")
  idx = frame_indices(inputs.shape[0], num_frames)
  rows = [inputs[idx], recon[idx], diff_heatmap(inputs[idx], recon[idx])]
  grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
  grid = np.ascontiguousarray(grid)
  if labels:
    if len(labels) != 3:
      raise ValueError(f"reconstruction_grid: expected 3 labels, got {len(labels)}")
    h, w = inputs.shape[1:3]
    for i, text in enumerate(labels):
      _put_label(grid[i * h:(i + 1) * h, :w], text)
  return grid


def write_gif(path: str, frames: np.ndarray | Sequence[np.ndarray], fps: float,
              loop: int = 0) -> int:
  """Writes uint8 RGB frames [T,H,W,3] as an animated GIF (atomically); returns the frame count.

  Uses Pillow (one adaptive 256-colour palette per frame). GIF timing is in 1/100 s, so the
  frame rate is rounded to that. Note that Pillow merges consecutive identical frames into one
  longer frame, so a still video gives fewer GIF frames than inputs.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8), "RGB") for f in frames]
  if not images:
    raise ValueError(f"write_gif({path!r}): no frames given")
  if fps <= 0:
    raise ValueError(f"write_gif({path!r}): fps must be > 0, got {fps}")
  duration = max(10, int(round(100.0 / fps)) * 10)  # ms, multiple of 10
  with fileio.atomic_path(path) as tmp:
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration, loop=loop, optimize=False)
  return len(images)


def write_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 RGB image [H,W,3] as PNG with OpenCV (atomically)."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f"write_png({path!r}): expected uint8 RGB [H,W,3], got {image.shape} "
                     f"{image.dtype}")
  if not path.lower().endswith(".png"):
    raise ValueError(f"write_png({path!r}): the file name must end in .png")
  with fileio.atomic_path(path) as tmp:
    if not cv2.imwrite(tmp, np.ascontiguousarray(image[..., ::-1])):
      raise OSError(f"{path}: cv2.imwrite failed; check that the folder is writable "
                    f"({os.path.dirname(os.path.abspath(path))})")
