"""Tests of cv.codec.rd.equal_rate: our points against a classic codec's curve at equal bits."""
from __future__ import annotations

import math

import pytest

from cv.codec.rd import equal_rate
from cv.codec.rd.classic import RDPoint


def _point(codec: str, setting: str, bpp: float, psnr: float, ssim: float = 0.8,
           ms_ssim: float = 0.9, mae: float = 0.03) -> RDPoint:
  num_bytes = round(bpp * 1000)  # 8000 pixels: bytes proportional to bpp.
  return RDPoint(codec=codec, setting=setting, bytes=num_bytes, bpp=bpp, cr=24.0 / bpp,
                 psnr=psnr, ssim=ssim, ms_ssim=ms_ssim, mae=mae, encode_s=0.0, decode_s=0.0)


# PSNR linear in log2(bpp): 20 dB at 0.25 bpp, +3 dB per doubling; q1 and q2 equal in size.
JPEG = [_point("jpeg", "q1", 0.25, 19.5, ssim=0.70, ms_ssim=0.80, mae=0.06),
        _point("jpeg", "q2", 0.25, 20.0, ssim=0.70, ms_ssim=0.80, mae=0.06),
        _point("jpeg", "q10", 0.5, 23.0, ssim=0.80, ms_ssim=0.90, mae=0.04),
        _point("jpeg", "q20", 1.0, 26.0, ssim=0.90, ms_ssim=0.95, mae=0.02)]


def test_interpolate_is_linear_in_log_bpp_and_refuses_to_extrapolate():
  assert equal_rate.interpolate(JPEG, 0.5, "psnr") == pytest.approx(23.0)
  assert equal_rate.interpolate(JPEG, 0.5 * math.sqrt(2), "psnr") == pytest.approx(24.5)
  assert equal_rate.interpolate(JPEG, 0.75, "mae") == pytest.approx(
      0.04 - 0.02 * math.log(1.5) / math.log(2))
  # Equal-size settings count once, with the better value (q2's 20 dB, not q1's 19.5).
  assert equal_rate.interpolate(JPEG, 0.25, "psnr") == pytest.approx(20.0)
  assert equal_rate.interpolate(JPEG, 0.2, "psnr") is None
  assert equal_rate.interpolate(JPEG, 1.5, "psnr") is None
  with pytest.raises(ValueError, match="unknown metric 'lpips'"):
    equal_rate.interpolate(JPEG, 0.5, "lpips")


def test_verdicts_margin_and_costlier_settings_beaten():
  ours = _point("ours", "cr32", 0.5 * math.sqrt(2), 24.0, ssim=0.86, ms_ssim=0.91, mae=0.035)
  cheap = _point("ours-ec", "cr192", 0.1, 21.0, ssim=0.75, ms_ssim=0.85, mae=0.05)
  rows = equal_rate.verdicts([*JPEG, ours, cheap], references=("jpeg", "h264"))
  assert [(r.ours.setting, r.reference) for r in rows] == [("cr32", "jpeg"), ("cr192", "jpeg")]
  mid, low = rows
  assert mid.delta("psnr") == pytest.approx(-0.5)
  assert mid.delta("ssim") == pytest.approx(0.01)
  assert mid.costlier == ("q20",) and mid.beaten == ()
  assert mid.bpp_range == (0.25, 1.0)
  assert low.delta("psnr") is None
  # The cheap point beats both equal-size JPEG settings on every metric, not q10 or q20.
  assert low.costlier == ("q1", "q2", "q10", "q20") and low.beaten == ("q1", "q2")
  table = equal_rate.format_verdicts(rows)
  assert "| ours | cr32 | 0.7071 | JPEG | 24.50 | -0.50 | +0.0100 |" in table
  assert "| ours-ec | cr192 | 0.1000 | JPEG | n/a: it spends ≥ 0.250 |" in table
  assert "| 2 / 4 (q1, q2) |" in table
  record = equal_rate.to_json(low)
  assert record["delta"]["psnr"] is None and record["beaten_settings"] == ["q1", "q2"]


def test_beats_needs_every_metric():
  a = _point("ours", "x", 0.5, 30.0, ssim=0.9, ms_ssim=0.95, mae=0.02)
  assert equal_rate.beats(a, _point("jpeg", "q", 0.6, 29.0, ssim=0.8, ms_ssim=0.9, mae=0.03))
  assert not equal_rate.beats(a, _point("jpeg", "q", 0.6, 29.0, ssim=0.8, ms_ssim=0.9, mae=0.02))


def test_best_jpeg_pools_the_variants_at_our_rate():
  # A per-frame-files curve (JPEG) and a cheaper stream curve: +2 dB at the same bpp.
  stream = [_point("jpeg-stream", p.setting, p.bpp / 2, p.psnr, p.ssim, p.ms_ssim, p.mae)
            for p in JPEG]
  ours = _point("ours", "cr64", 0.25, 21.0, ssim=0.75, ms_ssim=0.85, mae=0.05)
  h264 = _point("h264", "crf30", 0.3, 25.0)
  rows = equal_rate.verdicts([*JPEG, ours, h264, *stream])
  assert [r.reference for r in rows] == ["jpeg", "h264", "jpeg-stream", equal_rate.BEST_JPEG]
  files, _, streamed, best = rows
  assert files.delta("psnr") == pytest.approx(1.0)
  assert streamed.delta("psnr") == pytest.approx(-2.0)
  assert best.at_rate["psnr"] == pytest.approx(23.0) and best.delta("mae") == pytest.approx(0.01)
  assert best.bpp_range == (0.125, 1.0)
  # Pooled settings are named by variant, cheapest first; ours beats only the q1/q2 files.
  assert best.costlier == ("jpeg:q1", "jpeg:q2", "jpeg-stream:q10", "jpeg:q10",
                           "jpeg-stream:q20", "jpeg:q20")
  assert best.beaten == ("jpeg:q1", "jpeg:q2")
  assert "| JPEG, best variant | 23.00 | -2.00 |" in equal_rate.format_verdicts(rows)
  # No pooled reference with a single JPEG variant, and only the references asked for.
  assert [r.reference for r in equal_rate.verdicts([*JPEG, ours])] == ["jpeg"]
  assert [r.reference for r in equal_rate.verdicts([*JPEG, ours, *stream],
                                                   references=("jpeg-best",))] == ["jpeg-best"]
