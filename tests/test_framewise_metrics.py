"""cv.lib.metrics.framewise_scores / label_runs and cv.trainers._images.segments_image (per-frame
labels of whole videos, e.g. COIN steps), on small hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cv.lib import metrics
from cv.trainers import _images


def _one_hot_probs(preds, num_classes):
  """Probabilities [n, C] whose argmax is `preds` (0.7 on the prediction, the rest spread)."""
  p = np.full((len(preds), num_classes), 0.3 / (num_classes - 1))
  p[np.arange(len(preds)), preds] = 0.7
  return p


# Video A: 4 frames, top-1 hits [1, 0, 1, 0] -> 0.5, top-2 hits all -> 1.0.
PROBS_A = np.array([[0.7, 0.2, 0.1],   # label 0, argmax 0
                    [0.3, 0.6, 0.1],   # label 0, argmax 1, 0 is 2nd
                    [0.1, 0.8, 0.1],   # label 1, argmax 1
                    [0.2, 0.3, 0.5]])  # label 1, argmax 2, 1 is 2nd
LABELS_A = np.array([0, 0, 1, 1])
# Video B: 2 labelled frames both right (1.0) and one unlabelled frame that would be wrong.
PROBS_B = np.array([[0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]])
LABELS_B = np.array([2, 2, -1])
# Video C: nothing labelled -> not counted as a video at all.
PROBS_C = np.array([[0.0, 0.0, 1.0]])
LABELS_C = np.array([-1])


def _scores(**kwargs):
  return metrics.framewise_scores([PROBS_A, PROBS_B, PROBS_C], [LABELS_A, LABELS_B, LABELS_C],
                                  **kwargs)


def test_per_video_mean_std_topk_and_pooled():
  s = _scores(k=2)
  assert s["top1_mean"] == pytest.approx(0.75)  # mean(0.5, 1.0)
  assert s["top1_std"] == pytest.approx(0.25)  # population std
  assert s["top2_mean"] == pytest.approx(1.0)
  assert s["top2_std"] == pytest.approx(0.0)
  assert s["top1_frames"] == pytest.approx(4 / 6)  # the -1 frames of B and C are ignored
  # Class 0: 1/2, class 1: 1/2, class 2: 2/2.
  assert s["mean_class_accuracy"] == pytest.approx(2 / 3)
  assert s["num_videos"] == 2.0 and s["num_frames"] == 6.0
  assert all(isinstance(v, float) for v in s.values())


def test_k_is_capped_at_the_number_of_classes():
  s = _scores()  # k=5 > C=3
  assert "top3_mean" in s and "top5_mean" not in s
  assert s["top3_mean"] == 1.0 and s["top3_std"] == 0.0


def test_top1_ties_go_to_the_smaller_class():
  s = metrics.framewise_scores([np.array([[0.5, 0.5], [0.5, 0.5]])], [np.array([0, 1])], k=1)
  assert s["top1_frames"] == 0.5


def test_loss_is_pooled_cross_entropy_with_floor():
  expected = -np.mean(np.log([0.7, 0.3, 0.8, 0.3, 0.8, 0.6]))
  assert _scores()["loss"] == pytest.approx(expected)
  s = metrics.framewise_scores([np.array([[1.0, 0.0]])], [np.array([1])])
  assert s["loss"] == pytest.approx(-math.log(1e-12))


def test_segment_accuracy_excludes_background_and_breaks_ties_low():
  labels = np.array([0, 0, 3, 3, -1, 3, 1, 1, 1])
  preds = np.array([0, 0, 2, 3, 3, 3, 1, 0, 0])
  probs = _one_hot_probs(preds, 4)
  # Segments: [0,0] background; [3,3] preds {2,3} tie -> 2: wrong; [3] (split by the -1 frame)
  # right; [1,1,1] majority 0: wrong.
  s = metrics.framewise_scores([probs], [labels], background=0)
  assert s["num_segments"] == 3.0
  assert s["segment_accuracy"] == pytest.approx(1 / 3)
  s = metrics.framewise_scores([probs], [labels], background=None)
  assert s["num_segments"] == 4.0
  assert s["segment_accuracy"] == pytest.approx(2 / 4)
  s = metrics.framewise_scores([probs], [labels], background=3)
  assert s["num_segments"] == 2.0 and s["segment_accuracy"] == pytest.approx(1 / 2)


def test_segment_tie_resolved_to_the_label():
  # Video A's class-1 segment has predictions {1, 2}: the tie goes to 1, the label -> correct.
  s = _scores(background=0)
  assert s["num_segments"] == 2.0  # A: class 1; B: class 2 (C has none)
  assert s["segment_accuracy"] == 1.0


def test_segment_accuracy_nan_without_segments():
  s = metrics.framewise_scores([_one_hot_probs([0, 0, 1], 2)], [np.array([0, 0, -1])])
  assert s["num_segments"] == 0.0
  assert math.isnan(s["segment_accuracy"])


def test_majority_rate_given_and_inferred():
  labels = np.array([1, 1, 1, 0, -1, -1, -1, -1])  # unlabelled frames must not win the vote
  probs = _one_hot_probs(np.zeros(8, np.int64), 2)
  assert metrics.framewise_scores([probs], [labels])["majority_rate"] == pytest.approx(3 / 4)
  s = metrics.framewise_scores([probs], [labels], majority_class=0)
  assert s["majority_rate"] == pytest.approx(1 / 4)
  # Pooled over videos: labels 0,0,1,1,2,2 tie -> class 0; majority_class=2 -> 2/6 as well.
  assert _scores()["majority_rate"] == pytest.approx(1 / 3)
  assert _scores(majority_class=1)["majority_rate"] == pytest.approx(1 / 3)


def test_empty_video_is_allowed():
  s = metrics.framewise_scores([np.zeros((0, 3)), PROBS_A], [np.zeros(0, np.int64), LABELS_A])
  assert s["num_videos"] == 1.0 and s["top1_mean"] == 0.5


@pytest.mark.parametrize("probs, labels, match", [
    ([PROBS_A, PROBS_B], [LABELS_A], "2 videos of probs but 1"),
    ([PROBS_A, PROBS_B], [LABELS_A, LABELS_A], "video 1: 3 frames of probs but 4 labels"),
    ([PROBS_A[:, 0]], [LABELS_A], "video 0: expected probs"),
    ([PROBS_A], [LABELS_A[:, None]], "video 0: expected integer labels"),
    ([PROBS_A], [LABELS_A.astype(np.float32)], "video 0: expected integer labels"),
    ([PROBS_A, PROBS_A[:, :2]], [LABELS_A, LABELS_A], "video 1: probs have 2 classes"),
    ([PROBS_A], [np.array([0, 0, 1, 3])], "video 0: label 3 >= number of classes 3"),
    ([PROBS_C, PROBS_C], [LABELS_C, LABELS_C], "no labelled frames"),
    ([], [], "no labelled frames"),
])
def test_framewise_errors(probs, labels, match):
  with pytest.raises(ValueError, match=match):
    metrics.framewise_scores(probs, labels)


def test_framewise_rejects_bad_k():
  with pytest.raises(ValueError, match="k must be >= 1"):
    metrics.framewise_scores([PROBS_A], [LABELS_A], k=0)


@pytest.mark.parametrize("labels, runs", [
    ([], []),
    ([5], [(0, 1, 5)]),
    ([0, 0, 1, 1, 1, -1, 0], [(0, 2, 0), (2, 5, 1), (5, 6, -1), (6, 7, 0)]),
    ([2, 2, 2], [(0, 3, 2)]),
    ([1, 2, 1], [(0, 1, 1), (1, 2, 2), (2, 3, 1)]),
])
def test_label_runs(labels, runs):
  out = metrics.label_runs(np.asarray(labels, np.int64))
  assert out == runs
  assert all(type(x) is int for run in out for x in run)


def test_label_runs_rejects_2d():
  with pytest.raises(ValueError, match="1-D"):
    metrics.label_runs(np.zeros((2, 2), np.int64))


# ----------------------------------------------------------------------------- visualisation
def test_class_colors():
  c = _images.class_colors(6)
  assert c.shape == (6, 3) and c.dtype == np.uint8
  assert tuple(c[0]) == (64, 64, 64)
  assert len({tuple(row) for row in c}) == 6
  assert tuple(c[1]) == (255, 0, 0)  # the first foreground hue is red
  for row in c[1:]:
    assert row.max() == 255 and row.min() == 0  # fully saturated, never black or white
  c = _images.class_colors(3, background=None)
  assert (64, 64, 64) not in {tuple(row) for row in c}
  assert tuple(_images.class_colors(3, background=2)[2]) == (64, 64, 64)
  with pytest.raises(ValueError, match="background=3"):
    _images.class_colors(3, background=3)


TRUE = [np.array([0, 1, 1, -1]), np.array([2, 2])]
PRED = [np.array([0, 0, 1, 1]), np.array([1, 2])]
NAMES = ["background", "a", "a step with a rather long name that must be cut"]


def test_segments_image_layout_and_pixels():
  w, rh = 300, 5
  img = _images.segments_image(TRUE, PRED, NAMES, width=w, row_height=rh, titles=["v0", "v1"])
  # 2 videos x (16 title + 2 x 5 strips) + one 2-px separator + legend: 2 columns -> 2 lines.
  assert img.shape == (2 * (16 + 2 * rh) + 2 + 2 * 16, w, 3)
  assert img.dtype == np.uint8 and img.flags["C_CONTIGUOUS"]
  col = _images.class_colors(3)
  black, white = (0, 0, 0), (255, 255, 255)
  px = lambda y, x: tuple(img[y, x])  # noqa: E731
  # Video 0, true strip rows 16..20: column x shows frame floor(x * 4 / 300).
  for y in (16, 20):
    assert px(y, 0) == tuple(col[0])
    assert px(y, 100) == tuple(col[1])  # frame 1
    assert px(y, 224) == tuple(col[1])  # frame 2 (896 // 300)
    assert px(y, 225) == black  # frame 3 (900 // 300): unlabelled
    assert px(y, 299) == black
  # Video 0, predicted strip rows 21..25.
  assert px(21, 80) == tuple(col[0]) and px(25, 299) == tuple(col[1])
  assert px(26, 10) == white and px(27, 150) == white  # separator
  assert img[28:44].max() > 128  # the title "v1" is written in white
  # Video 1: true rows 44..48 all class 2; predicted rows 49..53 switch at column 150.
  assert px(44, 0) == tuple(col[2]) and px(48, 299) == tuple(col[2])
  assert px(49, 149) == tuple(col[1]) and px(53, 150) == tuple(col[2])
  # Legend from row 54: swatches at (line * 16 + 3.., column * 128 + 2..).
  assert px(54 + 3, 5) == tuple(col[0])
  assert px(54 + 3, 128 + 5) == tuple(col[1])
  assert px(54 + 16 + 12, 2) == tuple(col[2])
  assert img[54 + 16:, 20:128].max() > 128  # the (cut) class name is drawn


def test_segments_image_without_titles_and_narrow():
  img = _images.segments_image(TRUE, PRED, NAMES, width=50, row_height=3, background=None)
  # 1 legend column (width < 128) -> 3 lines.
  assert img.shape == (2 * 6 + 2 + 3 * 16, 50, 3)
  assert tuple(img[0, 0]) == tuple(_images.class_colors(3, None)[0])
  assert tuple(img[6, 0]) == (255, 255, 255)


def test_segments_image_single_and_empty_video():
  img = _images.segments_image([np.zeros(0, np.int64)], [np.zeros(0, np.int64)], ["x"],
                                 width=10, row_height=2)
  assert img.shape == (4 + 16, 10, 3)
  assert img[:4].max() == 0  # no frames: black strips


@pytest.mark.parametrize("true, pred, kwargs, match", [
    (TRUE, PRED[:1], {}, "2 videos of true labels but 1"),
    (TRUE, [PRED[0], np.array([1, 2, 0])], {}, "video 1: expected true and predicted"),
    ([np.array([0, 3])], [np.array([0, 0])], {}, "video 0: true label 3 >= len"),
    ([np.array([0, 1])], [np.array([0, 5])], {}, "video 0: predicted label 5 >= len"),
    (TRUE, PRED, {"titles": ["only one"]}, "1 titles for 2 videos"),
    (TRUE, PRED, {"width": 0}, "width and row_height"),
])
def test_segments_image_errors(true, pred, kwargs, match):
  with pytest.raises(ValueError, match=match):
    _images.segments_image(true, pred, NAMES, **kwargs)
