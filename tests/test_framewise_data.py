"""COIN-format reading and per-frame windows: annotation checks, label alignment (RGB and codes,
temporally compressed codes too), evaluation windows and code shards with frame labels."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cv.data import datasets, framewise, sources
from cv.data.sources import DatasetError
from tests.helpers import write_clip


def _coin_root(tmp_path, entries: dict[str, dict], videos: dict[str, int]) -> str:
  """A COIN root: COIN.json with `entries`, and 25 fps clips of `videos[id]` frames."""
  root = tmp_path / "coin"
  for i, (vid, n) in enumerate(videos.items()):
    write_clip(str(root / "videos" / f"{vid}.mp4"), n=n, seed=i)
  root.mkdir(exist_ok=True)
  (root / "COIN.json").write_text(json.dumps({"database": entries}))
  return str(root)


def _entry(subset: str, segments, duration: float = 1.0) -> dict:
  return {"subset": subset, "duration": duration, "recipe_type": 3,
          "annotation": [{"segment": [s, e], "label": lab, "id": "1"} for s, e, lab in segments]}


def test_frame_labels_follow_segments_with_inclusive_ends():
  labels = framewise.frame_labels([(0.2, 0.4, 2), (0.8, 0.9, 5)], 10, rate=10.0)
  assert labels.tolist() == [0, 0, 2, 2, 2, 0, 0, 0, 5, 5]
  # Half the rate (stride 2): frame i is at 2i/10 s.
  assert framewise.frame_labels([(0.2, 0.4, 2)], 4, rate=5.0).tolist() == [0, 2, 2, 0]
  with pytest.raises(ValueError, match="frame rate"):
    framewise.frame_labels([], 3, rate=0.0)


@pytest.mark.parametrize("length,window,hop,align,expected", [
    (10, 4, 2, 1, [0, 2, 4, 6]),
    (11, 4, 3, 1, [0, 3, 6, 7]),      # last window aligned to the end
    (3, 4, 2, 1, [0]),                # shorter than a window: one padded window
    (12, 4, 3, 2, [0, 2, 4, 6, 8]),   # starts on the codec's temporal blocks
])
def test_window_starts_cover_every_frame(length, window, hop, align, expected):
  starts = framewise.window_starts(length, window, hop, align)
  assert starts == expected
  covered = {f for s in starts for f in range(s, min(s + window, length))}
  assert covered == set(range(length))


def test_coin_source_reads_segments_and_classes(tmp_path):
  root = _coin_root(tmp_path, {
      "a": _entry("training", [(0.1, 0.3, "cut"), (0.5, 0.8, "mix")]),
      "b": _entry("testing", [(0.0, 0.2, "stir")]),
  }, {"a": 25, "b": 25})
  reps = datasets.read_splits(root, "coin", ["training", "testing"])
  assert reps["training"].class_names == ["background", "cut", "mix", "stir"]
  assert reps["testing"].class_names == reps["training"].class_names
  (rec,) = reps["training"].records
  assert rec["video_id"] == "a" and rec["segments"] == [(0.1, 0.3, 1), (0.5, 0.8, 2)]
  assert reps["testing"].records[0]["segments"] == [(0.0, 0.2, 3)]


def test_coin_source_reports_bad_annotations_and_missing_videos(tmp_path):
  root = _coin_root(tmp_path, {
      "good": _entry("training", [(0.1, 0.3, "cut")]),
      "late": _entry("training", [(0.1, 5.0, "cut")], duration=1.0),   # past the video's end
      "back": _entry("training", [(0.6, 0.2, "cut")]),                 # start > end
      "gone": _entry("training", [(0.1, 0.2, "cut")]),                 # no video file
  }, {"good": 25, "late": 25, "back": 25})
  rep = sources.coin_source(root, "training")
  assert [r["video_id"] for r in rep.records] == ["good"]
  reasons = " | ".join(f"{p}: {r}" for p, r in rep.problems)
  assert "[late]" in reasons and "ends after the video's end" in reasons
  assert "[back]" in reasons and "not a time range" in reasons
  assert "gone.mp4" in reasons and "file not found" in reasons
  with pytest.raises(DatasetError, match=r"\[late\].*ends after"):
    sources.coin_source(root, "training", strict=True)


def test_coin_source_errors_name_the_file_and_fix(tmp_path):
  with pytest.raises(DatasetError, match="COIN.json: annotation file not found"):
    sources.coin_source(str(tmp_path), "training")
  (tmp_path / "COIN.json").write_text("{not json")
  with pytest.raises(DatasetError, match="not a COIN annotation file"):
    sources.coin_source(str(tmp_path), "training")
  root = _coin_root(tmp_path, {"a": _entry("training", [])}, {"a": 25})
  with pytest.raises(DatasetError, match=r"no video has subset 'validation'.*\['training'\]"):
    sources.coin_source(root, "validation")


def test_video_window_labels_align_with_decoded_frames(tmp_path):
  # 25 fps, 30 frames; a step from 0.4 s to 0.6 s covers frames 10..15.
  root = _coin_root(tmp_path, {"a": _entry("training", [(0.4, 0.6, "cut")], duration=1.2)},
                    {"a": 30})
  (rec,) = sources.coin_source(root, "training").records
  load = framewise.LoadVideoWindow(8, 2, 32, 32, train=False)  # every 2nd frame: 12.5 fps
  ds = framewise.as_windows([rec], [framewise.video_length(rec, 2)], 8, 4)
  assert framewise.video_length(rec, 2) == 15 and len(ds) == 3
  out = [load(ds[i]) for i in range(len(ds))]
  assert out[0]["video"].shape == (8, 32, 32, 3)
  stitched = np.full(15, -1)
  for o in out:
    real = o["frame_mask"] > 0
    stitched[o["start"] + np.flatnonzero(real)] = o["labels"][real]
  assert stitched.tolist() == [0] * 5 + [1] * 3 + [0] * 7  # frames 10, 12, 14 of the video
  rng = np.random.default_rng(0)
  train = framewise.LoadVideoWindow(8, 2, 32, 32, train=True)(rec, rng)
  assert train["labels"].shape == (8,) and "index" not in train


def test_video_window_skips_a_video_shorter_than_its_annotation(tmp_path):
  root = _coin_root(tmp_path, {"a": _entry("training", [(0.2, 3.0, "cut")], duration=3.0)},
                    {"a": 25})  # the file lasts 1 s
  (rec,) = sources.coin_source(root, "training").records
  load = framewise.LoadVideoWindow(8, 1, 32, 32, train=True)
  assert load(rec, np.random.default_rng(0)) is None and len(load.skipped) == 1
  strict = framewise.LoadVideoWindow(8, 1, 32, 32, train=True, strict=True)
  with pytest.raises(ValueError, match="ends after the video's end"):
    strict(rec, np.random.default_rng(0))


def test_code_window_with_temporal_factor_keeps_frame_labels():
  tf, t_codes = 2, 5  # 10 encoded frames
  codes = np.arange(t_codes)[:, None, None, None] * np.ones((1, 6, 6, 2), np.uint8)
  labels = np.array([0, 0, 1, 1, 1, 2, 2, 0, 0, 3], np.int16)
  record = {"codes": codes, "frame_labels": labels, "path": "v.mp4"}
  load = framewise.LoadCodeWindow(4, 4, tf, train=False)
  ds = framewise.as_windows([record], [10], 4, 3, align=tf)
  starts = [ds[i]["_window"] for i in range(len(ds))]
  assert starts == [0, 2, 4, 6]  # multiples of tf, the last ending at frame 10
  out = load(ds[3])
  assert out["codes"].shape == (2, 4, 4, 2) and out["codes"][:, 0, 0, 0].tolist() == [3, 4]
  assert out["labels"].tolist() == [2, 0, 0, 3] and out["frame_mask"].tolist() == [1] * 4
  short = load({**record, "_window": 8, "_index": 0})  # past the end: padded and masked
  assert short["frame_mask"].tolist() == [1, 1, 0, 0]
  with pytest.raises(DatasetError, match="no per-frame labels"):
    load({"codes": codes, "path": "k.mp4"})
  with pytest.raises(ValueError, match="multiple of the codec's temporal factor"):
    framewise.LoadCodeWindow(5, 4, 2, train=True)


@pytest.mark.slow
def test_encoded_coin_shards_store_frame_labels(tmp_path):
  from cv.codec.neural import NeuralCodec
  from cv.configs import coin_framewise
  from cv.data import code_shards
  from cv.codec import code_cache
  c = coin_framewise.get_config("smoke")
  c.codes.root = str(tmp_path / "codes")
  root = datasets.resolve_root(c.data)
  codec = NeuralCodec.load(None)
  out, manifest = code_cache.ensure_codes(c, codec, "demo")
  assert manifest["splits"]["training"]["class_names"][0] == "background"
  records = {r["video_id"]: r for r in sources.coin_source(root, "testing").records}
  for rec in code_shards.code_dataset(out, "testing"):
    seg = records[rec["video_id"]]["segments"]
    expected = framewise.frame_labels(seg, rec["num_frames"], rec["fps"])
    np.testing.assert_array_equal(rec["frame_labels"], expected)
    assert rec["codes"].shape[0] * codec.temporal_factor == rec["num_frames"]
    assert (expected > 0).any() and (expected == 0).any()
  assert os.path.exists(os.path.join(out, code_shards.MANIFEST))
