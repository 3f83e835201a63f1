"""Datasets stored as neural codes: ArrayRecord shards + a JSON manifest (docs/design.md, Data).

Layout of an encoded dataset folder:
  manifest.json                                   what the codes are (codec id, code shape, splits)
  {split}-{i:05d}-of-{n:05d}.array_record         records, one per clip
  {split}-{i:05d}-of-{n:05d}.array_record.json    per-shard summary (count, bad videos), written
                                                  after the shard; its presence marks it finished
A record is a msgpack dict: `codes` (uint8/uint16 [T', H', W', K]), `label` (int), `video_id`,
`time_start`/`time_end` (seconds in the source video), `num_frames` and `fps` of the encoded
frames, `path` (source file, relative to the dataset root), and for COIN-format datasets
`frame_labels` (int16 [num_frames], the step class of every encoded frame). Downstream trainers
read them with Grain (`code_dataset`), and look up codebook embeddings on device.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Iterable

import flax.serialization
import grain

from cv.data import sources
from cv.data.sources import DatasetError
from cv.lib import fileio

MANIFEST = "manifest.json"
FORMAT = "cv-codes"
FORMAT_VERSION = 1


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.array_record"


def serialize(example: dict[str, Any]) -> bytes:
  return flax.serialization.msgpack_serialize(example)


def deserialize(data: bytes) -> dict[str, Any]:
  return flax.serialization.msgpack_restore(data)


def write_shard(path: str, examples: Iterable[dict[str, Any]]) -> int:
  """Writes records to an ArrayRecord file atomically (temp file + rename); returns the count.

  A write that fails (full disk, any OSError) raises `WriteError` naming the shard; the temp
  file is removed and finished shards are untouched. An exception from `examples` (e.g. a stop
  request) abandons the shard the same way."""
  from array_record.python import array_record_module
  n = 0
  with fileio.atomic_path(path, what="code shard") as tmp:
    writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
    try:
      for ex in examples:
        writer.write(serialize(ex))
        n += 1
    finally:
      writer.close()
  return n


def finished(shard_path: str) -> bool:
  """A shard is finished when both it and its summary exist (a deleted shard is re-made)."""
  return os.path.exists(shard_path) and os.path.exists(shard_path + ".json")


def remove_stale_temps(shard_path: str) -> None:
  """Deletes the temp files a killed writer of `shard_path` left (SIGKILL cannot clean up)."""
  folder, name = os.path.split(shard_path)
  stem = os.path.splitext(name)[0]
  for f in glob.glob(os.path.join(folder, f".{stem}.*.tmp*")):
    os.remove(f)


def load_manifest(root: str) -> dict[str, Any]:
  path = os.path.join(root, MANIFEST)
  if not os.path.exists(path):
    raise DatasetError(f"{path}: no manifest; encode the dataset first with "
                       f"tools/encode_dataset.py (or it is still being encoded)")
  try:
    manifest = json.load(open(path))
  except json.JSONDecodeError as e:
    raise DatasetError(f"{path}: not valid JSON ({e}); re-run tools/encode_dataset.py") from e
  if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
    raise DatasetError(f"{path}: format {manifest.get('format')!r} version "
                       f"{manifest.get('format_version')!r}; this code reads {FORMAT!r} version "
                       f"{FORMAT_VERSION}; re-encode the dataset")
  return manifest


def check_codec(manifest: dict[str, Any], codec_id: str, config_hash: str, root: str) -> None:
  """Refuses code shards made by a different codec than the one a config names."""
  if manifest["codec_id"] != codec_id or manifest["config_hash"] != config_hash:
    raise DatasetError(
        f"{os.path.join(root, MANIFEST)}: codes were made by codec {manifest['codec_id']} "
        f"({manifest.get('codec_path', '?')}), but the config names codec {codec_id}; point the "
        f"config at the codec that made them, or re-encode the dataset with this codec")


def shard_paths(root: str, split: str, manifest: dict[str, Any] | None = None) -> list[str]:
  manifest = manifest or load_manifest(root)
  if split not in manifest["splits"]:
    raise DatasetError(f"{os.path.join(root, MANIFEST)}: no split {split!r}; available: "
                       f"{sorted(manifest['splits'])}")
  paths = [os.path.join(root, s) for s in manifest["splits"][split]["shards"]]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise DatasetError(f"{missing[0]}: code shard missing ({len(missing)} of {len(paths)} for "
                       f"split {split!r}); re-run tools/encode_dataset.py with the same "
                       f"arguments (finished shards are kept, missing ones are made again)")
  return paths


class DecodeRecord(grain.transforms.Map):
  """ArrayRecord bytes -> example dict (a top-level class, picklable for Grain workers)."""

  def map(self, data: bytes) -> dict[str, Any]:
    return deserialize(data)


def check_split_usable(root: str, split: str, manifest: dict[str, Any]) -> None:
  """Refuses a split of an encoded dataset that holds no record (every video was skipped when
  it was encoded): training on it would spin forever. Names how many videos were tried, the
  most common reason with an example file (from the manifest's `bad` list) and the fix."""
  info = manifest["splits"][split]
  if int(info.get("num_records", 1)) > 0:
    return
  bad = [tuple(b) for b in info.get("bad", [])]
  detail = (sources.describe_problems(bad) if bad else
            "the source split listed no videos")
  raise sources.DeadInputError(
      f"{os.path.join(root, MANIFEST)}: split {split!r} holds no encoded video: all "
      f"{len(bad)} videos were skipped when it was encoded; {detail}. Fix or replace those "
      f"videos and encode the dataset again (tools/encode_dataset.py into a new --out folder)")


def code_dataset(root: str, split: str) -> grain.MapDataset:
  """Random-access Grain dataset of the decoded records of one split (a split with no record is
  an error, see `check_split_usable`)."""
  manifest = load_manifest(root)
  paths = shard_paths(root, split, manifest)
  check_split_usable(root, split, manifest)
  source = grain.sources.ArrayRecordDataSource(paths)
  return grain.MapDataset.source(source).map(DecodeRecord())
