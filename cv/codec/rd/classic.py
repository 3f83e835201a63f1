"""Classic codec baselines (JPEG, H.264, MPEG-4 Part 2) measured on the same frames as ours.

Why this module exists: a learned codec is only interesting next to the codecs people already
use. This module compresses a clip of uint8 RGB frames with each classic codec at several quality
settings, decodes it back and reports rate (from the ACTUAL encoded bytes, container included)
and distortion (with the same `cv.lib.metrics` functions that evaluate our codec), so the numbers
can be put in one rate-distortion table or plot.

Conventions:

* Frames are uint8 [T, H, W, 3] RGB. Every codec returns `(num_bytes, decoded)` with `decoded` of
  the same shape and dtype.
* bpp = 8 * bytes / (T * H * W) (bits per pixel, all three colour channels together) and
  CR = T * H * W * 3 / bytes (compression ratio against raw uint8 RGB).
* JPEG is intra-only: every frame is its own file (OpenCV/libjpeg defaults: 4:2:0 chroma,
  baseline Huffman). Its byte count is the sum of the JPEG files. Every file repeats the same
  623-byte header (tables included): 0.30 bpp on 128x128 frames, 0.08 bpp on 256x256, most of
  the rate at low quality. So two more JPEG variants exist: "jpeg-stream" stores that header once
  per clip (`pack_jpeg_stream`, a real stream that decodes back to the files), and "-d<scale>"
  encodes frames shrunk by `scale` and enlarges them back after decoding, which is how JPEG gets
  to low rates in practice.
* H.264 (libx264) and MPEG-4 Part 2 ('mpeg4' encoder) are encoded with PyAV into an in-memory
  mp4 file at a nominal 25 fps; their byte count is the whole mp4 file, so the fixed overhead is
  charged to the codec: about 1.5 KB for H.264 (mp4 headers and index plus the ~0.7 KB settings
  string that x264 writes into the first frame) and 0.9 KB for MPEG-4 (one flat 64x64 frame
  encodes to 1,514 and 927 bytes). On small clips this is a large share of the rate at low
  quality (1.5 KB is 0.023 bpp on 32x128x128, 0.19 bpp on 8x64x64).
* Both video codecs work in yuv420p, which needs even frame sizes. Odd-sized frames are padded to
  even by repeating the last row/column, encoded, decoded and cropped back; the padding is
  encoded (it costs a few bits) but bpp and the metrics use the original T x H x W.
"""
from __future__ import annotations

import dataclasses
import io
import math
import time
from typing import Any, Callable, Iterable, Sequence

import av
import cv2
import jax.numpy as jnp
import numpy as np

from cv.lib import metrics

# Nominal frame rate written into the mp4 files (it only sets timestamps).
_FPS = 25

# Round-trip codec: uint8 frames [T, H, W, 3] -> (encoded bytes, decoded frames of the same shape).
RoundTrip = Callable[[np.ndarray], tuple[int, np.ndarray]]


@dataclasses.dataclass
class RDPoint:
  """One rate-distortion measurement: a codec at one setting on one clip.

  Attributes:
    codec: Codec name, e.g. "jpeg", "h264", "mpeg4", "ours".
    setting: The quality setting, e.g. "q75", "crf28".
    bytes: Encoded size in bytes (files/containers as written, not an estimate).
    bpp: Bits per pixel, 8 * bytes / (T * H * W).
    cr: Compression ratio against raw uint8 RGB, T * H * W * 3 / bytes.
    psnr: PSNR in dB over the whole clip (data range 1).
    ssim: Mean per-frame SSIM.
    ms_ssim: Mean per-frame MS-SSIM (fewer scales on small frames; see `cv.lib.metrics`).
    mae: Mean absolute error on the [0, 1] scale.
    encode_s: Wall-clock seconds to encode (for a round-trip-only codec: the whole round trip).
    decode_s: Wall-clock seconds to decode (NaN when only the round trip was timed).
  """
  codec: str
  setting: str
  bytes: int
  bpp: float
  cr: float
  psnr: float
  ssim: float
  ms_ssim: float
  mae: float
  encode_s: float
  decode_s: float


