"""Rate-distortion reporting: Markdown tables and plots of `RDPoint`s (classic codecs and ours).

Kept apart from the measurement (`classic.py`) so that measuring needs no matplotlib.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from cv.codec.rd.classic import RDPoint
from cv.lib import fileio


def _sorted(points: Iterable[RDPoint]) -> list[RDPoint]:
  return sorted(points, key=lambda p: (p.codec, p.bpp))


def format_table(points: Sequence[RDPoint]) -> str:
  """A Markdown table of the points, sorted by codec then bpp (ready to paste into docs/results.md).

  Columns: codec, setting, bpp, CR (vs raw RGB), PSNR (dB), SSIM, MS-SSIM, MAE ([0, 1] scale),
  bytes.
  """
  lines = ["| codec | setting | bpp | CR | PSNR | SSIM | MS-SSIM | MAE | bytes |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
  for p in _sorted(points):
    lines.append(f"| {p.codec} | {p.setting} | {p.bpp:.4f} | {p.cr:.1f} | {p.psnr:.2f} | "
                 f"{p.ssim:.4f} | {p.ms_ssim:.4f} | {p.mae:.4f} | {p.bytes:,} |")
  return "\n".join(lines) + "\n"


# Axis labels of the plotted metrics; "higher is better" for all but MAE.
_METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM",
                  "mae": "MAE (lower is better)"}


def _draw(ax: Any, points: Sequence[RDPoint], metric: str, annotate: bool) -> None:
  """Draws one line per codec (x: bpp, log scale; y: `metric`) on a matplotlib Axes."""
  if metric not in _METRIC_LABELS:
    raise ValueError(f"plot_rd: unknown metric {metric!r}; choose from {sorted(_METRIC_LABELS)}")
  codecs = list(dict.fromkeys(p.codec for p in points))  # First-appearance order.
  for codec in codecs:
    pts = sorted((p for p in points if p.codec == codec), key=lambda p: p.bpp)
    xs = [p.bpp for p in pts]
    ys = [getattr(p, metric) for p in pts]
    ax.plot(xs, ys, marker="o", markersize=4, label=codec)
    if annotate:
      for p, x, y in zip(pts, xs, ys):
        ax.annotate(p.setting, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
  ax.set_xscale("log")
  ax.set_xlabel("bits per pixel")
  ax.set_ylabel(_METRIC_LABELS[metric])
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)


def _save(fig: Any, path: str) -> None:
  """Writes a matplotlib figure to `path` as PNG, atomically, and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  with fileio.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120)
  plt.close(fig)


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Any, Any]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt.subplots(rows, cols, figsize=size, squeeze=False)


def plot_rd(points: Sequence[RDPoint], path: str, metric: str = "psnr", title: str = "") -> None:
  """Writes a rate-distortion plot (bpp on a log x axis vs `metric`, one line per codec) as PNG.

  Any codec name is plotted (including ones added later, e.g. "ours"); each point is labelled
  with its setting. The file is written atomically.

  Args:
    points: The measurements.
    path: Output PNG path (folders are created).
    metric: One of "psnr", "ssim", "ms_ssim", "mae".
    title: Optional figure title (e.g. the clip and its size).
  """
  fig, axes = _figure(1, 1, (6.0, 4.5))
  _draw(axes[0, 0], points, metric, annotate=True)
  if title:
    axes[0, 0].set_title(title, fontsize=10)
  fig.tight_layout()
  _save(fig, path)


def plot_rd_grid(points: Sequence[RDPoint], path: str, title: str = "") -> None:
  """Like `plot_rd` but a 2x2 figure with PSNR, SSIM, MS-SSIM and MAE against bpp."""
  fig, axes = _figure(2, 2, (11.0, 8.0))
  for ax, metric in zip(axes.flat, ("psnr", "ssim", "ms_ssim", "mae")):
    _draw(ax, points, metric, annotate=False)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  _save(fig, path)
