"""Past-Future on long continuous walks, trained on codes (paper §4.6, Appendix D).

Launch (demo walks and the shipped default codec, cr192, when nothing is configured):
  python -m cv.main --config=cv/configs/walkingtours_past_future.py               # memory=slot
  python -m cv.main --config=cv/configs/walkingtours_past_future.py:memory=lstm
  python -m cv.main --config=cv/configs/walkingtours_past_future.py:memory=none
  python -m cv.main --config=cv/configs/walkingtours_past_future.py \
      --config.data.root=/data/walking_tours --config.codec=workdirs/k600_vq_cr=192
Hour-long walks (the paper's point: an hour of video on a laptop; peak RSS ~3.6 GiB on 2 CPU
cores, see docs/results.md):
  python -m cv.main --config=cv/configs/walkingtours_past_future.py:hour
Smoke size (tests): --config=cv/configs/walkingtours_past_future.py:smoke

Arguments: memory = none | lstm | slot; hour (four 1-hour demo walks, batch of one walk, 3 steps);
paper (below); smoke.

A WalkingTours root is a folder of long videos (`train/` and `test/` sub-folders, or a flat
folder where every 4th walk is held out). The walks are encoded once, chunk by chunk, into code
shards (cached under $CV_CODES_DIR): `data.chunk_frames` encoded frames per chunk, every
`data.stride`-th frame. Each training example is `data.num_chunks` consecutive chunks of a walk
(0 = as many as the shortest training walk has); each step of the walk asks about one query
chunk, randomly cropped to `query_crop` x `query_crop` code cells.

Paper recipe (`paper`, combinable with `memory=` and `hour`; docs/paper.md):
  python -m cv.main --config=cv/configs/walkingtours_past_future.py:paper \
      --config.data.root=/data/walking_tours --config.data.stride=15 \
      --config.codec=workdirs/k600_vq_cr=192,paper
5 s chunks, training and inference over 30-minute walks (360 chunks; `paper,hour`: one hour,
720 chunks), randomly cropped queries (paper §4.6, App. D). Set data.stride to the walks' fps / 2
(10 frames = 5 s; 15 for 30 fps footage; the demo walks are 10 fps: 5). Our choices: short side
256, 24-cell query crops, model widths (dim 256, 8 heads, 2 layers), batch 8, 20k steps, lr.
Hardware: 8 accelerators (one walk per device; device memory is one group of 30 chunks on
accelerators, where the groups run as a scan).
Without data.root it makes 30-minute demo walks at 256x320 first (slow). `paper,smoke` (tests):
the same code paths on 30 s walks (1/60), 32x32 frames.

Expected result (demo: 8 walks of 5 min at 10 fps, 64x64, 6 train / 2 held out; 5 s chunks at
2 fps; 2 CPU cores): see docs/results.md (accuracy per memory type; slot > lstm >= none ~ 0.5).
"""
from __future__ import annotations

import ml_collections as mlc

from cv.configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  arg = common.parse_arg(arg, memory="slot", hour=False, paper=False, smoke=False)
  if arg.memory not in ("none", "lstm", "slot"):
    raise ValueError(f"walkingtours_past_future: memory={arg.memory!r} must be 'none', 'lstm' or "
                     f"'slot'")
  c = common.base_config("past_future", total_steps=300, log_every=10,
                         ckpt_every=100, eval_every=100)
  c.input = "codes"
  # Shipped codec name (cr30 | cr192 | cr768 | demo), .cvcodec file or vq_codec workdir;
  # unset = cr192, the shipped default (cv.codec.shipped).
  c.codec = mlc.config_dict.placeholder(str)
  c.data = common.clip_data_config(format="walking_tours", train_split="train",
                                     eval_split="test", stride=5, short_side=64, crop=64,
                                     chunk_frames=10, num_chunks=0,
                                     demo=dict(seed=0, num_walks=8, length_seconds=300.0))
  for unused in ("num_frames", "crop", "max_eval_clips"):
    del c.data[unused]
  c.codes = mlc.ConfigDict(dict(root=mlc.config_dict.placeholder(str), num_shards=1))
  c.query_crop = 6  # code cells (of the 8x8 grid of a 64x64 frame at CR 192)
  # Steps whose per-chunk gradients are computed together (device memory ~ one group of chunks).
  c.group = 30
  c.model = mlc.ConfigDict(dict(memory=arg.memory, dim=64, adapter_features=32, num_heads=4,
                                num_layers=1))
  c.eval = mlc.ConfigDict(dict(repeats=8, bins=10))
  c.batch_size = 4
  c.optim = mlc.ConfigDict(dict(name="adam", lr=1e-3, schedule="cosine", warmup_steps=20,
                                final_lr_frac=0.05, grad_clip=1.0, kwargs=dict()))
  if arg.hour:
    # Four demo walks of an hour each (3 train, 1 held out; 720 chunks per walk). One step is a
    # full pass with gradients over one whole hour-long walk; 3 steps see every training walk.
    c.data.demo = dict(seed=0, num_walks=4, length_seconds=3600.0)
    c.batch_size, c.group, c.eval.repeats = 1, 120, 1
    c.optim.warmup_steps = 1
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 3, 1, 1, 3
  if arg.paper:
    # The paper's Past-Future setting (§4.6, App. D; docs/paper.md): 5 s chunks (10 frames at
    # 2 fps: data.stride = the walks' fps / 2, i.e. 5 for the 10 fps demo walks, 15 for 30 fps
    # footage), training and inference over 30-minute walks (360 chunks; `hour`: 720), a
    # random spatial crop of every query. Ours: short side 256 (codes 32 cells high at CR 192),
    # 24-cell query crops, the widths and depths below, batch, steps, optimizer.
    minutes = 60 if arg.hour else 30
    c.data.update(short_side=256, num_chunks=minutes * 60 // 5, num_threads=16, prefetch=16)
    c.data.demo = dict(seed=0, num_walks=8 if not arg.hour else 4,
                       length_seconds=60.0 * minutes, height=256, width=320)
    c.query_crop = 24
    c.group = 60 if arg.hour else 30
    c.model.update(dim=256, adapter_features=64, num_heads=8, num_layers=2)
    c.batch_size = 8  # ours: one walk per device on 8 accelerators
    c.optim.update(lr=3e-4, warmup_steps=500, final_lr_frac=0.0)
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 20_000, 20, 500, 2000
    c.eval.repeats = 4
  if arg.smoke:
    c.data.demo = dict(seed=0, num_walks=4, length_seconds=30.0, height=32, width=32)
    c.data.short_side, c.data.chunk_frames = 32, 4
    c.query_crop, c.group = 3, 4
    c.model.dim, c.model.adapter_features = 16, 8
    c.eval.repeats, c.eval.bins = 2, 4
    c.batch_size = 4
    c.optim.warmup_steps = 2
    c.total_steps, c.log_every, c.ckpt_every, c.eval_every = 6, 2, 3, 6
    if arg.paper:  # the recipe's code paths on 30 s walks (1/60): every chunk, random crops
      c.data.update(num_chunks=0, num_threads=2, prefetch=4)
      c.model.update(num_heads=2, num_layers=2)
  return c
