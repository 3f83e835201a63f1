"""Equal-rate verdicts: each of our codec's points against a classic codec's rate-distortion curve.

Why this module exists: a table of rate-distortion points leaves the reader to eyeball whether
our codec is above or below JPEG's curve at our rate. The codec issue's quality goals are
stated exactly that way ("PSNR >= JPEG at the same bits per pixel"; "beats every JPEG setting
that uses the same or more bytes"), so `tools/compare_codecs.py` answers both from the measured
points:

* the reference codec's quality at our bpp, interpolated piecewise-linearly in log(bpp) between
  its two measured settings around our rate (rate-distortion curves are close to linear in
  log-rate over short spans); no value when our rate lies outside the measured range, since
  extrapolating would invent a number;
* the reference's settings that spend at least our bytes, and which of them we beat on every
  metric (higher PSNR, SSIM and MS-SSIM, lower MAE).

Points are `cv.codec.rd.classic.RDPoint`s; ours are those whose codec name starts "ours".
Every other codec is a reference. When several JPEG variants are measured (per-frame files or
one stream, full size or shrunk: `cv.codec.rd.classic.jpeg_codec_name`), a pooled reference
"jpeg-best" is added too: at our rate, the best any variant reaches, and all their settings.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from cv.codec.rd.classic import RDPoint

METRICS = ("psnr", "ssim", "ms_ssim", "mae")
LOWER_IS_BETTER = frozenset({"mae"})
# The pooled reference: all JPEG variants together.
BEST_JPEG = "jpeg-best"
_NAMES = {"jpeg": "JPEG", "h264": "H.264", "mpeg4": "MPEG-4", BEST_JPEG: "JPEG, best variant"}
# Beaten settings listed by name in a Markdown cell (all of them are in the JSON records).
_MAX_LISTED = 8


def _better(metric: str, a: float, b: float) -> bool:
  """Whether value `a` is strictly better than `b` for `metric`."""
  return a < b if metric in LOWER_IS_BETTER else a > b


def beats(ours: RDPoint, other: RDPoint) -> bool:
  """Whether `ours` is strictly better than `other` on every metric in METRICS."""
  return all(_better(m, getattr(ours, m), getattr(other, m)) for m in METRICS)


def interpolate(curve: Sequence[RDPoint], bpp: float, metric: str) -> float | None:
  """`metric` of the codec whose measured settings are `curve`, at rate `bpp`.

  Linear in log(bpp) between the nearest measured rates at or below and at or above `bpp`; None
  when `bpp` is outside the measured range. Settings of equal size (JPEG q1 and q2 on small
  frames) count once, with the better value, so the reference is never understated.
  """
  if metric not in METRICS:
    raise ValueError(f"interpolate: unknown metric {metric!r}; choose from {METRICS}")
  best: dict[float, float] = {}
  for p in curve:
    value = getattr(p, metric)
    if p.bpp not in best or _better(metric, value, best[p.bpp]):
      best[p.bpp] = value
  rates = sorted(best)
  if not rates or bpp < rates[0] or bpp > rates[-1]:
    return None
  for lo, hi in zip(rates, rates[1:] + rates[-1:]):
    if lo <= bpp <= hi:
      if hi == lo:
        return best[lo]
      t = (math.log(bpp) - math.log(lo)) / (math.log(hi) - math.log(lo))
      return best[lo] + t * (best[hi] - best[lo])
  raise AssertionError("unreachable: bpp lies within the measured range")


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One of our points against one reference codec.

  Attributes:
    ours: Our point.
    reference: The reference codec's name ("jpeg", "h264", "mpeg4", BEST_JPEG, ...).
    at_rate: metric -> the reference's value interpolated at our bpp (None: our rate is outside
      the reference's measured range).
    costlier: The reference's settings with at least our bytes, cheapest first ("<codec>:<setting>"
      for BEST_JPEG).
    beaten: Those of `costlier` that our point beats on every metric.
    bpp_range: The reference's lowest and highest measured bpp.
  """
  ours: RDPoint
  reference: str
  bpp_range: tuple[float, float]
  at_rate: dict[str, float | None]
  costlier: tuple[str, ...]
  beaten: tuple[str, ...]

  def delta(self, metric: str) -> float | None:
    """Ours minus the reference at our rate (for MAE, negative means we are better)."""
    ref = self.at_rate[metric]
    return None if ref is None else getattr(self.ours, metric) - ref


def _best(metric: str, values: Sequence[float | None]) -> float | None:
  """The best of the values that exist (None when none does)."""
  present = [v for v in values if v is not None]
  if not present:
    return None
  return min(present) if metric in LOWER_IS_BETTER else max(present)


