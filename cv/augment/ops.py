"""Video augmentations as parameter vectors, their pixel-space ground truth and the grid-crop
baseline (paper §3.4).

Why this module exists: the paper augments *compressed* videos by a small network that maps
(latents, augmentation parameters) -> latents of the augmented video. Training it needs, for
every augmentation, (a) a fixed-size parameter vector that conditions the network, (b) a sampler
for random parameters and (c) the exact pixel-space transform T(x, p) whose encoding is the
network's target. Everything here runs on device, is jittable with the parameters as traced
arrays (no Python control flow on parameter values) and is vmapped over the batch, so targets
can be made inside the training step.

Videos are float arrays in [0, 1] of shape [B, T, H, W, 3]; parameters are float [B, P].
Every frame of a clip gets the same transform, so motion stays consistent.

Parameter vector layouts (one row per augmentation; "values" gives the default sampling
ranges, which `sample_params(..., **ranges)` can change):

  name        dim  layout                        identity       values
  ----------  ---  ----------------------------  -------------  -------------------------------
  crop         4   (y0, x0, h, w)                (0, 0, 1, 1)   fractions of the frame height /
                                                                width, box inside [0, 1]^2
  flip         1   (f,)                          (0,)           {0, 1}; 1 = horizontal flip
                                                                (values > 0.5 flip)
  brightness   1   (delta,)                      (0,)           delta in [-0.4, 0.4], added
  saturation   1   (factor - 1,)                 (0,)           factor in [0.2, 1.8]
  rotation     1   (angle_degrees / 30,)         (0,)           angle in [-30, 30] degrees

Sampling (`sample_params`, keyword -> default): crop_area (0.25, 1) -- area fraction, uniform;
crop_aspect (3/4, 4/3) -- w / h in frame-relative units, log-uniform; sides clipped to <= 1
(the clipped boxes still have area >= 0.75), then the position is uniform where the box fits;
flip_prob 0.5 -- Bernoulli; brightness_delta (-0.4, 0.4), saturation_factor (0.2, 1.8) and
rotation_degrees (-30, 30) -- uniform.

The parameter -> pixel mapping is fixed (it never depends on the sampling ranges), so a network
trained on one range can be queried with another.

Pixel transforms (per frame, ground truth for the augmentation network):
  * crop: crops the box and resizes it back to the full frame with bilinear interpolation
    (`dm_pix.affine_transform`, pixel-centre convention: output pixel o samples the input at
    index y0 * H + (o + 0.5) * h - 0.5, so the full box is exactly the identity). Samples
    within half a pixel of the frame border take the edge value; boxes are always inside the
    frame, so no fill is ever needed.
  * flip: `dm_pix.flip_left_right`, selected with `jnp.where(f > 0.5, ...)`.
  * brightness: `dm_pix.adjust_brightness` (x + delta), then clipped to [0, 1]
    (dm-pix does not clip).
  * saturation: `dm_pix.adjust_saturation` (HSV round trip; saturation clipped to [0, 1] by
    dm-pix). The HSV round trip makes factor 1 the identity up to float rounding (~1e-7).
  * rotation: `dm_pix.rotate` around the frame centre, bilinear; a positive angle rotates the
    content counter-clockwise as displayed (y axis pointing down). The corners that the rotated
    frame no longer covers are filled in *edge* ("nearest") mode, not with a constant: black
    wedges are out of the codec's training distribution and would have to be invented by the
    augmentation network from nothing, whereas edge replication continues the local colour.

Registry: `AUGMENTATIONS[name]` is an `Augmentation` record (dim, sampler, pixel_fn, identity,
default sampling ranges); adding an augmentation means adding one record.

Compositions: a *spec* is a tuple of augmentation names, e.g. ("crop", "flip"). Its parameter
vector is the concatenation of the members' vectors in spec order, and the pixel transform
applies the members in that order. `SPECS` maps config names to specs. Specs must be static
(Python tuples / strings): under `jax.jit` close over them or mark them static.

`nearest_crop` is the paper's crop baseline on a grid of codes or latents: nearest-neighbour
cell selection, valid for integer codes where interpolation is meaningless.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

Spec = str | Sequence[str]

# Fixed normaliser of the rotation parameter: parameter = angle_in_degrees / ROTATION_SCALE.
ROTATION_SCALE = 30.0


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """One augmentation: its parameter size, sampler, pixel transform and identity parameters.

  Attributes:
    name: registry name.
    dim: length of the parameter vector.
    sampler: (rng, batch, **ranges) -> [batch, dim] random parameters.
    pixel_fn: (clip [T, H, W, 3], params [dim]) -> transformed clip; traced-param safe.
    identity: parameters for which `pixel_fn` is the identity.
    ranges: the sampler's keyword arguments and their defaults (the `**ranges` accepted by
      `sample_params`).
  """
  name: str
  dim: int
  sampler: Callable[..., jax.Array]
  pixel_fn: Callable[[jax.Array, jax.Array], jax.Array]
  identity: tuple[float, ...]
  ranges: Mapping[str, Any]


# ----------------------------------------------------------------------------------------------
# Samplers: (rng, batch, **ranges) -> [batch, dim].


def _interval(name: str, value: Any) -> tuple[float, float]:
  """Returns `value` as a (lo, hi) pair of floats with lo <= hi, or raises a ValueError."""
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"range {name} must be a (low, high) pair of numbers, got {value!r}") from None
  if lo > hi:
    raise ValueError(f"range {name} must have low <= high, got {value!r}")
  return lo, hi


def _sample_crop(rng: jax.Array, batch: int, crop_area: Sequence[float] = (0.25, 1.0),
                 crop_aspect: Sequence[float] = (3 / 4, 4 / 3)) -> jax.Array:
  """Random boxes: area fraction ~ U(crop_area), aspect w/h (frame-relative) log-uniform in
  crop_aspect, sides clipped to <= 1, position uniform over the places where the box fits."""
  a_lo, a_hi = _interval("crop_area", crop_area)
  r_lo, r_hi = _interval("crop_aspect", crop_aspect)
  if not 0.0 < a_lo <= a_hi <= 1.0:
    raise ValueError(f"crop_area must lie in (0, 1], got {crop_area!r}")
  if r_lo <= 0.0:
    raise ValueError(f"crop_aspect must be positive, got {crop_aspect!r}")
  u = jax.random.uniform(rng, (batch, 4))  # one draw: one random kernel to compile
  area = a_lo + (a_hi - a_lo) * u[:, 0]
  ratio = jnp.exp(math.log(r_lo) + (math.log(r_hi) - math.log(r_lo)) * u[:, 1])
  h = jnp.clip(jnp.sqrt(area / ratio), 0.0, 1.0)
  w = jnp.clip(jnp.sqrt(area * ratio), 0.0, 1.0)
  y0 = u[:, 2] * (1.0 - h)
  x0 = u[:, 3] * (1.0 - w)
  return jnp.stack([y0, x0, h, w], axis=-1)


def _sample_flip(rng: jax.Array, batch: int, flip_prob: float = 0.5) -> jax.Array:
  """Bernoulli(flip_prob) flips as 0. / 1."""
  p = float(flip_prob)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"flip_prob must lie in [0, 1], got {flip_prob!r}")
  return jax.random.bernoulli(rng, p, (batch, 1)).astype(jnp.float32)


def _sample_brightness(rng: jax.Array, batch: int,
                       brightness_delta: Sequence[float] = (-0.4, 0.4)) -> jax.Array:
  """delta ~ U(brightness_delta); the parameter is delta itself."""
  lo, hi = _interval("brightness_delta", brightness_delta)
  return jax.random.uniform(rng, (batch, 1), minval=lo, maxval=hi)


def _sample_saturation(rng: jax.Array, batch: int,
                       saturation_factor: Sequence[float] = (0.2, 1.8)) -> jax.Array:
  """factor ~ U(saturation_factor); the parameter is factor - 1 (0 = identity)."""
  lo, hi = _interval("saturation_factor", saturation_factor)
  if lo < 0.0:
    raise ValueError(f"saturation_factor must be >= 0, got {saturation_factor!r}")
  return jax.random.uniform(rng, (batch, 1), minval=lo, maxval=hi) - 1.0


def _sample_rotation(rng: jax.Array, batch: int,
                     rotation_degrees: Sequence[float] = (-30.0, 30.0)) -> jax.Array:
  """angle ~ U(rotation_degrees); the parameter is angle / 30 (so [-1, 1] by default)."""
  lo, hi = _interval("rotation_degrees", rotation_degrees)
  return jax.random.uniform(rng, (batch, 1), minval=lo, maxval=hi) / ROTATION_SCALE


# ----------------------------------------------------------------------------------------------
# Pixel transforms: (clip [T, H, W, 3], params [dim]) -> clip.


def _crop_pixels(clip: jax.Array, p: jax.Array) -> jax.Array:
  """Crops box p = (y0, x0, h, w) from every frame and resizes it to the frame size (bilinear)."""
  _, height, width, _ = clip.shape
  y0, x0, h, w = p[0], p[1], p[2], p[3]
  zero, one = jnp.zeros_like(h), jnp.ones_like(h)
  # Pull map (output index -> input index) in homogeneous form; channel axis unchanged.
  matrix = jnp.stack([
      jnp.stack([h, zero, zero, y0 * height + 0.5 * h - 0.5]),
      jnp.stack([zero, w, zero, x0 * width + 0.5 * w - 0.5]),
      jnp.stack([zero, zero, one, zero]),
  ])
  return jax.vmap(lambda f: pix.affine_transform(f, matrix, order=1, mode="nearest"))(clip)


def _flip_pixels(clip: jax.Array, p: jax.Array) -> jax.Array:
  """Horizontal flip of every frame when p[0] > 0.5."""
  return jnp.where(p[0] > 0.5, pix.flip_left_right(clip), clip)


def _brightness_pixels(clip: jax.Array, p: jax.Array) -> jax.Array:
  """Adds delta = p[0] and clips to [0, 1]."""
  return jnp.clip(pix.adjust_brightness(clip, p[0]), 0.0, 1.0)


def _saturation_pixels(clip: jax.Array, p: jax.Array) -> jax.Array:
  """Scales HSV saturation by factor = 1 + p[0] (floored at 0)."""
  factor = jnp.maximum(1.0 + p[0], 0.0)
  return jax.vmap(lambda f: pix.adjust_saturation(f, factor))(clip)


def _rotation_pixels(clip: jax.Array, p: jax.Array) -> jax.Array:
  """Rotates every frame by p[0] * 30 degrees (counter-clockwise), edge fill, bilinear."""
  angle = p[0] * (ROTATION_SCALE * math.pi / 180.0)
  return jax.vmap(lambda f: pix.rotate(f, angle, order=1, mode="nearest"))(clip)


AUGMENTATIONS: dict[str, Augmentation] = {
    a.name: a for a in [
        Augmentation("crop", 4, _sample_crop, _crop_pixels, (0.0, 0.0, 1.0, 1.0),
                     {"crop_area": (0.25, 1.0), "crop_aspect": (3 / 4, 4 / 3)}),
        Augmentation("flip", 1, _sample_flip, _flip_pixels, (0.0,), {"flip_prob": 0.5}),
        Augmentation("brightness", 1, _sample_brightness, _brightness_pixels, (0.0,),
                     {"brightness_delta": (-0.4, 0.4)}),
        Augmentation("saturation", 1, _sample_saturation, _saturation_pixels, (0.0,),
                     {"saturation_factor": (0.2, 1.8)}),
        Augmentation("rotation", 1, _sample_rotation, _rotation_pixels, (0.0,),
                     {"rotation_degrees": (-30.0, 30.0)}),
    ]
}

SPECS: dict[str, tuple[str, ...]] = {
    "crop": ("crop",),
    "flip": ("flip",),
    "brightness": ("brightness",),
    "saturation": ("saturation",),
    "rotation": ("rotation",),
    "crop_flip": ("crop", "flip"),
}


# ----------------------------------------------------------------------------------------------
# Public API.


def resolve_spec(spec: Spec) -> tuple[str, ...]:
  """Returns `spec` as a validated tuple of augmentation names.

  A string is looked up in `SPECS` (so both "crop_flip" and "crop" work); a sequence must hold
  registered names without repeats (a repeat would make the parameter layout ambiguous).
  """
  if isinstance(spec, str):
    if spec not in SPECS:
      raise ValueError(f"unknown augmentation spec {spec!r}; known specs: {sorted(SPECS)}")
    return SPECS[spec]
  names = tuple(spec)
  for name in names:
    if name not in AUGMENTATIONS:
      raise ValueError(f"unknown augmentation {name!r} in spec {names}; known augmentations: "
                       f"{list(AUGMENTATIONS)}")
  if len(set(names)) != len(names):
    raise ValueError(f"augmentation spec {names} repeats a name; each may appear once")
  return names


def param_dim(spec: Spec) -> int:
  """Length P of the conditioning vector of `spec` (sum of the members' sizes)."""
  return sum(AUGMENTATIONS[n].dim for n in resolve_spec(spec))


def param_slices(spec: Spec) -> dict[str, slice]:
  """Where each member's parameters sit in the conditioning vector of `spec`."""
  out, offset = {}, 0
  for name in resolve_spec(spec):
    dim = AUGMENTATIONS[name].dim
    out[name] = slice(offset, offset + dim)
    offset += dim
  return out


def _freeze(name: str, value: Any) -> float | tuple[float, ...]:
  """A sampling range as a hashable float or tuple of floats (e.g. from a list or ConfigDict)."""
  try:
    if np.ndim(value) == 0:
      return float(value)
    return tuple(float(v) for v in np.ravel(np.asarray(value, dtype=np.float64)))
  except (TypeError, ValueError):
    raise ValueError(f"sampling range {name}={value!r} must be a number or numbers") from None


def sample_params(rng: jax.Array, spec: Spec, batch: int, **ranges: Any) -> jax.Array:
  """Random parameters [batch, P] for `spec`.

  `ranges` overrides sampling ranges by keyword (see the module docstring): crop_area (lo, hi),
  crop_aspect (lo, hi), flip_prob, brightness_delta (lo, hi), saturation_factor (lo, hi),
  rotation_degrees (lo, hi). Keywords of augmentations that are not in `spec` are accepted and
  ignored, so one config can serve every spec; unknown keywords raise.

  Each member draws from `fold_in(rng, registry index)`, so e.g. the crop boxes of "crop" and
  "crop_flip" agree for the same rng.
  """
  names = resolve_spec(spec)
  known = {k for a in AUGMENTATIONS.values() for k in a.ranges}
  unknown = set(ranges) - known
  if unknown:
    raise ValueError(f"unknown sampling ranges {sorted(unknown)}; valid: {sorted(known)}")
  # Hashable (static) ranges: they are configuration, and make one compiled sampler per setting.
  frozen = tuple(sorted((k, _freeze(k, v)) for k, v in ranges.items()))
  return _sample_params(rng, names, int(batch), frozen)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _sample_params(rng: jax.Array, names: tuple[str, ...], batch: int,
                   ranges: tuple[tuple[str, Any], ...]) -> jax.Array:
  """Jitted body of `sample_params` (eager dispatch of the random ops compiles each one)."""
  order = list(AUGMENTATIONS)
  parts = []
  for name in names:
    aug = AUGMENTATIONS[name]
    kwargs = {k: v for k, v in ranges if k in aug.ranges}
    parts.append(aug.sampler(jax.random.fold_in(rng, order.index(name)), batch, **kwargs))
  if not parts:
    return jnp.zeros((batch, 0), jnp.float32)
  return jnp.concatenate(parts, axis=-1).astype(jnp.float32)


def identity_params(spec: Spec, batch: int) -> jax.Array:
  """Parameters [batch, P] for which every member of `spec` is the identity."""
  row = [v for n in resolve_spec(spec) for v in AUGMENTATIONS[n].identity]
  # Built in numpy: a constant, so eager callers trigger no compilation.
  return jnp.asarray(np.tile(np.asarray(row, np.float32).reshape(1, -1), (batch, 1)))


def _check_params(params: jax.Array, spec: tuple[str, ...], batch: int, fn: str) -> None:
  """Raises a ValueError unless params is [batch, param_dim(spec)]."""
  p = param_dim(spec)
  if params.ndim != 2 or params.shape != (batch, p):
    raise ValueError(f"{fn}: expected params of shape [{batch}, {p}] for spec {spec}, "
                     f"got {tuple(params.shape)}")


def apply_pixels(video: jax.Array, params: jax.Array, spec: Spec) -> jax.Array:
  """T(x, p): applies the members of `spec` in order to every clip of `video` [B,T,H,W,3].

  `params` is [B, P]; each clip gets its own parameters, every frame of a clip the same ones.
  Returns a float array of the same shape (and dtype) as `video`.
  """
  names = resolve_spec(spec)
  if video.ndim != 5 or video.shape[-1] != 3:
    raise ValueError(f"apply_pixels: expected video [B,T,H,W,3], got {tuple(video.shape)}")
  if not jnp.issubdtype(video.dtype, jnp.floating):
    raise ValueError(f"apply_pixels: expected a float video in [0, 1], got dtype {video.dtype}; "
                     "convert uint8 frames with x / 255")
  _check_params(params, names, video.shape[0], "apply_pixels")
  return _apply_pixels(video, params.astype(video.dtype), names)


@functools.partial(jax.jit, static_argnums=2)
def _apply_pixels(video: jax.Array, params: jax.Array, names: tuple[str, ...]) -> jax.Array:
  """Jitted body of `apply_pixels` (one fused program per spec and shape: called eagerly, the
  op-by-op dispatch of the interpolation code costs seconds of compilation)."""
  slices = param_slices(names)

  def one(clip: jax.Array, p: jax.Array) -> jax.Array:
    for name in names:
      clip = AUGMENTATIONS[name].pixel_fn(clip, p[slices[name]])
    return clip

  return jax.vmap(one)(video, params)


def eval_views(spec: Spec, num_crops: int = 3, flips: bool = True, *, crop_scale: float = 0.8,
               frame_hw: tuple[int, int] | None = None) -> jax.Array:
  """Deterministic views [V, P] for test-time averaging of predictions over augmentations.

  * crop (if in spec): `num_crops` boxes whose side is `crop_scale` times the frame's short side
    (a square in pixels), linearly spaced along the frame's longer axis (the width when
    `frame_hw` is None or the frame is square) from one edge to the other and centred in the
    other axis; one crop is the centre crop. `crop_scale` 0.8 sits in the middle of the training
    crops' side lengths (sqrt of area in [0.25, 1]) and keeps the 3 views distinct on square
    frames, where full-height crops would all coincide.
  * flip (if in spec and `flips`): every crop without and with a horizontal flip.
  * brightness / saturation / rotation: the identity view only: test-time colour or rotation
    jitter adds distortion without adding coverage of the clip.
  Views are ordered crop-major (crop 0 unflipped, crop 0 flipped, crop 1, ...). V = 1 when the
  spec holds neither crop nor flip.
  """
  names = resolve_spec(spec)
  if num_crops < 1:
    raise ValueError(f"eval_views: num_crops must be >= 1, got {num_crops}")
  if not 0.0 < crop_scale <= 1.0:
    raise ValueError(f"eval_views: crop_scale must lie in (0, 1], got {crop_scale}")
  fh, fw = frame_hw if frame_hw is not None else (1, 1)
  side = crop_scale * min(fh, fw)
  h, w = side / fh, side / fw
  boxes = []
  if "crop" in names:
    along = [0.5] if num_crops == 1 else [i / (num_crops - 1) for i in range(num_crops)]
    for t in along:
      if fh > fw:  # portrait: spaced along the height
        boxes.append((t * (1.0 - h), (1.0 - w) / 2, h, w))
      else:
        boxes.append(((1.0 - h) / 2, t * (1.0 - w), h, w))
  else:
    boxes.append(None)
  flip_values = [0.0, 1.0] if ("flip" in names and flips) else [0.0]
  rows = []
  for box in boxes:
    for f in flip_values:
      row: list[float] = []
      for name in names:
        if name == "crop":
          row.extend(box)
        elif name == "flip":
          row.append(f)
        else:
          row.extend(AUGMENTATIONS[name].identity)
      rows.append(row)
  return jnp.asarray(rows, jnp.float32).reshape(len(rows), param_dim(names))


def _nearest_box(grid: jax.Array, box: jax.Array, out_h: int, out_w: int) -> jax.Array:
  """Nearest-cell crop of box (y0, x0, h, w) from grid [T, H, W, C] to [T, out_h, out_w, C]."""
  _, height, width, _ = grid.shape
  y0, x0, h, w = box[0], box[1], box[2], box[3]
  rows = jnp.floor((y0 + (jnp.arange(out_h) + 0.5) * h / out_h) * height).astype(jnp.int32)
  cols = jnp.floor((x0 + (jnp.arange(out_w) + 0.5) * w / out_w) * width).astype(jnp.int32)
  rows = jnp.clip(rows, 0, height - 1)
  cols = jnp.clip(cols, 0, width - 1)
  return jnp.take(jnp.take(grid, rows, axis=1), cols, axis=2)


def nearest_crop(x: jax.Array, params: jax.Array, spec: Spec,
                 out_hw: tuple[int, int] | None = None) -> jax.Array:
  """The paper's crop baseline on a grid of codes or latents [B, T', H', W', C] (any dtype).

  Output cell (i, j) copies input cell (floor((y0 + (i + 0.5) * h / H_out) * H'),
  floor((x0 + (j + 0.5) * w / W_out) * W')), clipped to the grid; a flip in `spec` reverses the
  W axis of the grid. Members are applied in spec order (a flip before a crop means the box is
  placed in the flipped frame, as in `apply_pixels`). Other augmentations are ignored (treated
  as the identity). `out_hw` defaults to the input grid size; without a crop in the spec, a
  different `out_hw` resamples the whole grid by nearest neighbour.
  """
  names = resolve_spec(spec)
  if x.ndim != 5:
    raise ValueError(f"nearest_crop: expected a grid [B,T,H,W,C], got {tuple(x.shape)}")
  _check_params(params, names, x.shape[0], "nearest_crop")
  _, _, height, width, _ = x.shape
  out_h, out_w = (height, width) if out_hw is None else (int(out_hw[0]), int(out_hw[1]))
  if out_h < 1 or out_w < 1:
    raise ValueError(f"nearest_crop: out_hw must be positive, got {out_hw}")
  return _nearest_crop(x, params.astype(jnp.float32), names, (out_h, out_w))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _nearest_crop(x: jax.Array, params: jax.Array, names: tuple[str, ...],
                  out_hw: tuple[int, int]) -> jax.Array:
  """Jitted body of `nearest_crop`."""
  _, _, height, width, _ = x.shape
  out_h, out_w = out_hw
  slices = param_slices(names)
  full_box = jnp.asarray(AUGMENTATIONS["crop"].identity, jnp.float32)

  def one(grid: jax.Array, p: jax.Array) -> jax.Array:
    for name in names:
      q = p[slices[name]]
      if name == "crop":
        grid = _nearest_box(grid, q, out_h, out_w)
      elif name == "flip":
        grid = jnp.where(q[0] > 0.5, grid[:, :, ::-1], grid)
    if "crop" not in names and (out_h, out_w) != (height, width):
      grid = _nearest_box(grid, full_box, out_h, out_w)
    return grid

  return jax.vmap(one)(x, params)


GEOMETRIC = ("crop", "flip", "rotation")
# Geometric members that move content off the cell grid (a flip maps cells onto cells).
OFF_GRID = ("crop", "rotation")


def warp_grid(x: jax.Array, params: jax.Array, spec: Spec) -> jax.Array:
  """The geometric members of `spec` (crop, flip, rotation) applied to a float grid of latents
  [B, T', H', W', C] by bilinear resampling, exactly as to pixels; colour members are skipped.

  This is the geometric prior of the augmentation network (`model.geometric_prior`): moving
  latents is the right first guess for where things go, and the network learns the rest (what
  a cell looks like after a sub-cell shift, a zoom, a mirror image, a colour change). It is also
  reported as a baseline of its own ("warp").
  """
  names = resolve_spec(spec)
  if x.ndim != 5:
    raise ValueError(f"warp_grid: expected a grid [B,T,H,W,C], got {tuple(x.shape)}")
  _check_params(params, names, x.shape[0], "warp_grid")
  return _warp_grid(x, params.astype(x.dtype), names)


def source_phase(params: jax.Array, spec: Spec, grid_hw: tuple[int, int],
                 harmonics: int = 2) -> jax.Array:
  """Where each cell of the warped grid samples the input grid, as sub-cell phase features
  [B, 1, H', W', 4 * harmonics]: sin / cos(2 pi k s) of the source index s (y then x, in input
  cells, k = 1 .. harmonics), obtained by warping a grid of cell indices exactly as
  `warp_grid` warps latents.

  Why: after a crop or rotation an output cell usually falls between input cells, and what the
  network must produce depends on where (a 2x zoom into the left half of a cell is not its right
  half). That phase is a local, per-cell quantity; the network's other inputs (the box or angle
  in the conditioning vector, absolute cell positions) hold it only through a product and a
  fractional part, which a small network learns slowly. Flips and colour changes keep cells on
  the grid (phase 0 everywhere), so the network only gets these features for specs with an
  `OFF_GRID` member. The size-1 time axis broadcasts over the latent frames.
  """
  names = resolve_spec(spec)
  h, w = int(grid_hw[0]), int(grid_hw[1])
  b = params.shape[0]
  iy, ix = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  index = jnp.broadcast_to(jnp.stack([iy, ix], axis=-1)[None, None], (b, 1, h, w, 2))
  src = warp_grid(index, params, names)  # [B, 1, H', W', 2]
  angles = 2.0 * jnp.pi * src[..., None, :] * jnp.arange(1, harmonics + 1,
                                                        dtype=jnp.float32)[:, None]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-2).reshape(
      b, 1, h, w, 4 * harmonics)


@functools.partial(jax.jit, static_argnums=2)
def _warp_grid(x: jax.Array, params: jax.Array, names: tuple[str, ...]) -> jax.Array:
  slices = param_slices(names)

  def one(grid: jax.Array, p: jax.Array) -> jax.Array:
    for name in names:
      if name in GEOMETRIC:
        grid = AUGMENTATIONS[name].pixel_fn(grid, p[slices[name]])
    return grid

  return jax.vmap(one)(x, params)
