"""Augmentations of videos and of their compressed latents (paper §3.4): parameter vectors,
pixel-space ground truth and the nearest-cell crop baseline on code grids (`cv.augment.ops`)."""
from cv.augment.ops import (AUGMENTATIONS, SPECS, Augmentation, apply_pixels, identity_params,
                            eval_views, nearest_crop, param_dim, param_slices, resolve_spec,
                            sample_params)

__all__ = ["AUGMENTATIONS", "SPECS", "Augmentation", "apply_pixels", "eval_views",
           "identity_params", "nearest_crop", "param_dim", "param_slices", "resolve_spec",
           "sample_params"]
