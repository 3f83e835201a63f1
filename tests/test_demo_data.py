"""Tests for cv.data.demo (deterministic demo datasets) and tools/make_demo_data.py.

Small parameters keep the whole file fast: 32x48 frames, a few clips per class, walks of a few
seconds. The datasets are generated once per module into pytest temporary folders, decoded with
PyAV, and checked for format, determinism, caching, and that the motion labels are physically
true (measured on the decoded pixels, not only on the generator's matrices).
"""
from __future__ import annotations

import collections
import csv
import json
import math
import os
import re
import time

import av
import cv2
import numpy as np
import pytest

from cv.data import demo
from cv_tools import make_demo_data

H, W = 32, 48
KINETICS = dict(train_per_class=2, validate_per_class=1, num_frames=16, fps=10.0, height=H,
                width=W)
COIN = dict(num_training=2, num_testing=1, duration_seconds=(8.0, 12.0),
            segment_seconds=(1.5, 3.0), gap_seconds=(0.5, 1.5), fps=10.0, height=H, width=W)
WALK = dict(num_walks=1, length_seconds=8.0, fps=10.0, height=H, width=H)


def decode(path: str) -> np.ndarray:
  """All frames of a video as [T, H, W, 3] uint8, decoded with PyAV."""
  with av.open(path) as container:
    return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_csv(path: str) -> tuple[list[str], list[dict[str, str]]]:
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    return list(reader.fieldnames), list(reader)


def all_files(root: str) -> dict[str, int]:
  """Relative path -> mtime_ns of every file (and folder) under root."""
  out = {".": os.stat(root).st_mtime_ns}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      out[os.path.relpath(path, root)] = os.stat(path).st_mtime_ns
  return out


def gray(frame: np.ndarray) -> np.ndarray:
  return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
  return str(tmp_path_factory.mktemp("demo_a")), str(tmp_path_factory.mktemp("demo_b"))


@pytest.fixture(scope="module")
def kinetics(roots):
  """(seed 0 in root a, seed 0 in root b, seed 1 in root a)."""
  a, b = roots
  return (demo.ensure_kinetics(a, seed=0, **KINETICS), demo.ensure_kinetics(b, seed=0, **KINETICS),
          demo.ensure_kinetics(a, seed=1, **KINETICS))


@pytest.fixture(scope="module")
def coin(roots):
  a, b = roots
  return demo.ensure_coin(a, seed=0, **COIN), demo.ensure_coin(b, seed=0, **COIN)


@pytest.fixture(scope="module")
def walks(roots):
  a, b = roots
  return (demo.ensure_walking_tours(a, seed=0, **WALK),
          demo.ensure_walking_tours(b, seed=0, **WALK),
          demo.ensure_walking_tours(a, seed=1, **WALK))


# ---------------------------------------------------------------------------------------------
# Kinetics.


def test_kinetics_format(kinetics):
  root = kinetics[0]
  params = demo.KineticsParams(**KINETICS)
  assert sorted(os.listdir(root)) == ["demo_params.json", "train", "train.csv", "validate",
                                      "validate.csv"]
  for split, per_class in (("train", 2), ("validate", 1)):
    path = os.path.join(root, f"{split}.csv")
    with open(path) as f:
      assert f.readline() == "label,youtube_id,time_start,time_end,split\n"
    header, rows = read_csv(path)
    assert header == list(demo.KINETICS_HEADER)
    assert collections.Counter(r["label"] for r in rows) == {m: per_class for m in demo.MOTIONS}
    files = set()
    for r in rows:
      assert re.fullmatch(r"[A-Za-z0-9_-]{11}", r["youtube_id"]), r
      start, end = int(r["time_start"]), int(r["time_end"])
      assert r["split"] == split and start >= 0
      assert end == start + math.ceil(params.num_frames / params.fps)
      name = f"{r['youtube_id']}_{start:06d}_{end:06d}.mp4"
      frames = decode(os.path.join(root, split, name))
      assert frames.shape == (params.num_frames, H, W, 3), name
      assert frames.std() > 5, f"{name} looks blank"
      files.add(name)
    assert sorted(files) == sorted(os.listdir(os.path.join(root, split)))
  ids = [r["youtube_id"] for s in demo.KINETICS_SPLITS
         for r in read_csv(os.path.join(root, f"{s}.csv"))[1]]
  assert len(set(ids)) == len(ids)


