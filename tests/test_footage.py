"""Tests for cv.data.footage (the real-footage codec corpus) and tools/make_footage.py.

Smoke sizes: two scikit-image photos, a few 4-6 frame clips of at most 128 px; no apt (the
Debian photos are an optional folder, replaced here by a folder of files written by the test).
"""
from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest

from cv.data import datasets, footage, video
from cv.data.demo import camera as demo_camera
from cv.data.footage import camera, corpus, sources
from cv_tools import make_footage

SMALL = dict(photo_clips=3, video_clips=1, num_frames=6, max_size=128,
             skimage_photos=("astronaut", "coffee"), package_extras=False, held_out_split=False)


def _files(root: str) -> dict[str, bytes]:
  out = {}
  for dirpath, _, names in os.walk(root):
    for n in names:
      path = os.path.join(dirpath, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """The same small corpus built twice (once through the CLI), in two folders."""
  a = str(tmp_path_factory.mktemp("fa") / "corpus")
  b = str(tmp_path_factory.mktemp("fb") / "corpus")
  footage.build(a, footage.FootageParams(seed=3, **SMALL), log_every=0)
  make_footage.run(["build", "--out", b, "--seed", "3", "--photo_clips", "3", "--video_clips",
                    "1", "--num_frames", "6", "--max_size", "128", "--no_package_extras",
                    "--no_held_out_split", "--workers", "2"])
  return a, b


def test_same_seed_gives_identical_bytes(tmp_path, built):
  a, _ = built
  again = str(tmp_path / "again")
  footage.build(again, footage.FootageParams(seed=3, **SMALL), log_every=0)
  fa, fb = _files(a), _files(again)
  assert sorted(fa) == sorted(fb)
  assert all(fa[k] == fb[k] for k in fa), [k for k in fa if fa[k] != fb[k]]
  # A different seed gives different clips.
  other = str(tmp_path / "other")
  footage.build(other, footage.FootageParams(seed=4, **SMALL), log_every=0)
  clips_a = sorted(v for k, v in fa.items() if k.endswith(".mp4"))
  clips_o = sorted(v for k, v in _files(other).items() if k.endswith(".mp4"))
  assert clips_a != clips_o


def test_parallel_build_matches_serial(tmp_path):
  params = footage.FootageParams(seed=5, **SMALL)
  footage.build(str(tmp_path / "s"), params, log_every=0)
  footage.build(str(tmp_path / "p"), params, workers=2, log_every=0)
  assert _files(str(tmp_path / "s")) == _files(str(tmp_path / "p"))


def test_corpus_is_a_kinetics_dataset_with_manifest(built):
  a, b = built
  with open(os.path.join(a, "train.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["label"] for r in rows} == {"footage"}
  manifest = json.load(open(os.path.join(a, footage.MANIFEST)))
  assert manifest["totals"]["train_clips"] == 4
  assert [p["name"] for p in manifest["photos"]] == ["skimage/astronaut", "skimage/coffee"]
  kinds = [c["kind"] for c in manifest["clips"]]
  assert kinds.count("photo") == 3 and kinds.count("video") == 1
  # The normal data path reads it (format footage = the Kinetics layout).
  reps = datasets.read_splits(a, "footage", ["train"])
  assert len(reps["train"].records) == 4
  for c in manifest["clips"]:
    info = video.probe(os.path.join(a, c["file"]))
    assert (info.num_frames, info.height, info.width) == (6, *c["size"])
    assert 128 <= min(c["size"]) and max(c["size"]) <= 128
  # The CLI build used all packaged scikit-image photos.
  mb = json.load(open(os.path.join(b, footage.MANIFEST)))
  assert len(mb["photos"]) == len(sources.SKIMAGE_PHOTOS)


def test_rebuild_with_other_params_is_refused(built):
  a, _ = built
  with pytest.raises(footage.FootageError, match="other params"):
    footage.build(a, footage.FootageParams(seed=9, **SMALL), log_every=0)


def test_bad_photo_files_are_named_and_skipped(tmp_path, capsys):
  folder = tmp_path / "photos"
  (folder / "pkg").mkdir(parents=True)
  good = cv2.cvtColor(sources.package_photos(("coffee",), matplotlib=False,
                                             sklearn=False)[0].image, cv2.COLOR_RGB2BGR)
  cv2.imwrite(str(folder / "pkg" / "good.png"), good)
  (folder / "pkg" / "empty.jpg").write_bytes(b"")
  (folder / "pkg" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  cv2.imwrite(str(folder / "tiny.png"), good[:40, :40])
  (folder / "pkg" / "notes.txt").write_text("not a photo extension: ignored")
  photos, problems = sources.folder_photos(str(folder))
  assert [p.name for p in photos] == ["pkg/good.png"] and photos[0].group == "pkg"
  bad = {os.path.basename(p): why for p, why in problems}
  assert set(bad) == {"empty.jpg", "corrupt.jpg", "tiny.png"}
  assert "empty" in bad["empty.jpg"] and "too small" in bad["tiny.png"]
  err = capsys.readouterr().err
  assert all(os.path.join(str(folder), "pkg", n) in err for n in ("empty.jpg", "corrupt.jpg"))
  # A build uses the good photo and records the skipped files.
  out = str(tmp_path / "corpus")
  m = footage.build(out, footage.FootageParams(
      photo_clips=2, video_clips=0, num_frames=4, max_size=128, skimage_photos=(),
      package_extras=False, photos=str(folder), held_out_split=False), log_every=0)
  assert [p["name"] for p in m["photos"]] == ["pkg/good.png"]
  assert sorted(os.path.basename(s["path"]) for s in m["skipped_photos"]) == sorted(bad)
  assert all(c["source"] == ["pkg/good.png"] for c in m["clips"])


def test_missing_photo_folder_is_a_clear_error(tmp_path):
  with pytest.raises(footage.FootageError, match="does not exist"):
    sources.folder_photos(str(tmp_path / "nope"))


def test_held_out_frames_never_enter_the_corpus():
  assert "carphone_pristine.mp4" not in sources.TRAIN_VIDEOS
  assert "carphone_distorted.mp4" not in sources.TRAIN_VIDEOS
  assert sources.allowed_ranges("bikes.mp4", 250) == [(0, 137), (187, 250)]
  assert sources.allowed_ranges("carphone_pristine.mp4", 120) == []
  p = footage.FootageParams(num_frames=16, photo_clips=0, video_clips=40)
  for j in range(0, 40, 2):  # even j: bikes
    plan = corpus.plan_video_clip(p, j)
    assert plan["video"] == "bikes.mp4"
    frames = set(range(plan["start"], plan["start"] + 16))
    assert not frames & set(range(137, 187)), plan
    assert frames <= set(range(250))
  # The held-out frames are exactly what the validate split holds.
  held = corpus.held_out_clips()
  covered = {(f, i) for f, a, b in held for i in range(a, b)}
  assert {i for f, i in covered if f == "bikes.mp4"} == set(range(137, 187))
  assert {i for f, i in covered if f == "carphone_pristine.mp4"} == set(range(120))


def test_camera_stays_on_the_photo_and_varies_scale():
  h, w = 900, 1400
  scales = []
  for i in range(40):
    rng = np.random.default_rng(i)
    frame = (128 + 16 * (i % 9), 256)
    shot = camera.plan_shot(rng, 0, (h, w), 12, frame)
    m = np.asarray(shot.matrices).reshape(12, 2, 3)
    box = demo_camera.footprint_box(m, frame)
    assert box[0] >= 0 and box[1] >= 0 and box[2] <= w - 1 and box[3] <= h - 1, (i, box)
    scales.append(float(demo_camera.matrix_scale(m).mean()))
  # Several scales per photo: from near native detail to a wide view.
  assert min(scales) < 1.5 and max(scales) > 3.0
  # Small photos still get a shot (the motion is calmed down to fit).
  shot = camera.plan_shot(np.random.default_rng(0), 0, (150, 180), 12, (128, 160))
  box = demo_camera.footprint_box(np.asarray(shot.matrices).reshape(12, 2, 3), (128, 160))
  assert box[0] >= 0 and box[2] <= 179 and box[3] <= 149


def test_rendered_shot_moves_and_changes():
  photo = sources.package_photos(("astronaut",), matplotlib=False, sklearn=False)[0].image
  moving = None
  for i in range(30):
    rng = np.random.default_rng(i)
    shot = camera.plan_shot(rng, 0, photo.shape[:2], 8, (128, 128))
    frames = camera.render_shot(shot, photo, (128, 128), seed=i)
    assert frames.shape == (8, 128, 128, 3) and frames.dtype == np.uint8
    diff = np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean()
    if diff > 5:
      moving = i
      break
  assert moving is not None, "no shot of 30 moved the camera visibly"


def test_native_loader_crops_without_resizing(built):
  a, _ = built
  rec = datasets.read_splits(a, "footage", ["train"])["train"].records[0]
  spec = datasets.clip_spec(_data(a))
  load = footage.LoadNativeClip(spec, train=False)
  out = load(rec)
  full = video.read_clip(rec["path"], num_frames=spec.num_frames, stride=1, start="center")
  h, w = full.shape[1:3]
  top, left = (h - 64) // 2, (w - 64) // 2
  np.testing.assert_array_equal(out["video"], full[:, top:top + 64, left:left + 64])
  train = footage.LoadNativeClip(spec, train=True)(rec, np.random.default_rng(0))
  assert train["video"].shape == (2, 64, 64, 3)


def test_scale_jitter_shrinks_training_clips_only(built):
  a, _ = built
  rec = datasets.read_splits(a, "footage", ["train"])["train"].records[0]
  spec = datasets.clip_spec(_data(a))

  def detail(load):  # mean |horizontal gradient| of 12 training crops: shrinking packs detail
    clips = [load(rec, np.random.default_rng(i))["video"].astype(np.float32) for i in range(12)]
    return float(np.mean([np.abs(np.diff(c, axis=2)).mean() for c in clips]))

  plain = footage.LoadNativeClip(spec, train=True)
  jitter = footage.LoadNativeClip(spec, train=True, min_scale=0.5)
  assert jitter(rec, np.random.default_rng(0))["video"].shape == (2, 64, 64, 3)
  assert detail(jitter) > 1.05 * detail(plain)
  evaluation = footage.LoadNativeClip(spec, train=False, min_scale=0.5)(rec)["video"]
  np.testing.assert_array_equal(evaluation, footage.LoadNativeClip(spec, train=False)(rec)["video"])
  data = _data(a)
  data.min_scale = 0.5
  assert datasets.clip_loader(data, spec, train=True).min_scale == 0.5
  with pytest.raises(ValueError, match=r"config\.data\.min_scale.*\(0, 1\]"):
    footage.LoadNativeClip(spec, train=True, min_scale=0.0)


def _data(root):
  from cv.configs import common  # pylint: disable=g-import-not-at-top
  return common.clip_data_config(format="footage", root=root, num_frames=2, stride=1,
                                 short_side=64, crop=64)


def test_config_reads_footage_through_the_normal_data_path(built):
  from cv.configs import k600_vq  # pylint: disable=g-import-not-at-top
  a, _ = built
  c = k600_vq.get_config("cr=192,footage,smoke")
  assert c.data.format == "footage" and c.data.eval_num_frames >= c.data.num_frames
  c.data.root = a
  load = datasets.clip_loader(c.data, datasets.clip_spec(c.data), train=True)
  assert isinstance(load, footage.LoadNativeClip)
  reps = datasets.read_splits(datasets.resolve_root(c.data), c.data.format, ["train"])
  ex = load(reps["train"].records[0], np.random.default_rng(1))
  assert ex["video"].shape == (c.data.num_frames, c.data.crop, c.data.crop, 3)

  # Evaluation crops keep their own size whatever the training crop, so runs trained on other
  # crops are measured on the same held-out pixels.
  c.data.crop = 16
  train_spec = datasets.clip_spec(c.data)
  spec = datasets.eval_clip_spec(c.data, train_spec)
  assert (spec.crop, spec.num_frames) == (c.data.eval_crop, c.data.eval_num_frames) != (16, 2)
  ex = datasets.clip_loader(c.data, spec, train=False)(reps["train"].records[0], None)
  assert ex["video"].shape == (c.data.eval_num_frames, c.data.eval_crop, c.data.eval_crop, 3)
  assert datasets.clip_loader(c.data, train_spec, train=True)(
      reps["train"].records[0], np.random.default_rng(1))["video"].shape[1:3] == (16, 16)


@pytest.mark.slow
def test_codec_trains_on_footage_through_main(tmp_path):
  """`k600_vq.py:...,footage` end to end: a small cached corpus (no data.root), native-scale
  crops, evaluation on the 6 held-out real clips."""
  from tests import helpers  # pylint: disable=g-import-not-at-top
  wd = str(tmp_path / "run")
  r = helpers.run_main("cv/configs/k600_vq.py:cr=192,footage,smoke", wd)
  assert r.returncode == 0, r.stderr[-3000:]
  metrics = json.load(open(os.path.join(wd, "metrics.json")))
  assert metrics["step"] == 12
  assert metrics["eval/num_clips"] == len(corpus.held_out_clips()) == 6
  assert 5.0 < metrics["eval/psnr"] < 60.0
  cfg = json.load(open(os.path.join(wd, "config.json")))
  assert cfg["data"]["format"] == "footage" and cfg["data"]["eval_num_frames"] == 4

  # Export: code frequencies measured through the corpus's own loader (native 2-frame crops).
  from cv_tools import export_codec  # pylint: disable=g-import-not-at-top
  from cv.codec.neural import NeuralCodec  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "footage.cvcodec")
  assert export_codec.main(["--workdir", wd, "--out", out, "--max_clips", "3"]) == 0
  codec = NeuralCodec.load(out)
  per_clip = int(np.prod(codec.code_shape(cfg["data"]["num_frames"], cfg["data"]["crop"],
                                          cfg["data"]["crop"])))
  assert codec.code_counts.sum() == 3 * per_clip
  assert codec.info["step"] == 12 and codec.info["eval"]["psnr"] == metrics["eval/psnr"]

  # Fine-tuning from the exported codec, as a user would: a new run starts from its weights.
  wd2 = str(tmp_path / "finetune")
  r = helpers.run_main("cv/configs/k600_vq.py:cr=192,footage,smoke", wd2,
                       f"--config.init_from={out}", "--config.total_steps=2",
                       "--config.eval_every=0")
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"init_from: codec {out} (id {codec.codec_id}" in r.stdout + r.stderr
