"""The rooms of the house (docs/design.md): which package may import which, read from the source.

Every `import` and `from ... import` of every module under cv/ and tools/ is parsed (no module is
executed), so a rule broken anywhere, even in a function body, fails here with the file and line.
"""
from __future__ import annotations

import ast
import os
import sys

import pytest

from tests import helpers

# Room -> the cv rooms it may import (besides itself). None = any room but the ones in FORBIDDEN.
ALLOWED: dict[str, set[str] | None] = {
    "models": set(),
    "data": {"lib"},
    "lib": set(),
    "codec": {"data", "models", "lib"},
    "augment": {"codec", "models", "lib"},
    "configs": set(),
    "trainers": None,
    "benchmarks": None,
    "main": None,
}
FORBIDDEN = {"trainers": {"benchmarks"}, "benchmarks": set(), "main": {"benchmarks"}}
# Third-party packages a config may import (the standard library is always allowed).
CONFIG_THIRD_PARTY = {"ml_collections"}


def _modules(folder: str) -> list[str]:
  out = []
  for dirpath, _, names in os.walk(os.path.join(helpers.ROOT, folder)):
    out += [os.path.join(dirpath, n) for n in names if n.endswith(".py")]
  return sorted(out)


def _imports(path: str) -> list[tuple[int, str]]:
  """(line, absolute module name) of every import in the file, at any depth."""
  tree = ast.parse(open(path).read(), path)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from cv.trainers import s3d_cls` imports cv.trainers.s3d_cls (a name may be a module).
      out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
  return out


def _room(path: str) -> str:
  rel = os.path.relpath(path, os.path.join(helpers.ROOT, "cv"))
  return "main" if rel == "main.py" else rel.split(os.sep)[0]


def _trainer(module: str) -> str | None:
  parts = module.split(".")
  return parts[2] if len(parts) > 2 and parts[1] == "trainers" else None


def violations() -> list[str]:
  """Every import that breaks a rule, as 'file:line: room imports module (why)'."""
  out = []
  for path in _modules("cv"):
    room = _room(path)
    if room.endswith(".py"):  # cv/__init__.py
      continue
    rel = os.path.relpath(path, helpers.ROOT)
    for line, module in _imports(path):
      top = module.split(".")[0]
      where = f"{rel}:{line}: {room} imports {module}"
      if top in ("tools", "cv_tools"):
        out.append(f"{where} (nothing under cv/ imports the tools)")
        continue
      if room == "configs" and top != "cv":
        if top not in sys.stdlib_module_names and top not in CONFIG_THIRD_PARTY:
          out.append(f"{where} (configs import only ml_collections and cv.configs)")
        continue
      if top != "cv" or module == "cv":
        continue
      target = module.split(".")[1]
      if target == room:
        if room == "trainers":  # a trainer may use the private helpers, never another trainer
          mine, other = os.path.splitext(os.path.basename(path))[0], _trainer(module)
          if other and not other.startswith("_") and other != mine:
            out.append(f"{where} (a trainer never imports another trainer)")
        continue
      allowed = ALLOWED[room]
      if allowed is None:
        if target in FORBIDDEN[room]:
          out.append(f"{where} ({room} may not import {target})")
      elif target not in allowed:
        out.append(f"{where} ({room} imports only {sorted(allowed | {room})})")
  return out


def test_package_rules_hold():
  assert violations() == []


def test_rules_catch_a_broken_import(tmp_path, monkeypatch):
  """The checker itself: a data module that imports the codec is reported with its line."""
  fake_root = tmp_path / "repo"
  (fake_root / "cv" / "data").mkdir(parents=True)
  (fake_root / "cv" / "data" / "bad.py").write_text(
      "import os\n\ndef f():\n  from cv.codec import neural\n  return neural\n")
  (fake_root / "cv" / "configs").mkdir()
  (fake_root / "cv" / "configs" / "c.py").write_text("from cv.models import s3d\nimport numpy\n")
  monkeypatch.setattr(helpers, "ROOT", str(fake_root))
  found = violations()
  assert any("cv/data/bad.py:4: data imports cv.codec.neural" in v for v in found), found
  assert any("cv/configs/c.py:1: configs imports cv.models.s3d" in v for v in found), found
  assert any("cv/configs/c.py:2: configs imports numpy" in v for v in found), found


@pytest.mark.parametrize("path", _modules("tools"))
def test_tools_need_no_path_hacks(path):
  """The tools run from an installed package (requirements.txt installs cv with `-e .`)."""
  assert "sys.path" not in open(path).read(), f"{path}: remove the sys.path manipulation"
