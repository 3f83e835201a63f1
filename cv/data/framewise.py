"""Per-frame labels and sliding windows over long videos, for frame-level classification (COIN).

A COIN record (`sources.coin_source`) carries its annotated segments in seconds. Frame `i` of
what a reader samples (every `stride`-th source frame, i.e. `fps / stride` frames per second)
lies at time `i / rate`; its label is the class of the segment that contains that time, else
`background` (0). Code shards store these labels per *encoded* frame (`frame_labels`, written by
`cv.codec.encode`), so a code window and the RGB window of the same frames carry the same labels,
whatever the codec's temporal factor: a window of `num_frames` frames is `num_frames / tf` code
steps, and the model's per-step outputs are upsampled back to `num_frames` frames.

Windows: training draws one random window per example; evaluation covers every frame of every
video with windows `hop` frames apart (the last one aligned to the video's end, shorter videos
padded by repeating their last frame with `mask` = 0 on the padding), and the caller stitches
the per-frame predictions back together (`window_starts`, `Windows`).
"""
from __future__ import annotations

from typing import Sequence

import grain
import numpy as np

from cv.data import pipeline, sources, transforms, video

Segment = tuple[float, float, int]  # (start s, end s, class id)


def frame_labels(segments: Sequence[Segment], num_frames: int, rate: float) -> np.ndarray:
  """int16 [num_frames]: the class of the segment containing each frame's time `i / rate`
  (segment ends inclusive; a later segment wins where two overlap), background (0) elsewhere."""
  if rate <= 0:
    raise ValueError(f"frame_labels: the frame rate must be > 0, got {rate}")
  times = np.arange(num_frames, dtype=np.float64) / rate
  out = np.zeros(num_frames, np.int16)
  eps = 1e-6
  for start, end, label in segments:
    out[(times >= start - eps) & (times <= end + eps)] = label
  return out


def segments_problem(segments: Sequence[Segment], duration: float) -> str | None:
  """Why the segments cannot belong to a video of `duration` seconds, or None if they can."""
  late = [(s, e) for s, e, _ in segments if e > duration + sources.SEGMENT_TOLERANCE_S]
  if not late:
    return None
  s, e = late[0]
  return (f"annotated segment [{s:g}, {e:g}] s ends after the video's end ({duration:.2f} s "
          f"decoded; {len(late)} such segment(s)); fix its COIN.json entry or re-download the "
          f"video")