def test_kinetics_deterministic(kinetics):
  a, b, other_seed = kinetics
  assert a != b and os.path.basename(a) == os.path.basename(b)
  for split in demo.KINETICS_SPLITS:
    with open(os.path.join(a, f"{split}.csv")) as fa, open(os.path.join(b, f"{split}.csv")) as fb:
      assert fa.read() == fb.read()
    for name in sorted(os.listdir(os.path.join(a, split))):
      np.testing.assert_array_equal(decode(os.path.join(a, split, name)),
                                    decode(os.path.join(b, split, name)))
  with open(os.path.join(a, "train.csv")) as fa, open(
      os.path.join(other_seed, "train.csv")) as fc:
    assert fa.read() != fc.read()
  fa = decode(os.path.join(a, "train", sorted(os.listdir(os.path.join(a, "train")))[0]))
  fc = decode(os.path.join(other_seed, "train",
                           sorted(os.listdir(os.path.join(other_seed, "train")))[0]))
  assert np.abs(fa.astype(int) - fc.astype(int)).mean() > 1


def test_kinetics_cache(kinetics, roots):
  path = kinetics[0]
  before = all_files(path)
  t0 = time.time()
  again = demo.ensure_kinetics(roots[0], seed=0, **KINETICS)
  assert again == path
  assert time.time() - t0 < 2.0
  assert all_files(path) == before
  with open(os.path.join(path, demo.PARAMS_FILE)) as f:
    record = json.load(f)
  assert record["generator_version"] == demo.GENERATOR_VERSION
  assert record["params"]["train_per_class"] == 2 and record["format"] == "kinetics"
  changed = demo.ensure_kinetics(roots[0], seed=0, **dict(KINETICS, train_per_class=1,
                                                          validate_per_class=0))
  assert changed != path and os.path.dirname(changed) == os.path.dirname(path)
  assert len(read_csv(os.path.join(changed, "train.csv"))[1]) == len(demo.MOTIONS)
  assert all_files(path) == before
  # No temporary folders are left behind.
  assert not [n for n in os.listdir(roots[0]) if n.startswith(".")]


def test_default_root_from_env(monkeypatch, tmp_path):
  monkeypatch.setenv("CV_DEMO_DIR", str(tmp_path))
  path = demo.ensure_kinetics(train_per_class=1, validate_per_class=0, num_frames=4, height=H,
                              width=W)
  assert os.path.dirname(path) == str(tmp_path)
  assert os.path.basename(path).startswith("kinetics-")


def test_unknown_or_bad_params():
  with pytest.raises(TypeError, match="num_clips"):
    demo.ensure_kinetics("/nonexistent", num_clips=3)
  with pytest.raises(ValueError, match="height"):
    demo.KineticsParams(height=33)
  with pytest.raises(ValueError, match="duration_seconds"):
    demo.CoinParams(duration_seconds=(2.0, 3.0))


def test_kinetics_splits_use_disjoint_textures():
  params = demo.KineticsParams(**dict(KINETICS, train_per_class=6, validate_per_class=6))
  train = {c.texture for c in demo.kinetics_clips(params, "train")}
  validate = {c.texture for c in demo.kinetics_clips(params, "validate")}
  groups = {t.name: t.group for t in demo.texture_bank()}
  assert train and validate
  assert not {groups[t] for t in train} & {groups[t] for t in validate}


