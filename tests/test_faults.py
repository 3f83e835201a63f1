"""Faults a cluster user meets (issue 28): a dead dataset stops with the reason and the fix, an
unreadable checkpoint falls back to the previous one, a full disk is one line and damages nothing.

In-process tests use a tiny task or the data layer directly (fast); the user-level ones run
`cv.main` at smoke size as a user would."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cv.data import code_shards, pipeline, sources
from cv.lib import loop
from cv.lib.errors import CheckpointError, NoCheckpointError, WriteError
from cv.lib.train_state import TrainState
from tests import helpers

VQ_SMOKE = "cv/configs/k600_vq.py:cr=192,smoke"


# --- dead input -------------------------------------------------------------------------------

def _short_clips(folder, n: int, frames: int) -> list[dict]:
  recs = []
  for i in range(n):
    path = os.path.join(folder, f"c{i}.mp4")
    helpers.write_clip(path, n=frames, seed=i)
    recs.append({"path": path, "label": 0})
  return recs


def test_dead_training_split_stops_before_training_with_frame_counts_and_fix(tmp_path):
  recs = _short_clips(str(tmp_path), 3, frames=6)
  load = pipeline.LoadClip(pipeline.ClipSpec(num_frames=5, stride=3, short_side=16, crop=16),
                           train=True)
  t0 = time.monotonic()
  with pytest.raises(sources.DeadInputError) as e:
    pipeline.train_iterator(recs, load, global_batch=2, seed=0, what="training split 'train'")
  msg = str(e.value)
  assert time.monotonic() - t0 < 10
  assert "training split 'train'" in msg and "tried all 3" in msg
  # The clip needs (5 - 1) * 3 + 1 = 13 frames; the videos have 6.
  assert "needs 13 frames" in msg and "have 6 frames" in msg
  assert "data.num_frames=5 x data.stride=3" in msg and "lower data.num_frames or data.stride" in msg
  assert "\n" not in msg


def test_partly_unusable_split_passes_the_check_with_a_warning(tmp_path, capsys):
  recs = _short_clips(str(tmp_path / "short"), 3, frames=4) + _short_clips(str(tmp_path / "ok"), 1, 12)
  (tmp_path / "text.mp4").write_text("not a video")
  recs.append({"path": str(tmp_path / "text.mp4"), "label": 0})
  load = pipeline.LoadClip(pipeline.ClipSpec(num_frames=4, stride=2, short_side=16, crop=16),
                           train=True)
  assert pipeline.check_usable(recs, load.preflight, what="train") == 5
  err = capsys.readouterr().err
  assert "4 of 5 videos tried are unusable" in err and "too short" in err
  it = pipeline.train_iterator(recs, load, global_batch=2, seed=0)
  batch = next(it)  # the one usable video trains
  assert batch["video"].shape == (2, 4, 16, 16, 3)


def test_dead_evaluation_split_is_found_before_training(tmp_path):
  """Training clips are fine, every evaluation video is too short: `clip_sources` (what the
  clip trainers call first) stops before any model is built."""
  import ml_collections as mlc
  from cv.configs import common as configs
  from cv.data import datasets
  root = tmp_path / "k"
  header = "label,youtube_id,time_start,time_end,split\n"
  for split, frames in (("train", 12), ("validate", 8)):
    rows = []
    for i in range(3):
      helpers.write_clip(str(root / split / f"v{split[0]}{i:07d}_000000_000002.mp4"), n=frames,
                         seed=i)
      rows.append(f"a,v{split[0]}{i:07d},0,2,{split}\n")
    (root / f"{split}.csv").write_text(header + "".join(rows))
  data = configs.clip_data_config(root=str(root), num_frames=4, stride=2)
  assert isinstance(data, mlc.ConfigDict)
  train, _ = datasets.clip_sources(data)  # 4 frames x stride 2 = 7 frames: both splits fine
  assert len(train.records) == 3
  data.num_frames = 5  # needs 9 frames: training videos have 12, evaluation videos 8
  with pytest.raises(sources.DeadInputError) as e:
    datasets.clip_sources(data)
  msg = str(e.value)
  assert msg.startswith("evaluation split 'validate'") and "tried all 3" in msg, msg
  assert "needs 9 frames" in msg and "have 8 frames" in msg


def test_coin_windows_preflight_names_videos_shorter_than_the_stride(tmp_path):
  from cv.data import framewise
  helpers.write_clip(str(tmp_path / "short.mp4"), n=3)
  helpers.write_clip(str(tmp_path / "ok.mp4"), n=12)
  load = framewise.LoadVideoWindow(8, 4, 32, 32, train=True)
  bad = load.preflight({"path": str(tmp_path / "short.mp4"), "segments": []})
  assert bad is not None and bad.frames == 3 and bad.needed == 4 and "stride 4" in bad.reason
  assert load.preflight({"path": str(tmp_path / "ok.mp4"), "segments": [(0.0, 0.2, 1)]}) is None
  late = load.preflight({"path": str(tmp_path / "ok.mp4"), "segments": [(0.0, 9.0, 1)]})
  assert late is not None and "ends after the video's end" in late.reason


def test_check_usable_samples_large_splits(tmp_path):
  calls = []

  def preflight(rec):
    calls.append(rec["i"])
    return pipeline.Unusable(f"v{rec['i']}", "not a readable video container (x); re-download it")

  with pytest.raises(sources.DeadInputError, match=r"tried 7 of 1000, spread over the split.*"
                     r"most common reason \(7 of 7\): v0: not a readable video container"):
    pipeline.check_usable([{"i": i} for i in range(1000)], preflight, what="train", sample=7)
  assert len(calls) == 7 and calls[0] == 0 and max(calls) == 999


class _AlwaysBad:
  """A loader whose every video fails at decode time (the header check cannot see it)."""

  def __init__(self):
    self.skipped = pipeline.SkipLog()

  def __call__(self, record, rng=None):
    from cv.data import video
    self.skipped.add(video.VideoError(record["path"], "decoding stopped at frame 3; re-encode it"))
    return None


def test_loader_skipping_n_in_a_row_stops_the_run():
  recs = [{"path": f"/data/v{i}.mp4", "label": 0} for i in range(4)]
  it = pipeline.train_iterator(recs, _AlwaysBad(), global_batch=2, seed=0, num_threads=1,
                               max_skips_in_row=9)
  t0 = time.monotonic()
  with pytest.raises(sources.DeadInputError) as e:
    next(it)
  assert time.monotonic() - t0 < 10
  msg = str(e.value)
  assert "skipped 9 videos in a row" in msg and "config.data.max_skips_in_row=9" in msg
  assert "4 distinct unusable file(s)" in msg and "decoding stopped at frame 3" in msg


def test_skip_guard_resets_on_success_and_is_picklable():
  import pickle
  flaky = iter([None, None, {"x": 1}, None, None, {"x": 2}])
  load = pipeline.LoadClip(pipeline.ClipSpec(), train=True)
  guard = pickle.loads(pickle.dumps(pipeline.SkipGuard(load, 3, "t")))  # for Grain workers
  assert guard.limit == 3 and guard.load.spec == load.spec
  guard = pipeline.SkipGuard(lambda r, rng: next(flaky), 3, "t")
  out = [guard({}, np.random.default_rng(0)) for _ in range(6)]  # never 3 None in a row
  assert [o for o in out if o] == [{"x": 1}, {"x": 2}]


def test_code_split_with_no_record_names_the_encode_reasons(tmp_path):
  root = str(tmp_path)
  code_shards.write_shard(os.path.join(root, code_shards.shard_name("train", 0, 1)), [])
  bad = [[f"/v/{i}.mp4", "has 3 frames but the clip needs 8 frames; lower data.num_frames"]
         for i in range(3)] + [["/v/t.mp4", "not a readable video container (x); re-download"]]
  manifest = dict(format=code_shards.FORMAT, format_version=code_shards.FORMAT_VERSION,
                  splits={"train": dict(shards=[code_shards.shard_name("train", 0, 1)],
                                        num_records=0, bad=bad, class_names=["a"])})
  with open(os.path.join(root, code_shards.MANIFEST), "w") as f:
    json.dump(manifest, f)
  with pytest.raises(sources.DeadInputError) as e:
    code_shards.code_dataset(root, "train")
  msg = str(e.value)
  assert "split 'train' holds no encoded video" in msg and "all 4 videos" in msg
  assert "most common reason (3 of 4): /v/0.mp4: has 3 frames" in msg
  assert "not a readable video container (1" in msg and "encode the dataset again" in msg


@pytest.mark.slow
def test_dead_demo_dataset_through_main_exits_within_60s_with_one_message(tmp_path):
  """The issue's case: clips of 32 frames at stride 2 need 63 frames; the demo clips are shorter
  (12 frames at smoke size)."""
  t0 = time.monotonic()
  r = helpers.run_main(VQ_SMOKE, str(tmp_path / "w"), "--config.data.num_frames=32",
                       "--config.data.stride=2", timeout=120)
  took = time.monotonic() - t0
  assert r.returncode != 0 and took < 60, (took, r.stderr[-2000:])
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, r.stderr[-3000:]
  msg = errors[0]
  assert "training split 'train'" in msg and "tried all 16" in msg, msg
  assert "needs 63 frames" in msg and "have 12 frames" in msg, msg
  assert "lower data.num_frames or data.stride" in msg
  assert "Traceback" not in r.stderr and "skipping unusable video" not in r.stderr
  assert not os.path.exists(tmp_path / "w" / "checkpoints")  # stopped before training


# --- checkpoints ------------------------------------------------------------------------------

def _task() -> loop.Task:
  return helpers.regression_task()


def _config(total: int):
  return helpers.regression_config(total, ckpt_every=2)


def _params(workdir: str, step: int) -> dict:
  return helpers.load_state(os.path.join(workdir, "checkpoints"), step)["params"]


def _truncate_arrays(step_dir: str) -> None:
  """What a power cut during a save leaves: the array files of the state cut short."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state"))
           for f in fs if os.sep + "d" + os.sep in os.path.join(d, f) + os.sep or
           os.path.basename(d) == "d"]
  assert files, f"no array files under {step_dir}"
  for f in files:
    os.truncate(f, os.path.getsize(f) // 2)


def test_unreadable_newest_step_falls_back_and_is_kept_aside(tmp_path, capsys):
  ref = str(tmp_path / "ref")
  loop.run(_config(8), ref, _task())
  wd = str(tmp_path / "w")
  loop.run(_config(6), wd, _task())  # checkpoints 4 and 6 (keep 2)
  ckpt_dir = os.path.join(wd, "checkpoints")
  _truncate_arrays(os.path.join(ckpt_dir, "6"))
  capsys.readouterr()
  final = loop.run(_config(8), wd, _task())
  out = capsys.readouterr()
  warnings = [l for l in out.err.splitlines() if l.startswith("warning: checkpoint")]
  assert len(warnings) == 1, out.err
  assert os.path.join(ckpt_dir, "6") + " cannot be read" in warnings[0]
  assert "OUT_OF_RANGE" in warnings[0] or "byte range" in warnings[0] or "Error" in warnings[0]
  assert "Resuming from checkpoint step 4" in out.out
  assert final["step"] == 8
  aside = [n for n in os.listdir(ckpt_dir) if re.fullmatch(r"6\.corrupt-\d{8}-\d{6}", n)]
  assert len(aside) == 1 and os.listdir(os.path.join(ckpt_dir, aside[0]))  # kept, not emptied
  # Resumed from 4 with the same data order: the same parameters as the uninterrupted run.
  a, b = _params(ref, 8), _params(wd, 8)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("what", ["data_iter", "meta"])
def test_unreadable_iterator_state_or_metadata_falls_back(tmp_path, capsys, what):
  wd = str(tmp_path / "w")
  loop.run(_config(4), wd, _task())
  step_dir = os.path.join(wd, "checkpoints", "4")
  target = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, what)) for f in fs
            if not f.startswith("commit")]
  assert target
  for f in target:
    with open(f, "w") as fh:
      fh.write('{"next_ind')  # cut mid-write
  capsys.readouterr()
  loop.run(_config(6), wd, _task())
  out = capsys.readouterr()
  assert f"{step_dir} cannot be read" in out.err
  assert "Resuming from checkpoint step 2" in out.out


