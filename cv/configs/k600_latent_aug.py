"""Augmentation network in the compressed space (`latent_aug`, paper §3.4, §4.5, App. B.4-B.5).

Launch (demo data and the shipped default codec, cr192, when nothing is configured):
  python -m cv.main --config=cv/configs/k600_latent_aug.py:aug=crop
  python -m cv.main --config=cv/configs/k600_latent_aug.py:aug=crop_flip   # crop + flip in one
  python -m cv.main --config=cv/configs/k600_latent_aug.py:aug=flip --config.codec=workdirs/k600_vq
Smoke size (tests): --config=cv/configs/k600_latent_aug.py:aug=flip,smoke

Arguments: aug = crop | flip | brightness | saturation | rotation | crop_flip; paper (below);
smoke.

Target: the codec's latents of the pixel-augmented clip, E(T(x, p)) (codebook vectors of its
codes), with an L2 loss in latent space (`loss.latent`); the pixel loss through the frozen
decoder (`loss.pixels`) is off by default. Why: downstream models consume exactly these latents,
so matching them is the task; the latent target needs no decoder pass, so a step costs two
encoder passes and the small network — on CPU about 3x cheaper than back-propagating through
the decoder; and D(E(T(x, p))) is all a decoder can render anyway. Set `--config.loss.pixels=1`
to add the pixel term (against T(x, p), or D(E(T(x, p))) with `loss.pixel_target=codec`); on
flip at 800 steps neither helped (0.885 and 0.882 vs 0.884 and 0.888 without).

Geometric prior (`model.geometric_prior`, on by default, beyond the paper): the network starts
from the latents warped like the pixels (crop box resampled bilinearly, grid mirrored, rotated)
and learns the correction; without it, it must learn to move content across the grid from the
conditioning vector alone, which 800 CPU steps did not achieve for crops (with the previous demo
codec: learned SSIM 0.71 vs 0.79 for the nearest-neighbour code crop at step 400).

Sub-cell phase (`model.source_phase`, on by default, beyond the paper): for crops and rotations
each output cell also gets sin / cos features of *where* inside an input cell it samples
(cv.augment.ops.source_phase); a 2x zoom into the left half of a cell must produce other codes
than one into its right half, and the box in the conditioning vector encodes that only through
a product and a fractional part. Measured (crop, 800 steps): SSIM 0.787 with it vs 0.732
without; rotation 0.809 vs 0.784.

Use the trained network in a downstream run with `--config.aug.workdir=<this workdir>` of
cv/configs/k600_s3d.py (the API is `cv.augment.latent.LatentAugmenter`).

Paper recipe (`paper`, combinable with `aug=`; docs/paper.md):
  python -m cv.main --config=cv/configs/k600_latent_aug.py:aug=crop,paper \
      --config.data.root=/data/kinetics600 --config.codec=workdirs/k600_vq_cr=192,paper
32-frame 256x256 clips (latents 32x32x32 of a CR-192 codec), crop boxes of 224x224 at random
places (paper §4.5), an MLP with three hidden layers and a two-layer transformer, Adam without
weight decay (App. E.1.3, E.4). Our choices: widths (128, 4 heads, FFN 256: the top of the
paper's sweeps), frame stride 2, batch 32, lr 1e-3, 100k steps ("until convergence"). Hardware:
8 accelerators, 4 clips per device (16.7 GiB each: space attention over 1,024 cells per frame;
docs/paper.md).
`paper,smoke` (tests): the same code paths at 8x32x32 clips, width 32.

Expected result (demo data, demo codec, 2 CPU cores, 2,000 steps: ~11 min, ~20 min for flip's
batch of 16): against the codec's rendering of the pixel-augmented clip D(E(T(x, p))), SSIM 0.90
for flip and brightness (measured 0.900 and 0.900), 0.93 for saturation; for crops 0.815, i.e.
0.245 above the no-op and 0.14 above the nearest-neighbour code crop; rotation 0.844. Against the
raw pixel target T(x, p) every method is capped by the codec's own quality (demo codec: SSIM
~0.66); there the learned augmentation matches or beats decode -> augment -> encode. With the
default codec cr192 (since 2026-12-07; the figures above are the previous default, demo): crop
0.822, flip 0.904, brightness 0.902, each slightly above demo's. The docs/results.md tables
have every figure.
"""
from __future__ import annotations

import ml_collections as mlc