def test_motion_matrices_conventions():
  size = (H, W)
  for motion in demo.MOTIONS:
    m = demo.motion_matrices(motion, 9, size, speed=0.1 if "zoom" in motion else 2.0,
                             center=(100.0, 80.0), scale=1.5, angle=5.0)
    np.testing.assert_allclose(m, demo.motion_matrices(
        motion, 9, size, speed=0.1 if "zoom" in motion else 2.0, center=(100.0, 80.0),
        scale=1.5, angle=5.0))  # pure
    mid = np.array([(W - 1) / 2, (H - 1) / 2, 1.0])
    np.testing.assert_allclose(m[4] @ mid, [100.0, 80.0], atol=1e-9)  # middle frame at center
    scale, angle = demo.matrix_scale(m), demo.matrix_angle(m)
    assert scale[4] == pytest.approx(1.5) and angle[4] == pytest.approx(5.0)
    centers = m @ mid
    if motion.startswith("pan"):
      # Camera displacement in the camera frame (undo the 5 degree roll).
      th = math.radians(5.0)
      d = centers[-1] - centers[0]
      cam = np.array([math.cos(th) * d[0] + math.sin(th) * d[1],
                      -math.sin(th) * d[0] + math.cos(th) * d[1]])
      expected = {"pan_left": (-1, 0), "pan_right": (1, 0), "pan_up": (0, -1),
                  "pan_down": (0, 1)}[motion]
      np.testing.assert_allclose(cam / np.linalg.norm(cam), expected, atol=1e-9)
      np.testing.assert_allclose(scale, 1.5)
    elif motion.startswith("zoom"):
      sign = -1 if motion == "zoom_in" else 1
      assert np.all(sign * np.diff(scale) > 0)
      np.testing.assert_allclose(centers, [[100.0, 80.0]] * 9, atol=1e-9)
    else:
      sign = 1 if motion == "rotate_cw" else -1
      assert np.all(sign * np.diff(angle) > 0)
      np.testing.assert_allclose(scale, 1.5)


def test_generated_clip_matrices_follow_labels():
  params = demo.KineticsParams(**dict(KINETICS, train_per_class=4))
  for clip in demo.kinetics_clips(params, "train"):
    scale, angle = demo.matrix_scale(clip.matrices), np.unwrap(
        np.deg2rad(demo.matrix_angle(clip.matrices)))
    if clip.label == "zoom_in":
      assert np.all(np.diff(scale) < 0)
    elif clip.label == "zoom_out":
      assert np.all(np.diff(scale) > 0)
    elif clip.label == "rotate_cw":
      assert np.all(np.diff(angle) > 0)
    elif clip.label == "rotate_ccw":
      assert np.all(np.diff(angle) < 0)
    # Every frame stays inside its texture (no border fill).
    tex = next(t for t in demo.texture_bank() if t.name == clip.texture).image
    corners = np.array([[0, 0, 1], [W - 1, 0, 1], [0, H - 1, 1], [W - 1, H - 1, 1]], float)
    pts = np.einsum("tij,kj->tki", clip.matrices, corners)
    assert pts.min() >= 0 and pts[..., 0].max() <= tex.shape[1] - 1
    assert pts[..., 1].max() <= tex.shape[0] - 1


def pan_shift(frames: np.ndarray) -> np.ndarray:
  """Median content shift (dx, dy) between consecutive frames, by phase correlation."""
  window = cv2.createHanningWindow((frames.shape[2], frames.shape[1]), cv2.CV_32F)
  shifts = [cv2.phaseCorrelate(gray(a), gray(b), window)[0] for a, b in zip(frames, frames[1:])]
  return np.median(np.array(shifts), axis=0)