def _check_frames(frames: np.ndarray, name: str) -> None:
  """Raises ValueError unless `frames` is a non-empty uint8 [T, H, W, 3] array."""
  if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"{name}: expected uint8 frames [T, H, W, 3], got shape "
                     f"{getattr(frames, 'shape', None)}")
  if frames.dtype != np.uint8:
    raise ValueError(f"{name}: expected uint8 frames, got dtype {frames.dtype}")
  if frames.shape[0] == 0:
    raise ValueError(f"{name}: got no frames")


# ----------------------------------------------------------------------------------------------
# JPEG (per frame, OpenCV).


def encode_jpeg(frames: np.ndarray, quality: int) -> list[bytes]:
  """Encodes each RGB frame as a separate JPEG file (cv2.imencode, so RGB is converted to BGR).

  Args:
    frames: uint8 [T, H, W, 3] RGB.
    quality: JPEG quality in [0, 100] (higher = better and bigger).

  Returns:
    One JPEG file (bytes) per frame.
  """
  _check_frames(frames, "encode_jpeg")
  if not 0 <= quality <= 100:
    raise ValueError(f"encode_jpeg: quality must be in [0, 100], got {quality}")
  files = []
  for frame in frames:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
      raise RuntimeError(f"encode_jpeg: cv2.imencode failed at quality {quality}")
    files.append(buf.tobytes())
  return files


def decode_jpeg(files: Sequence[bytes]) -> np.ndarray:
  """Decodes JPEG files (from `encode_jpeg`) into uint8 [T, H, W, 3] RGB."""
  out = []
  for data in files:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
      raise RuntimeError("decode_jpeg: cv2.imdecode failed")
    out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
  return np.stack(out)