from cv.configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, aug="crop", paper=False, smoke=False)
  c = common.base_config("latent_aug", total_steps=2000, log_every=50,
                         ckpt_every=200, eval_every=400)
  # Codec whose latents are augmented: shipped name (cr30 | cr192 | cr768 | demo), .cvcodec
  # file or vq_codec workdir; unset = cr192, the shipped default (cv.codec.shipped).
  c.codec = mlc.config_dict.placeholder(str)
  c.aug = mlc.ConfigDict(dict(
      name=arg.aug,
      # Sampling ranges (cv.augment.ops.sample_params keywords); see that module's docstring.
      ranges=dict(crop_area=(0.25, 1.0), crop_aspect=(0.75, 4 / 3), flip_prob=0.5,
                  brightness_delta=(-0.4, 0.4), saturation_factor=(0.2, 1.8),
                  rotation_degrees=(-30.0, 30.0)),
  ))
  # pixel_target: what the pixel term compares D(A(E(x), p)) with: "pixels" = T(x, p),
  # "codec" = D(E(T(x, p))) (the codec's rendering, the evaluation's reference).
  c.loss = mlc.ConfigDict(dict(latent=1.0, pixels=0.0, pixel_target="pixels"))
  c.model = mlc.ConfigDict(dict(width=128, mlp_hidden=128, num_layers=2, num_heads=4,
                                mlp_ratio=2, num_freqs=4,
                                # Feed the network the bilinearly warped latents (crop, flip,
                                # rotation; cv.augment.ops.warp_grid) instead of the raw ones.
                                geometric_prior=True,
                                # Per-cell sub-cell phase of where each output cell samples the
                                # input (cv.augment.ops.source_phase) as extra network inputs.
                                source_phase=True))
  # 4-frame clips keep a step cheap on CPU (two encoder passes per step); the network is
  # size-agnostic (positions are normalised coordinates), so it applies to longer clips as well.
  c.data = common.clip_data_config(num_frames=4)
  # A flip is drawn with probability 0.5, so half of a flip batch is unflipped (nothing left to
  # learn there after the first steps): twice the batch gives flip as many transformed clips per
  # step as the other augmentations get (measured at 2,000 steps: SSIM 0.900 vs 0.895 at 8).
  c.batch_size = 16 if arg.aug == "flip" else 8
  c.eval_batch_size = 16
  c.num_images = 3
  c.optim = mlc.ConfigDict(dict(name="adam", lr=2e-3, schedule="cosine", warmup_steps=50,
                                final_lr_frac=0.02, grad_clip=1.0, kwargs={}))
  if arg.paper:
    # The paper's setting (§4.5, App. E.1.3, E.4; docs/paper.md): 32-frame 256x256 clips (crop
    # boxes of 224 px inside them), i.e. 32x32x32 latents of a CR-192 codec; an MLP with three
    # hidden layers and a two-layer transformer (ours: width 128, 4 heads, FFN 256, the upper
    # ends of the paper's sweeps); Adam without weight decay "until convergence" (steps, batch,
    # lr and the frame stride are ours). Use a paper-size codec: --config.codec=<k600_vq:paper>.
    c.data.update(num_frames=32, stride=2, short_side=256, crop=256, num_threads=16,
                  prefetch=16)
    c.data.demo = dict(seed=0, num_frames=72, height=256, width=320)
    # "We take a video of size 256x256 and randomly select a 224x224 crop": one box size.
    c.aug.ranges.update(crop_area=((224 / 256) ** 2,) * 2, crop_aspect=(1.0, 1.0))
    c.batch_size, c.eval_batch_size = 32, 32  # ours: 4 clips per device on 8 accelerators
    c.optim.update(name="adam", lr=1e-3, warmup_steps=1000, final_lr_frac=0.0, kwargs={})
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 100_000, 100, 2000, 10000
    c.data.max_eval_clips = 256
  if arg.smoke:
    c.model.width, c.model.mlp_hidden, c.model.num_heads = 32, 32, 2
    c.data.num_frames, c.data.short_side, c.data.crop = 4, 32, 32
    c.data.demo = dict(seed=0, train_per_class=2, validate_per_class=1, num_frames=12,
                       height=48, width=64)
    c.batch_size, c.eval_batch_size = 4, 4
    c.optim.warmup_steps = 2
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 6, 2, 3, 6
    c.data.max_eval_clips = 8
    c.num_images = 2
    if arg.paper:  # the recipe's code paths at 1/8 the clip side: 8 frames at stride 2, 32x32
      c.data.update(num_frames=8, num_threads=2, prefetch=4)
      c.data.demo = dict(seed=0, train_per_class=2, validate_per_class=1, num_frames=16,
                         height=48, width=64)
  return c
