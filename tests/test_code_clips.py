"""Code clips (windows and crops of code records), evaluation views, classification scores."""
from __future__ import annotations

import numpy as np
import pytest

from cv.data import code_clips, pipeline
from cv.data.sources import DatasetError
from cv.lib import metrics
from cv.trainers import _images


def _record(t=10, h=6, w=9, k=2, label=3):
  codes = np.arange(t * h * w * k, dtype=np.int64).reshape(t, h, w, k) % 251
  return {"codes": codes.astype(np.uint8), "label": label, "path": "v.mp4"}


def test_train_clip_is_a_window_and_crop_of_the_record():
  rec = _record()
  load = code_clips.LoadCodeClip(code_clips.CodeClipSpec(num_steps=4, grid=4), train=True)
  seen = set()
  for seed in range(40):
    out = load(rec, np.random.default_rng(seed))
    assert out["codes"].shape == (4, 4, 4, 2) and out["codes"].dtype == np.uint8
    assert out["label"] == 3
    # Find where it came from: it must be a contiguous window/crop of the record.
    c = out["codes"]
    hits = [(t, y, x) for t in range(7) for y in range(3) for x in range(6)
            if np.array_equal(rec["codes"][t:t + 4, y:y + 4, x:x + 4], c)]
    assert hits, "not a window of the record"
    seen.add(hits[0])
  assert len(seen) > 10  # random positions vary


def test_eval_views_place_windows_and_crops_deterministically():
  rec = _record()
  load = code_clips.LoadCodeClip(code_clips.CodeClipSpec(num_steps=4, grid=4), train=False)
  centre = load(rec)
  assert np.array_equal(centre["codes"], rec["codes"][3:7, 1:5, 2:6])  # round(0.5 * 6) = 3
  first = load({**rec, "_view": (0.0, 0.0, False), "_index": 5})
  assert np.array_equal(first["codes"], rec["codes"][0:4, 0:4, 0:4]) and first["index"] == 5
  last = load({**rec, "_view": (1.0, 1.0, True), "_index": 0})
  assert np.array_equal(last["codes"], rec["codes"][6:10, 2:6, 5:9][:, :, ::-1])


def test_codes_at_a_finer_frame_stride_give_strided_windows_at_every_phase():
  # Codes encoded at stride 1 for clips at stride 3: each clip takes every third code frame and
  # may start at any frame, so all three temporal phases occur in training.
  rec = _record(t=12)
  spec = code_clips.CodeClipSpec(num_steps=4, grid=4, step=3)
  load = code_clips.LoadCodeClip(spec, train=True)
  starts = set()
  for seed in range(40):
    c = load(rec, np.random.default_rng(seed))["codes"]
    hits = [t for t in range(3) for y in range(3) for x in range(6)
            if np.array_equal(rec["codes"][t:t + 10:3, y:y + 4, x:x + 4], c)]
    assert hits, "not a strided window of the record"
    starts.add(hits[0])
  assert starts == {0, 1, 2}
  last = code_clips.LoadCodeClip(spec, train=False)({**rec, "_view": (1.0, 0.0, False),
                                                       "_index": 0})
  assert np.array_equal(last["codes"], rec["codes"][2:12:3, 0:4, 0:4])


def test_short_videos_repeat_the_last_code_frame_and_small_grids_fail_clearly():
  rec = _record(t=2)
  load = code_clips.LoadCodeClip(code_clips.CodeClipSpec(num_steps=4, grid=4), train=False)
  out = load(rec)["codes"]
  assert np.array_equal(out[2], rec["codes"][1, 1:5, 2:6]) and np.array_equal(out[3], out[2])
  small = code_clips.LoadCodeClip(code_clips.CodeClipSpec(num_steps=4, grid=8), train=False)
  with pytest.raises(DatasetError, match="v.mp4: code grid 6x9 is smaller than the 8x8 crop"):
    small(rec)


def test_view_positions_and_eval_batches_with_views():
  views = pipeline.view_positions(temporal=2, spatial=3, flip=True)
  assert len(views) == 12 and views[0] == (0.0, 0.0, False) and views[-1] == (1.0, 1.0, True)
  assert pipeline.view_positions() == [(0.5, 0.5, False)]
  with pytest.raises(ValueError, match="eval_views"):
    pipeline.view_positions(temporal=0)
  recs = [_record(label=i) for i in range(3)]
  load = code_clips.LoadCodeClip(code_clips.CodeClipSpec(num_steps=4, grid=4), train=False)
  batches = list(pipeline.eval_batches(recs, load, global_batch=4, num_threads=1,
                                       views=pipeline.view_positions(temporal=2)))
  index = np.concatenate([b["index"][b["mask"] > 0] for b in batches])
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  assert sorted(index.tolist()) == [0, 0, 1, 1, 2, 2]
  assert np.array_equal(index, labels)  # each view carries its own video's label


def test_classification_scores_and_confusion():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
  labels = np.array([0, 1, 1, 1])
  s = metrics.classification_scores(probs, labels)
  assert s["top1"] == pytest.approx(0.5)
  assert s["top3"] == 1.0  # k is capped at the number of classes
  assert s["mean_class_accuracy"] == pytest.approx((1.0 + 1 / 3) / 2)
  assert s["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.5, 0.35])))
  cm = metrics.confusion_matrix(labels, probs.argmax(-1), 3)
  assert cm.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
  with pytest.raises(ValueError, match="classification_scores"):
    metrics.classification_scores(np.zeros((0, 3)), np.zeros((0,)))


def test_confusion_image_draws_names_counts_and_the_most_confused_classes():
  cm = np.array([[4, 0, 0], [1, 2, 1], [0, 0, 0]])
  names = ["pan left", "zoom in", "rotate"]
  img = _images.confusion_image(cm, names)
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
  assert 150 < img.shape[0] < 600 and 150 < img.shape[1] < 800
  # The perfectly classified row is drawn in the darkest colour of the map, empty cells in white.
  darkest = np.all(np.abs(img.astype(int) - [8, 48, 107]) < 12, axis=-1)
  assert darkest.sum() > 500
  # Class names and counts are drawn: other names, or the same fractions with doubled counts,
  # change the picture below the title line.
  other = _images.confusion_image(cm, ["a", "b", "c"])
  assert other.shape != img.shape or (other != img).any()
  doubled = _images.confusion_image(cm * 2, names)
  assert doubled.shape == img.shape and (doubled[40:] != img[40:]).any()
  # Many classes: only those involved in the most errors are drawn, so the picture stays small.
  big = np.diag(np.full(100, 5))
  big[10, 20] = big[30, 10] = big[50, 51] = 3
  assert _images.most_confused(big, 4).tolist() == [10, 20, 30, 50]
  img = _images.confusion_image(big, [f"class {i}" for i in range(100)], max_classes=4)
  assert img.shape[0] < 600
  with pytest.raises(ValueError, match=r"\[2, 2\] matrix for 2 class names"):
    _images.confusion_image(cm, names[:2])
