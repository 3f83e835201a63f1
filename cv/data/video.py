"""Reading frames from real video files with PyAV: probing, clip sampling, decoding, streaming.

Why this module exists: every dataset in the project is a folder of encoded videos (mp4, mkv,
avi, webm). Training needs short clips decoded quickly and exactly (the frame at index i must be
the i-th frame of the file, whether we seek or decode from the start); evaluation of long videos
needs bounded-memory streaming. Broken files are common in scraped datasets, so every failure
becomes a `VideoError` that names the file and says what to do about it, instead of a bare
FFmpeg error deep inside a data-loader worker.

Frame indices are 0-based positions in presentation order. Decoding from the start counts frames;
after a seek, the index of each frame is recovered from its timestamp, and the result is checked
for consistency (falling back to decoding from the start when timestamps are irregular).
"""
from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from typing import Iterator, Sequence

import av
import numpy as np

# Seek only when the first wanted frame is at least this far in; below it, decoding from the
# start is about as cheap as a seek and is exact by construction.
_SEEK_MIN_FRAMES = 48
# How many frames before the first wanted frame the seek target is placed, so rounding in the
# timestamp arithmetic can never land the seek after the frame we need.
_SEEK_MARGIN_FRAMES = 2
# Tolerance for floor() of fractional sample positions (e.g. 5.999999 must be 6).
_EPS = 1e-6


class VideoError(ValueError):
  """A video file that cannot be used.

  Attributes:
    path: the file.
    reason: what is wrong and how to fix it; `str(e) == f"{path}: {reason}"`.
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = path
    self.reason = reason

  def __reduce__(self):
    # Keeps the exception picklable across data-loader worker processes.
    return (type(self), (self.path, self.reason))


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Stream metadata of one video file (from the container header, no full decode)."""
  path: str
  num_frames: int
  fps: float
  width: int
  height: int
  duration: float
  pix_fmt: str


class _SeekUnreliable(Exception):
  """Internal: timestamps after a seek do not map cleanly to frame indices."""


def _open(path: str) -> av.container.InputContainer:
  """Opens `path` for reading, turning every way it can fail into a VideoError."""
  if not os.path.exists(path):
    raise VideoError(path, "no such file; check the dataset path in the config, or re-download it")
  if not os.path.isfile(path):
    raise VideoError(path, "is not a regular file (a directory?); point the dataset at video files")
  if os.path.getsize(path) == 0:
    raise VideoError(path, "file is empty (0 bytes), probably an interrupted download; "
                     "re-download or delete the file")
  try:
    container = av.open(path, mode="r")
  except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
    raise VideoError(path, f"not a readable video container ({e}); the file is truncated, corrupt "
                     "or not a video; re-download or delete the file") from e
  if not container.streams.video:
    container.close()
    raise VideoError(path, "contains no video stream (audio or data only); "
                     "remove it from the dataset")
  return container


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction | None:
  """The nominal frame rate of `stream` as an exact fraction, or None if the file has none."""
  for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
    if rate is not None and rate > 0:
      return Fraction(rate)
  return None


def _count_packets(container: av.container.InputContainer,
                   stream: av.video.stream.VideoStream) -> int:
  """Counts the video packets by demuxing (no decoding): the frame count of last resort."""
  count = 0
  for packet in container.demux(stream):
    if packet.size > 0:
      count += 1
  return count


def probe(path: str) -> VideoInfo:
  """Reads the stream metadata of `path` without decoding its frames.

  `num_frames` comes from the container when it records it (mp4, avi); otherwise it is estimated
  as round(duration * fps) (mkv, webm), and only as a last resort counted by demuxing packets.

  Raises:
    VideoError: missing, empty, unreadable file, or no video stream.
  """
  with _open(path) as container:
    stream = container.streams.video[0]
    fps = _stream_fps(stream)
    duration = None
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
      duration = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
      duration = container.duration / av.time_base
    num_frames = stream.frames if stream.frames and stream.frames > 0 else 0
    if num_frames <= 0 and duration is not None and fps is not None:
      num_frames = int(round(duration * float(fps)))
    if num_frames <= 0:
      try:
        num_frames = _count_packets(container, stream)
      except av.FFmpegError as e:
        raise VideoError(path, f"cannot count frames ({e}); the file is truncated or corrupt; "
                         "re-encode or remove it") from e
    if fps is None:
      fps = Fraction(num_frames) / Fraction(duration) if duration and num_frames else Fraction(0)
    if duration is None:
      duration = num_frames / float(fps) if fps else 0.0
    width, height = stream.codec_context.width, stream.codec_context.height
    if num_frames <= 0 or width <= 0 or height <= 0:
      raise VideoError(path, f"video stream has no frames or no size ({num_frames} frames, "
                       f"{width}x{height}); re-download or delete the file")
    pix_fmt = stream.format.name if stream.format is not None else (
        stream.codec_context.pix_fmt or "unknown")
    return VideoInfo(path=path, num_frames=int(num_frames), fps=float(fps), width=int(width),
                     height=int(height), duration=float(duration), pix_fmt=str(pix_fmt))