def test_every_step_unreadable_is_one_error_and_nothing_is_deleted(tmp_path, capsys):
  wd = str(tmp_path / "w")
  loop.run(_config(4), wd, _task())
  ckpt_dir = os.path.join(wd, "checkpoints")
  for s in ("2", "4"):
    _truncate_arrays(os.path.join(ckpt_dir, s))
  with pytest.raises(NoCheckpointError) as e:
    loop.run(_config(6), wd, _task())
  assert e.value.exit_code == 2
  msg = str(e.value)
  assert "no readable checkpoint" in msg and "(4, 2)" in msg and "\n" not in msg
  assert sorted(n.split(".")[0] for n in os.listdir(ckpt_dir)) == ["2", "4"]
  assert all(".corrupt-" in n for n in os.listdir(ckpt_dir))


def test_abandoned_tensorstore_reads_are_not_reported_but_other_task_errors_are(caplog):
  """A failed restore leaves TensorStore reads whose errors asyncio reports when the tasks are
  collected ("Task exception was never retrieved", with a traceback): they repeat the one-line
  error and are dropped; an unrelated task error still reaches the log. The report is made the
  way a collected task makes it (through the loop's exception handler)."""
  import asyncio
  import logging as py_logging

  from cv.lib import checkpoint  # noqa: F401 - installs the filter

  def report_abandoned(error):
    loop_ = asyncio.new_event_loop()
    try:
      loop_.call_exception_handler({"message": "Task exception was never retrieved",
                                    "exception": error})
    finally:
      loop_.close()

  with caplog.at_level(py_logging.ERROR, logger="asyncio"):
    report_abandoned(ValueError('OUT_OF_RANGE: Error opening "zarr" driver: '
                                '[tensorstore_spec=\'{"driver":"zarr"}\']'))
    report_abandoned(ValueError("an unrelated failure"))
  reported = [(r.getMessage(), str(r.exc_info[1])) for r in caplog.records if r.name == "asyncio"]
  assert len(reported) == 1 and "an unrelated failure" in reported[0][1], reported


