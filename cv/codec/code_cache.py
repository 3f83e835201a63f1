"""Code shards for a downstream run: found, checked, or encoded once and cached.

A trainer that learns on codes names a video dataset (`config.data`) and a codec
(`config.codec`). This module maps that pair to a folder of code shards: `config.codes.root`
when given, else a cache folder keyed by the dataset, the codec and the encoding settings
(`$CV_CODES_DIR`, default `~/.cache/cv/codes`). If the folder has no manifest yet, the dataset
is encoded there first (with progress; resumable if interrupted) so later runs start at once.
Shards made by another codec, or with other encoding settings, are refused with a message
that says what to do.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
from typing import Any

import jax
import ml_collections as mlc

from cv.codec import dm_import, encode
from cv.codec.neural import NeuralCodec
from cv.data import code_shards, datasets, dm_tfrecords
from cv.data.sources import DatasetError
from cv.lib.errors import ConfigError


def cache_base() -> str:
  return os.path.expanduser(os.environ.get("CV_CODES_DIR", os.path.join("~", ".cache", "cv",
                                                                        "codes")))


def frame_stride(data: mlc.ConfigDict, codes: mlc.ConfigDict | None = None,
                 temporal_factor: int = 1) -> int:
  """The frame stride codes are encoded at: `config.codes.frame_stride` when set, else the clip's
  `config.data.stride`. A finer stride keeps more frames in the shards, so clips can start at
  any of them (temporal jitter, like the RGB pipeline's random start); it must divide the clip's
  stride, and the codec must code frames one by one (`temporal_factor` 1), else a code frame
  would span frames closer together than the clip's."""
  stride = (codes.get("frame_stride") if codes is not None else None) or data.stride
  if stride < 1 or data.stride % stride:
    raise DatasetError(f"config.codes.frame_stride={stride} must be a positive divisor of "
                       f"config.data.stride={data.stride}")
  if stride != data.stride and temporal_factor > 1:
    raise ConfigError(f"config.codes.frame_stride={stride}: a code frame of this codec spans "
                      f"{temporal_factor} encoded frames, so a finer frame stride than "
                      f"config.data.stride={data.stride} would change what the codes mean; "
                      f"unset it")
  return int(stride)


def encode_spec(data: mlc.ConfigDict, codes: mlc.ConfigDict | None = None,
                temporal_factor: int = 1) -> encode.EncodeSpec:
  """Encoding settings that make code clips equivalent to the RGB clips of `data`: the frame
  stride of `frame_stride` and the same short side; no centre crop (the full frame is kept,
  cropped to the codec grid), so training can take random crops of the code grid like the RGB
  pipeline does of frames."""
  if data.target_fps:
    raise DatasetError("config.data.target_fps is not supported for code inputs (codes are made "
                       "at a fixed frame stride); use config.data.stride instead")
  return encode.EncodeSpec(short_side=data.short_side, crop=0,
                           stride=frame_stride(data, codes, temporal_factor), max_frames=0,
                           chunk_frames=data.get("chunk_frames", 0))


def _default_root(dataset_root: str, data: mlc.ConfigDict, codec: NeuralCodec,
                  spec: encode.EncodeSpec | None) -> str:
  key = json.dumps(dict(root=os.path.abspath(dataset_root), format=data.format,
                        codec=codec.codec_id, config=codec.config_hash,
                        spec=dataclasses.asdict(spec) if spec else None,
                        splits=[data.train_split, data.eval_split]),
                   sort_keys=True)
  digest = hashlib.sha1(key.encode()).hexdigest()[:12]
  name = os.path.basename(os.path.normpath(dataset_root)) or "dataset"
  return os.path.join(cache_base(), f"{name}-{codec.codec_id}-{digest}")


def _check_spec(manifest: dict[str, Any], spec: encode.EncodeSpec, root: str) -> None:
  made = manifest.get("encode", {})
  for key, config_key in (("short_side", "data.short_side"),
                          ("stride", "codes.frame_stride (unset: data.stride)"),
                          ("chunk_frames", "data.chunk_frames")):
    if made.get(key, 0) != getattr(spec, key):
      raise DatasetError(
          f"{os.path.join(root, code_shards.MANIFEST)}: codes were encoded with {key}="
          f"{made.get(key)}, but the config asks for {key}={getattr(spec, key)}; set config."
          f"{config_key} to {made.get(key)}, or point config.codes.root at a new folder to "
          f"encode again")


def _wait_for_manifest(root: str, timeout_s: float = 24 * 3600) -> None:
  """Other processes may still be encoding their shards: wait until the manifest appears."""
  path = os.path.join(root, code_shards.MANIFEST)
  t0 = time.monotonic()
  while not os.path.exists(path):
    if time.monotonic() - t0 > timeout_s:
      raise DatasetError(f"{path}: still missing after {timeout_s:.0f} s; another process did not "
                         f"finish encoding its shards")
    time.sleep(2.0)


@contextlib.contextmanager
def _exclusive(root: str):
  """An advisory lock (`<root>.lock`) held while this run encodes into `root`."""
  os.makedirs(os.path.dirname(os.path.abspath(root)) or ".", exist_ok=True)
  with open(os.path.abspath(root) + ".lock", "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def ensure_codes(config: mlc.ConfigDict, codec: NeuralCodec, codec_path: str
                 ) -> tuple[str, dict[str, Any]]:
  """(shard folder, manifest) for `config.data` encoded by `codec`; encodes them if missing.

  `config.data.format='dm_k600'` (DeepMind's compressed Kinetics-600 under `config.data.root`)
  is converted instead of encoded: their TFRecords become shards, each record checked against
  the codec (`cv.codec.dm_import.convert_tfrecords`)."""
  data, codes = config.data, config.codes
  released = data.format == dm_import.DM_FORMAT
  spec = None if released else encode_spec(data, codes, codec.temporal_factor)
  dataset_root = datasets.resolve_root(data)
  root = os.path.expanduser(codes.root) if codes.root else _default_root(dataset_root, data,
                                                                           codec, spec)
  manifest_path = os.path.join(root, code_shards.MANIFEST)

  def needed() -> bool:
    return not os.path.exists(manifest_path) or (not codes.root and _missing_shards(root))

  if needed():
    # Separate runs (not processes of one run, which split the shards) that share the cache
    # take turns: the second finds the first's shards finished.
    with _exclusive(root) if jax.process_count() == 1 else contextlib.nullcontext():
      if needed() and released:
        print(f"codes: converting DeepMind's TFRecords in {dataset_root} for codec "
              f"{codec.codec_id} into {root} (once; later runs reuse it)", flush=True)
        dm_import.convert_tfrecords(
            dm_tfrecords.split_files(dataset_root, (data.train_split, data.eval_split)), root,
            codec, codec_path=codec_path, mapping=dm_import.find_mapping(dataset_root),
            num_shards=codes.num_shards, process_index=jax.process_index(),
            process_count=jax.process_count(), progress=jax.process_index() == 0)
      elif needed():
        print(f"codes: encoding {dataset_root} with codec {codec.codec_id} into {root} (once; "
              f"later runs reuse it)", flush=True)
        encode.encode_dataset(dataset_root, root, codec, spec, codec_path=codec_path,
                              data_format=data.format, splits=(data.train_split, data.eval_split),
                              num_shards=codes.num_shards, process_index=jax.process_index(),
                              process_count=jax.process_count(), strict=data.strict,
                              progress=jax.process_index() == 0)
    _wait_for_manifest(root)
  manifest = code_shards.load_manifest(root)
  code_shards.check_codec(manifest, codec.codec_id, codec.config_hash, root)
  if spec is not None:
    _check_spec(manifest, spec, root)
  for split in (data.train_split, data.eval_split):
    code_shards.shard_paths(root, split, manifest)  # a missing shard is named here, before training
  return root, manifest


def _missing_shards(root: str) -> bool:
  """True if the cached manifest lists a shard that is gone (the cache re-encodes just those)."""
  try:
    manifest = code_shards.load_manifest(root)
  except DatasetError:
    return True
  return any(not os.path.exists(os.path.join(root, name))
             for split in manifest["splits"].values() for name in split["shards"])
