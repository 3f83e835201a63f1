"""The `.cvz` compressed-video file: a small JSON header, length-prefixed chunks, a SHA-256 trailer.

Layout (all integers little-endian uint32):

  b"CVZ1" | header_len | header (UTF-8 compact JSON, `CvzHeader`) |
  chunk_len | chunk bytes | ... (len(header.chunk_num_frames) chunks) | SHA-256 of all the above

The header JSON uses short keys (`JSON_KEYS`), e.g.
  {"v":3,"codec":"…","cfg":"…","w":256,"h":240,"fps":"30000/1001","n":37,"pad":[40,256,256],
   "code_shape":[4,32,32,1],"chunk":16,"chunks":[16,16,5],"bits":13,"ent":false,"x":{}}

One chunk holds the codes of `chunk_num_frames[i]` video frames (bit-packed or entropy-coded, as
`bits`/`entropy` in the header say; since version 2 an entropy chunk starts with a mode byte,
see cv.codec.files; version 3 adds temporal-context coding); the chunk count is
len(chunk_num_frames), and the chunks end exactly where the 32-byte trailer begins, so
truncation and trailing garbage are both detected.
The overhead over the payload is 8 + header + 4 per chunk + 32 bytes.

Writing streams with bounded memory: `CvzWriter` spills chunks to a temporary file beside the
destination and serialises the header only on close, so header fields that are known only after
encoding (e.g. `code_shape_per_chunk`) may still be filled in on `writer.header` while writing. The
final file appears atomically (`fileio.atomic_path`); an exception leaves no file and no
temporary files. `read_cvz` checks the structure and the checksum before handing out any chunk,
so a consumer never writes output from a corrupt file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import os
import struct
import tempfile
from typing import Any, Iterator

from cv.lib import fileio
from cv.lib.errors import UserError

MAGIC = b"CVZ1"
# Version 2: with `entropy`, each chunk starts with a byte saying whether it is range-coded or
# bit-packed (cv.codec.files). Version 3 adds a third chunk mode, temporal-context coding
# (cv.codec.context_coding). Files of versions 1 (every chunk range-coded) and 2 still read.
FORMAT_VERSION = 3
_U32 = struct.Struct("<I")
_DIGEST = 32
_MIN_SIZE = len(MAGIC) + _U32.size + _DIGEST
_COPY_BLOCK = 1 << 20


class CvzError(UserError, ValueError):
  """A `.cvz` file that cannot be read or written; the message starts with the path."""


@dataclasses.dataclass
class CvzHeader:
  """What a decoder needs besides the codec: the video geometry and how the payload is coded.

  Attributes:
    codec_id: identifies the codec that wrote the codes (a decoder must use the same one).
    config_hash: hash of the codec's config, to refuse decoding with a mismatched codec.
    width: original frame width in pixels (before padding).
    height: original frame height in pixels (before padding).
    fps: frame rate as an exact fraction string, e.g. "30000/1001".
    num_frames: original number of frames (before padding).
    padded: [T, H, W] the codec saw after padding; the decoder crops back to the original.
    code_shape_per_chunk: [T', H', W', K] code tensor of one full chunk.
    chunk_frames: frames per chunk (the last chunk may be shorter).
    chunk_num_frames: frames in each chunk, one entry per chunk in the payload.
    bits: bits per index (`bitpack.bits_for(codebook size)`).
    entropy: True if chunks are entropy-coded (each behind a mode byte: bit-packed, range-coded
      by `cv.codec.entropy` or context-coded by `cv.codec.context_coding`), False if bit-packed.
    extra: free-form JSON-serialisable metadata.
    format_version: file format version (`FORMAT_VERSION` when written by this code).
  """
  codec_id: str
  config_hash: str
  width: int
  height: int
  fps: str
  num_frames: int
  padded: list[int]
  code_shape_per_chunk: list[int]
  chunk_frames: int
  chunk_num_frames: list[int]
  bits: int
  entropy: bool = False
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  format_version: int = FORMAT_VERSION

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Normalises numpy ints/tuples to plain JSON types; raises ValueError/TypeError on bad fields.

    Called on construction and again by `CvzWriter` on close (fields may be edited in between).
    """
    for name in ("width", "height", "num_frames", "chunk_frames", "bits", "format_version"):
      value = operator.index(getattr(self, name))
      if value < 0:
        raise ValueError(f"CvzHeader.{name} must be >= 0, got {value}")
      setattr(self, name, value)
    for name in ("padded", "code_shape_per_chunk", "chunk_num_frames"):
      values = [operator.index(v) for v in getattr(self, name)]
      if any(v < 0 for v in values):
        raise ValueError(f"CvzHeader.{name} must hold non-negative ints, got {values}")
      setattr(self, name, values)
    for name in ("codec_id", "config_hash", "fps"):
      if not isinstance(getattr(self, name), str):
        raise TypeError(f"CvzHeader.{name} must be a str, got {getattr(self, name)!r}")
    self.entropy = bool(self.entropy)
    if not isinstance(self.extra, dict):
      raise TypeError(f"CvzHeader.extra must be a dict, got {type(self.extra).__name__}")

  def to_json(self) -> bytes:
    """The header bytes stored in the file: compact UTF-8 JSON with the short keys of `JSON_KEYS`."""
    obj = {JSON_KEYS[f.name]: getattr(self, f.name) for f in dataclasses.fields(self)}
    obj = {k: obj[k] for k in JSON_KEYS.values()}  # version first, then the documented order
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

  @classmethod
  def from_json(cls, data: bytes, path: str = "<bytes>") -> CvzHeader:
    """Parses header bytes; newer versions, missing or unknown fields raise `CvzError`."""
    try:
      obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise CvzError(f"{path}: the header is not valid JSON ({e}): the file is corrupt") from e
    if not isinstance(obj, dict):
      raise CvzError(f"{path}: the header is not a JSON object: the file is corrupt")
    version = obj.get(JSON_KEYS["format_version"])
    if not isinstance(version, int):
      raise CvzError(f"{path}: the header has no integer format version: the file is corrupt")
    if version > FORMAT_VERSION:
      raise CvzError(f"{path}: written in .cvz format version {version}, but this code reads "
                     f"version {FORMAT_VERSION}; update cv to read it")
    names = {short: name for name, short in JSON_KEYS.items()}
    missing = sorted(set(names) - set(obj))
    unknown = sorted(set(obj) - set(names))
    if missing or unknown:
      raise CvzError(f"{path}: header keys do not match format version {version} "
                     f"(missing {missing}, unknown {unknown}): the file is corrupt or was "
                     "written by an incompatible cv")
    try:
      return cls(**{names[k]: v for k, v in obj.items()})
    except (TypeError, ValueError) as e:
      raise CvzError(f"{path}: invalid header ({e}): the file is corrupt") from e


# On-disk JSON key of each `CvzHeader` field, in the order written. Short keys keep the header
# near 200 bytes, so framing + header + checksum stay under 1% of a 32 KB payload (32 frames of
# 256x256 at CR 192).
JSON_KEYS = {
    "format_version": "v",
    "codec_id": "codec",
    "config_hash": "cfg",
    "width": "w",
    "height": "h",
    "fps": "fps",
    "num_frames": "n",
    "padded": "pad",
    "code_shape_per_chunk": "code_shape",
    "chunk_frames": "chunk",
    "chunk_num_frames": "chunks",
    "bits": "bits",
    "entropy": "ent",
    "extra": "x",
}


def _check_header(header: CvzHeader, path: str) -> None:
  """Rejects headers a reader could not use, so a bad file is never written."""
  if not isinstance(header, CvzHeader):
    raise TypeError(f"{path}: header must be a CvzHeader, got {type(header).__name__}")
  try:
    header.validate()
  except (TypeError, ValueError) as e:
    raise CvzError(f"{path}: invalid header: {e}") from e
  if header.format_version != FORMAT_VERSION:
    raise CvzError(f"{path}: this code writes format version {FORMAT_VERSION}, "
                   f"got header.format_version={header.format_version}")


class CvzWriter:
  """Writes a `.cvz` file chunk by chunk; the file appears only on clean exit.

  Usage:
    with CvzWriter(path, header) as w:
      for chunk in chunks:
        w.write_chunk(chunk)

  `header` (also `w.header`) is serialised on exit, so it may be completed while writing; on exit
  the number of chunks written must equal len(header.chunk_num_frames). Memory stays bounded:
  chunks go to a temporary spill file in the destination folder, which is removed on any exit.
  """

  def __init__(self, path: str, header: CvzHeader):
    self.path = os.fspath(path)
    self.header = header
    self._spill = None
    self._spill_path = None
    self._num_chunks = 0

  def __enter__(self) -> CvzWriter:
    _check_header(self.header, self.path)
    directory = os.path.dirname(os.path.abspath(self.path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, self._spill_path = tempfile.mkstemp(
        prefix=f".{os.path.basename(self.path)}.", suffix=".chunks.tmp", dir=directory)
    self._spill = os.fdopen(fd, "w+b")
    return self

  def write_chunk(self, data: bytes) -> None:
    """Appends one chunk (the codes of header.chunk_num_frames[i] frames)."""
    if self._spill is None:
      raise RuntimeError(f"{self.path}: write_chunk outside `with CvzWriter(...)`")
    n = memoryview(data).nbytes
    if n >= 1 << 32:
      raise CvzError(f"{self.path}: chunk of {n} bytes exceeds the 4 GiB chunk limit; "
                     "use fewer frames per chunk")
    self._spill.write(_U32.pack(n))
    self._spill.write(data)
    self._num_chunks += 1

  def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
    try:
      if exc_type is None:
        self._finish()
    finally:
      self._spill.close()
      self._spill = None
      if os.path.exists(self._spill_path):
        os.remove(self._spill_path)

  def _finish(self) -> None:
    _check_header(self.header, self.path)
    expected = len(self.header.chunk_num_frames)
    if self._num_chunks != expected:
      raise CvzError(f"{self.path}: wrote {self._num_chunks} chunks but header.chunk_num_frames "
                     f"lists {expected}; write one chunk per entry")
    try:
      head = self.header.to_json()
    except (TypeError, ValueError) as e:
      raise CvzError(f"{self.path}: header is not JSON-serialisable ({e}); "
                     "store only JSON types in header.extra") from e
    if len(head) >= 1 << 32:
      raise CvzError(f"{self.path}: header is too large; move bulky data out of header.extra")
    digest = hashlib.sha256()
    with fileio.atomic_path(self.path) as tmp:
      with open(tmp, "wb") as out:
        prefix = MAGIC + _U32.pack(len(head)) + head
        out.write(prefix)
        digest.update(prefix)
        self._spill.flush()
        self._spill.seek(0)
        while block := self._spill.read(_COPY_BLOCK):
          out.write(block)
          digest.update(block)
        out.write(digest.digest())


@dataclasses.dataclass(frozen=True)
class _Layout:
  header: CvzHeader
  chunks: list[tuple[int, int]]  # (offset, length) of each chunk's bytes
  size: int


def _scan(path: str) -> _Layout:
  """Parses magic, header and chunk framing and verifies the SHA-256 trailer."""
  try:
    size = os.path.getsize(path)
    f = open(path, "rb")
  except OSError as e:
    raise CvzError(f"{path}: cannot open ({e.strerror}); check the path") from e
  with f:
    magic = f.read(len(MAGIC))
    if not magic:
      raise CvzError(f"{path}: truncated: the file is empty; re-copy or re-encode it")
    if magic != MAGIC[:len(magic)]:
      raise CvzError(f"{path}: not a .cvz file (starts with {magic[:8]!r}, expected {MAGIC!r}); "
                     "pass a file written by the cv compressor")
    if size < _MIN_SIZE:
      raise CvzError(f"{path}: truncated: {size} bytes, shorter than the smallest .cvz file "
                     f"({_MIN_SIZE}); re-copy or re-encode it")
    (head_len,) = _U32.unpack(f.read(_U32.size))
    body_end = size - _DIGEST
    pos = len(MAGIC) + _U32.size + head_len
    if pos > body_end:
      raise CvzError(f"{path}: truncated: the header needs {pos + _DIGEST} bytes, the file has "
                     f"{size}; re-copy or re-encode it")
    header = CvzHeader.from_json(f.read(head_len), path)
    chunks = []
    for _ in range(len(header.chunk_num_frames)):
      if pos + _U32.size > body_end:
        break
      f.seek(pos)
      (n,) = _U32.unpack(f.read(_U32.size))
      pos += _U32.size
      chunks.append((pos, n))
      pos += n
    if len(chunks) < len(header.chunk_num_frames) or pos > body_end:
      raise CvzError(f"{path}: truncated (or a damaged length field): its "
                     f"{len(header.chunk_num_frames)} chunks need more than the {size} bytes it "
                     "has; re-copy or re-encode it")
    if pos != body_end:
      raise CvzError(f"{path}: {body_end - pos} unexpected bytes after the last chunk: "
                     "the file is corrupt; re-copy or re-encode it")
    digest = hashlib.sha256()
    f.seek(0)
    left = body_end
    while left:
      block = f.read(min(_COPY_BLOCK, left))
      if not block:
        raise CvzError(f"{path}: truncated while reading; re-copy or re-encode it")
      digest.update(block)
      left -= len(block)
    if f.read(_DIGEST) != digest.digest():
      raise CvzError(f"{path}: checksum mismatch: the file is corrupt; re-copy or re-encode it")
  return _Layout(header, chunks, size)


def _iter_chunks(path: str, layout: _Layout) -> Iterator[bytes]:
  with open(path, "rb") as f:
    for offset, n in layout.chunks:
      f.seek(offset)
      data = f.read(n)
      if len(data) != n:
        raise CvzError(f"{path}: truncated while reading (the file changed after it was verified)")
      yield data


def read_cvz(path: str) -> tuple[CvzHeader, Iterator[bytes]]:
  """Opens a `.cvz` file: verifies it completely, then returns its header and a chunk iterator.

  The whole file is checked (magic, version, header, framing, SHA-256) before this returns; the
  iterator then re-reads the chunks one at a time, so memory stays bounded by the largest chunk.

  Raises:
    CvzError: not a .cvz file, newer format version, corrupt (checksum mismatch) or truncated.
  """
  path = os.fspath(path)
  layout = _scan(path)
  return layout.header, _iter_chunks(path, layout)