def jpeg(frames: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
  """Per-frame JPEG round trip.

  Returns:
    (total bytes of the T JPEG files, decoded uint8 [T, H, W, 3] RGB).
  """
  files = encode_jpeg(frames, quality)
  return sum(len(f) for f in files), decode_jpeg(files)


# JPEG markers (ITU-T T.81 Table B.1) used to find and share the header.
_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA


def jpeg_header_length(data: bytes) -> int:
  """Bytes before the entropy-coded data of a baseline JPEG file: SOI and every marker segment up
  to and including the scan header (SOS). OpenCV writes 623 of them (JFIF, two quantisation
  tables, frame header, four Huffman tables, scan header) whatever the quality or frame size.

  Raises:
    ValueError: `data` is not a JPEG file or its header is cut short.
  """
  if not data.startswith(_SOI):
    raise ValueError("jpeg_header_length: the data does not start with a JPEG SOI marker")
  pos = len(_SOI)
  while pos + 4 <= len(data):
    if data[pos] != 0xFF:
      raise ValueError(f"jpeg_header_length: expected a marker at byte {pos}")
    marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
    pos += 2 + length
    if marker == _SOS:
      if pos > len(data):
        break
      return pos
  raise ValueError("jpeg_header_length: the header ends before a scan (SOS) segment")


def pack_jpeg_stream(files: Sequence[bytes]) -> bytes:
  """Packs per-frame JPEG files into one stream that stores their common header once.

  Why: per-frame JPEG files repeat the same ~0.6 KB of tables and headers in every frame. On
  small frames that is most of the rate at low quality (0.30 bpp at 128x128), so charging it T
  times would flatter any codec compared with JPEG. A clip container needs the tables once, as
  JPEG's abbreviated format and Motion-JPEG streams do. The stream is the first file's header
  followed by each frame's entropy-coded data and EOI marker; `unpack_jpeg_stream` restores the
  files byte for byte (entropy-coded data cannot contain an EOI marker: 0xFF bytes in it are
  stuffed as 0xFF00).

  Args:
    files: Per-frame JPEG files with identical headers (one `encode_jpeg` call: same quality,
      same frame size).

  Returns:
    The stream.

  Raises:
    ValueError: No files, or their headers differ.
  """
  if not files:
    raise ValueError("pack_jpeg_stream: got no JPEG files")
  n = jpeg_header_length(files[0])
  header = files[0][:n]
  body = []
  for i, data in enumerate(files):
    if data[:n] != header:  # Same bytes, so the same segments and the same length.
      raise ValueError(f"pack_jpeg_stream: frame {i}'s JPEG header differs from frame 0's; only "
                       f"frames encoded with the same quality and size share one header")
    if not data.endswith(_EOI):
      raise ValueError(f"pack_jpeg_stream: frame {i}'s JPEG file does not end with EOI")
    body.append(data[n:])
  return header + b"".join(body)


def unpack_jpeg_stream(data: bytes) -> list[bytes]:
  """The per-frame JPEG files of a stream written by `pack_jpeg_stream`."""
  n = jpeg_header_length(data)
  header, scans = data[:n], data[n:].split(_EOI)
  if scans[-1]:
    raise ValueError("unpack_jpeg_stream: the stream does not end with an EOI marker")
  return [header + scan + _EOI for scan in scans[:-1]]


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes uint8 [T, H, W, 3] frames: area averaging when shrinking, bicubic when enlarging."""
  shrink = height * width < frames.shape[1] * frames.shape[2]
  interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
  return np.stack([cv2.resize(f, (width, height), interpolation=interpolation) for f in frames])


def jpeg_codec_name(scale: int = 1, stream: bool = False) -> str:
  """The codec name of a JPEG variant: "jpeg" (per-frame files at full size), "-stream" when the
  header is stored once per clip (`pack_jpeg_stream`), "-d<scale>" when the frames are encoded
  at 1/scale of the size and enlarged back after decoding."""
  return "jpeg" + ("-stream" if stream else "") + (f"-d{scale}" if scale > 1 else "")


def _jpeg_variant_points(frames: np.ndarray, q: int, scale: int, stream: bool) -> list[RDPoint]:
  """JPEG at quality `q` on frames shrunk by `scale` (then enlarged back): the per-frame files'
  point and, with `stream`, the same decoded frames counted as one stream with a shared header
  (decoded from that stream, which unpacks to the very same files; measured once)."""
  _, h, w, _ = frames.shape
  if scale < 1:
    raise ValueError(f"jpeg: the shrink factor must be >= 1, got {scale}")
  small_h, small_w = round(h / scale), round(w / scale)
  if min(small_h, small_w) < 8:
    raise ValueError(f"jpeg: frames of {h}x{w} shrunk by {scale} are smaller than one 8x8 JPEG "
                     f"block; use a smaller scale")
  start = time.perf_counter()
  small = frames if scale == 1 else resize_frames(frames, small_h, small_w)
  files = encode_jpeg(small, q)
  packed = pack_jpeg_stream(files) if stream else b""
  encode_s = time.perf_counter() - start
  start = time.perf_counter()
  decoded = decode_jpeg(unpack_jpeg_stream(packed) if stream else files)
  if scale != 1:
    decoded = resize_frames(decoded, h, w)
  decode_s = time.perf_counter() - start
  point = make_point(jpeg_codec_name(scale), f"q{q}", frames, sum(len(f) for f in files),
                     _check_decoded(frames, decoded, "jpeg"), encode_s, decode_s)
  if not stream:
    return [point]
  return [point, dataclasses.replace(point, codec=jpeg_codec_name(scale, stream=True),
                                     **_rate(frames, len(packed)))]


# ----------------------------------------------------------------------------------------------
# Video codecs through PyAV (in-memory mp4).


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
  """Pads H and W up to even sizes by repeating the last row/column (yuv420p needs even sizes)."""
  _, h, w, _ = frames.shape
  if h % 2 == 0 and w % 2 == 0:
    return frames
  return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode_mp4(frames: np.ndarray, codec: str, *, options: dict[str, str] | None = None,
                qscale: int | None = None) -> bytes:
  """Encodes RGB frames with a PyAV encoder (yuv420p) into an in-memory mp4 and returns the file.

  Args:
    frames: uint8 [T, H, W, 3] RGB (any size; odd sizes are padded to even).
    codec: PyAV/FFmpeg encoder name, e.g. "libx264", "mpeg4".
    options: Encoder private options, e.g. {"crf": "28", "preset": "medium"}.
    qscale: If set, fixes the quantiser with qmin = qmax = qscale (the only way that works for
      mpeg4 in PyAV; `global_quality` / `qscale` attributes are ignored by the encoder).

  Returns:
    The complete mp4 file.
  """
  padded = _pad_to_even(frames)
  _, h, w, _ = padded.shape
  buf = io.BytesIO()
  with av.open(buf, mode="w", format="mp4") as out:
    stream = out.add_stream(codec, rate=_FPS)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    if options:
      stream.options = dict(options)
    if qscale is not None:
      stream.codec_context.qmin = stream.codec_context.qmax = int(qscale)
    for frame in padded:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        out.mux(packet)
    for packet in stream.encode():  # Flush delayed (B-)frames.
      out.mux(packet)
  return buf.getvalue()


def decode_video(data: bytes, height: int | None = None, width: int | None = None) -> np.ndarray:
  """Decodes an in-memory video file into uint8 [T, H, W, 3] RGB.

  Args:
    data: The encoded file (e.g. from `encode_h264` / `encode_mpeg4`).
    height: If set, crops the decoded frames to this height (undoes even-size padding).
    width: If set, crops the decoded frames to this width.

  Returns:
    uint8 [T, height, width, 3] RGB.
  """
  with av.open(io.BytesIO(data), mode="r") as container:
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  if not frames:
    raise RuntimeError("decode_video: the file holds no decodable frames")
  return np.stack(frames)[:, :height, :width]


def encode_h264(frames: np.ndarray, crf: int, preset: str = "medium") -> bytes:
  """Encodes RGB frames with libx264 (yuv420p, constant rate factor) into an in-memory mp4.

  Args:
    frames: uint8 [T, H, W, 3] RGB; odd H/W are padded to even (see the module docstring).
    crf: x264 constant rate factor in [0, 51] (lower = better and bigger).
    preset: x264 speed preset ("ultrafast" ... "veryslow").

  Returns:
    The complete mp4 file.
  """
  _check_frames(frames, "encode_h264")
  if not 0 <= crf <= 51:
    raise ValueError(f"encode_h264: crf must be in [0, 51], got {crf}")
  return _encode_mp4(frames, "libx264", options={"crf": str(crf), "preset": preset})


def encode_mpeg4(frames: np.ndarray, q: int) -> bytes:
  """Encodes RGB frames with MPEG-4 Part 2 ('mpeg4', fixed quantiser q) into an in-memory mp4.

  Args:
    frames: uint8 [T, H, W, 3] RGB; odd H/W are padded to even (see the module docstring).
    q: Quantiser in [1, 31] (lower = better and bigger), set as qmin = qmax = q.

  Returns:
    The complete mp4 file.
  """
  _check_frames(frames, "encode_mpeg4")
  if not 1 <= q <= 31:
    raise ValueError(f"encode_mpeg4: q must be in [1, 31], got {q}")
  return _encode_mp4(frames, "mpeg4", qscale=q)


def _check_decoded(frames: np.ndarray, decoded: np.ndarray, name: str) -> np.ndarray:
  """Raises RuntimeError if a codec lost frames or changed the frame size."""
  if decoded.shape != frames.shape:
    raise RuntimeError(f"{name}: decoded shape {decoded.shape} differs from the input "
                       f"{frames.shape}")
  return decoded


def h264(frames: np.ndarray, crf: int, preset: str = "medium") -> tuple[int, np.ndarray]:
  """libx264 round trip (yuv420p, in-memory mp4).

  Odd frame sizes are padded to even with edge pixels before encoding and cropped back after
  decoding, so `decoded` always has the shape of `frames`.

  Returns:
    (size of the whole mp4 file in bytes, decoded uint8 [T, H, W, 3] RGB).
  """
  data = encode_h264(frames, crf, preset)
  decoded = decode_video(data, frames.shape[1], frames.shape[2])
  return len(data), _check_decoded(frames, decoded, "h264")


def mpeg4(frames: np.ndarray, q: int) -> tuple[int, np.ndarray]:
  """MPEG-4 Part 2 round trip (qmin = qmax = q, yuv420p, in-memory mp4; odd sizes as in `h264`).

  Returns:
    (size of the whole mp4 file in bytes, decoded uint8 [T, H, W, 3] RGB).
  """
  data = encode_mpeg4(frames, q)
  decoded = decode_video(data, frames.shape[1], frames.shape[2])
  return len(data), _check_decoded(frames, decoded, "mpeg4")


# ----------------------------------------------------------------------------------------------
# Measurement.


def _to_unit(frames: np.ndarray) -> jnp.ndarray:
  """uint8 [T, H, W, C] -> float32 [1, T, H, W, C] in [0, 1] (floats are taken as already in it)."""
  frames = np.asarray(frames)
  if frames.dtype == np.uint8:
    frames = frames.astype(np.float32) / 255.0
  elif not np.issubdtype(frames.dtype, np.floating):
    raise ValueError(f"quality: expected uint8 or float frames, got dtype {frames.dtype}")
  return jnp.asarray(frames, jnp.float32)[None]


def quality(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
  """Distortion of `decoded` against `reference`, with the project's metrics (`cv.lib.metrics`).

  Args:
    reference: [T, H, W, 3] frames, uint8 in [0, 255] or float in [0, 1]; H, W >= 11.
    decoded: Frames of the same shape.

  Returns:
    {"psnr": dB over the whole clip, "ssim": mean per-frame SSIM, "ms_ssim": mean per-frame
    MS-SSIM (number of scales adapted to the frame size), "mae": on the [0, 1] scale}.
  """
  if np.shape(reference) != np.shape(decoded):
    raise ValueError(f"quality: shapes differ: {np.shape(reference)} vs {np.shape(decoded)}")
  x, y = _to_unit(reference), _to_unit(decoded)
  return {
      "psnr": float(metrics.psnr(x, y)[0]),
      "ssim": float(metrics.ssim(x, y)[0]),
      "ms_ssim": float(metrics.ms_ssim(x, y)[0]),
      "mae": float(metrics.mae(x, y)[0]),
  }


def make_point(codec: str, setting: str, frames: np.ndarray, num_bytes: int, decoded: np.ndarray,
               encode_s: float = math.nan, decode_s: float = math.nan) -> RDPoint:
  """Builds an RDPoint from an encoded size and the decoded frames (computes rate and quality).

  Args:
    codec: Codec name.
    setting: Setting name.
    frames: The original uint8 [T, H, W, 3] frames.
    num_bytes: Encoded size in bytes (> 0).
    decoded: Decoded frames, same shape as `frames`.
    encode_s: Encoding time in seconds.
    decode_s: Decoding time in seconds.

  Returns:
    The RDPoint.
  """
  if num_bytes <= 0:
    raise ValueError(f"{codec} {setting}: encoded size must be positive, got {num_bytes}")
  return RDPoint(codec=codec, setting=setting, **_rate(frames, num_bytes),
                 **quality(frames, decoded), encode_s=float(encode_s), decode_s=float(decode_s))


def _rate(frames: np.ndarray, num_bytes: int) -> dict[str, Any]:
  """The RDPoint rate fields (bytes, bpp, cr) of `num_bytes` for the [T, H, W, 3] `frames`."""
  t, h, w, _ = frames.shape
  pixels = t * h * w
  return dict(bytes=int(num_bytes), bpp=8.0 * num_bytes / pixels, cr=3.0 * pixels / num_bytes)


def measure(codec: str, setting: str, frames: np.ndarray, roundtrip: RoundTrip) -> RDPoint:
  """Runs a round-trip codec on `frames` and measures it.

  This is the extension point for codecs that are not in this module (e.g. our neural codec):
  anything that maps uint8 [T, H, W, 3] frames to (encoded bytes, decoded frames) can be measured
  exactly like the classic ones. Only the whole round trip is timed: it is stored as `encode_s`
  and `decode_s` is NaN.
  """
  start = time.perf_counter()
  num_bytes, decoded = roundtrip(frames)
  elapsed = time.perf_counter() - start
  decoded = _check_decoded(frames, np.asarray(decoded), f"{codec} {setting}")
  return make_point(codec, setting, frames, num_bytes, decoded, encode_s=elapsed)


def _measure_split(codec: str, setting: str, frames: np.ndarray, encode: Callable[[], Any],
                   decode: Callable[[Any], np.ndarray], size: Callable[[Any], int]) -> RDPoint:
  """Times encode and decode separately and measures the result."""
  start = time.perf_counter()
  payload = encode()
  encode_s = time.perf_counter() - start
  start = time.perf_counter()
  decoded = decode(payload)
  decode_s = time.perf_counter() - start
  decoded = _check_decoded(frames, decoded, f"{codec} {setting}")
  return make_point(codec, setting, frames, size(payload), decoded, encode_s, decode_s)


def sweep(
    frames: np.ndarray,
    *,
    jpeg_qualities: Iterable[int] = (10, 30, 50, 75, 90),
    h264_crfs: Iterable[int] = (18, 23, 28, 35, 45),
    mpeg4_qs: Iterable[int] = (2, 5, 10, 20, 31),
    h264_preset: str = "medium",
    jpeg_scales: Iterable[int] = (1,),
    jpeg_stream: bool = False,
) -> list[RDPoint]:
  """Measures every classic codec at every setting on the same frames.

  Args:
    frames: uint8 [T, H, W, 3] RGB; H, W >= 11 (for SSIM).
    jpeg_qualities: JPEG qualities (setting names "q<quality>").
    jpeg_scales: JPEG runs on frames shrunk by each of these factors and enlarged back after
      decoding (1: full size, codec "jpeg"; otherwise "jpeg-d<scale>"): the way to reach low
      rates with JPEG, where it would otherwise spend its bits on detail the rate cannot afford.
    jpeg_stream: Also count each JPEG variant as one stream with the header stored once
      (`pack_jpeg_stream`, codecs "jpeg-stream..."), besides per-frame files.
    h264_crfs: libx264 CRFs (setting names "crf<crf>", or "crf<crf>-<preset>" for a non-default
      preset).
    mpeg4_qs: MPEG-4 Part 2 quantisers (setting names "q<q>").
    h264_preset: libx264 preset for every CRF.

  Returns:
    One RDPoint per (codec, setting), in the order jpeg (by scale, then quality), h264, mpeg4 and
    the given settings.
  """
  _check_frames(frames, "sweep")
  h, w = frames.shape[1:3]
  points = []
  for scale in jpeg_scales:
    for q in jpeg_qualities:
      points += _jpeg_variant_points(frames, q, int(scale), jpeg_stream)
  suffix = "" if h264_preset == "medium" else f"-{h264_preset}"
  for crf in h264_crfs:
    points.append(_measure_split(
        "h264", f"crf{crf}{suffix}", frames, lambda crf=crf: encode_h264(frames, crf, h264_preset),
        lambda data: decode_video(data, h, w), len))
  for q in mpeg4_qs:
    points.append(_measure_split(
        "mpeg4", f"q{q}", frames, lambda q=q: encode_mpeg4(frames, q),
        lambda data: decode_video(data, h, w), len))
  return points
