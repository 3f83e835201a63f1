"""TensorBoard images of the trainers' evaluations: confusion matrices, per-frame label strips,
curves.

Trainer-private (only cv/trainers use it): what a classifier gets wrong is easier to see than to
read from a number. `segments_image` draws true and predicted labels of whole videos as coloured
strips with a legend, so where a model confuses steps is visible; `confusion_image` shows which
classes are taken for which (class names on the axes, counts in the cells; drawn with
matplotlib).
"""
from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np


def _render(fig) -> np.ndarray:
  """uint8 [H, W, 3] pixels of a matplotlib figure, cropped to what is drawn (no pyplot, so no
  global state: safe in any thread)."""
  import io
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight", pad_inches=0.1,
              facecolor="white")
  bgr = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
  return np.ascontiguousarray(bgr[..., ::-1])


def most_confused(cm: np.ndarray, k: int) -> np.ndarray:
  """Sorted ids of the (at most) `k` classes involved in the most errors (off-diagonal counts of
  their row plus their column; ties: the lower id)."""
  cm = np.asarray(cm)
  errors = cm.sum(0) + cm.sum(1) - 2 * np.diag(cm)
  return np.sort(np.argsort(-errors, kind="stable")[:k])


def confusion_image(cm: np.ndarray, class_names: Sequence[str], *, max_classes: int = 30,
                    max_name: int = 24) -> np.ndarray:
  """uint8 [H, W, 3] picture of a confusion matrix a person can read (matplotlib).

  Rows are true classes, columns predictions, both labelled with the class names (cut to
  `max_name` characters); every non-zero cell shows its count, coloured by the fraction of its
  true class (a perfect classifier is a dark diagonal on white). The title gives the accuracy
  over all classes. With more than `max_classes` classes (Kinetics has 600), only the
  `max_classes` classes involved in the most errors are drawn, and the title says so.
  """
  from matplotlib.figure import Figure

  cm = np.asarray(cm, np.int64)
  c = len(class_names)
  if cm.ndim != 2 or cm.shape != (c, c):
    raise ValueError(f"confusion_image: a [{c}, {c}] matrix for {c} class names expected, got "
                     f"shape {cm.shape}")
  total, correct = int(cm.sum()), int(np.trace(cm))
  title = f"accuracy {correct / max(total, 1):.3f} ({correct}/{total})"
  keep = np.arange(c)
  if c > max_classes:
    keep = most_confused(cm, max_classes)
    title += f"; the {len(keep)} most confused of {c} classes"
  sub = cm[np.ix_(keep, keep)]
  frac = cm[keep] / np.maximum(cm[keep].sum(axis=1, keepdims=True), 1)
  frac = frac[:, keep]
  names = [n if len(n) <= max_name else n[:max_name - 2] + ".."
           for n in (str(class_names[i]) for i in keep)]
  n = len(keep)
  side = 0.3 * n + 0.6  # inches of the matrix itself; the labels add what they need
  fig = Figure(figsize=(side + 2.5, side + 1.5), dpi=100, layout="constrained")
  ax = fig.add_subplot()
  im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  size = 8 if n <= 12 else 7
  for i in range(n):
    for j in range(n):
      if sub[i, j]:
        ax.text(j, i, str(sub[i, j]), ha="center", va="center", fontsize=size,
                color="white" if frac[i, j] > 0.5 else "black")
  ax.set_xticks(range(n), names, rotation=90, fontsize=size)
  ax.set_yticks(range(n), names, fontsize=size)
  ax.set_xlabel("predicted", fontsize=9)
  ax.set_ylabel("true", fontsize=9)
  ax.set_title(title, fontsize=9)
  bar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
  bar.ax.tick_params(labelsize=7)
  bar.set_label("fraction of the true class", fontsize=7)
  return _render(fig)


# ----------------------------------------------------------------------------- per-frame labels
BACKGROUND_RGB = (64, 64, 64)
UNLABELLED_RGB = (0, 0, 0)
SEPARATOR_RGB = (255, 255, 255)
# Layout of `segments_image`, in pixels.
SEPARATOR_HEIGHT = 2  # white line between the strip pairs of two videos
TITLE_HEIGHT = 16  # text line above each pair, when titles are given
LEGEND_LINE_HEIGHT = 16
LEGEND_CELL_WIDTH = 128  # one swatch + class name; min(width, this) when the image is narrower
_SWATCH = 10
_MIN_TEXT_SCALE = 0.3


