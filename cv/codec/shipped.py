"""The codecs shipped in `cv/assets/`, by name: what `--codec` / `--config.codec` accept besides a
file path or a `vq_codec` workdir.

`cr192` (the default: used whenever no codec is named), `cr30` and `cr768` (nominal compression
rates 192, 32 and 768 of a 32x256x256 clip) are trained on the real-footage corpus
(docs/footage.md). Earlier codecs stay shipped by name (`LEGACY`): `demo`, the first shipped
codec and the default until 2026-12-07 (CR 192, trained on 64x64 demo clips; `cr192` is it
fine-tuned on real footage, better on real held-out video and as good for the quickstart's
classifier over four seeds: docs/results.md, "Shipped codecs"), `cr30v1`, the first CR 30
(2,000 steps), which the current `cr30` continues, and `cr768v1`, the first CR 768 (2,000 steps),
which the current `cr768` continues. `.cvz` files name their codec by id, and
`shipped_with_id` finds the shipped one that wrote a file, so files written with an earlier codec
still decode without `--codec`. It looks the id up in `cv/assets/shipped_ids.json` (name -> codec
id) and loads that one codec; exporting over a shipped asset (`tools/export_codec.py --out
cv/assets/...`) rewrites the entry (`record_id`), and a test checks the table against the files.
"""
from __future__ import annotations

import json
import os

from cv.lib import fileio

ASSETS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets")
IDS_FILE = "shipped_ids.json"  # name -> codec id of each asset (see shipped_with_id above)

SHIPPED = {
    "cr30": "codec_cr30.cvcodec",
    "cr192": "codec_cr192.cvcodec",
    "cr768": "codec_cr768.cvcodec",
    "cr30v1": "codec_cr30v1.cvcodec",
    "cr768v1": "codec_cr768v1.cvcodec",
    "demo": "demo_codec_cr192.cvcodec",
}
DEFAULT = "cr192"
# Earlier codecs kept by name so that the files they wrote decode and so they can be measured
# beside their successors (cv.codec.rd.compare labels them "ours-<name>").
LEGACY = ("cr30v1", "cr768v1", "demo")


def path_of(name: str) -> str:
  """The asset file of a shipped codec name."""
  return os.path.join(ASSETS, SHIPPED[name])


def resolve(spec: str | None) -> str:
  """A codec argument -> a path: None is the default codec, a shipped name its asset file, and
  anything else a path (a `.cvcodec` file or a `vq_codec` workdir), `~` expanded."""
  if spec is None or spec == "":
    return path_of(DEFAULT)
  if spec in SHIPPED:
    return path_of(spec)
  return os.path.expanduser(spec)


def describe(spec: str | None) -> str:
  """How a codec argument reads in logs: 'cr192 (shipped default)', 'cr30 (shipped)' or the path."""
  if not spec:
    return f"{DEFAULT} (shipped default)"
  return f"{spec} (shipped)" if spec in SHIPPED else spec


def ids_path() -> str:
  """The id table's file (under ASSETS, which tests may point elsewhere)."""
  return os.path.join(ASSETS, IDS_FILE)


def recorded_ids() -> dict[str, str]:
  """The id table: shipped name -> codec id of its asset file ({} when there is none; a table
  that is not JSON raises ValueError)."""
  try:
    with open(ids_path()) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}


def name_of_id(codec_id: str) -> str | None:
  """The shipped name whose recorded codec id is `codec_id`, or None."""
  return next((name for name, i in recorded_ids().items() if i == codec_id and name in SHIPPED),
              None)


def record_id(path: str, codec_id: str) -> str | None:
  """After a codec is written to `path`: if that is a shipped asset file, records its id under
  the asset's name (atomically) and returns the name; any other path is left alone (None)."""
  real = os.path.realpath(path)
  name = next((n for n in SHIPPED if os.path.realpath(path_of(n)) == real), None)
  if name is None:
    return None
  ids = recorded_ids()
  ids[name] = codec_id
  fileio.write_json(ids_path(), {n: ids[n] for n in SHIPPED if n in ids})
  return name