def window_starts(length: int, window: int, hop: int, align: int = 1) -> list[int]:
  """Starts of windows of `window` frames, `hop` apart, covering frames [0, length).

  Starts are multiples of `align` (the codec's temporal factor); the last window ends at the
  last full `align` block, and a video shorter than a window gets one window at 0 (padded).
  """
  if window < 1 or hop < 1 or align < 1:
    raise ValueError(f"window_starts: window={window}, hop={hop}, align={align} must be >= 1")
  last = max(length - window, 0) // align * align
  starts = list(range(0, last + 1, max(hop // align, 1) * align))
  if starts[-1] != last:
    starts.append(last)
  return starts


class Windows(grain.MapDataset):
  """Evaluation windows: i -> {**parent[video], '_window': start, '_index': video}."""

  def __init__(self, parent: grain.MapDataset, windows: Sequence[tuple[int, int]]):
    super().__init__(parent)
    self._windows = list(windows)

  def __len__(self) -> int:
    return len(self._windows)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self.slice(i)
    v, start = self._windows[i]
    return {**self._parent[v], "_window": start, "_index": v}


def _window_frames(length: int, start: int, window: int) -> tuple[np.ndarray, np.ndarray]:
  """(frame indices of a window, clamped to the video; float32 mask of real frames)."""
  idx = np.arange(start, start + window)
  return np.minimum(idx, length - 1), (idx < length).astype(np.float32)


def _pick_start(length: int, window: int, align: int, record: dict, train: bool,
                rng: np.random.Generator | None) -> int:
  if not train:
    return int(record.get("_window", 0))
  if rng is None:
    raise ValueError("a training window needs an rng")
  return int(rng.integers(0, max(length - window, 0) // align + 1)) * align


def _output(x_key: str, x: np.ndarray, labels: np.ndarray, mask: np.ndarray,
            record: dict) -> dict:
  out = {x_key: np.ascontiguousarray(x), "labels": labels.astype(np.int32), "frame_mask": mask}
  if "_index" in record:
    out["index"], out["start"] = np.int32(record["_index"]), np.int32(record["_window"])
  return out


class LoadCodeWindow:
  """Code record -> {'codes': [num_frames/tf, grid, grid, K], 'labels': int32 [num_frames],
  'frame_mask': float32 [num_frames], 0 on padding} (+ 'index', 'start' for evaluation windows).

  The crop of the code grid is random for training and central for evaluation. A top-level class
  (picklable) so Grain worker processes can run it.
  """

  def __init__(self, num_frames: int, grid: int, temporal_factor: int, *, train: bool):
    if num_frames % temporal_factor:
      raise ValueError(f"num_frames={num_frames} is not a multiple of the codec's temporal "
                       f"factor {temporal_factor}")
    self.num_frames, self.grid, self.tf, self.train = num_frames, grid, temporal_factor, train

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
    codes = np.asarray(record["codes"])
    labels = record.get("frame_labels")
    if labels is None:
      raise sources.DatasetError(f"{record.get('path', '?')}: its code record has no per-frame "
                                 f"labels; encode a COIN-format dataset (data.format='coin')")
    t, h, w = codes.shape[:3]
    g = self.grid
    if h < g or w < g:
      raise sources.DatasetError(f"{record.get('path', '?')}: code grid {h}x{w} is smaller than "
                                 f"the {g}x{g} crop; lower config.data.crop")
    n = t * self.tf
    start = _pick_start(n, self.num_frames, self.tf, record, self.train, rng)
    frames, mask = _window_frames(n, start, self.num_frames)
    steps = frames[::self.tf] // self.tf
    if self.train:
      y0, x0 = int(rng.integers(0, h - g + 1)), int(rng.integers(0, w - g + 1))
    else:
      y0, x0 = (h - g) // 2, (w - g) // 2
    clip = codes[steps, y0:y0 + g, x0:x0 + g]
    return _output("codes", clip, np.asarray(labels)[frames], mask, record)


class LoadVideoWindow:
  """COIN record -> {'video': uint8 [num_frames, crop, crop, 3], 'labels', 'frame_mask'} decoded from
  the video file (every `stride`-th frame), or None for an unusable video (skipped and counted;
  raised with `strict`). Labels come from the record's segments at the sampled frame rate.
  """

  def __init__(self, num_frames: int, stride: int, short_side: int, crop: int, *, train: bool,
               strict: bool = False):
    self.num_frames, self.stride = num_frames, stride
    self.short_side, self.crop, self.train, self.strict = short_side, crop, train, strict
    self.skipped = pipeline.SkipLog()

  def preflight(self, record: dict) -> pipeline.Unusable | None:
    """Why `record`'s video cannot give a window, from its header only (None if it may): used
    before training starts (`pipeline.check_usable`). Windows pad short videos, so only videos
    shorter than the stride or whose segments end after the video are unusable."""
    path = record["path"]
    try:
      info = video.probe(path)
    except video.VideoError as e:
      return pipeline.Unusable(path, e.reason)
    if info.num_frames < self.stride:
      return pipeline.Unusable(path, f"has {info.num_frames} frames, fewer than the stride "
                               f"{self.stride}; lower data.stride", frames=info.num_frames,
                               needed=self.stride)
    problem = segments_problem(record["segments"], info.num_frames / info.fps)
    return pipeline.Unusable(path, problem) if problem else None

  def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict | None:
    path = record["path"]
    try:
      info = video.probe(path)
      length = info.num_frames // self.stride
      if length < 1:
        raise video.VideoError(path, f"has {info.num_frames} frames, fewer than the stride "
                               f"{self.stride}")
      problem = segments_problem(record["segments"], info.num_frames / info.fps)
      if problem:
        raise video.VideoError(path, problem)
      start = _pick_start(length, self.num_frames, 1, record, self.train, rng)
      frames, mask = _window_frames(length, start, self.num_frames)
      clip = video.read_frames(path, frames * self.stride)
    except video.VideoError as e:
      if self.strict:
        raise
      self.skipped.add(e)
      return None
    clip = transforms.resize_and_crop(clip, short_side=self.short_side, crop=self.crop,
                                      train=self.train, rng=rng)
    labels = frame_labels(record["segments"], length, info.fps / self.stride)[frames]
    return _output("video", clip, labels, mask, record)


def video_length(record: dict, stride: int) -> int:
  """Frames a reader samples from `record`'s video at `stride` (0 if it cannot be read)."""
  try:
    return video.probe(record["path"]).num_frames // stride
  except video.VideoError:
    return 0


def as_windows(source: Sequence[dict] | grain.MapDataset, lengths: Sequence[int], window: int,
               hop: int, align: int = 1) -> Windows:
  """Every window of every video with a positive length (see `window_starts`)."""
  windows = [(v, s) for v, n in enumerate(lengths) if n > 0
             for s in window_starts(n, window, hop, align)]
  if not windows:
    raise sources.DeadInputError(
        f"evaluation split: none of its {len(lengths)} videos can be read (each has 0 usable "
        f"frames at this stride; see the warnings above); fix or replace the videos, or lower "
        f"data.stride")
  return Windows(pipeline.as_dataset(source), windows)