def test_checkpoint_of_another_model_is_refused_not_moved(tmp_path):
  wd = str(tmp_path / "w")
  loop.run(_config(2), wd, _task())
  tx = optax.adam(0.05)
  other = _task()
  other.init = lambda rng: TrainState.create(params={"w": jnp.ones((5,)), "b": jnp.zeros(())},
                                             tx=tx, rng=rng)
  with pytest.raises(CheckpointError, match="could not restore checkpoint step 2.*shape"):
    loop.run(_config(4), wd, other)
  assert os.listdir(os.path.join(wd, "checkpoints")) == ["2"]


def _enospc_on(step: int):
  """Patches the writer Orbax uses for checkpoint metadata and JSON items: writes into the
  temporary folder of `step` fail as on a full disk."""
  from etils import epath
  real = epath.Path.write_text

  def write_text(self, *args, **kwargs):
    if f"{os.sep}{step}.orbax-checkpoint-tmp" in str(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    return real(self, *args, **kwargs)

  return write_text


def test_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, capsys):
  from etils import epath
  wd = str(tmp_path / "w")
  loop.run(_config(2), wd, _task())
  before = _params(wd, 2)
  monkeypatch.setattr(epath.Path, "write_text", _enospc_on(4))
  with pytest.raises(WriteError) as e:
    loop.run(_config(6), wd, _task())
  msg = str(e.value)
  ckpt_dir = os.path.join(wd, "checkpoints")
  assert f"could not save checkpoint step 4 to {os.path.join(ckpt_dir, '4')}" in msg
  assert "the disk is full" in msg and "No space left on device" in msg
  assert "step 2) are untouched" in msg and "resume from step 2" in msg and "\n" not in msg
  assert "Traceback" not in capsys.readouterr().err  # Orbax's own tracebacks are filtered
  assert helpers.finished_steps(ckpt_dir) == [2]
  assert not [n for n in os.listdir(ckpt_dir) if "tmp" in n]
  after = _params(wd, 2)
  for k in before:
    np.testing.assert_array_equal(before[k], after[k])


