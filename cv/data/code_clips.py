"""Clips cut from code-shard records: the compressed-domain twin of `pipeline.LoadClip`.

A code record holds a whole encoded video ([T', H', W', K] integers, see `code_shards`). A
training clip is a window of `num_steps` code frames and a `grid` x `grid` crop of the code grid:
random for training, placed by the view for evaluation — the same sampling the RGB pipeline
does on decoded frames, without decoding anything. Cropping the code grid moves the crop in
steps of the codec's spatial factor (8 pixels at CR 192); finer, learned crops in latent space
live in `cv.augment`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from cv.data.sources import DatasetError


@dataclasses.dataclass(frozen=True)
class CodeClipSpec:
  """A clip in code units: `num_steps` code frames `step` apart, a `grid` x `grid` crop, optional
  random flip. `step` > 1 when the codes were encoded at a finer frame stride than the clip's
  (`config.codes.frame_stride`): every start frame is then a different temporal phase."""
  num_steps: int
  grid: int
  flip: bool = False
  step: int = 1


class LoadCodeClip:
  """Code record -> {'codes': [num_steps, grid, grid, K], 'label': int32} (+ 'index' for views).

  A top-level class (picklable) so Grain worker processes can run it. Videos shorter than the
  window repeat their last code frame (the RGB reader instead rejects clips it cannot fill, but
  encoded datasets have already dropped unusable videos); grids smaller than the crop are an
  error that names the video and the fix.
  """

  def __init__(self, spec: CodeClipSpec, *, train: bool):
    self.spec, self.train = spec, train

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
    s = self.spec
    codes = np.asarray(record["codes"])
    t, h, w = codes.shape[:3]
    if h < s.grid or w < s.grid:
      raise DatasetError(
          f"{record.get('path', '?')}: code grid {h}x{w} is smaller than the {s.grid}x{s.grid} "
          f"crop; encode the dataset at a larger short side or lower config.data.crop")
    view = record.get("_view")
    span = (s.num_steps - 1) * s.step + 1
    if self.train:
      if rng is None:
        raise ValueError("LoadCodeClip(train=True) needs an rng")
      t0 = int(rng.integers(0, max(t - span, 0) + 1))
      y0 = int(rng.integers(0, h - s.grid + 1))
      x0 = int(rng.integers(0, w - s.grid + 1))
      flip = bool(s.flip and rng.random() < 0.5)
    else:
      tpos, cpos, flip = view if view is not None else (0.5, 0.5, False)
      t0 = int(round(tpos * max(t - span, 0)))
      y0, x0 = int(round(cpos * (h - s.grid))), int(round(cpos * (w - s.grid)))
    steps = np.minimum(t0 + s.step * np.arange(s.num_steps), t - 1)
    clip = codes[steps, y0:y0 + s.grid, x0:x0 + s.grid]
    if flip:
      clip = clip[:, :, ::-1]
    out = {"codes": np.ascontiguousarray(clip), "label": np.int32(record.get("label", 0))}
    if view is not None:
      out["index"] = np.int32(record["_index"])
    return out
