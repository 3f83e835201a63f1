"""Tests for the byte-level codec format: bit packing, entropy coding and the `.cvz` container."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time

import numpy as np
import pytest

from cv.codec import bitpack, container, context_coding, entropy
from cv.codec.container import CvzError, CvzHeader, CvzWriter, read_cvz


# ---------------------------------------------------------------------------------------------
# bitpack


def test_bits_for():
  assert [bitpack.bits_for(n) for n in (1, 2, 3, 4, 5, 256, 257, 8192, 8193, 65536)] == [
      1, 1, 2, 2, 3, 8, 9, 13, 14, 16]
  with pytest.raises(ValueError):
    bitpack.bits_for(0)  # raises


def _reference_pack(values: np.ndarray, bits: int) -> bytes:
  """Slow, obviously-correct LSB-first packing: every bit of every value, then np.packbits."""
  v = values.reshape(-1).astype(np.uint64)
  stream = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
  return np.packbits(stream.reshape(-1), bitorder="little").tobytes()


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_round_trip(bits):
  rng = np.random.default_rng(bits)
  for _ in range(3):
    shape = tuple(rng.integers(1, 6, size=rng.integers(1, 5)))
    codes = rng.integers(0, 1 << bits, size=shape).astype(np.int32)
    codes.reshape(-1)[0] = (1 << bits) - 1  # the largest value must fit too
    data = bitpack.pack(codes, bits)
    assert len(data) == -(-codes.size * bits // 8) == bitpack.packed_size(codes.size, bits)
    assert data == _reference_pack(codes, bits)
    out = bitpack.unpack(data, bits, codes.size)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out.reshape(shape), codes)


def test_pack_wide_bits_and_empty():
  rng = np.random.default_rng(0)
  codes = rng.integers(0, 1 << 24, size=1001)
  out = bitpack.unpack(bitpack.pack(codes, 24), 24, codes.size)
  assert out.dtype == np.uint32
  np.testing.assert_array_equal(out, codes)
  assert bitpack.pack(np.zeros((0, 3), np.int32), 13) == b""
  assert bitpack.unpack(b"", 13, 0).shape == (0,)


def test_pack_errors():
  with pytest.raises(ValueError, match=r"value 8 .* 3 bits"):
    bitpack.pack(np.array([1, 8, 2]), 3)
  with pytest.raises(ValueError, match=r"value -1 .* 4 bits"):
    bitpack.pack(np.array([[0, -1]]), 4)
  with pytest.raises(ValueError, match="integer"):
    bitpack.pack(np.array([0.5]), 4)
  data = bitpack.pack(np.arange(10), 5)
  with pytest.raises(ValueError, match="too short"):
    bitpack.unpack(data[:-1], 5, 10)
  with pytest.raises(ValueError, match="too long"):
    bitpack.unpack(data + b"\0", 5, 10)


def test_pack_is_fast():
  codes = np.random.default_rng(0).integers(0, 8192, size=2_000_000).astype(np.int32)
  t0 = time.perf_counter()
  data = bitpack.pack(codes, 13)
  t1 = time.perf_counter()
  out = bitpack.unpack(data, 13, codes.size)
  t2 = time.perf_counter()
  np.testing.assert_array_equal(out, codes)
  # Vectorised code takes ~25 ms each way here; a per-value Python loop would take seconds.
  assert t1 - t0 < 1.0 and t2 - t1 < 1.0, (t1 - t0, t2 - t1)


# ---------------------------------------------------------------------------------------------
# entropy


def _counts(codes: np.ndarray, n: int) -> np.ndarray:
  return np.stack([np.bincount(codes[..., k].ravel(), minlength=n)
                   for k in range(codes.shape[-1])])


def test_frequencies_to_probs_smooths():
  probs = entropy.frequencies_to_probs(np.array([[3, 0, 1], [0, 0, 0]]))
  assert probs.dtype == np.float64
  np.testing.assert_allclose(probs, [[4 / 7, 1 / 7, 2 / 7], [1 / 3, 1 / 3, 1 / 3]])
  with pytest.raises(ValueError):
    entropy.frequencies_to_probs(np.array([[1, -1]]))


def test_entropy_round_trip_and_near_entropy_size():
  rng = np.random.default_rng(0)
  n, k = 256, 2
  # Skewed (geometric-like) distributions, a different one per codebook.
  p = np.stack([np.exp(-np.arange(n) / s) for s in (6.0, 20.0)])
  p /= p.sum(axis=1, keepdims=True)
  codes = np.stack([rng.choice(n, size=(8, 16, 16, 32), p=p[j]) for j in range(k)], axis=-1)
  probs = entropy.frequencies_to_probs(_counts(codes, n))
  data = entropy.encode(codes, probs)
  out = entropy.decode(data, probs, codes.shape)
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, codes)

  counts = _counts(codes, n)
  freq = counts / counts.sum(axis=1, keepdims=True)
  empirical_bytes = -(counts * np.log2(np.where(counts > 0, freq, 1.0))).sum() / 8
  packed = len(bitpack.pack(codes, bitpack.bits_for(n)))
  assert abs(len(data) - empirical_bytes) <= 0.02 * empirical_bytes, (len(data), empirical_bytes)
  assert len(data) < 0.75 * packed, (len(data), packed)


@pytest.mark.parametrize("n", [256, 8192])
def test_entropy_uniform_not_bigger_than_packed(n):
  rng = np.random.default_rng(n)
  codes = rng.integers(0, n, size=(4, 8, 8, 64, 1))
  probs = entropy.frequencies_to_probs(_counts(codes, n))
  data = entropy.encode(codes, probs)
  np.testing.assert_array_equal(entropy.decode(data, probs, codes.shape), codes)
  packed = len(bitpack.pack(codes, bitpack.bits_for(n)))
  assert len(data) <= packed * 1.01 + 16, (len(data), packed)


def test_entropy_unseen_symbol_and_errors():
  probs = entropy.frequencies_to_probs(np.array([[1000, 0, 0, 0], [0, 0, 0, 1000]]))
  codes = np.array([[[0, 3], [1, 2], [3, 0]]])  # includes symbols never counted
  data = entropy.encode(codes, probs)
  np.testing.assert_array_equal(entropy.decode(data, probs, codes.shape), codes)
  assert entropy.encode(np.zeros((0, 2), np.int32), probs) == b""
  with pytest.raises(ValueError, match="code 4"):
    entropy.encode(np.array([[0, 4]]), probs)
  with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
    entropy.encode(np.zeros((3, 3), np.int32), probs)


# ---------------------------------------------------------------------------------------------
# temporal-context coding


def _moving_codes(rng, n=64, shape=(12, 10, 14, 2), shift=1, noise=0.1):
  """Skewed i.i.d. codes in frame 0; each later frame is the previous one moved `shift` cells to
  the right (a new column enters at the left), with a `noise` fraction of indices redrawn."""
  p = np.exp(-np.arange(n) / 8.0)
  p /= p.sum()
  t, h, w, k = shape
  codes = np.empty(shape, np.int64)
  codes[0] = rng.choice(n, size=(h, w, k), p=p)
  for i in range(1, t):
    codes[i] = np.roll(codes[i - 1], shift, axis=1)
    codes[i, :, :shift] = rng.choice(n, size=(h, shift, k), p=p)
    redraw = rng.random((h, w, k)) < noise
    codes[i][redraw] = rng.choice(n, size=int(redraw.sum()), p=p)
  return codes, np.stack([p] * k)


def test_context_coding_round_trip_and_exploits_motion():
  rng = np.random.default_rng(0)
  codes, probs = _moving_codes(rng)
  data = context_coding.encode(codes, probs)
  out = context_coding.decode(data, probs, codes.shape)
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, codes)
  static = len(entropy.encode(codes, probs))
  # 90% of the indices of frames 1.. are predictable from the moved context: far below static.
  assert len(data) < 0.5 * static, (len(data), static)
  # The weight goes to the neighbour the content came from: one cell to the left, (0, -1).
  weights = context_coding.fit_weights(codes, probs)
  moved_from = 1 + context_coding.NEIGHBOURHOOD.index((0, -1))
  assert np.all(np.argmax(weights, axis=1) == moved_from), weights
  still, _ = _moving_codes(rng, shift=0)
  assert np.all(np.argmax(context_coding.fit_weights(still, probs), axis=1)
                == 1 + context_coding.NEIGHBOURHOOD.index((0, 0)))


def test_context_coding_of_unrelated_frames_costs_about_static():
  rng = np.random.default_rng(1)
  codes, probs = _moving_codes(rng, noise=1.0)  # every index redrawn: no temporal structure
  data = context_coding.encode(codes, probs)
  np.testing.assert_array_equal(context_coding.decode(data, probs, codes.shape), codes)
  weights = context_coding.fit_weights(codes, probs)
  assert np.all(weights[:, 0] > 0.8 * weights.sum(axis=1)), weights  # mostly the static table
  static = len(entropy.encode(codes, probs))
  assert len(data) <= 1.03 * static + 2 * weights.size, (len(data), static)


def test_context_coding_large_frames_are_coded_in_row_blocks(monkeypatch):
  rng = np.random.default_rng(2)
  codes, probs = _moving_codes(rng, shape=(3, 9, 5, 1))
  whole = context_coding.encode(codes, probs)
  monkeypatch.setattr(context_coding, "_MAX_MATRIX", 2 * 5 * 64)  # two rows per block
  assert len(context_coding._frame_blocks(context_coding.contexts(codes[0, ..., 0]), 64)) == 5
  blocked = context_coding.encode(codes, probs)
  np.testing.assert_array_equal(context_coding.decode(blocked, probs, codes.shape), codes)
  assert abs(len(blocked) - len(whole)) <= 8


def test_context_coding_edge_cases_and_errors():
  probs = entropy.frequencies_to_probs(np.array([[1000, 0, 0, 0]]))
  one = np.array([[[[0], [3]], [[1], [2]]]])  # a single latent frame, with never-counted codes
  data = context_coding.encode(one, probs)
  np.testing.assert_array_equal(context_coding.decode(data, probs, one.shape), one)
  empty = np.zeros((0, 2, 2, 1), np.int32)
  assert context_coding.decode(context_coding.encode(empty, probs), probs, empty.shape).shape == (
      0, 2, 2, 1)
  with pytest.raises(ValueError, match="code 4"):
    context_coding.encode(one + 1, probs)
  with pytest.raises(ValueError, match=r"\[T', H', W', 1\]"):
    context_coding.encode(one[0], probs)
  with pytest.raises(ValueError, match="damaged"):
    context_coding.decode(data[:-1], probs, one.shape)
  zero_static = b"\x00\x00" + data[2:]
  with pytest.raises(ValueError, match="static weight is 0"):
    context_coding.decode(zero_static, probs, one.shape)


# ---------------------------------------------------------------------------------------------
# .cvz container


def _header(chunk_num_frames=(16, 16, 5), **kw) -> CvzHeader:
  args = dict(codec_id="vq_codec_cr192", config_hash="3f2a9c0d81b7e6a4", width=256, height=240,
              fps="30000/1001", num_frames=37, padded=[40, 256, 256],
              code_shape_per_chunk=[4, 32, 32, 1], chunk_frames=16,
              chunk_num_frames=list(chunk_num_frames), bits=13)
  args.update(kw)
  return CvzHeader(**args)


def _write(path, chunks, header=None) -> CvzHeader:
  header = header or _header(chunk_num_frames=[16] * len(chunks))
  with CvzWriter(str(path), header) as w:
    for c in chunks:
      w.write_chunk(c)
  return header


def test_cvz_round_trip_multi_chunk(tmp_path):
  rng = np.random.default_rng(0)
  codes = [rng.integers(0, 8192, size=(t // 4, 32, 32, 1)) for t in (16, 16, 4)]
  header = _header(chunk_num_frames=[16, 16, 4], padded=[36, 256, 256], num_frames=33,
                   entropy=False, extra={"source": "clip.mp4", "note": "ü"})
  header.width = np.int64(256)  # numpy ints are normalised to JSON ints on close
  path = tmp_path / "v.cvz"
  _write(path, [bitpack.pack(c, 13) for c in codes], header)
  got_header, chunks = read_cvz(str(path))
  assert got_header == header and type(got_header.width) is int
  chunks = list(chunks)
  assert len(chunks) == 3
  for c, data in zip(codes, chunks):
    np.testing.assert_array_equal(bitpack.unpack(data, 13, c.size).reshape(c.shape), c)
  # Empty chunks are legal and kept.
  _write(tmp_path / "e.cvz", [b"", b"x", b""])
  assert list(read_cvz(str(tmp_path / "e.cvz"))[1]) == [b"", b"x", b""]


def test_cvz_header_may_be_completed_while_writing(tmp_path):
  header = _header(chunk_num_frames=[], code_shape_per_chunk=[])
  path = tmp_path / "v.cvz"
  with CvzWriter(str(path), header) as w:
    for t in (16, 3):
      w.write_chunk(bytes([t]) * 10)
      w.header.chunk_num_frames.append(t)
    w.header.code_shape_per_chunk = [4, 32, 32, 1]
  got, chunks = read_cvz(str(path))
  assert got.chunk_num_frames == [16, 3] and got.code_shape_per_chunk == [4, 32, 32, 1]
  assert list(chunks) == [b"\x10" * 10, b"\x03" * 10]


def test_cvz_overhead_below_one_percent(tmp_path):
  payload = np.random.default_rng(1).bytes(32768)
  path = tmp_path / "v.cvz"
  header = _write(path, [payload[:16384], payload[16384:]])
  size = os.path.getsize(path)
  _, chunks = read_cvz(str(path))  # verifies the whole file
  assert b"".join(chunks) == payload
  overhead = size - len(payload)  # magic, version, header, chunk framing, SHA-256 trailer
  assert overhead == 4 + 4 + len(header.to_json()) + 2 * 4 + 32
  assert size <= 1.01 * len(payload), (size, overhead)


def test_cvz_corrupt_byte_is_checksum_mismatch(tmp_path):
  path = tmp_path / "v.cvz"
  _write(path, [np.random.default_rng(2).bytes(20000)])
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0x01
  path.write_bytes(bytes(raw))
  with pytest.raises(CvzError, match="checksum mismatch: the file is corrupt") as e:
    read_cvz(str(path))
  assert str(e.value).startswith(str(path))


def test_cvz_truncated(tmp_path):
  path = tmp_path / "v.cvz"
  _write(path, [b"a" * 5000, b"b" * 5000])
  raw = path.read_bytes()
  for cut in (len(raw) - 1, len(raw) - 32, len(raw) // 2, 30, 6, 3, 0):
    bad = tmp_path / f"cut{cut}.cvz"
    bad.write_bytes(raw[:cut])
    with pytest.raises(CvzError, match="truncated") as e:
      read_cvz(str(bad))
    assert str(e.value).startswith(str(bad)), cut


def test_cvz_bad_magic_names_file(tmp_path):
  path = tmp_path / "notes.cvz"
  path.write_text("this is a text file, not a compressed video\n" * 4)
  with pytest.raises(CvzError, match="not a .cvz file") as e:
    read_cvz(str(path))
  assert str(e.value).startswith(str(path))
  with pytest.raises(CvzError, match="cannot open"):
    read_cvz(str(tmp_path / "missing.cvz"))


def test_cvz_newer_version_is_refused(tmp_path):
  obj = json.loads(_header(chunk_num_frames=[]).to_json())
  newer, current = container.FORMAT_VERSION + 1, container.FORMAT_VERSION
  obj["v"] = newer
  head = json.dumps(obj).encode()
  body = b"CVZ1" + struct.pack("<I", len(head)) + head
  path = tmp_path / "newer.cvz"
  path.write_bytes(body + hashlib.sha256(body).digest())
  with pytest.raises(CvzError, match=f"version {newer}.*reads version {current}"):
    read_cvz(str(path))
  # The same bytes at the current version read fine, so the refusal is about the version alone.
  obj["v"] = current
  head = json.dumps(obj).encode()
  body = b"CVZ1" + struct.pack("<I", len(head)) + head
  path.write_bytes(body + hashlib.sha256(body).digest())
  assert read_cvz(str(path))[0].chunk_num_frames == []


def test_cvz_writer_exception_leaves_nothing(tmp_path):
  folder = tmp_path / "out"
  folder.mkdir()
  path = folder / "v.cvz"
  with pytest.raises(RuntimeError, match="boom"):
    with CvzWriter(str(path), _header(chunk_num_frames=[16, 16])) as w:
      w.write_chunk(b"x" * 1000)
      assert len(os.listdir(folder)) == 1  # the spill file exists while writing...
      raise RuntimeError("boom")
  assert os.listdir(folder) == []  # ...and neither it, a temp file nor `path` remain.
  # A chunk count that disagrees with the header is refused the same way.
  with pytest.raises(CvzError, match="wrote 1 chunks but header.chunk_num_frames lists 2"):
    _write(path, [b"x"], _header(chunk_num_frames=[16, 16]))
  assert os.listdir(folder) == []
  # An existing file is replaced only by a complete new one.
  _write(path, [b"old"])
  with pytest.raises(RuntimeError):
    with CvzWriter(str(path), _header(chunk_num_frames=[16])) as w:
      w.write_chunk(b"new")
      raise RuntimeError("boom")
  assert list(read_cvz(str(path))[1]) == [b"old"] and os.listdir(folder) == ["v.cvz"]
