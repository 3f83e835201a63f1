"""Compress a video (file or folder of frames) into one `.cvz` file, and back (docs/design.md:
Data, Reliability).

Videos are streamed in chunks of `chunk_frames` frames, so memory stays bounded for hour-long
inputs. Each chunk is padded to the codec grid (frames edge-padded to multiples of the codec's
downsampling; a short last chunk only to a multiple of its temporal patch, so the file holds no
codes for frames that do not exist), encoded, and stored bit-packed at
ceil(log2 N) bits per index (or, with `entropy`, range-coded, with the codec's code frequencies
or with the temporal-context model, wherever that is smaller).
Decompression checks the file checksum and the codec identity before writing anything, crops
back to the original size and frame count, and writes the output atomically.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from cv.codec import bitpack, context_coding, entropy
from cv.codec.container import FORMAT_VERSION, CvzError, CvzHeader, CvzWriter, read_cvz
from cv.codec.neural import CodecError, NeuralCodec
from cv.data import video
from cv.data.writer import write_video

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _image_files(folder: str) -> list[str]:
  files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if not files:
    raise CvzError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) to compress")
  return files


def _read_image(path: str, size: tuple[int, int] | None) -> np.ndarray:
  img = cv2.imread(path, cv2.IMREAD_COLOR)
  if img is None:
    raise CvzError(f"{path}: not a readable image; remove it from the folder")
  if size is not None and img.shape[:2] != size:
    raise CvzError(f"{path}: frame size {img.shape[1]}x{img.shape[0]} differs from the first "
                   f"frame's {size[1]}x{size[0]}; all frames of a folder must have one size")
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def open_frames(path: str, chunk_frames: int, fps: float | None = None
                ) -> tuple[dict, Iterator[np.ndarray]]:
  """(info with width/height/fps/num_frames, iterator of uint8 [<=chunk_frames,H,W,3] chunks)."""
  if os.path.isdir(path):
    files = _image_files(path)
    first = _read_image(files[0], None)
    size = first.shape[:2]
    info = dict(width=size[1], height=size[0], num_frames=len(files),
                fps=str(Fraction(fps or 25).limit_denominator(1001)))

    def chunks():
      for i in range(0, len(files), chunk_frames):
        yield np.stack([_read_image(f, size) for f in files[i:i + chunk_frames]])
    return info, chunks()
  meta = video.probe(path)
  rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(meta.fps).limit_denominator(1001)
  info = dict(width=meta.width, height=meta.height, num_frames=meta.num_frames, fps=str(rate))
  return info, video.iter_chunks(path, chunk_frames)


def _probs(codec: NeuralCodec, what: str) -> np.ndarray:
  if codec.code_counts is None:
    raise CodecError(f"{what}: entropy coding needs the codec's code frequencies, and this codec "
                     f"has none; export it with tools/export_codec.py")
  return entropy.frequencies_to_probs(codec.code_counts)


def compress(src: str, dst: str, codec: NeuralCodec, *, chunk_frames: int = 32,
             use_entropy: bool = False, fps: float | None = None, progress: bool = True,
             levels: int | None = None) -> dict:
  """Compresses `src` (video file or folder of frames) into `dst` (.cvz). Returns size figures.

  `levels` picks the rate of a residual-quantisation codec (the first levels; default all)."""
  if chunk_frames % codec.temporal_factor:
    raise ValueError(f"chunk_frames={chunk_frames} must be a multiple of the codec's temporal "
                     f"patch {codec.temporal_factor}")
  info, chunks = open_frames(src, chunk_frames, fps)
  return compress_stream(info, chunks, dst, codec, chunk_frames=chunk_frames,
                         use_entropy=use_entropy, progress=progress, src=src, levels=levels)


def compress_array(frames: np.ndarray, dst: str, codec: NeuralCodec, *, fps: float = 25,
                   chunk_frames: int = 32, use_entropy: bool = False,
                   levels: int | None = None) -> dict:
  """Compresses in-memory uint8 frames [T,H,W,3] into `dst` (used by benchmarks/comparisons);
  `levels` as in `compress`."""
  t, h, w = frames.shape[:3]
  info = dict(width=w, height=h, num_frames=t, fps=str(Fraction(fps).limit_denominator(1001)))
  chunks = (frames[i:i + chunk_frames] for i in range(0, t, chunk_frames))
  return compress_stream(info, chunks, dst, codec, chunk_frames=chunk_frames,
                         use_entropy=use_entropy, progress=False, src="<array>", levels=levels)


# With entropy coding (format version >= 2) every chunk starts with one byte saying how it is
# coded: bit-packed, range-coded by the codec's stored code frequencies (`entropy`), or (version
# 3) range-coded by the temporal-context model (`context_coding`), whichever is smallest. So
# `--entropy` never makes a file bigger than bit-packing (beyond this byte per chunk).
_PACKED, _RANGE_CODED, _CONTEXT_CODED = b"\x00", b"\x01", b"\x02"


def _unpack(data: bytes, bits: int, shape: tuple[int, ...]) -> np.ndarray:
  return bitpack.unpack(data, bits, int(np.prod(shape))).reshape(shape)


def entropy_chunk(codes: np.ndarray, probs: np.ndarray, bits: int) -> bytes:
  """One `--entropy` chunk of codes [T', H', W', K]: the smallest of the bit-packed, range-coded
  and context-coded payloads behind its mode byte (probs: the codec's [K, N] probabilities)."""
  probs = probs[:codes.shape[-1]]
  candidates = [_PACKED + bitpack.pack(codes, bits),
                _RANGE_CODED + entropy.encode(codes, probs),
                _CONTEXT_CODED + context_coding.encode(codes, probs)]
  return min(candidates, key=len)  # ties keep the earlier, simpler mode


def decode_entropy_chunk(data: bytes, probs: np.ndarray, shape: tuple[int, ...], bits: int, *,
                         format_version: int = FORMAT_VERSION, src: str = "<chunk>") -> np.ndarray:
  """Inverse of `entropy_chunk`; version-1 files range-code every chunk, with no mode byte."""
  probs = probs[:shape[-1]]
  if format_version < 2:
    return entropy.decode(data, probs, shape)
  mode, payload = data[:1], data[1:]
  if mode == _CONTEXT_CODED:
    return context_coding.decode(payload, probs, shape)
  if mode == _RANGE_CODED:
    return entropy.decode(payload, probs, shape)
  if mode == _PACKED:
    return _unpack(payload, bits, shape)
  raise CvzError(f"{src}: a chunk has unknown coding mode {mode!r}: the file is corrupt or was "
                 f"written by a newer cv")


def chunk_mode(data: bytes) -> str:
  """How a (version >= 2) `--entropy` chunk is coded: "packed", "range" or "context"."""
  return {_PACKED: "packed", _RANGE_CODED: "range", _CONTEXT_CODED: "context"}.get(
      data[:1], "unknown")


def compress_stream(info: dict, chunks: Iterator[np.ndarray], dst: str, codec: NeuralCodec, *,
                    chunk_frames: int, use_entropy: bool, progress: bool, src: str,
                    levels: int | None = None) -> dict:
  """Encodes frame chunks described by `info` (width, height, fps, num_frames) into `dst`."""
  ph, pw = codec.padded_size(info["height"], info["width"])
  header = CvzHeader(codec_id=codec.codec_id, config_hash=codec.config_hash, width=info["width"],
                     height=info["height"], fps=info["fps"], num_frames=0,
                     padded=[chunk_frames, ph, pw],
                     code_shape_per_chunk=list(codec.code_shape(chunk_frames, ph, pw, levels)),
                     chunk_frames=chunk_frames, chunk_num_frames=[], bits=codec.bits,
                     entropy=use_entropy, extra={"source": os.path.basename(src.rstrip("/"))})
  probs = _probs(codec, src) if use_entropy else None
  bar = tqdm(total=info["num_frames"], unit="frame", desc="compress", disable=not progress)
  payload = 0
  try:
    with CvzWriter(dst, header) as w:
      for codes, n in codec.iter_encode(chunks, levels):
        data = (entropy_chunk(codes, probs, codec.bits) if use_entropy
                else bitpack.pack(codes, codec.bits))
        w.write_chunk(data)
        payload += len(data)
        w.header.chunk_num_frames.append(n)
        w.header.num_frames += n
        bar.update(n)
      if not w.header.chunk_num_frames:
        raise CvzError(f"{src}: no frames decoded; nothing to compress")
  except video.VideoError as e:
    raise CvzError(str(e)) from e
  finally:
    bar.close()
  size = os.path.getsize(dst)
  raw = header.num_frames * header.width * header.height * 3
  return dict(frames=header.num_frames, bytes=size, payload_bytes=payload,
              overhead=(size - payload) / max(payload, 1), cr=raw / size,
              bpp=8 * size / max(1, header.num_frames * header.width * header.height))


def iter_decompress(src: str, codec: NeuralCodec | None
                    ) -> tuple[CvzHeader, Iterator[np.ndarray]]:
  """Verifies `src` and the codec, then yields the original-size uint8 frames chunk by chunk.

  `codec` None: the shipped codec whose id the file records (so files written with any shipped
  codec, the old demo codec included, decompress without naming it)."""
  header, chunks = read_cvz(src)  # checks structure and checksum before any chunk is read
  if codec is None:
    codec = NeuralCodec.shipped_with_id(header.codec_id)
    if codec is None:
      raise CodecError(f"{src}: compressed with codec {header.codec_id}, which is not one of the "
                       f"shipped codecs; pass --codec with the codec file or vq_codec workdir that "
                       f"wrote it")
  if header.config_hash != codec.config_hash or header.codec_id != codec.codec_id:
    raise CodecError(f"{src}: compressed with codec {header.codec_id} (config {header.config_hash}) "
                     f"but the loaded codec is {codec.codec_id} (config {codec.config_hash}); pass "
                     f"--codec pointing at the codec that wrote it")
  probs = _probs(codec, src) if header.entropy else None
  _, h, w, k = header.code_shape_per_chunk
  tf = codec.temporal_factor

  def frames():
    for data, n in zip(chunks, header.chunk_num_frames):
      shape = (-(-n // tf), h, w, k)  # a short last chunk has fewer code frames
      codes = (decode_entropy_chunk(data, probs, shape, header.bits,
                                    format_version=header.format_version, src=src)
               if header.entropy else _unpack(data, header.bits, shape))
      yield codec.decode(codes, (n, header.height, header.width))
  return header, frames()


def decompress(src: str, dst: str, codec: NeuralCodec | None, *, progress: bool = True) -> dict:
  """Writes the reconstruction of `src` to `dst`: a video file (by extension) or a folder of PNGs
  (`codec` None: the shipped codec that wrote it, as in `iter_decompress`)."""
  header, frames = iter_decompress(src, codec)
  bar = tqdm(total=header.num_frames, unit="frame", desc="decompress", disable=not progress)

  def counted():
    for chunk in frames:
      for f in chunk:
        bar.update(1)
        yield f
  try:
    if os.path.splitext(dst)[1].lower() in (".mp4", ".mkv", ".avi", ".webm"):
      write_video(dst, counted(), float(Fraction(header.fps)))
    else:
      _write_folder(dst, counted())
  finally:
    bar.close()
  return dict(frames=header.num_frames, width=header.width, height=header.height, fps=header.fps)


def _write_folder(dst: str, frames: Iterator[np.ndarray]) -> None:
  """PNG frames into a new folder `dst`, which appears only when complete."""
  if os.path.exists(dst):
    raise FileExistsError(f"{dst}: already exists; choose a new output folder or a .mp4 path")
  parent = os.path.dirname(os.path.abspath(dst)) or "."
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", dir=parent)
  try:
    for i, f in enumerate(frames):
      cv2.imwrite(os.path.join(tmp, f"frame_{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    os.rename(tmp, dst)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