def best_warp(a: np.ndarray, b: np.ndarray, kind: str) -> float:
  """Scale factor / angle (degrees, + = counter-clockwise) that best maps frame a onto b."""
  ga, gb = gray(a), gray(b)
  h, w = ga.shape
  center = ((w - 1) / 2, (h - 1) / 2)
  crop = (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
  values = np.geomspace(0.7, 1.43, 41) if kind == "zoom" else np.linspace(-45, 45, 91)
  errors = []
  for v in values:
    m = cv2.getRotationMatrix2D(center, 0.0 if kind == "zoom" else v, v if kind == "zoom" else 1.0)
    warped = cv2.warpAffine(ga, m, (w, h), flags=cv2.INTER_LINEAR)
    errors.append(np.mean((warped[crop] - gb[crop]) ** 2))
  return float(values[int(np.argmin(errors))])


def labelled_videos(root: str) -> list[tuple[str, np.ndarray]]:
  out = []
  for split in demo.KINETICS_SPLITS:
    for r in read_csv(os.path.join(root, f"{split}.csv"))[1]:
      name = f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}.mp4"
      out.append((r["label"], decode(os.path.join(root, split, name))))
  return out


def check_pans(videos: list[tuple[str, np.ndarray]]) -> None:
  # Camera moves left => content moves right (+x); camera moves up => content moves down (+y).
  expected = {"pan_left": (0, 1), "pan_right": (0, -1), "pan_up": (1, 1), "pan_down": (1, -1)}
  results = []
  for label, frames in videos:
    if label in expected:
      axis, sign = expected[label]
      shift = pan_shift(frames)
      results.append(np.sign(shift[axis]) == sign and abs(shift[axis]) > abs(shift[1 - axis]))
  assert len(results) >= 8 and np.mean(results) >= 0.9, results


def check_zoom_and_rotation(videos: list[tuple[str, np.ndarray]], step: int = 3) -> None:
  results = []
  for label, frames in videos:
    if label.startswith(("zoom", "rotate")):
      kind = "zoom" if label.startswith("zoom") else "rotate"
      est = [best_warp(frames[i], frames[i + step], kind)
             for i in range(0, len(frames) - step, step)]
      value = np.median(np.log(est)) if kind == "zoom" else np.median(est)
      # zoom_in: content grows (factor > 1); rotate_cw: content turns counter-clockwise (> 0).
      results.append(value > 0 if label in ("zoom_in", "rotate_cw") else value < 0)
  assert len(results) >= 8 and np.mean(results) >= 0.9, results


def test_pan_labels_match_decoded_pixels(kinetics):
  check_pans(labelled_videos(kinetics[0]))


def test_zoom_and_rotation_labels_match_decoded_pixels(kinetics):
  check_zoom_and_rotation(labelled_videos(kinetics[0]))


def test_labels_match_rendered_pixels_many_clips():
  """Same checks on more clips, rendered without the codec (fast)."""
  params = demo.KineticsParams(**dict(KINETICS, train_per_class=6))
  videos = [(c.label, np.stack(list(demo.kinetics_clip_frames(params, c))))
            for c in demo.kinetics_clips(params, "train")]
  check_pans(videos)
  check_zoom_and_rotation(videos)


# ---------------------------------------------------------------------------------------------
# COIN.


def test_coin_format(coin):
  root = coin[0]
  params = demo.CoinParams(**COIN)
  with open(os.path.join(root, "COIN.json")) as f:
    database = json.load(f)["database"]
  assert collections.Counter(v["subset"] for v in database.values()) == {"training": 2,
                                                                         "testing": 1}
  assert sorted(os.listdir(os.path.join(root, "videos"))) == sorted(
      f"{vid}.mp4" for vid in database)
  seg_diff, gap_diff = [], []
  for vid, entry in database.items():
    assert re.fullmatch(r"[A-Za-z0-9_-]{11}", vid)
    assert set(entry) == {"subset", "recipe_type", "class", "duration", "video_url",
                          "annotation"}
    assert isinstance(entry["recipe_type"], int) and isinstance(entry["class"], str)
    assert entry["video_url"] == ""
    frames = decode(os.path.join(root, "videos", f"{vid}.mp4"))
    assert frames.shape[1:] == (H, W, 3)
    assert len(frames) / params.fps == pytest.approx(entry["duration"], abs=1e-6)
    assert params.duration_seconds[0] - 0.1 <= entry["duration"] <= params.duration_seconds[1] + 0.1
    with av.open(os.path.join(root, "videos", f"{vid}.mp4")) as container:
      stream = container.streams.video[0]
      assert float(stream.duration * stream.time_base) == pytest.approx(entry["duration"],
                                                                        abs=0.15)
    assert entry["annotation"]
    prev_end = 0.0
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    in_step = np.zeros(len(diffs), bool)
    for step in entry["annotation"]:
      start, end = step["segment"]
      assert 0 < prev_end < start < end < entry["duration"] or (prev_end == 0 < start < end)
      assert step["label"] in demo.MOTIONS
      assert step["id"] == str(demo.MOTIONS.index(step["label"]))
      a, b = round(start * params.fps), round(end * params.fps)
      in_step[a:b] = True
      prev_end = end
    seg_diff.extend(diffs[in_step])
    gap_diff.extend(diffs[~in_step])
  # Steps are camera motion, gaps are a (nearly) static camera.
  assert np.mean(seg_diff) > 2 * np.mean(gap_diff)


