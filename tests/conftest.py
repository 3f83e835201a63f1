"""Test setup: 4 fake CPU devices (set before JAX is imported), and demo-data and code caches."""
import os

from tests.helpers import FAST_COMPILE_FLAGS  # noqa: E402  (imports no JAX)

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=4 {FAST_COMPILE_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CV_DEMO_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "test_demo"))
os.environ.setdefault("CV_CODES_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "test_codes"))

import pytest  # noqa: E402


from tests.helpers import write_clip as _clip  # noqa: E402

HEADER = "label,youtube_id,time_start,time_end,split\n"


@pytest.fixture()
def kinetics_root(tmp_path):
  """A Kinetics-format root with good clips and every kind of bad entry."""
  root = tmp_path / "k"
  rows = []
  for i, label in enumerate(["a", "b", "a", "b", "a", "b"]):
    vid = f"vid{i:08d}"
    _clip(str(root / "train" / f"{vid}_000001_000003.mp4"), seed=i)
    rows.append(f"{label},{vid},1,3,train\n")
  # Label sub-folder layout is found too.
  _clip(str(root / "train" / "a" / "sub00000000_000000_000002.mp4"), seed=9)
  rows.append("a,sub00000000,0,2,train\n")
  rows.append("a,missing0000,0,2,train\n")  # missing file
  (root / "train" / "empty000000_000000_000002.mp4").write_bytes(b"")
  rows.append("b,empty000000,0,2,train\n")  # zero bytes
  (root / "train" / "text0000000_000000_000002.mp4").write_text("not a video")
  rows.append("b,text0000000,0,2,train\n")  # text named .mp4
  _clip(str(root / "train" / "short000000_000000_000002.mp4"), n=3)
  rows.append("a,short000000,0,2,train\n")  # 3 frames
  good = root / "train" / "vid00000000_000001_000003.mp4"
  data = good.read_bytes()
  (root / "train" / "trunc000000_000000_000002.mp4").write_bytes(data[: len(data) * 2 // 5])
  rows.append("a,trunc000000,0,2,train\n")  # truncated
  (root / "train.csv").write_text(HEADER + "".join(rows))
  _clip(str(root / "validate" / "val00000000_000000_000002.mp4"), seed=20)
  (root / "validate.csv").write_text(HEADER + "b,val00000000,0,2,validate\n")
  return str(root)