def sample_indices(total_frames: int, *, num_frames: int, stride: int = 1,
                   src_fps: float | None = None, target_fps: float | None = None,
                   start: str | float = "random", rng: np.random.Generator | None = None,
                   path: str = "<video>", start_frac: float | None = None) -> np.ndarray:
  """Frame indices of one clip of `num_frames` frames out of a video of `total_frames` frames.

  The temporal step is `stride` source frames; with `target_fps` it is
  `stride * src_fps / target_fps` (possibly fractional; stride then counts target-rate frames),
  and index k is floor(start + k * step). Upsampling (target_fps > src_fps) repeats frames.

  Args:
    total_frames: frames in the video.
    num_frames: frames in the clip.
    stride: step between clip frames, in source frames (or target-rate frames with target_fps).
    src_fps: frame rate of the video; needed for target_fps and for a start time in seconds.
    target_fps: resample the clip to this frame rate.
    start: "random" (uniform over all valid integer start frames; needs rng), "center",
      "begin", or a float start time in seconds (needs src_fps).
    rng: random generator for start="random".
    path: the video, named in errors.
    start_frac: when given, overrides `start`: the clip starts at this fraction (0 = first valid
      start frame, 1 = last) of the valid range; evaluation views use it to spread clips evenly.

  Returns:
    int64 array [num_frames], non-decreasing (strictly increasing unless upsampling).

  Raises:
    VideoError: the video is too short for the clip, or the start time leaves too few frames.
    ValueError: invalid arguments.
  """
  if num_frames < 1:
    raise ValueError(f"sample_indices: num_frames must be >= 1, got {num_frames}; "
                     "fix data.num_frames")
  if stride < 1 or int(stride) != stride:
    raise ValueError(f"sample_indices: stride must be an integer >= 1, got {stride}; "
                     "fix data.stride")
  step = float(stride)
  if target_fps is not None:
    if src_fps is None or src_fps <= 0 or target_fps <= 0:
      raise ValueError(f"sample_indices({path}): target_fps={target_fps} needs a positive "
                       f"src_fps (got {src_fps}); pass the video's fps from probe()")
    step = stride * float(src_fps) / float(target_fps)
  span = (num_frames - 1) * step  # Distance from the first to the last sample position.
  needed = int(math.floor(span + _EPS)) + 1
  what = (f"num_frames={num_frames} x stride={stride}"
          + (f" at {target_fps:g} fps from {src_fps:g} fps" if target_fps is not None else ""))
  if total_frames < needed:
    raise VideoError(path, f"has {total_frames} frames but the clip needs {needed} frames "
                     f"({what}); lower data.num_frames / data.stride, or drop videos shorter "
                     f"than {needed} frames")
  max_start = int(math.floor(total_frames - 1 - span + _EPS))  # >= 0 given the check above.

  if start_frac is not None:
    if not 0.0 <= start_frac <= 1.0:
      raise ValueError(f"sample_indices: start_frac must be in [0, 1], got {start_frac}")
    first = float(round(start_frac * max_start))
  elif isinstance(start, str):
    if start == "random":
      if rng is None:
        raise ValueError("sample_indices: start='random' needs rng=np.random.default_rng(seed)")
      first = float(rng.integers(0, max_start + 1))
    elif start == "center":
      first = float(max_start // 2)
    elif start == "begin":
      first = 0.0
    else:
      raise ValueError(f"sample_indices: start must be 'random', 'center', 'begin' or a time in "
                       f"seconds, got {start!r}")
  else:
    if src_fps is None or src_fps <= 0:
      raise ValueError(f"sample_indices({path}): start={start} seconds needs src_fps")
    if start < 0:
      raise ValueError(f"sample_indices({path}): start time must be >= 0 s, got {start}")
    first = float(start) * float(src_fps)
    if first > max_start + _EPS:
      raise VideoError(path, f"a clip starting at {start:g} s (frame {first:.1f}) needs frames "
                       f"up to {int(math.floor(first + span + _EPS))} but the video has "
                       f"{total_frames} frames; start earlier (at most "
                       f"{max_start / float(src_fps):.3f} s) or lower data.num_frames")
  positions = first + np.arange(num_frames, dtype=np.float64) * step
  indices = np.floor(positions + _EPS).astype(np.int64)
  return np.minimum(indices, total_frames - 1)


def _frame_index(frame: av.VideoFrame, start_pts: int, time_base: Fraction, fps: Fraction) -> int:
  """The 0-based index of a decoded frame, recovered from its timestamp (constant frame rate)."""
  return int(round((frame.pts - start_pts) * time_base * fps))


def _decode_indices(path: str, wanted: np.ndarray, *, threads: bool,
                    allow_seek: bool) -> tuple[dict[int, np.ndarray], int, tuple[int, int]]:
  """Decodes the sorted unique frame indices `wanted` of `path`.

  Returns:
    (frames by index, index of the first frame decoded (> 0 means a seek was used), (H, W)).
  """
  with _open(path) as container:
    stream = container.streams.video[0]
    if threads:
      stream.thread_type = "AUTO"
    size = (stream.codec_context.height, stream.codec_context.width)
    if wanted.size == 0:
      return {}, 0, size
    fps = _stream_fps(stream)
    time_base = stream.time_base
    if allow_seek and int(wanted[0]) >= _SEEK_MIN_FRAMES and fps and time_base:
      try:
        frames, first = _decode_after_seek(path, container, stream, wanted, fps, time_base,
                                           stream.start_time or 0)
        return frames, first, size
      except _SeekUnreliable:
        pass  # Irregular timestamps: fall back to the exact count from the start.
  with _open(path) as container:
    stream = container.streams.video[0]
    if threads:
      stream.thread_type = "AUTO"
    frames, first = _collect(path, enumerate(container.decode(stream)), wanted)
    return frames, first, size


def _collect(path: str, frames_iter: Iterator[tuple[int, av.VideoFrame]], wanted: np.ndarray
             ) -> tuple[dict[int, np.ndarray], int]:
  """Keeps the frames of `frames_iter` whose index is in `wanted`; stops after the last one.

  Returns:
    (frames by index, index of the first frame the iterator produced).
  """
  wanted_set = {int(i) for i in wanted}
  last_wanted = int(wanted[-1])
  out: dict[int, np.ndarray] = {}
  first_index = None
  next_index = None
  try:
    for index, frame in frames_iter:
      if first_index is None:
        first_index = index
      next_index = index + 1
      if index in wanted_set:
        out[index] = frame.to_ndarray(format="rgb24")
      if index >= last_wanted:
        return out, first_index
  except av.FFmpegError as e:
    stopped = next_index if next_index is not None else 0
    raise VideoError(path, f"decoding stopped at frame {stopped}, the clip needs frame "
                     f"{last_wanted} ({e}): the file is truncated or corrupt; re-encode or "
                     "remove it") from e
  stopped = next_index if next_index is not None else 0
  raise VideoError(path, f"decoding stopped at frame {stopped}, the clip needs frame "
                   f"{last_wanted}: the file is truncated or corrupt; re-encode or remove it")


def _decode_after_seek(path: str, container: av.container.InputContainer,
                       stream: av.video.stream.VideoStream, wanted: np.ndarray, fps: Fraction,
                       time_base: Fraction, start_pts: int
                       ) -> tuple[dict[int, np.ndarray], int]:
  """Seeks to the keyframe before wanted[0], then indexes frames by timestamp.

  Raises _SeekUnreliable (caller falls back to decoding from the start) if the seek overshot or
  the timestamps are not one frame apart, e.g. variable frame rate or missing pts.
  """
  target_index = max(0, int(wanted[0]) - _SEEK_MARGIN_FRAMES)
  target_pts = start_pts + int(math.floor(Fraction(target_index) / fps / time_base))
  try:
    container.seek(target_pts, stream=stream, backward=True, any_frame=False)
  except av.FFmpegError as e:
    raise _SeekUnreliable() from e

  def indexed() -> Iterator[tuple[int, av.VideoFrame]]:
    previous = None
    for frame in container.decode(stream):
      if frame.pts is None:
        raise _SeekUnreliable()
      index = _frame_index(frame, start_pts, time_base, fps)
      if previous is None and (index > int(wanted[0]) or index < 0):
        raise _SeekUnreliable()  # Landed after the first frame we need.
      if previous is not None and index != previous + 1:
        raise _SeekUnreliable()  # Not constant frame rate: indices by pts would be wrong.
      previous = index
      yield index, frame

  return _collect(path, indexed(), wanted)


def _check_indices(path: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
  """Validates `indices` as a 1-D array of non-negative integers."""
  arr = np.asarray(indices)
  if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
    raise ValueError(f"read_frames({path}): indices must be a 1-D sequence of integers, got "
                     f"shape {arr.shape} dtype {arr.dtype}; use sample_indices()")
  arr = arr.astype(np.int64)
  if arr.size and arr.min() < 0:
    raise ValueError(f"read_frames({path}): frame indices must be >= 0, got {int(arr.min())}")
  return arr


def read_frames(path: str, indices: Sequence[int] | np.ndarray, *, threads: bool = True,
                seek: bool = True) -> np.ndarray:
  """Decodes the frames at `indices` (any order, repeats allowed) as RGB.

  Decoding stops after max(indices). When min(indices) is far into the file, the reader seeks
  to the keyframe before it instead of decoding everything in front; `seek=False` forces
  decoding from the start (same frames, slower; for tests and odd files).

  Returns:
    uint8 [len(indices), H, W, 3] RGB, whatever the stored pixel format (gray, yuv, rgb, ...).

  Raises:
    VideoError: unreadable file, or the stream ends / the decoder fails before max(indices).
  """
  arr = _check_indices(path, indices)
  unique = np.unique(arr)
  frames, _, (height, width) = _decode_indices(path, unique, threads=threads, allow_seek=seek)
  if arr.size == 0:
    return np.zeros((0, height, width, 3), np.uint8)
  return np.stack([frames[int(i)] for i in arr])


def read_clip(path: str, *, num_frames: int, stride: int = 1, target_fps: float | None = None,
              start: str | float = "random", rng: np.random.Generator | None = None,
              start_frac: float | None = None) -> np.ndarray:
  """Samples and decodes one clip: probe + sample_indices + read_frames.

  Returns:
    uint8 [num_frames, H, W, 3] RGB.
  """
  info = probe(path)
  indices = sample_indices(info.num_frames, num_frames=num_frames, stride=stride,
                           src_fps=info.fps, target_fps=target_fps, start=start, rng=rng,
                           path=path, start_frac=start_frac)
  return read_frames(path, indices)


def iter_chunks(path: str, chunk_frames: int, *, stride: int = 1,
                threads: bool = True) -> Iterator[np.ndarray]:
  """Streams every `stride`-th frame of `path` as consecutive uint8 [<=chunk_frames, H, W, 3].

  Only one chunk is held at a time, so hour-long videos fit in memory. The last chunk may be
  shorter; no chunk is empty.

  Raises:
    VideoError: unreadable file, or the decoder fails part-way (after earlier chunks were
      yielded).
  """
  if chunk_frames < 1:
    raise ValueError(f"iter_chunks({path}): chunk_frames must be >= 1, got {chunk_frames}")
  if stride < 1:
    raise ValueError(f"iter_chunks({path}): stride must be >= 1, got {stride}")
  with _open(path) as container:
    stream = container.streams.video[0]
    if threads:
      stream.thread_type = "AUTO"
    chunk: list[np.ndarray] = []
    decoded = 0  # Frames decoded so far = index of the next frame.
    try:
      for index, frame in enumerate(container.decode(stream)):
        decoded = index + 1
        if index % stride:
          continue
        chunk.append(frame.to_ndarray(format="rgb24"))
        if len(chunk) == chunk_frames:
          yield np.stack(chunk)
          chunk = []
    except av.FFmpegError as e:
      raise VideoError(path, f"decoding stopped at frame {decoded} ({e}): the file is truncated "
                       "or corrupt; re-encode or remove it") from e
    if chunk:
      yield np.stack(chunk)