def test_coin_deterministic_and_disjoint(coin):
  a, b = coin
  with open(os.path.join(a, "COIN.json")) as fa, open(os.path.join(b, "COIN.json")) as fb:
    assert fa.read() == fb.read()
  name = sorted(os.listdir(os.path.join(a, "videos")))[0]
  np.testing.assert_array_equal(decode(os.path.join(a, "videos", name)),
                                decode(os.path.join(b, "videos", name)))
  params = demo.CoinParams(**dict(COIN, num_training=6, num_testing=4))
  other = demo.CoinParams(**dict(COIN, num_training=6, num_testing=4, seed=1))
  assert ([v.entry(10.0) for v in demo.coin_videos(params, "training")]
          != [v.entry(10.0) for v in demo.coin_videos(other, "training")])
  groups = {t.name: t.group for t in demo.texture_bank()}
  train = {groups[v.texture] for v in demo.coin_videos(params, "training")}
  test = {groups[v.texture] for v in demo.coin_videos(params, "testing")}
  assert not train & test


# ---------------------------------------------------------------------------------------------
# WalkingTours.


def test_walk_format_and_continuity(walks):
  root = walks[0]
  params = demo.WalkingToursParams(**WALK)
  assert sorted(os.listdir(root)) == ["demo_params.json", "walk_000.mp4"]
  frames = decode(os.path.join(root, "walk_000.mp4")).astype(np.float32)
  assert frames.shape == (round(params.length_seconds * params.fps), H, H, 3)
  near = np.abs(frames[1:] - frames[:-1]).mean(axis=(1, 2, 3))
  far = np.abs(frames[40:] - frames[:-40]).mean(axis=(1, 2, 3))
  assert near.max() < far.mean()  # no cuts: every step is small
  assert near.mean() < 0.4 * far.mean()


def test_walk_deterministic_and_streamed(walks):
  a, b, other_seed = walks
  fa = decode(os.path.join(a, "walk_000.mp4"))
  np.testing.assert_array_equal(fa, decode(os.path.join(b, "walk_000.mp4")))
  fc = decode(os.path.join(other_seed, "walk_000.mp4"))
  assert np.abs(fa.astype(int) - fc.astype(int)).mean() > 5
  gen = demo.walk_frames(demo.WalkingToursParams(**WALK), 0)
  assert not isinstance(gen, (list, tuple, np.ndarray))
  first = next(gen)
  assert first.shape == (H, H, 3) and first.dtype == np.uint8


# ---------------------------------------------------------------------------------------------
# CLI.


def test_cli_prints_paths(tmp_path, capsys):
  paths = make_demo_data.run(["--format=kinetics", f"--root={tmp_path}", "--seed=3",
                       "--train_per_class=1", "--validate_per_class=1", "--num_frames=4",
                       f"--height={H}", f"--width={W}", "--quiet"])
  out = capsys.readouterr().out.split()
  assert out == paths and len(paths) == 1 and os.path.isdir(paths[0])
  with open(os.path.join(paths[0], demo.PARAMS_FILE)) as f:
    assert json.load(f)["params"]["seed"] == 3