@pytest.fixture(scope="module")
def trained_vq(tmp_path_factory):
  """A smoke vq_codec run with checkpoints at steps 4 and 8 (copied by the tests that damage it)."""
  wd = str(tmp_path_factory.mktemp("vq") / "w")
  r = helpers.run_main(VQ_SMOKE, wd, "--config.total_steps=8", "--config.ckpt_every=4",
                       "--config.eval_every=0")
  assert r.returncode == 0, r.stderr[-3000:]
  assert helpers.finished_steps(os.path.join(wd, "checkpoints")) == [4, 8]
  return wd


@pytest.mark.slow
def test_truncated_newest_checkpoint_through_main(tmp_path, trained_vq):
  wd = str(tmp_path / "w")
  shutil.copytree(trained_vq, wd)
  ckpt_dir = os.path.join(wd, "checkpoints")
  _truncate_arrays(os.path.join(ckpt_dir, "8"))
  r = helpers.run_main(VQ_SMOKE, wd, "--config.total_steps=10", "--config.ckpt_every=4",
                       "--config.eval_every=0")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Resuming from checkpoint step 4" in r.stdout
  warnings = [l for l in r.stderr.splitlines() if "cannot be read" in l]
  assert len(warnings) == 1 and os.path.join(ckpt_dir, "8") in warnings[0], r.stderr[-3000:]
  assert "Traceback" not in r.stderr and "Task exception" not in r.stderr
  assert len(r.stderr.splitlines()) < 10, r.stderr[-3000:]
  assert [n for n in os.listdir(ckpt_dir) if n.startswith("8.corrupt-")]
  assert helpers.finished_steps(ckpt_dir)[-1] == 10


