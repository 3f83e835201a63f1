"""Writing uint8 RGB frames to a real video file with PyAV (libx264 by default), atomically."""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable

import av
import numpy as np

from cv.lib import fileio


def write_video(path: str, frames: Iterable[np.ndarray], fps: float, *, codec: str = "libx264",
                crf: int = 18, pix_fmt: str = "yuv420p", options: dict | None = None) -> int:
  """Encodes an iterable of [H,W,3] uint8 frames to `path`; returns the number of frames written.

  `frames` may be a generator, so hour-long videos are streamed and never held in memory. The
  container follows the file extension (.mp4, .mkv, .avi, .webm). The file appears only once
  complete (temp file + rename).
  """
  count = 0
  with fileio.atomic_path(path) as tmp:
    fmt = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}.get(
        path[path.rfind("."):].lower())
    with av.open(tmp, mode="w", format=fmt) as container:
      stream = None
      for frame in frames:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if stream is None:
          stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
          stream.height, stream.width = frame.shape[:2]
          stream.pix_fmt = pix_fmt
          opts = {"crf": str(crf)} if codec in ("libx264", "libx265") else {}
          opts.update(options or {})
          stream.options = opts
        fmt_in = "gray" if frame.ndim == 2 else "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=fmt_in)):
          container.mux(packet)
        count += 1
      if stream is None:
        raise ValueError(f"write_video({path!r}): no frames given")
      for packet in stream.encode():
        container.mux(packet)
  return count
