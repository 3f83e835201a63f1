"""DeepMind's neurally compressed Kinetics-600 (TFRecord shards) as plain records of codes.

Their release (docs/deepmind.md) holds `{train,valid,test}.tfrecord-*` files of `tf.train.Example`s
with the features (as their release defines them; docs/deepmind.md):

  video_id         bytes    YouTube id of the clip
  start_sec        float32  start of the clip in the source video
  end_sec          float32  end
  compressed_repr  bytes    a serialised uint8 tensor (`tf.io.serialize_tensor`): the codes
  label            bytes    class name          (absent in the test split)
  label_id         int64    class index 0..599  (absent in the test split)

The axes of `compressed_repr` are not documented; `code_array` reads them as T'xH'xW' (one
codebook) or T'xH'xW'xK and the caller checks them against the codec. Only reading lives here
(TensorFlow is imported lazily: it is slow to import); turning the records into this project's
code shards is `cv.codec.dm_import.convert_tfrecords`.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Iterator, Sequence

import numpy as np

from cv.data.sources import DatasetError

SPLITS = ("train", "valid", "test")
# This project calls the held-out split "validate" (Kinetics CSVs); their files say "valid".
SPLIT_ALIASES = {"validate": "valid", "val": "valid"}
FEATURES = ("video_id", "start_sec", "end_sec", "compressed_repr", "label", "label_id")
UNLABELLED = -1  # label of a record without label_id (their test split)


def file_pattern(root: str, split: str) -> str:
  """The glob of one split's shards under `root` (`validate` finds their `valid` files)."""
  return os.path.join(os.path.expanduser(root), f"{SPLIT_ALIASES.get(split, split)}.tfrecord-*")


def find_files(pattern_or_root: str, split: str | None = None) -> list[str]:
  """Sorted shard files of a glob pattern, or of `split` under a root folder. Raises
  DatasetError naming the pattern when nothing matches."""
  pattern = file_pattern(pattern_or_root, split) if split is not None else pattern_or_root
  files = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
  if not files:
    raise DatasetError(f"{pattern}: no TFRecord files match; point at the folder holding "
                       f"DeepMind's {{train,valid,test}}.tfrecord-* files")
  return files


def code_array(codes: np.ndarray, num_codebooks: int, where: str) -> np.ndarray:
  """A record's decoded `compressed_repr` as [T', H', W', K] for a codec with K codebooks.

  Rank 3 is T'xH'xW' (K = 1 only); rank 4 must end in K; a leading batch axis of 1 is dropped.
  Anything else is a DatasetError naming `where` (the record) and both shapes.
  """
  shape = tuple(codes.shape)
  if codes.ndim == 5 and shape[0] == 1:
    codes = codes[0]
  if codes.ndim == 3 and num_codebooks == 1:
    codes = codes[..., None]
  if codes.ndim != 4 or codes.shape[-1] != num_codebooks or min(codes.shape[:3]) < 1:
    expected = ("T'xH'xW' or T'xH'xW'x1" if num_codebooks == 1 else f"T'xH'xW'x{num_codebooks}")
    raise DatasetError(f"{where}: compressed_repr has shape {shape}, but the codec makes codes "
                       f"{expected} (K={num_codebooks} codebooks per position); these records "
                       f"were made by another codec: use the codec they were compressed with "
                       f"(the CR-192 checkpoint for the released Kinetics-600)")
  return codes


def _feature(features: Any, name: str, kind: str, where: str, required: bool = True) -> Any:
  if name not in features:
    if required:
      raise DatasetError(f"{where}: feature {name!r} is missing (a record holds "
                         f"{sorted(features.keys())}); is this DeepMind's compressed Kinetics-600?")
    return None
  values = getattr(features[name], kind).value
  if len(values) != 1:
    raise DatasetError(f"{where}: feature {name!r} holds {len(values)} values of {kind}, "
                       f"expected one")
  return values[0]


def iter_records(path: str) -> Iterator[dict[str, Any]]:
  """Every record of one shard file as {video_id, start_sec, end_sec, codes (uint8 array as
  stored), label (str, '' when absent), label_id (int, -1 when absent), index (in the file),
  where (file, index and video_id, for messages)}.

  A truncated or corrupt file, a missing feature or a `compressed_repr` that is not a serialised
  uint8 tensor is a DatasetError naming the file and the record.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow import; only needed here)
  dataset = tf.data.TFRecordDataset(path)
  index = -1
  try:
    for index, raw in enumerate(dataset.as_numpy_iterator()):
      where = f"{path} record {index}"
      try:
        example = tf.train.Example.FromString(raw)
      except Exception as e:  # protobuf's DecodeError
        raise DatasetError(f"{where}: not a tf.train.Example ({e})") from None
      f = example.features.feature
      video_id = _feature(f, "video_id", "bytes_list", where).decode("utf-8", "replace")
      where = f"{path} record {index} (video_id {video_id})"
      blob = _feature(f, "compressed_repr", "bytes_list", where)
      try:
        codes = tf.io.parse_tensor(blob, out_type=tf.uint8).numpy()
      except tf.errors.OpError as e:
        raise DatasetError(f"{where}: compressed_repr is not a serialised uint8 tensor "
                           f"({e.message.splitlines()[0]})") from None
      label_id = _feature(f, "label_id", "int64_list", where, required=False)
      label = _feature(f, "label", "bytes_list", where, required=False)
      yield dict(video_id=video_id,
                 start_sec=float(_feature(f, "start_sec", "float_list", where)),
                 end_sec=float(_feature(f, "end_sec", "float_list", where)),
                 codes=codes, label=label.decode("utf-8", "replace") if label is not None else "",
                 label_id=int(label_id) if label_id is not None else UNLABELLED, index=index,
                 where=where)
  except tf.errors.OpError as e:  # DataLossError on a truncated / corrupt file
    raise DatasetError(f"{path}: unreadable after record {index} ({type(e).__name__}: "
                       f"{e.message.splitlines()[0]}); download the file again") from None


def class_names(labels: dict[int, str], where: str) -> list[str]:
  """Names indexed by label id 0..max (ids without a record get 'class_<id>')."""
  if not labels:
    return []
  if min(labels) < 0:
    raise DatasetError(f"{where}: negative label_id {min(labels)}")
  return [labels.get(i, f"class_{i}") for i in range(max(labels) + 1)]


def merge_labels(into: dict[int, str], new: dict[int, str], where: str) -> None:
  """Adds id -> name pairs, refusing one id with two names (naming both)."""
  for i, name in new.items():
    i = int(i)
    if name and into.get(i, name) != name:
      raise DatasetError(f"{where}: label_id {i} is {name!r} here but {into[i]!r} elsewhere")
    if name or i not in into:
      into[i] = name


def split_files(root: str, splits: Sequence[str]) -> dict[str, list[str]]:
  """{split: shard files} for every split (each must have files)."""
  return {s: find_files(root, s) for s in splits}
