"""WalkingTours-format walks: splits, chunk-by-chunk encoding into code shards, reading walks."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cv.codec.neural import NeuralCodec
from cv.data import code_shards, walks
from cv.codec import encode
from cv.data.sources import DatasetError
from tests.helpers import write_clip


def _flat(tmp_path, n: int, frames: int = 40) -> str:
  root = tmp_path / "walks"
  for i in range(n):
    write_clip(str(root / f"walk_{i:03d}.mp4"), n=frames, h=32, w=40, seed=i)
  return str(root)


def test_flat_folder_holds_out_every_fourth_walk(tmp_path):
  root = _flat(tmp_path, 6)
  names = lambda split: [r["video_id"] for r in walks.walk_source(root, split).records]
  assert names("test") == ["walk_003"]
  assert names("train") == ["walk_000", "walk_001", "walk_002", "walk_004", "walk_005"]
  with pytest.raises(DatasetError, match="no 'validation' sub-folder"):
    walks.walk_source(root, "validation")


def test_split_subfolders_and_errors(tmp_path):
  root = tmp_path / "w"
  write_clip(str(root / "train" / "a.mp4"), n=10, h=32, w=40)
  write_clip(str(root / "test" / "b.mp4"), n=10, h=32, w=40)
  (root / "train" / "empty.mp4").write_bytes(b"")
  rep = walks.walk_source(str(root), "train")
  assert [r["video_id"] for r in rep.records] == ["a"]
  assert rep.problems and "empty" in rep.problems[0][0]
  with pytest.raises(DatasetError, match="no walks for split 'test'"):
    walks.walk_source(_flat(tmp_path, 2), "test")


def test_walks_encode_chunk_by_chunk_and_resume(tmp_path):
  root = _flat(tmp_path, 4, frames=45)
  (tmp_path / "walks" / "walk_004.mp4").write_text("not a video")  # a 5th walk, broken (train)
  codec = NeuralCodec.load(None)
  out = str(tmp_path / "codes")
  spec = encode.EncodeSpec(short_side=32, crop=0, stride=2, chunk_frames=4)
  path = encode.encode_dataset(root, out, codec, spec, codec_path="demo",
                               data_format="walking_tours", splits=("train", "test"),
                               progress=False)
  manifest = code_shards.load_manifest(out)
  assert path and manifest["encode"]["chunk_frames"] == 4
  assert "walk_004.mp4" in json.dumps(manifest["splits"]["train"]["bad"])
  index = walks.walk_index(out, "train", manifest)
  # 45 frames at stride 2 = 23 frames = 5 whole chunks of 4 (the partial one is dropped).
  assert [d["length"] for d in index] == [5, 5, 5] and [d["offset"] for d in index] == [0, 5, 10]
  records = code_shards.code_dataset(out, "train")
  first = records[5]
  assert first["video_id"] == "walk_001" and first["chunk"] == 0
  assert first["codes"].shape == (4 // codec.temporal_factor, 4, 5, codec.num_codebooks)
  assert records[6]["time_start"] == pytest.approx(4 * 2 / 25)
  # Chunks equal encoding the same frames at once.
  frames = next(walks.iter_chunk_frames(os.path.join(root, "walk_001.mp4"), 4, 2, 32,
                                        codec.spatial_factor))
  np.testing.assert_array_equal(first["codes"], codec.encode(frames))
  load = walks.LoadWalk(out, "train", 3, train=True)
  ex = load(index[2], np.random.default_rng(0))
  assert ex["codes"].shape[0] == 3 and ex["walk"] == index[2]["walk"]
  whole = walks.LoadWalk(out, "test", 0, train=False)(walks.walk_index(out, "test", manifest)[0])
  assert whole["codes"].shape[0] == 5
  with pytest.raises(DatasetError, match="fewer than config.data.num_chunks=9"):
    walks.LoadWalk(out, "train", 9, train=True)(index[0], np.random.default_rng(0))
  # Resume: a deleted shard is made again, finished ones are kept.
  victim = os.path.join(out, code_shards.shard_name("train", 1, 4))
  kept = os.path.getmtime(os.path.join(out, code_shards.shard_name("train", 0, 4)))
  os.remove(victim)
  os.remove(os.path.join(out, code_shards.MANIFEST))
  encode.encode_dataset(root, out, codec, spec, codec_path="demo", data_format="walking_tours",
                        splits=("train", "test"), progress=False)
  assert os.path.exists(victim) and os.path.exists(os.path.join(out, code_shards.MANIFEST))
  assert os.path.getmtime(os.path.join(out, code_shards.shard_name("train", 0, 4))) == kept


def test_walks_need_chunked_encoding(tmp_path):
  root = _flat(tmp_path, 4, frames=10)
  with pytest.raises(ValueError, match="encoded in chunks"):
    encode.encode_dataset(root, str(tmp_path / "c"), NeuralCodec.load(None), encode.EncodeSpec(),
                          codec_path="demo", data_format="walking_tours",
                          splits=("train", "test"), progress=False)
