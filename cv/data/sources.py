"""Dataset formats -> lists of clip records (docs/design.md, Data).

A record is a plain dict `{path, label, video_id, ...}`; sources check cheaply (stat) that every
file exists and is non-empty, and report the ones that do not (skip-and-count, or fail fast with
`strict=True`). Decoding problems are found later, per clip, by the loader.

Formats:
- Kinetics: `{root}/{split}.csv` with header `label,youtube_id,time_start,time_end,split` and clips
  at `{root}/{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>` or
  `{root}/{split}/{label}/...` (both common download layouts).
- Folder: every video file under `root` (recursively); the label is the first sub-folder name.
- COIN: `{root}/COIN.json` = `{"database": {video_id: {"subset", "duration", "annotation":
  [{"segment": [start_s, end_s], "id", "label"}, ...]}}}` with videos at
  `{root}/videos/{video_id}.<ext>`, `{root}/videos/{recipe_type}/{video_id}.<ext>` or
  `{root}/{video_id}.<ext>`. Classes are the step labels of the training subset plus `background`
  (id 0) for frames outside every segment; a record carries its `segments` as (start s, end s,
  class id) and the per-frame labels are made from them at the frame rate a reader samples
  (`cv.data.framewise`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from typing import Sequence

from absl import logging

from cv.lib.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


class DatasetError(UserError, ValueError):
  """A dataset that cannot be read as configured (the message names the file and the fix)."""


class DeadInputError(DatasetError):
  """A split (or a loader) that yields no usable example: training or evaluation would spin
  forever, so it stops with how many videos were tried, the most common reason and the fix."""


def reason_head(reason: str) -> str:
  """What is wrong, without the fix or the details: the text before the first ';' without the
  parenthesised parts ('not a readable video container')."""
  return re.sub(r"\s*\([^()]*\)", "", reason.split(";")[0]).strip() or reason


def reason_kind(reason: str) -> str:
  """The kind of a skip reason, for counting: `reason_head` with numbers as '#' ('has # frames
  but the clip needs # frames')."""
  return re.sub(r"\d+(\.\d+)?", "#", reason_head(reason))


def describe_problems(problems: Sequence[tuple[str, str]], *, limit: int = 3) -> str:
  """One line about unusable files [(path, reason)]: the most common kind of reason with its
  count and an example (file and full reason, which carries the fix), then the other kinds."""
  if not problems:
    return "no problems recorded"
  groups: dict[str, list[tuple[str, str]]] = {}
  for path, reason in problems:
    groups.setdefault(reason_kind(reason), []).append((path, reason))
  ranked = sorted(groups.values(), key=len, reverse=True)
  path, reason = ranked[0][0]
  text = (f"most common reason ({len(ranked[0])} of {len(problems)}): {path}: {reason}")
  if len(ranked) > 1:
    others = ", ".join(f"{reason_head(g[0][1])} ({len(g)}, e.g. {os.path.basename(g[0][0])})"
                       for g in ranked[1:1 + limit])
    more = f" and {len(ranked) - 1 - limit} more kinds" if len(ranked) - 1 > limit else ""
    text += f"; other reasons: {others}{more}"
  return text


@dataclasses.dataclass
class SourceReport:
  """What a source found: usable records and the problems it skipped."""
  records: list[dict]
  class_names: list[str]
  problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)

  def log(self, name: str) -> None:
    logging.info("%s: %d clips, %d classes", name, len(self.records), len(self.class_names))
    if self.problems:
      shown = "\n".join(f"  {p}: {r}" for p, r in self.problems[:20])
      more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
      logging.warning("%s: skipping %d unusable entries:\n%s%s", name, len(self.problems), shown, more)
      print(f"warning: {name}: skipped {len(self.problems)} unusable entries (first: "
            f"{self.problems[0][0]}: {self.problems[0][1]})", flush=True)


def file_problem(path: str) -> str | None:
  """Why `path` cannot be a dataset video (missing, empty), from a stat; None if it may be."""
  if not os.path.exists(path):
    return "file not found; download it or remove its row"
  if os.path.getsize(path) == 0:
    return "file is empty (0 bytes); re-download it or remove it"
  return None


def _problem(report: SourceReport, path: str, reason: str, strict: bool) -> None:
  if strict:
    raise DatasetError(f"{path}: {reason} (strict mode: set config.data.strict=False to skip "
                       "bad entries instead)")
  report.problems.append((path, reason))


