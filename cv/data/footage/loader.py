"""Loading footage clips for training at their own resolution (no resize), cropped.

The codec should learn real detail at the scale it is stored: the corpus already holds each photo
at several scales, so clips are *cropped* (randomly for training, centrally for evaluation), not
resized; only a clip smaller than the crop is enlarged to fit. Training also flips left-right at
random.
"""
from __future__ import annotations

import numpy as np

from cv.data import pipeline, transforms, video


class LoadNativeClip(pipeline.LoadClip):
  """Record -> {'video': uint8 [T, crop, crop, 3], 'label'}: a crop at the clip's own size.

  Same sampling in time as `pipeline.LoadClip` (random start for training, centre for
  evaluation); `spec.short_side` is ignored. Unusable files are skipped and counted (or raise
  with `strict`), like every loader.
  """

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
    if min(frames.shape[1:3]) < s.crop:
      frames = transforms.resize_short_side(frames, s.crop)
    if self.train:
      if rng is None:
        raise ValueError("LoadNativeClip: training needs rng=np.random.default_rng(seed)")
      frames = transforms.random_crop(frames, s.crop, s.crop, rng)
      if rng.random() < 0.5:
        frames = frames[:, :, ::-1]
    else:
      frames = transforms.center_crop(frames, s.crop, s.crop)
    return {"video": np.ascontiguousarray(frames), "label": np.int32(record.get("label", 0))}