def class_colors(num_classes: int, background: int | None = 0) -> np.ndarray:
  """uint8 [num_classes, 3] RGB colours, one per class, for per-frame label strips.

  The non-background classes get fully saturated colours with evenly spaced hues, so
  neighbouring classes differ most when there are few classes; the `background` class is dark
  grey (64, 64, 64) so that actions stand out. None of the colours is black (unlabelled) or white
  (separators).
  """
  if num_classes < 1:
    raise ValueError(f"class_colors: num_classes must be >= 1, got {num_classes}")
  if background is not None and not 0 <= background < num_classes:
    raise ValueError(f"class_colors: background={background} is not a class id in "
                     f"[0, {num_classes}); pass background=None for none")
  fg = [c for c in range(num_classes) if c != background]
  out = np.empty((num_classes, 3), np.uint8)
  for i, c in enumerate(fg):
    rgb = colorsys.hsv_to_rgb(i / len(fg), 1.0, 1.0)
    out[c] = np.round(np.asarray(rgb) * 255.0)
  if background is not None:
    out[background] = BACKGROUND_RGB
  return out


def _text_width(text: str, scale: float) -> int:
  return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def _fit_text(text: str, height: int, max_width: int) -> tuple[str, float]:
  """The text and Hershey font scale that fit in a `height` x `max_width` box.

  The scale follows the height (Hershey simplex text with ascenders and descenders is ~34 px tall
  at scale 1) and shrinks to fit the width down to a readable minimum, after which the text is
  cut and ends in ".." ("" if nothing fits).
  """
  scale = max(_MIN_TEXT_SCALE, (height - 2) / 34)
  if text and _text_width(text, scale) > max_width:
    scale = max(_MIN_TEXT_SCALE, scale * max_width / _text_width(text, scale))
  if _text_width(text, scale) <= max_width:
    return text, scale
  for n in range(len(text) - 1, 0, -1):
    if _text_width(text[:n] + "..", scale) <= max_width:
      return text[:n] + "..", scale
  return "", scale