def kinetics_clip_path(root: str, split: str, row: dict) -> tuple[str, list[str]]:
  """The file of a Kinetics CSV row: first existing candidate, else the first candidate."""
  stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
  candidates = [os.path.join(root, split, sub, stem + ext)
                for sub in ("", row["label"]) for ext in VIDEO_EXTENSIONS]
  for c in candidates:
    if os.path.exists(c):
      return c, candidates
  return candidates[0], candidates


def read_kinetics_csv(root: str, split: str) -> list[dict]:
  path = os.path.join(root, f"{split}.csv")
  if not os.path.exists(path):
    raise DatasetError(f"{path}: annotation file not found. A Kinetics root holds {{split}}.csv files "
                       f"(label,youtube_id,time_start,time_end,split); check the dataset root "
                       f"(config.data.root, or --root of the tools) and the split names "
                       f"(config.data.train_split / eval_split).")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = [c for c in KINETICS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
      raise DatasetError(f"{path}: missing column(s) {missing}; expected header "
                         f"'label,youtube_id,time_start,time_end,split' (got {reader.fieldnames})")
    rows = []
    for line, row in enumerate(reader, start=2):
      if not row.get("youtube_id") or row.get("label") is None:
        raise DatasetError(f"{path}:{line}: empty label or youtube_id in row {row}")
      try:
        float(row["time_start"]), float(row["time_end"])
      except (TypeError, ValueError):
        raise DatasetError(f"{path}:{line}: time_start/time_end must be numbers, got {row}") from None
      row["_line"] = line
      rows.append(row)
  return rows


def kinetics_source(root: str, split: str, *, class_names: Sequence[str] | None = None,
                    strict: bool = False) -> SourceReport:
  """Records of a Kinetics-format split. `class_names` (from train) fixes the label ids; a label
  outside it is an error (a val label that train lacks cannot be scored)."""
  rows = read_kinetics_csv(root, split)
  if class_names is None:
    class_names = sorted({r["label"] for r in rows})
  index = {n: i for i, n in enumerate(class_names)}
  report = SourceReport([], list(class_names))
  csv_path = os.path.join(root, f"{split}.csv")
  for row in rows:
    if row["label"] not in index:
      raise DatasetError(f"{csv_path}:{row['_line']}: label {row['label']!r} does not occur in the "
                         f"training split, so it cannot be learned or scored. Remove these rows or "
                         f"add training clips of that class.")
    path, _ = kinetics_clip_path(root, split, row)
    problem = file_problem(path)
    if problem:
      _problem(report, path, f"{problem} ({os.path.basename(csv_path)} line {row['_line']})", strict)
      continue
    report.records.append(dict(path=path, label=index[row["label"]], video_id=row["youtube_id"],
                               time_start=float(row["time_start"]),
                               time_end=float(row["time_end"])))
  return report


def folder_source(root: str, *, class_names: Sequence[str] | None = None,
                  strict: bool = False) -> SourceReport:
  """Every video file under `root`; label = first sub-folder (one class '' if files lie at top level)."""
  if not os.path.isdir(root):
    raise DatasetError(f"{root}: not a folder; set config.data.root to a folder of video files")
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      if name.lower().endswith(VIDEO_EXTENSIONS):
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, root).split(os.sep)
        found.append((path, rel[0] if len(rel) > 1 else ""))
  if not found:
    raise DatasetError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found")
  if class_names is None:
    class_names = sorted({label for _, label in found})
  index = {n: i for i, n in enumerate(class_names)}
  report = SourceReport([], list(class_names))
  for path, label in found:
    if label not in index:
      raise DatasetError(f"{path}: class folder {label!r} is not among the training classes "
                         f"{list(class_names)[:10]}...")
    problem = file_problem(path)
    if problem:
      _problem(report, path, problem, strict)
      continue
    report.records.append(dict(path=path, label=index[label],
                               video_id=os.path.splitext(os.path.basename(path))[0]))
  return report


COIN_FILE = "COIN.json"
BACKGROUND = "background"
# Segments may end this far past a video's end (rounding in annotation tools) and are clipped;
# further is an annotation error.
SEGMENT_TOLERANCE_S = 0.5


def read_coin_json(root: str) -> dict[str, dict]:
  """The `database` of `{root}/COIN.json`, with a clear error when it is missing or malformed."""
  path = os.path.join(root, COIN_FILE)
  if not os.path.exists(path):
    raise DatasetError(f"{path}: annotation file not found. A COIN root holds COIN.json "
                       f"(database/<video_id>/{{subset, annotation}}) and a videos/ folder; check "
                       f"the dataset root (config.data.root) and config.data.format")
  try:
    with open(path) as f:
      database = json.load(f).get("database")
  except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
    raise DatasetError(f"{path}: not a COIN annotation file ({e}); expected a JSON object "
                       f"with a 'database' mapping video ids to entries") from None
  if not isinstance(database, dict) or not database:
    raise DatasetError(f"{path}: 'database' is missing or empty; expected a mapping of video ids "
                       f"to {{subset, annotation}} entries")
  return database


