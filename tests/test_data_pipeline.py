"""Dataset sources and the Grain pipeline: formats, bad input, determinism, resume, sharding."""
from __future__ import annotations

import os

import grain
import numpy as np
import pytest

from cv.data import pipeline, sources
from cv.data.video import VideoError

from tests.helpers import write_clip as _clip


def test_kinetics_source_skips_missing_and_empty_files(kinetics_root):
  rep = sources.kinetics_source(kinetics_root, "train")
  assert rep.class_names == ["a", "b"]
  bad = {os.path.basename(p): r for p, r in rep.problems}
  assert "missing0000_000000_000002.mp4" in bad and "not found" in bad["missing0000_000000_000002.mp4"]
  assert "0 bytes" in bad["empty000000_000000_000002.mp4"]
  assert len(rep.records) == 10  # 7 good + text + short + truncated (found at decode time)
  assert any(r["path"].endswith(os.path.join("a", "sub00000000_000000_000002.mp4"))
             for r in rep.records)
  with pytest.raises(sources.DatasetError, match="missing0000.*not found.*strict"):
    sources.kinetics_source(kinetics_root, "train", strict=True)


def test_val_label_missing_from_train_is_an_error(kinetics_root):
  with open(os.path.join(kinetics_root, "validate.csv"), "a") as f:
    f.write("zebra,val00000000,0,2,validate\n")
  with pytest.raises(sources.DatasetError, match="label 'zebra' does not occur in the training"):
    sources.kinetics_source(kinetics_root, "validate", class_names=["a", "b"])


def test_bad_csv_header_is_named(tmp_path):
  (tmp_path / "train.csv").write_text("name,id\nx,y\n")
  with pytest.raises(sources.DatasetError, match=r"train.csv: missing column"):
    sources.kinetics_source(str(tmp_path), "train")


def test_loader_skips_and_counts_bad_videos_strict_fails(kinetics_root):
  rep = sources.kinetics_source(kinetics_root, "train")
  spec = pipeline.ClipSpec(num_frames=8, stride=1, short_side=32, crop=32)
  load = pipeline.LoadClip(spec, train=True)
  rng = np.random.default_rng(0)
  out = [load(r, rng) for r in rep.records]
  assert sum(o is None for o in out) == 3 and load.num_skipped == 3
  for o in out:
    if o is not None:
      assert o["video"].shape == (8, 32, 32, 3) and o["video"].dtype == np.uint8
  strict = pipeline.LoadClip(spec, train=True, strict=True)
  with pytest.raises(VideoError) as e:
    for r in rep.records:
      strict(r, rng)
  assert kinetics_root in str(e.value)


def _records(tmp_path, n=8):
  recs = []
  for i in range(n):
    p = str(tmp_path / f"c{i}.mp4")
    _clip(p, n=10, seed=i)
    recs.append({"path": p, "label": i, "video_id": f"c{i}"})
  return recs


def test_train_iterator_is_deterministic_and_resumes(tmp_path):
  recs = _records(tmp_path)
  spec = pipeline.ClipSpec(num_frames=4, stride=1, short_side=32, crop=24)
  make = lambda: pipeline.train_iterator(recs, pipeline.LoadClip(spec, train=True),
                                         global_batch=4, seed=3, num_threads=2)
  a = make()
  first = [next(a) for _ in range(5)]  # crosses an epoch boundary (8 clips, batch 4)
  b = make()
  for x, y in zip(first, [next(b) for _ in range(5)]):
    np.testing.assert_array_equal(x["video"], y["video"])
    np.testing.assert_array_equal(x["label"], y["label"])
  # Every epoch is a permutation of all clips, and epochs are shuffled differently.
  labels = np.concatenate([f["label"] for f in first[:4]])
  assert sorted(labels[:8]) == list(range(8)) and sorted(labels[8:16]) == list(range(8))
  assert list(labels[:8]) != list(labels[8:16])
  # Restore the iterator state after 2 batches: the next batches are the same.
  c = make()
  next(c), next(c)
  state = c.get_state()
  d = make()
  d.set_state(state)
  for x in first[2:]:
    np.testing.assert_array_equal(next(d)["video"], x["video"])


def test_process_slices_rebuild_the_global_batch(tmp_path):
  recs = [{"i": i} for i in range(20)]
  ds = grain.MapDataset.source(recs).shuffle(seed=1).repeat(None)
  full = [ds[i]["i"] for i in range(12)]
  parts = [pipeline._BatchSlice(ds, 6, p, 2) for p in range(2)]
  rebuilt = []
  for b in range(2):
    for p in parts:
      rebuilt += [p[b * 3 + r]["i"] for r in range(3)]
  assert rebuilt == full


def test_eval_batches_cover_every_clip_once_with_mask(tmp_path):
  recs = _records(tmp_path, n=5)
  spec = pipeline.ClipSpec(num_frames=4, stride=1, short_side=32, crop=24)
  batches = list(pipeline.eval_batches(recs, pipeline.LoadClip(spec, train=False), global_batch=4))
  assert [b["video"].shape[0] for b in batches] == [4, 4]
  assert batches[1]["mask"].tolist() == [1.0, 0.0, 0.0, 0.0]
  assert np.concatenate([b["label"] for b in batches])[:5].tolist() == [0, 1, 2, 3, 4]
  again = list(pipeline.eval_batches(recs, pipeline.LoadClip(spec, train=False), global_batch=4))
  np.testing.assert_array_equal(batches[0]["video"], again[0]["video"])


def test_folder_source_labels_from_subfolders(tmp_path):
  for lab in ("cat", "dog"):
    _clip(str(tmp_path / lab / "x.mp4"))
  (tmp_path / "notes.txt").write_text("ignored")
  rep = sources.folder_source(str(tmp_path))
  assert rep.class_names == ["cat", "dog"]
  assert sorted(r["label"] for r in rep.records) == [0, 1]
  (tmp_path / "empty").mkdir()
  with pytest.raises(sources.DatasetError, match="no video files"):
    sources.folder_source(str(tmp_path / "empty"))
  with pytest.raises(sources.DatasetError, match="not a folder"):
    sources.folder_source(str(tmp_path / "nope"))