@pytest.mark.slow
def test_every_checkpoint_truncated_through_main_exits_2(tmp_path, trained_vq):
  wd = str(tmp_path / "w")
  shutil.copytree(trained_vq, wd)
  ckpt_dir = os.path.join(wd, "checkpoints")
  for s in (4, 8):
    _truncate_arrays(os.path.join(ckpt_dir, str(s)))
  r = helpers.run_main(VQ_SMOKE, wd, "--config.total_steps=12", "--config.eval_every=0")
  assert r.returncode == 2, r.stderr[-3000:]
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "no readable checkpoint" in errors[0], r.stderr[-3000:]
  assert "Traceback" not in r.stderr
  assert sorted(os.listdir(ckpt_dir))[0].startswith("4.corrupt-")


@pytest.mark.slow
def test_full_disk_during_a_save_through_main(tmp_path):
  """cv.main with the checkpoint writer patched to fail with ENOSPC from step 8 on."""
  wd = str(tmp_path / "w")
  launcher = (
      "import errno, os, sys\n"
      "from etils import epath\n"
      "real = epath.Path.write_text\n"
      "def write_text(self, *a, **k):\n"
      "  if os.sep + '8.orbax-checkpoint-tmp' in str(self):\n"
      "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))\n"
      "  return real(self, *a, **k)\n"
      "epath.Path.write_text = write_text\n"
      "from cv import main\n"
      "sys.argv = ['cv.main'] + sys.argv[1:]\n"
      "main.run()\n")
  cmd = [sys.executable, "-c", launcher, f"--config={VQ_SMOKE}", f"--workdir={wd}",
         "--config.total_steps=12", "--config.ckpt_every=4", "--config.eval_every=0"]
  r = subprocess.run(cmd, cwd=helpers.ROOT, env=helpers.main_env(), capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 1, r.stderr[-3000:]
  ckpt_dir = os.path.join(wd, "checkpoints")
  errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, r.stderr[-3000:]
  assert f"could not save checkpoint step 8 to {os.path.join(ckpt_dir, '8')}" in errors[0]
  assert "No space left on device" in errors[0]
  assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) < 5, r.stderr[-3000:]
  assert helpers.finished_steps(ckpt_dir) == [4]
  helpers.load_state(ckpt_dir, 4)  # intact


# --- encoding a dataset -----------------------------------------------------------------------

BAD_FILES = ("missing0000_000000_000002.mp4", "empty000000_000000_000002.mp4",
             "text0000000_000000_000002.mp4", "short000000_000000_000002.mp4",
             "trunc000000_000000_000002.mp4")


def _encode(root, out, *extra) -> int:
  from cv_tools import encode_dataset as tool
  return tool.main([f"--root={root}", f"--out={out}", "--short_side=32", "--crop=32", "--quiet",
                    *extra])


def test_encode_summary_lists_every_skipped_file(tmp_path, kinetics_root, capsys):
  out = tmp_path / "codes"
  # At stride 4 the 3-frame video gives no frame: it is skipped with the others.
  assert _encode(kinetics_root, out, "--stride=4", "--splits=train", "--num_shards=2") == 0
  stdout = capsys.readouterr().out
  summary = stdout[stdout.index("encoding summary"):]
  assert "skipped 5 of 12 videos (train: 5)" in summary, summary
  for name in BAD_FILES:
    assert name in summary, (name, summary)
  for kind in ("file not found", "file is empty", "fewer than stride"):
    assert kind in summary, summary
  assert str(out / "manifest.json") in summary
  manifest = json.load(open(out / "manifest.json"))
  assert {os.path.basename(p) for p, _ in manifest["splits"]["train"]["bad"]} == set(BAD_FILES)


