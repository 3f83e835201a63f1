"""S3D-G action classifier trained directly on neural codes (paper §3.3, §4.3; Tables 2, 4, 6).

Launch (demo data and the shipped demo codec when nothing is configured):
  python -m cv.main --config=cv/configs/k600_s3d.py                 # on codes (the default)
  python -m cv.main --config=cv/configs/k600_s3d.py:input=rgb       # the RGB baseline
  python -m cv.main --config=cv/configs/k600_s3d.py:input=recon     # on decoded codes (Table 6)
  python -m cv.main --config=cv/configs/k600_s3d.py --config.data.root=/data/kinetics600 \
      --config.codec=workdirs/k600_vq_cr=192 --config.data.short_side=256 --config.data.crop=224
Smoke size (tests): --config=cv/configs/k600_s3d.py:smoke

Arguments: input = codes | rgb | recon; width = S3D channel multiplier (1.0 = the paper's S3D-G);
embed = codec | learned (codes: the codec's frozen codebook vectors, or embeddings learned with
the classifier); smoke.

On the first run with `input=codes|recon`, the dataset is encoded by the codec into code shards
(cached under $CV_CODES_DIR, default ~/.cache/cv/codes; `config.codes.root` picks a folder) and
later runs reuse them. Code clips are cut like RGB clips: the same frame stride, a window of
num_frames/T' code frames, a crop of crop/8 code cells (random for training, i.e. the crop moves
in 8-pixel steps). `--config.codes.frame_stride=1` encodes every frame instead, so training
windows start at every temporal phase (measured on the demo data with the previous, 23 dB demo
codec: top-1 0.25 in 2,000 steps, slower to fit than the default).

Learned augmentations (paper §4.5, Table 4): train a `latent_aug` run first, then
  python -m cv.main --config=cv/configs/k600_s3d.py \
      --config.aug.workdir=workdirs/k600_latent_aug_augcrop
applies random learned crops to the code latents of every training clip and averages test
predictions over 3 linearly spaced learned crops.

Flips are off by default (`codes.random_flip`, `eval_views.flip`): the demo classes are camera
motions, and a mirror image turns "pan left" into "pan right". Turn them on for Kinetics.

Expected result (demo data, 8 classes, chance 0.125; 2 CPU cores): the default run encodes the
demo dataset once (~30 s) and trains 2,000 steps in about 10 minutes to held-out top-1
~0.55-0.7 (views averaged; measured 0.67-0.69 over 3 seeds on one machine, 0.55 and 0.62 over 2
seeds on another: float differences between CPUs change the trajectory); input=rgb reaches
~0.7 (measured 0.72) at 3.6x the time per step (`tools/bench.py step`). The codec sets the gap:
the previous 23 dB demo codec gave 0.46-0.57. See the tables in docs/results.md.
"""
from __future__ import annotations

import ml_collections as mlc

from cv.configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, input="codes", width=0.25, embed="codec", smoke=False)
  c = common.base_config("s3d_cls", total_steps=2000, log_every=50,
                         ckpt_every=500, eval_every=500)
  c.input = arg.input
  # Codec file (.cvcodec) or vq_codec workdir; unset = the shipped demo codec (CR 192).
  c.codec = mlc.config_dict.placeholder(str)
  # 8 frames at stride 4 (~1.2 s of the 25 fps demo clips): enough camera motion per clip to tell
  # the demo classes apart on an 8x8 code grid.
  c.data = common.clip_data_config(num_frames=8, stride=4, short_side=64,
                                     crop=64)
  c.codes = mlc.ConfigDict(dict(
      root=mlc.config_dict.placeholder(str),  # code shards (made here if missing); unset = cache
      num_shards=8,
      # Frame stride of the encoded codes; unset = data.stride. A divisor of data.stride keeps
      # every phase, so training clips start at any frame like RGB clips (temporal jitter).
      frame_stride=mlc.config_dict.placeholder(int),
      embed=arg.embed,
      embed_dim=32,  # per codebook, for embed=learned
      random_flip=False,
  ))
  # Learned augmentation in latent space (input=codes, embed=codec): a finished latent_aug run.
  c.aug = mlc.ConfigDict(dict(
      workdir=mlc.config_dict.placeholder(str),
      train=True,        # a random augmentation of every training clip
      eval_views=True,   # average predictions over its deterministic views
      eval_crops=3,
      eval_flips=False,
  ))
  c.model = common.s3d_model_config(arg.width, arg.smoke)
  c.label_smoothing = 0.1
  c.eval_views = mlc.ConfigDict(dict(temporal=2, spatial=2, flip=False))
  c.batch_size = 16
  c.eval_batch_size = 32
  c.optim = mlc.ConfigDict(dict(name="adamw", lr=2e-3, schedule="cosine", warmup_steps=50,
                                final_lr_frac=0.01, grad_clip=1.0,
                                kwargs=dict(weight_decay=1e-2)))
  if arg.smoke:
    c.data.num_frames, c.data.stride, c.data.short_side, c.data.crop = 4, 2, 32, 32
    c.data.demo = dict(seed=0, train_per_class=2, validate_per_class=1, num_frames=12,
                       height=48, width=64)
    c.codes.num_shards = 2
    c.batch_size, c.eval_batch_size = 8, 8
    c.optim.warmup_steps = 2
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 6, 2, 3, 6
    c.data.max_eval_clips = 8
  return c
