"""The `s3d_cls` trainer: codes / rgb / recon runs through cv.main, code-shard caching and the
errors a user gets for bad input."""
from __future__ import annotations

import json
import os
import types

import pytest

from cv.codec.neural import NeuralCodec
from cv.configs import k600_s3d
from cv.data import code_shards
from cv.codec import code_cache
from cv.data.sources import DatasetError
from tests import helpers

SMOKE = "cv/configs/k600_s3d.py:smoke"


def _metrics(wd: str) -> dict:
  return json.load(open(os.path.join(wd, "metrics.json")))


@pytest.mark.slow
def test_codes_run_trains_evaluates_and_resumes(tmp_path):
  wd = str(tmp_path / "codes")
  r = helpers.run_main(SMOKE, wd)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "s3d_cls: input=codes" in r.stdout and "final: top-1" in r.stdout
  m = _metrics(wd)
  assert m["step"] == 6
  for k in ("eval/top1", "eval/top5", "eval/mean_class_accuracy", "eval/loss",
            "eval/top1_single_view"):
    assert 0.0 <= m[k] < 10.0, k
  assert m["eval/num_videos"] == 8 and m["eval/views"] == 4
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(wd, size_guidance={"tensors": 0})
  acc.Reload()
  assert {"train/loss", "eval/top1", "eval/confusion_matrix"} <= set(acc.Tags()["tensors"])
  r2 = helpers.run_main(SMOKE, wd)  # cached shards, finished run: no encoding, no training
  assert r2.returncode == 0, r2.stderr[-3000:]
  assert "codes: encoding" not in r2.stdout
  assert "Training already complete at step 6" in r2.stdout


@pytest.mark.slow
@pytest.mark.parametrize("inp", ["rgb", "recon"])
def test_rgb_and_recon_runs(tmp_path, inp):
  wd = str(tmp_path / inp)
  r = helpers.run_main(f"{SMOKE},input={inp}", wd, "--config.total_steps=3",
                       "--config.eval_views.temporal=1", "--config.eval_views.spatial=1")
  assert r.returncode == 0, r.stderr[-3000:]
  m = _metrics(wd)
  assert m["step"] == 3 and m["eval/views"] == 1 and 0.0 <= m["eval/top1"] <= 1.0


def _encoded(tmp_path, **overrides):
  """A smoke config whose codes are encoded into a fresh folder under tmp_path."""
  c = k600_s3d.get_config("smoke")
  c.codes.root = str(tmp_path / "codes")
  for k, v in overrides.items():
    c.codes[k] = v
  codec = NeuralCodec.load(None)
  root, manifest = code_cache.ensure_codes(c, codec, "demo")
  return c, codec, root, manifest


def test_codes_are_encoded_once_and_checked(tmp_path):
  c, codec, root, manifest = _encoded(tmp_path)
  assert manifest["codec_id"] == codec.codec_id and manifest["encode"]["crop"] == 0
  ds = code_shards.code_dataset(root, "train")
  # 48x64 frames -> short side 32 -> 32x42, cut to the 8-pixel grid 32x40 -> 4x5 codes
  assert len(ds) == 16 and ds[0]["codes"].shape == (6, 4, 5, 1)  # 12 frames at stride 2

  # A code shard that disappeared is named, with the fix.
  victim = os.path.join(root, manifest["splits"]["validate"]["shards"][1])
  os.remove(victim)
  with pytest.raises(DatasetError, match=f"{os.path.basename(victim)}: code shard missing"):
    code_cache.ensure_codes(c, codec, "demo")

  # Shards made by another codec are refused.
  manifest["codec_id"] = "0123456789abcdef"
  json.dump(manifest, open(os.path.join(root, code_shards.MANIFEST), "w"))
  with pytest.raises(DatasetError, match="made by codec 0123456789abcdef.*re-encode"):
    code_cache.ensure_codes(c, codec, "demo")

  # Shards encoded at another frame stride do not match the clip the config asks for.
  manifest["codec_id"] = codec.codec_id
  json.dump(manifest, open(os.path.join(root, code_shards.MANIFEST), "w"))
  c.data.stride = 1
  with pytest.raises(DatasetError, match="encoded with stride=2.*asks for stride=1.*codes.frame_stride"):
    code_cache.ensure_codes(c, codec, "demo")


def test_a_finer_frame_stride_keeps_every_frame_and_is_checked(tmp_path):
  from cv.lib.errors import ConfigError
  from cv.trainers import s3d_cls
  c, codec, root, manifest = _encoded(tmp_path, frame_stride=1)
  assert manifest["encode"]["stride"] == 1
  assert code_shards.code_dataset(root, "train")[0]["codes"].shape == (12, 4, 5, 1)
  data = s3d_cls.Data(c, codec, "demo")
  assert data.train_load.spec.step == c.data.stride == 2
  assert data.example_shape[0] == c.data.num_frames
  c.codes.frame_stride = 3
  with pytest.raises(DatasetError, match="frame_stride=3 must be a positive divisor of "
                                         "config.data.stride=2"):
    s3d_cls.Data(c, codec, "demo")
  # A codec whose code frame spans 2 frames cannot be read at a finer stride: refused before
  # any encoding starts.
  c.codes.frame_stride, c.codes.root = 1, str(tmp_path / "never")
  two_frame = types.SimpleNamespace(temporal_factor=2, spatial_factor=codec.spatial_factor)
  with pytest.raises(ConfigError, match="spans 2 encoded frames.*unset it"):
    s3d_cls.Data(c, two_frame, "demo")
  assert not os.path.exists(tmp_path / "never")


def test_cache_re_encodes_a_missing_shard(tmp_path, monkeypatch):
  monkeypatch.setenv("CV_CODES_DIR", str(tmp_path / "cache"))
  c = k600_s3d.get_config("smoke")
  codec = NeuralCodec.load(None)
  root, manifest = code_cache.ensure_codes(c, codec, "demo")
  assert root.startswith(str(tmp_path / "cache"))
  shard = os.path.join(root, manifest["splits"]["train"]["shards"][0])
  before = open(shard, "rb").read()
  os.remove(shard)
  code_cache.ensure_codes(c, codec, "demo")
  assert open(shard, "rb").read() == before


def test_val_label_missing_from_train_is_named(tmp_path, kinetics_root):
  root = kinetics_root
  with open(os.path.join(root, "validate.csv"), "a") as f:
    f.write("zebra,val00000000,0,2,validate\n")
  for inp in ("codes", "rgb"):
    r = helpers.run_main(f"{SMOKE},input={inp}", str(tmp_path / inp),
                         f"--config.data.root={root}", f"--config.codes.root={tmp_path}/c")
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "validate.csv:3: label 'zebra' does not occur in the" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_unknown_mixed_block_is_a_config_error():
  from cv.lib.errors import ConfigError
  from cv.trainers import s3d_cls
  c = k600_s3d.get_config("smoke")
  assert s3d_cls.build_model(c, 8, NeuralCodec.load(None)).mixed_blocks == c.model.mixed_blocks
  c.model.mixed_blocks = ("Mixed_3b", "Mixed_9z")
  with pytest.raises(ConfigError, match=r"config.model.mixed_blocks=.*Mixed_9z"):
    s3d_cls.build_model(c, 8, NeuralCodec.load(None))