def coin_video_path(root: str, video_id: str, entry: dict) -> str:
  """The file of a COIN video: the first existing candidate, else the first candidate."""
  folders = [os.path.join(root, "videos"), root]
  if "recipe_type" in entry:
    folders.insert(1, os.path.join(root, "videos", str(entry["recipe_type"])))
  candidates = [os.path.join(d, video_id + ext) for d in folders for ext in VIDEO_EXTENSIONS]
  return next((c for c in candidates if os.path.exists(c)), candidates[0])


def _coin_segments(entry: dict) -> list[tuple[float, float, str]]:
  """(start, end, step label) of an entry, checked: numbers, start <= end, within `duration`."""
  annotation = entry.get("annotation", [])
  if not isinstance(annotation, list):
    raise ValueError(f"'annotation' must be a list of segments, got {type(annotation).__name__}")
  duration = entry.get("duration")
  out = []
  for j, seg in enumerate(annotation):
    try:
      start, end = (float(x) for x in seg["segment"])
      label = str(seg["label"])
    except (KeyError, TypeError, ValueError):
      raise ValueError(f"annotation[{j}] = {seg!r} needs 'segment': [start_s, end_s] and "
                       f"'label'") from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
      raise ValueError(f"annotation[{j}] segment [{start:g}, {end:g}] is not a time range "
                       f"(0 <= start <= end)")
    if isinstance(duration, (int, float)) and end > float(duration) + SEGMENT_TOLERANCE_S:
      raise ValueError(f"annotation[{j}] segment [{start:g}, {end:g}] ends after the video's "
                       f"end (duration {float(duration):g} s)")
    out.append((start, end, label))
  return out


def coin_steps(database: dict[str, dict]) -> list[str]:
  """The class list of a COIN database: `background` (id 0), then every step label of every
  subset, sorted. The label space is the dataset's (as COIN's own evaluation does), so a test
  step that happens to be rare in training is still scored, and ids agree between subsets."""
  steps = set()
  for entry in database.values():
    for seg in (entry.get("annotation") if isinstance(entry, dict) else None) or []:
      if isinstance(seg, dict) and "label" in seg:
        steps.add(str(seg["label"]))
  return [BACKGROUND] + sorted(steps - {BACKGROUND})


def coin_source(root: str, subset: str, *, class_names: Sequence[str] | None = None,
                strict: bool = False) -> SourceReport:
  """Records of one COIN subset (`training`, `testing`, ...): path, video_id, segments.

  Class ids index `class_names` (default `coin_steps`: background, then all step labels).
  Entries with a bad annotation (segment past the video's end, start > end, ...) or a missing
  video are skipped and reported (or raise with `strict=True`); a subset no entry has is an
  error that lists the subsets present.
  """
  database = read_coin_json(root)
  path = os.path.join(root, COIN_FILE)
  subsets = sorted({str(e.get("subset")) for e in database.values() if isinstance(e, dict)})
  if subset not in subsets:
    raise DatasetError(f"{path}: no video has subset {subset!r}; subsets present: {subsets}. Set "
                       f"config.data.train_split / eval_split to one of them")
  class_names = list(class_names) if class_names is not None else coin_steps(database)
  index = {n: i for i, n in enumerate(class_names)}
  report = SourceReport([], class_names)
  for video_id, entry in database.items():
    if not isinstance(entry, dict) or entry.get("subset") != subset:
      continue
    try:
      segments = _coin_segments(entry)
    except ValueError as e:
      _problem(report, f"{path} [{video_id}]", f"{e}; fix or remove this entry", strict)
      continue
    unknown = sorted({label for _, _, label in segments} - set(index))
    if unknown:
      raise DatasetError(f"{path} [{video_id}]: step label(s) {unknown} are not among the "
                         f"{len(class_names)} classes of the first split read; read every split "
                         f"with the same COIN.json")
    video = coin_video_path(root, video_id, entry)
    problem = file_problem(video)
    if problem:
      _problem(report, video, f"{problem} ({COIN_FILE} entry {video_id})", strict)
      continue
    report.records.append(dict(
        path=video, label=-1, video_id=video_id,
        duration=float(entry.get("duration") or 0.0),
        segments=[(s, e, index[label]) for s, e, label in segments]))
  return report