def _put_text(region: np.ndarray, text: str, x: int = 2) -> None:
  """Writes white `text` (in place) vertically centred in `region`, starting at column `x`."""
  h, w = region.shape[:2]
  text, scale = _fit_text(text, h, w - x - 1)
  if not text:
    return
  (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
  cv2.putText(region, text, (x, (h - th - base) // 2 + th), cv2.FONT_HERSHEY_SIMPLEX, scale,
              (255, 255, 255), 1, cv2.LINE_AA)


def legend_layout(num_classes: int, width: int) -> tuple[int, int]:
  """(columns, lines) of the class legend of `segments_image` for an image `width` wide."""
  columns = max(1, width // LEGEND_CELL_WIDTH)
  return columns, -(-num_classes // columns)


def _check_label_videos(true_labels: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray],
                        num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """Validates the per-video label arrays of `segments_image`; returns int64 (true, pred) pairs."""
  if len(true_labels) != len(pred_labels):
    raise ValueError(f"segments_image: {len(true_labels)} videos of true labels but "
                     f"{len(pred_labels)} of predictions")
  pairs = []
  for v, (t, p) in enumerate(zip(true_labels, pred_labels)):
    t, p = np.asarray(t), np.asarray(p)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
      raise ValueError(f"segments_image: video {v}: expected true and predicted labels [n_frames] "
                       f"of the same length, got shapes {t.shape} and {p.shape}")
    for name, a in (("true", t), ("predicted", p)):
      if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"segments_image: video {v}: {name} labels must be integers, got "
                         f"{a.dtype}")
      if a.size and a.max() >= num_classes:
        raise ValueError(f"segments_image: video {v}: {name} label {a.max()} >= "
                         f"len(class_names) = {num_classes}")
    pairs.append((t.astype(np.int64), p.astype(np.int64)))
  return pairs


def _strip(labels: np.ndarray, lut: np.ndarray, width: int, height: int) -> np.ndarray:
  """uint8 [height, width, 3]: column x shows frame floor(x * n / width); black if unlabelled.

  `lut` is [C + 1, 3] with the unlabelled colour last, so negative labels index it via -1.
  """
  if labels.size == 0:
    return np.zeros((height, width, 3), np.uint8)
  frames = np.arange(width) * labels.size // width
  row = lut[np.where(labels[frames] < 0, -1, labels[frames])]
  return np.broadcast_to(row, (height, width, 3))


def _legend(class_names: Sequence[str], colors: np.ndarray, width: int) -> np.ndarray:
  """uint8 [lines * LEGEND_LINE_HEIGHT, width, 3]: a swatch and the name of every class."""
  columns, lines = legend_layout(len(class_names), width)
  cell = min(width, LEGEND_CELL_WIDTH)
  out = np.zeros((lines * LEGEND_LINE_HEIGHT, width, 3), np.uint8)
  top = (LEGEND_LINE_HEIGHT - _SWATCH) // 2
  for c, name in enumerate(class_names):
    y0, x0 = (c // columns) * LEGEND_LINE_HEIGHT, (c % columns) * cell
    box = out[y0:y0 + LEGEND_LINE_HEIGHT, x0:x0 + cell]
    box[top:top + _SWATCH, 2:2 + _SWATCH] = colors[c]
    _put_text(box, str(name), x=_SWATCH + 5)
  return out


def segments_image(true_labels: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray],
                   class_names: Sequence[str], *, width: int = 512, row_height: int = 12,
                   background: int | None = 0, titles: Sequence[str] | None = None) -> np.ndarray:
  """A TensorBoard image comparing true and predicted per-frame labels of whole videos.

  Layout, top to bottom, on a black canvas `width` pixels wide: for each video v, an optional
  title line (TITLE_HEIGHT = 16 px, only when `titles` is given), the true-label strip and the
  predicted-label strip (`row_height` px each); between the blocks of two videos a white line of
  SEPARATOR_HEIGHT = 2 px; at the bottom the legend, `lines` lines of LEGEND_LINE_HEIGHT = 16 px,
  with min(width, 128)-px cells (a colour swatch and the class name, shrunk or cut to fit), in
  max(1, width // 128) columns, so lines = ceil(len(class_names) / columns). Hence
    H = V * (title + 2 * row_height) + (V - 1) * 2 + 16 * lines.
  In a strip, column x shows frame floor(x * n_v / width)
  in the colour of its class (`class_colors`); unlabelled frames (label < 0) are black.

  Args:
    true_labels: per video, int [n_v] true class per frame (< 0: unlabelled).
    pred_labels: per video, int [n_v] predicted class per frame (< 0 is drawn black, too).
    class_names: legend text, one per class; labels must be < len(class_names).
    width: image width in pixels.
    row_height: height of each strip in pixels.
    background: the class drawn dark grey (None: none).
    titles: optional text per video (e.g. its id), written above its strips.

  Returns:
    C-contiguous uint8 RGB image [H, width, 3].
  """
  if width < 1 or row_height < 1:
    raise ValueError(f"segments_image: width and row_height must be >= 1, got {width}, "
                     f"{row_height}")
  pairs = _check_label_videos(true_labels, pred_labels, len(class_names))
  if titles is not None and len(titles) != len(pairs):
    raise ValueError(f"segments_image: {len(titles)} titles for {len(pairs)} videos")
  colors = class_colors(len(class_names), background)
  lut = np.concatenate([colors, np.asarray([UNLABELLED_RGB], np.uint8)])
  blocks = []
  for v, (t, p) in enumerate(pairs):
    if v:
      blocks.append(np.full((SEPARATOR_HEIGHT, width, 3), SEPARATOR_RGB, np.uint8))
    if titles is not None:
      title = np.zeros((TITLE_HEIGHT, width, 3), np.uint8)
      _put_text(title, str(titles[v]))
      blocks.append(title)
    blocks += [_strip(t, lut, width, row_height), _strip(p, lut, width, row_height)]
  blocks.append(_legend(class_names, colors, width))
  return np.ascontiguousarray(np.concatenate(blocks, axis=0))


def curve_image(values: Sequence[float], *, y_range: tuple[float, float] = (0.0, 1.0),
                reference: float | None = None, title: str = "", width: int = 320,
                height: int = 160) -> np.ndarray:
  """uint8 [height, width, 3] line chart of `values` at evenly spaced x (e.g. accuracy against
  position in a video), with a dashed `reference` level (e.g. chance) and the y range printed.
  NaN values leave gaps. For TensorBoard, where scalars cannot be plotted against position."""
  vals = np.asarray(values, np.float64)
  if vals.ndim != 1 or vals.size == 0:
    raise ValueError(f"curve_image: expected a non-empty 1-D sequence, got shape {vals.shape}")
  lo, hi = y_range
  if not hi > lo:
    raise ValueError(f"curve_image: y_range={y_range} must be increasing")
  img = np.full((height, width, 3), 255, np.uint8)
  left, right, top, bottom = 28, width - 8, 18, height - 12

  def y_px(v: float) -> int:
    return int(round(bottom - (np.clip(v, lo, hi) - lo) / (hi - lo) * (bottom - top)))

  cv2.rectangle(img, (left, top), (right, bottom), (200, 200, 200), 1)
  if reference is not None:
    y = y_px(reference)
    for x in range(left, right, 8):
      cv2.line(img, (x, y), (min(x + 4, right), y), (150, 150, 150), 1)
  xs = np.linspace(left, right, vals.size) if vals.size > 1 else np.array([(left + right) / 2])
  pts = [(int(round(x)), y_px(v)) if np.isfinite(v) else None for x, v in zip(xs, vals)]
  for a, b in zip(pts, pts[1:]):
    if a is not None and b is not None:
      cv2.line(img, a, b, (200, 40, 40), 2, cv2.LINE_AA)
  for p in pts:
    if p is not None:
      cv2.circle(img, p, 3, (200, 40, 40), -1, cv2.LINE_AA)
  font = cv2.FONT_HERSHEY_SIMPLEX
  cv2.putText(img, f"{hi:g}", (2, top + 4), font, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.putText(img, f"{lo:g}", (2, bottom), font, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
  if title:
    cv2.putText(img, title, (left, 12), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
  return img
