"""Fixed-width bit packing of code indices: the plain (non-entropy-coded) payload of a `.cvz` file.

A codebook with N entries needs only ceil(log2 N) bits per index (13 for 8192 entries), while the
smallest numpy integer holding it needs 16; packing at exactly that width is what makes the stored
size match the nominal compression ratio.

Bit order (part of the file format): the values are flattened in C order and laid end to end in
one little-endian bit stream, value i occupying stream bits [i*bits, (i+1)*bits), least
significant bit first; stream bit j is bit (j % 8) of byte j // 8, counting from the least
significant bit. The unused high bits of the last byte are zero. This is what
`np.packbits(..., bitorder="little")` of the values' little-endian bits would give.

Implementation: 8 values of `bits` bits fill exactly `bits` bytes, so values are grouped in blocks
of 8 and each block is assembled in ceil(bits/8) uint64 words with vectorised shifts (8 passes
over n/8 blocks), then the words' little-endian bytes are trimmed to `bits` bytes per block.
"""
from __future__ import annotations

import numpy as np

from cv.codec import rate

MAX_BITS = 32


bits_for = rate.bits_per_index  # ceil(log2 N), at least 1


def packed_size(count: int, bits: int) -> int:
  """Bytes that `count` values take at `bits` bits each: ceil(count * bits / 8)."""
  _check_bits(bits)
  if count < 0:
    raise ValueError(f"packed_size: count must be >= 0, got {count}")
  return (int(count) * bits + 7) // 8


def _check_bits(bits: int) -> None:
  if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
    raise ValueError(f"bits must be an int in [1, {MAX_BITS}], got {bits!r}")


def pack(codes: np.ndarray, bits: int) -> bytes:
  """Packs non-negative integers < 2**bits at exactly `bits` bits each (see module doc for order).

  Args:
    codes: integer array of any shape; flattened in C order.
    bits: bits per value, 1..32.

  Returns:
    ceil(codes.size * bits / 8) bytes.

  Raises:
    ValueError: `bits` out of range, a non-integer array, or a value outside [0, 2**bits).
  """
  _check_bits(bits)
  codes = np.asarray(codes)
  if codes.dtype == np.bool_:
    codes = codes.astype(np.uint8)
  if not np.issubdtype(codes.dtype, np.integer):
    raise ValueError(f"pack: codes must be an integer array, got dtype {codes.dtype}; "
                     "cast the code indices to an integer type first")
  flat = codes.reshape(-1)
  n = flat.size
  if n == 0:
    return b""
  lo, hi = flat.min(), flat.max()
  if lo < 0 or int(hi) >= (1 << bits):
    bad = int(lo) if lo < 0 else int(hi)
    raise ValueError(f"pack: value {bad} does not fit in {bits} bits (allowed 0..{(1 << bits) - 1}); "
                     "use bits=bits_for(codebook_size) or check the codes")
  blocks = -(-n // 8)
  vals = np.zeros(blocks * 8, np.uint64)
  vals[:n] = flat
  vals = vals.reshape(blocks, 8)
  words = -(-bits // 8)  # ceil(8 * bits / 64)
  acc = np.zeros((blocks, words), np.uint64)
  for i in range(8):
    offset = i * bits
    w, s = divmod(offset, 64)
    acc[:, w] |= vals[:, i] << np.uint64(s)
    if s + bits > 64:  # spills into the next word
      acc[:, w + 1] |= vals[:, i] >> np.uint64(64 - s)
  raw = acc.astype("<u8", copy=False).view(np.uint8).reshape(blocks, words * 8)[:, :bits]
  return raw.tobytes()[:packed_size(n, bits)]


def unpack(data: bytes, bits: int, count: int) -> np.ndarray:
  """Inverse of `pack`: `count` values of `bits` bits each, as a flat array.

  Args:
    data: exactly packed_size(count, bits) bytes, as written by `pack`.
    bits: bits per value, 1..32.
    count: number of values.

  Returns:
    uint16 array [count] when bits <= 16, else uint32; the caller reshapes it.

  Raises:
    ValueError: `data` is shorter or longer than `count` values need (a wrong bits/count or a
      damaged payload).
  """
  _check_bits(bits)
  need = packed_size(count, bits)
  if len(data) != need:
    what = "too short" if len(data) < need else "too long"
    raise ValueError(f"unpack: data is {what}: {count} values at {bits} bits need {need} bytes, "
                     f"got {len(data)}; check bits/count against the header that wrote it")
  out_dtype = np.uint16 if bits <= 16 else np.uint32
  if count == 0:
    return np.zeros(0, out_dtype)
  blocks = -(-count // 8)
  words = -(-bits // 8)
  raw = np.zeros((blocks, words * 8), np.uint8)
  buf = np.frombuffer(data, np.uint8)
  padded = np.zeros(blocks * bits, np.uint8)
  padded[:buf.size] = buf
  raw[:, :bits] = padded.reshape(blocks, bits)
  acc = raw.view("<u8").astype(np.uint64, copy=False)
  mask = np.uint64((1 << bits) - 1)
  vals = np.empty((blocks, 8), np.uint64)
  for i in range(8):
    offset = i * bits
    w, s = divmod(offset, 64)
    v = acc[:, w] >> np.uint64(s)
    if s + bits > 64:
      v |= acc[:, w + 1] << np.uint64(64 - s)
    vals[:, i] = v & mask
  return vals.reshape(-1)[:count].astype(out_dtype)
