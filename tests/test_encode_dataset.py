"""tools/encode_dataset.py: code shards + manifest, resumable after SIGKILL, read back by Grain."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cv.codec.neural import NeuralCodec
from cv.data import code_shards, sources
from cv.codec import encode
from tests import helpers

TOOL = os.path.join(helpers.ROOT, "tools", "encode_dataset.py")


def _cmd(root, out, *extra):
  return [sys.executable, TOOL, f"--root={root}", f"--out={out}", "--short_side=32", "--crop=32",
          "--quiet", *extra]


def _records(out, split="train"):
  ds = code_shards.code_dataset(str(out), split)
  return [ds[i] for i in range(len(ds))]


@pytest.fixture()
def bigger_root(kinetics_root):
  """The bad-input Kinetics root plus 24 more good training clips."""
  with open(os.path.join(kinetics_root, "train.csv"), "a") as f:
    for i in range(24):
      vid = f"more{i:07d}"
      helpers.write_clip(os.path.join(kinetics_root, "train", f"{vid}_000000_000002.mp4"), seed=100 + i)
      f.write(f"{'ab'[i % 2]},{vid},0,2,train\n")
  return kinetics_root


def test_encode_killed_midway_resumes_without_duplicates(tmp_path, bigger_root):
  ref = tmp_path / "ref"
  r = subprocess.run(_cmd(bigger_root, ref, "--num_shards=12"), env=helpers.main_env(),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  out = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(bigger_root, out, "--num_shards=12"), env=helpers.main_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and not (out.exists() and any(
      p.endswith(".json") and p.startswith("train") for p in os.listdir(out))):
    assert proc.poll() is None, "encoding ended before it could be killed"
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = [p for p in os.listdir(out) if p.endswith(".array_record.json")]
  assert 1 <= len(done) < 13, done  # 12 train shards + 1 validate shard in total
  assert not (out / "manifest.json").exists()
  r = subprocess.run(_cmd(bigger_root, out, "--num_shards=12"), env=helpers.main_env(),
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "already finished, skipping" in r.stdout
  a, b = _records(ref), _records(out)
  ids = [x["video_id"] for x in b]
  # 36 rows: 2 missing/empty files skipped by the source, 2 undecodable (text, truncated); the
  # 3-frame video is short for a training clip but is encoded whole.
  assert len(ids) == len(set(ids)) == 32
  assert sorted(ids) == sorted(x["video_id"] for x in a)
  by_id = {x["video_id"]: x for x in a}
  for x in b:
    np.testing.assert_array_equal(x["codes"], by_id[x["video_id"]]["codes"])
  leftovers = [p for p in os.listdir(out) if "tmp" in p]
  assert not leftovers, leftovers

  manifest = json.load(open(out / "manifest.json"))
  bad = {os.path.basename(p) for p, _ in manifest["splits"]["train"]["bad"]}
  assert bad == {"text0000000_000000_000002.mp4", "trunc000000_000000_000002.mp4",
                 "missing0000_000000_000002.mp4", "empty000000_000000_000002.mp4"}
  assert manifest["splits"]["train"]["num_records"] == 32
  assert manifest["nominal_cr"] == pytest.approx(192.0)


def test_records_hold_the_codecs_codes_and_metadata(tmp_path, kinetics_root):
  out = str(tmp_path / "codes")
  codec = NeuralCodec.load()
  rep = sources.kinetics_source(kinetics_root, "validate", class_names=["a", "b"])
  spec = encode.EncodeSpec(short_side=32, crop=32)
  encode.encode_split(rep.records, out, "validate", codec, spec, root=kinetics_root, num_shards=1,
                      progress=False)
  path = encode.write_manifest_if_complete(out, {"validate": dict(num_shards=1, class_names=["a", "b"])},
                                           codec, "demo", spec, {})
  assert path
  (rec,) = _records(out, "validate")
  frames, _ = encode.load_frames(rep.records[0]["path"], spec, codec.spatial_factor)
  np.testing.assert_array_equal(rec["codes"], codec.encode(frames))
  assert rec["codes"].dtype == np.uint8 and rec["codes"].shape == (12, 4, 4, 1)
  assert rec["label"] == 1 and rec["video_id"] == "val00000000" and rec["time_end"] == 2.0
  # Codebook embeddings are looked up on device.
  lat = codec.latents(rec["codes"][None])
  assert lat.shape == (1, 12, 4, 4, codec.model.code_dim)

  manifest = code_shards.load_manifest(out)
  code_shards.check_codec(manifest, codec.codec_id, codec.config_hash, out)
  with pytest.raises(sources.DatasetError, match="made by codec"):
    code_shards.check_codec(manifest, "someothercodec", codec.config_hash, out)
  os.remove(os.path.join(out, manifest["splits"]["validate"]["shards"][0]))
  with pytest.raises(sources.DatasetError, match="code shard missing"):
    code_shards.code_dataset(out, "validate")
  with pytest.raises(sources.DatasetError, match="no manifest"):
    code_shards.load_manifest(str(tmp_path))
