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

Points are `cv.lib.classic_codecs.RDPoint`s; ours are those whose codec name starts "ours".
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from cv.lib.classic_codecs import RDPoint

METRICS = ("psnr", "ssim", "ms_ssim", "mae")
LOWER_IS_BETTER = frozenset({"mae"})
_NAMES = {"jpeg": "JPEG", "h264": "H.264", "mpeg4": "MPEG-4"}


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
    reference: The reference codec's name ("jpeg", "h264", "mpeg4").
    at_rate: metric -> the reference's value interpolated at our bpp (None: our rate is outside
      the reference's measured range).
    costlier: The reference's settings with at least our bytes, cheapest first.
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


def verdicts(points: Sequence[RDPoint],
             references: Sequence[str] = ("jpeg", "h264", "mpeg4")) -> list[Verdict]:
  """A Verdict for every point of ours (codec name starting "ours") against every reference codec
  present in `points`, in the order of `points` then `references`."""
  out = []
  for p in points:
    if not p.codec.startswith("ours"):
      continue
    for ref in references:
      curve = [q for q in points if q.codec == ref]
      if not curve:
        continue
      costlier = sorted((q for q in curve if q.bytes >= p.bytes), key=lambda q: q.bytes)
      out.append(Verdict(
          ours=p, reference=ref, bpp_range=(min(q.bpp for q in curve), max(q.bpp for q in curve)),
          at_rate={m: interpolate(curve, p.bpp, m) for m in METRICS},
          costlier=tuple(q.setting for q in costlier),
          beaten=tuple(q.setting for q in costlier if beats(p, q))))
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
    else:
      ref_cell = f"n/a: it spends ≤ {r.bpp_range[1]:.3f}"
    if r.costlier:
      beaten = f"{len(r.beaten)} / {len(r.costlier)}"
      if r.beaten:
        beaten += f" ({', '.join(r.beaten)})"
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