def _verdict(ours: RDPoint, reference: str, curves: dict[str, list[RDPoint]]) -> Verdict:
  """`ours` against the pooled settings of `curves` (codec -> its points): at our rate, the best
  interpolated value among them; settings named "<codec>:<setting>" when several are pooled."""
  pooled = [q for curve in curves.values() for q in curve]
  name = (lambda q: q.setting) if len(curves) == 1 else (lambda q: f"{q.codec}:{q.setting}")
  costlier = sorted((q for q in pooled if q.bytes >= ours.bytes), key=lambda q: q.bytes)
  return Verdict(
      ours=ours, reference=reference,
      bpp_range=(min(q.bpp for q in pooled), max(q.bpp for q in pooled)),
      at_rate={m: _best(m, [interpolate(c, ours.bpp, m) for c in curves.values()])
               for m in METRICS},
      costlier=tuple(name(q) for q in costlier),
      beaten=tuple(name(q) for q in costlier if beats(ours, q)))


def verdicts(points: Sequence[RDPoint],
             references: Sequence[str] | None = None) -> list[Verdict]:
  """A Verdict for every point of ours (codec name starting "ours") against every reference codec.

  Args:
    points: Our points and the reference codecs' points.
    references: Reference codec names. Default: every codec in `points` that is not ours, in
      order of first appearance, plus BEST_JPEG (all codecs named "jpeg..." pooled) when there
      are several JPEG variants. References absent from `points` are skipped.

  Returns:
    The verdicts, in the order of our points, then `references`.
  """
  curves: dict[str, list[RDPoint]] = {}
  for q in points:
    if not q.codec.startswith("ours"):
      curves.setdefault(q.codec, []).append(q)
  jpegs = {c: pts for c, pts in curves.items() if c.startswith("jpeg")}
  if references is None:
    references = list(curves) + ([BEST_JPEG] if len(jpegs) > 1 else [])
  out = []
  for p in points:
    if not p.codec.startswith("ours"):
      continue
    for ref in references:
      pooled = jpegs if ref == BEST_JPEG else {ref: curves[ref]} if ref in curves else {}
      if pooled:
        out.append(_verdict(p, ref, pooled))
  return out


def _signed(value: float | None, digits: int) -> str:
  return "n/a" if value is None else f"{value:+.{digits}f}"


def format_verdicts(rows: Sequence[Verdict]) -> str:
  """A Markdown table: per (our point, reference), the reference's PSNR at our bpp, our margin on
  each metric there, and how many of its settings with at least our bytes we beat outright."""
  lines = ["| ours | setting | bpp | reference | its PSNR at this bpp | ΔPSNR | ΔSSIM | ΔMS-SSIM | "
           "ΔMAE | beaten / settings with ≥ our bytes |",
           "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    ref_psnr = r.at_rate["psnr"]
    if ref_psnr is not None:
      ref_cell = f"{ref_psnr:.2f}"
    elif r.ours.bpp < r.bpp_range[0]:
      ref_cell = f"n/a: it spends ≥ {r.bpp_range[0]:.3f}"
    elif r.ours.bpp > r.bpp_range[1]:
      ref_cell = f"n/a: it spends ≤ {r.bpp_range[1]:.3f}"
    else:  # Pooled variants whose measured ranges leave a gap at our rate.
      ref_cell = "n/a: no variant measured at this rate"
    if r.costlier:
      beaten = f"{len(r.beaten)} / {len(r.costlier)}"
      if r.beaten:
        shown = r.beaten[:_MAX_LISTED] + (("…",) if len(r.beaten) > _MAX_LISTED else ())
        beaten += f" ({', '.join(shown)})"
    else:
      beaten = "none spend as many bytes"
    lines.append(
        f"| {r.ours.codec} | {r.ours.setting} | {r.ours.bpp:.4f} | "
        f"{_NAMES.get(r.reference, r.reference)} | {ref_cell} | {_signed(r.delta('psnr'), 2)} | "
        f"{_signed(r.delta('ssim'), 4)} | {_signed(r.delta('ms_ssim'), 4)} | "
        f"{_signed(r.delta('mae'), 4)} | {beaten} |")
  return "\n".join(lines) + "\n"


def _finite(value: float | None) -> float | None:
  """JSON has no NaN/inf (an identical reconstruction has infinite PSNR): those become None."""
  return value if value is None or math.isfinite(value) else None


def to_json(row: Verdict) -> dict:
  """A JSON-ready dict of one verdict (None for values outside the reference's range)."""
  return {"codec": row.ours.codec, "setting": row.ours.setting, "bpp": row.ours.bpp,
          "reference": row.reference, "reference_bpp_range": list(row.bpp_range),
          "reference_at_rate": {m: _finite(v) for m, v in row.at_rate.items()},
          "delta": {m: _finite(row.delta(m)) for m in METRICS},
          "costlier_settings": list(row.costlier), "beaten_settings": list(row.beaten)}
