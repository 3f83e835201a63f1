"""Loading footage clips for training at their own resolution (no resize), cropped.

The codec should learn real detail at the scale it is stored: the corpus already holds each photo
at several scales, so clips are *cropped* (randomly for training, centrally for evaluation), not
resized; only a clip smaller than the crop is enlarged to fit. Training also flips left-right at
random, and with `min_scale` < 1 shrinks each training clip by a random factor first (a scale
jitter toward frames that were area-shrunk before coding, as when a whole 1280x720 frame is
coded at 256x256).
"""
from __future__ import annotations

import numpy as np

from cv.data import pipeline, transforms, video
from cv.lib.errors import ConfigError


class LoadNativeClip(pipeline.LoadClip):
  """Record -> {'video': uint8 [T, crop, crop, 3], 'label'}: a crop at the clip's own size.

  Same sampling in time as `pipeline.LoadClip` (random start for training, centre for
  evaluation); `spec.short_side` is ignored. Unusable files are skipped and counted (or raise
  with `strict`), like every loader. `min_scale` in (0, 1]: each training clip is first shrunk
  (area interpolation) by a factor drawn log-uniformly from [min_scale, 1], never below the crop;
  evaluation clips are never rescaled.
  """

  def __init__(self, spec: pipeline.ClipSpec, *, train: bool, strict: bool = False,
               min_scale: float = 1.0):
    if not 0.0 < min_scale <= 1.0:
      raise ConfigError(f"LoadNativeClip: min_scale (config.data.min_scale) must be in (0, 1], got "
                       f"{min_scale}; 1 turns the scale jitter off")
    super().__init__(spec, train=train, strict=strict)
    self.min_scale = min_scale

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict | None:
    s = self.spec
    try:
      frames = video.read_clip(record["path"], num_frames=s.num_frames, stride=s.stride,
                               target_fps=s.target_fps, start="random" if self.train else "center",
                               rng=rng)
    except video.VideoError as e:
      if self.strict:
        raise
      self.skipped.add(e)
      return None
    if self.train and rng is None:
      raise ValueError("LoadNativeClip: training needs rng=np.random.default_rng(seed)")
    if self.train and self.min_scale < 1.0:
      scale = float(np.exp(rng.uniform(np.log(self.min_scale), 0.0)))
      short = min(frames.shape[1:3])
      frames = transforms.resize_short_side(frames, max(s.crop, int(round(short * scale))))
    if min(frames.shape[1:3]) < s.crop:
      frames = transforms.resize_short_side(frames, s.crop)
    if self.train:
      frames = transforms.random_crop(frames, s.crop, s.crop, rng)
      if rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    else:
      frames = transforms.center_crop(frames, s.crop, s.crop)
    return {"video": np.ascontiguousarray(frames), "label": np.int32(record.get("label", 0))}