class _FullDiskWriter:
  """Stands in for ArrayRecordWriter: the writes of one shard fail as on a full disk."""
  real = None
  fail_in = ""

  def __init__(self, path, options):
    self._w = _FullDiskWriter.real(path, options)
    self._path = path

  def write(self, data):
    if _FullDiskWriter.fail_in in os.path.basename(self._path):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)
    self._w.write(data)

  def close(self):
    self._w.close()


def test_full_disk_during_a_shard_write_is_one_line_and_keeps_finished_shards(
    tmp_path, kinetics_root, capsys, monkeypatch):
  from array_record.python import array_record_module
  out = tmp_path / "codes"
  _FullDiskWriter.real = array_record_module.ArrayRecordWriter
  _FullDiskWriter.fail_in = "train-00001-of-00003"
  monkeypatch.setattr(array_record_module, "ArrayRecordWriter", _FullDiskWriter)
  assert _encode(kinetics_root, out, "--splits=train", "--num_shards=3") == 1
  err = capsys.readouterr().err
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in err, err
  shard1 = out / "train-00001-of-00003.array_record"
  assert f"could not write the code shard {shard1}: No space left on device" in errors[0]
  assert "the disk is full" in errors[0]
  finished = out / "train-00000-of-00003.array_record"
  assert finished.exists() and (out / "train-00000-of-00003.array_record.json").exists()
  before = finished.read_bytes()
  assert not shard1.exists() and not [p for p in os.listdir(out) if "tmp" in p]

  monkeypatch.setattr(array_record_module, "ArrayRecordWriter", _FullDiskWriter.real)
  assert _encode(kinetics_root, out, "--splits=train", "--num_shards=3") == 0
  assert "1 of 3 shards already finished" in capsys.readouterr().out
  assert finished.read_bytes() == before
  assert code_shards.load_manifest(str(out))["splits"]["train"]["num_records"] > 0


@pytest.mark.slow
def test_sigterm_during_encoding_abandons_the_shard_and_exits_0(tmp_path, kinetics_root):
  with open(os.path.join(kinetics_root, "train.csv"), "a") as f:
    for i in range(24):
      vid = f"more{i:07d}"
      helpers.write_clip(os.path.join(kinetics_root, "train", f"{vid}_000000_000002.mp4"),
                         seed=100 + i)
      f.write(f"{'ab'[i % 2]},{vid},0,2,train\n")
  out = tmp_path / "codes"
  cmd = [sys.executable, "-m", "cv_tools.encode_dataset", f"--root={kinetics_root}",
         f"--out={out}", "--short_side=32", "--crop=32", "--quiet", "--num_shards=12",
         "--splits=train"]
  proc = subprocess.Popen(cmd, cwd=helpers.ROOT, env=helpers.main_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while time.time() < deadline and not (out.exists() and any(
      p.endswith(".array_record.json") for p in os.listdir(out))):
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.005)
  proc.send_signal(signal.SIGTERM)
  t0 = time.monotonic()
  stdout, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 0 and time.monotonic() - t0 < 30, stderr[-2000:]
  assert "SIGTERM: stopped encoding; shard train-" in stdout and "abandoned" in stdout, stdout
  done = sorted(p for p in os.listdir(out) if p.endswith(".array_record.json"))
  assert 1 <= len(done) < 12
  # Every shard on disk is a finished one (with its summary); no temporary file is left.
  shards = sorted(p for p in os.listdir(out) if p.endswith(".array_record"))
  assert [s + ".json" for s in shards] == done
  assert not [p for p in os.listdir(out) if "tmp" in p] and not (out / "manifest.json").exists()
  r = subprocess.run(cmd, cwd=helpers.ROOT, env=helpers.main_env(), capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "already finished, skipping" in r.stdout
  ds = code_shards.code_dataset(str(out), "train")
  ids = [ds[i]["video_id"] for i in range(len(ds))]
  assert len(ids) == len(set(ids)) == 32  # 36 rows, 4 unusable (see test_encode_dataset.py)
