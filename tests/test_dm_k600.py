"""DeepMind's compressed Kinetics-600 (TFRecords of uint8 codes + their mapping pickle) as code
shards: converted by tools/import_dm.py, checked record by record against the codec, and trained
on by s3d_cls through cv.main with config.data.format=dm_k600."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from cv.codec import dm_import
from cv.codec.neural import NeuralCodec
from cv.data import code_shards, dm_tfrecords
from cv.data.sources import DatasetError
from cv_tools import import_dm as tool
from tests import dm_reference as ref
from tests import helpers

# The released dataset's codec: CR 192 = 3 stride-2 convs (8x in space), K = 1 codebook of 256.
CR192 = dict(bot_channels=8, num_conv_layers=3, use_multicodebook=False, vq_num_embeddings=256,
             res_bot_mult=1.0, extra_encode_conv_layers=1, extra_decode_conv_layers=1)
CLASSES = {0: "abseiling", 1: "air drumming", 3: "archery"}  # id 2 has no clip here
# Their flip network for the latents of this codec, on the grid of a smoke-size code clip (4 code
# frames of 4x4 cells: 4 frames cropped to 32x32 pixels).
AUG = dict(channels=(8, 8, 8), num_hidden_layers=1, num_attention_heads=1, key_size=8,
           value_size=8, intermediate_size=8)


def _records(rng, n, prefix, labelled=True, shape=(8, 5, 6)):
  out = []
  for i in range(n):
    label_id = sorted(CLASSES)[i % len(CLASSES)]
    r = dict(video_id=f"{prefix}{i:03d}", start_sec=float(i), end_sec=float(i) + 10.0,
             codes=rng.integers(0, 256, shape, dtype=np.uint8))
    if labelled:
      r.update(label=CLASSES[label_id], label_id=label_id)
    out.append(r)
  return out


@pytest.fixture(scope="module")
def dm_data(tmp_path_factory):
  """(folder of their TFRecords + mapping pickle, converted codec path, records by split); the
  codec comes from a checkpoint that also holds a flip network (written to cr192_aug/)."""
  tmp = tmp_path_factory.mktemp("dm")
  params, state = ref.make_codec(CR192, ema_steps=0)
  aug_params, aug_state = ref.make_aug(AUG, (1, 4, 4, 4, CR192["bot_channels"]))
  pkl, codec_path = str(tmp / "41861759_1_cr=192.pkl"), str(tmp / "cr192.cvcodec")
  ref.save_checkpoint(pkl, CR192, params, state, aug=(AUG, aug_params, aug_state))
  assert tool.main([pkl, codec_path]) == 0
  data = tmp / "k600"
  os.makedirs(data / "data_mappings")
  embeddings = state["CompressionConvEncoderDecoder/~/vqvae_0"]["embeddings"]  # [D, N]
  with open(data / "data_mappings" / "41861759_2_cr=192.pkl", "wb") as f:
    pickle.dump({"embeddings": embeddings}, f)
  rng = np.random.default_rng(0)
  records = {"train": [_records(rng, 6, "tr"), _records(rng, 5, "tq")],
             "valid": [_records(rng, 4, "va")], "test": [_records(rng, 2, "te", labelled=False)]}
  for split, files in records.items():
    for i, recs in enumerate(files):
      ref.write_tfrecords(str(data / f"{split}.tfrecord-{i:05d}-of-{len(files):05d}"), recs)
  return str(data), codec_path, records


def test_tfrecords_become_code_shards(tmp_path, dm_data):
  root, codec_path, records = dm_data
  out = str(tmp_path / "shards")
  args = [a for s in ("train", "valid", "test") for a in ("--tfrecords", f"{root}/{s}.tfrecord-*")]
  mapping = os.path.join(root, "data_mappings", "41861759_2_cr=192.pkl")
  assert tool.main([*args, "--mapping", mapping, "--codec", codec_path, "--out", out,
                    "--quiet"]) == 0
  manifest = code_shards.load_manifest(out)
  codec = NeuralCodec.load(codec_path)
  assert manifest["codec_id"] == codec.codec_id and manifest["nominal_cr"] == pytest.approx(192)
  assert set(manifest["splits"]) == {"train", "validate", "test"}  # their "valid" is "validate"
  assert manifest["splits"]["train"]["class_names"] == ["abseiling", "air drumming", "class_2",
                                                        "archery"]
  assert not manifest["splits"]["test"]["labelled"]
  train = code_shards.code_dataset(out, "train")
  assert len(train) == 11
  got = {r["video_id"]: r for r in (train[i] for i in range(len(train)))}
  for r in records["train"][0] + records["train"][1]:
    np.testing.assert_array_equal(got[r["video_id"]]["codes"], r["codes"][..., None])
    assert got[r["video_id"]]["label"] == r["label_id"]
    assert got[r["video_id"]]["time_end"] == r["end_sec"]
  assert got["tr001"]["path"] == "train.tfrecord-00000-of-00002#1"  # file and record
  test = code_shards.code_dataset(out, "test")
  assert [test[i]["label"] for i in range(len(test))] == [-1, -1]
  # Re-running keeps the finished shards.
  before = os.path.getmtime(os.path.join(out, manifest["splits"]["train"]["shards"][0]))
  assert tool.main([*args, "--codec", codec_path, "--out", out, "--quiet"]) == 0
  assert os.path.getmtime(os.path.join(out, manifest["splits"]["train"]["shards"][0])) == before


def test_a_record_that_disagrees_with_the_codec_is_named(tmp_path, dm_data, capsys):
  root, codec_path, _ = dm_data
  codec = NeuralCodec.load(codec_path)
  rng = np.random.default_rng(1)
  bad = _records(rng, 3, "ok")
  bad[1] = dict(bad[1], video_id="wrongK", codes=rng.integers(0, 256, (8, 5, 6, 4), dtype=np.uint8))
  ref.write_tfrecords(str(tmp_path / "train.tfrecord-00000-of-00001"), bad)
  assert tool.main(["--tfrecords", str(tmp_path / "train.tfrecord-*"), "--codec", codec_path,
                    "--out", str(tmp_path / "out"), "--quiet"]) == 1
  err = capsys.readouterr().err
  assert ("train.tfrecord-00000-of-00001 record 1 (video_id wrongK): compressed_repr has shape "
          "(8, 5, 6, 4), but the codec makes codes T'xH'xW' or T'xH'xW'x1") in err, err
  # A mapping that is not the codec's codebook is refused, with the fix.
  other = str(tmp_path / "other.pkl")
  with open(other, "wb") as f:
    pickle.dump({"embeddings": np.ones((8, 256), np.float32)}, f)
  with pytest.raises(DatasetError, match="differ from the codec's codebook.*--mapping"):
    dm_import.check_mapping(dm_import.read_mapping(other), codec, other)
  # A truncated shard is named.
  good = os.path.join(root, "valid.tfrecord-00000-of-00001")
  cut = tmp_path / "valid.tfrecord-00000-of-00001"
  cut.write_bytes(open(good, "rb").read()[:-40])
  with pytest.raises(DatasetError, match=f"{cut}: unreadable after record"):
    list(dm_tfrecords.iter_records(str(cut)))


@pytest.mark.slow
def test_s3d_cls_trains_on_the_released_codes_with_their_flip_network(tmp_path, dm_data,
                                                                     monkeypatch):
  root, codec_path, _ = dm_data
  monkeypatch.setenv("CV_CODES_DIR", str(tmp_path / "cache"))  # converted on first use, here
  wd = str(tmp_path / "run")
  r = helpers.run_main("cv/configs/k600_s3d.py:smoke", wd, "--config.data.format=dm_k600",
                       f"--config.data.root={root}", f"--config.codec={codec_path}",
                       f"--config.aug.workdir={codec_path[:-len('.cvcodec')]}_aug",
                       "--config.aug.eval_flips=True")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "codes: converting DeepMind's TFRecords" in r.stdout  # into the code cache, once
  assert "41861759_2_cr=192.pkl holds the codec's codebook" in r.stdout  # found and checked
  assert "s3d_cls: input=codes, 4 classes" in r.stdout, r.stdout[-2000:]
  assert "augmentation: learned flip" in r.stdout
  m = json.load(open(os.path.join(wd, "metrics.json")))
  assert m["step"] == 6 and m["eval/num_videos"] == 4 and 0.0 <= m["eval/top1"] <= 1.0
  assert m["eval/views"] == 2 * 4  # 2 temporal x 2 spatial views, each unflipped and flipped
