"""Real photographs from Debian wallpaper packages, fetched at corpus-build time (never at training).

`fetch(cache)` runs `apt-get download <pkg>` and `dpkg-deb -x` for each package of `PACKAGES`
into `{cache}/debs` and `{cache}/extract`, then copies only the allow-listed photographs (the
packages also hold drawings and renders, which are not real footage) to
`{cache}/photos/<package>/<file>` together with the package's `copyright` file, and writes
`{cache}/photos/LICENSES.json` (package, version, file, licence, author). Build the corpus with
`--photos {cache}/photos`. `apt-get update` must have been run once on the machine.

The licences below were read from each package's /usr/share/doc/<pkg>/copyright (Debian 12
"bookworm" versions); all allow redistribution and derived works (GPL-2+, CC-BY-4.0,
CC-BY-SA-3.0/4.0, CC0-1.0).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from cv.data.footage.sources import FootageError
from cv.lib import fileio

# package -> (path prefix inside the package, [(file, licence, author)]). Only photographs.
PACKAGES: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature", (
        ("Aqua.jpg", "GPL-2+", "Charles Barbin"),
        ("Blinds.jpg", "GPL-2+", "Lennart Poettering, Andrea Cimitan"),
        ("Dune.jpg", "GPL-2+", "Marco Cogoni, Hylke Bons"),
        ("FreshFlower.jpg", "GPL-2+", "Jens Ansorg"),
        ("Garden.jpg", "GPL-2+", "Charles Barbin"),
        ("GreenMeadow.jpg", "GPL-2+", "Timothy Schellhase, Lapo Calamandrei"),
        ("LadyBird.jpg", "GPL-2+", "Charles Barbin"),
        ("RainDrops.jpg", "GPL-2+", "blackcombwhistler07"),
        ("Storm.jpg", "GPL-2+", "Sergey Nazarov"),
        ("TwoWings.jpg", "GPL-2+", "Charles Barbin, Hylke Bons"),
        ("Wood.jpg", "GPL-2+", "Jean-François Fortin Tam"),
        ("YellowFlower.jpg", "GPL-2+", "Charles Barbin"),
    )),
    "lomiri-wallpapers-16.04": ("usr/share/backgrounds", (
        ("Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "Sander Klootwijk"),
        ("Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", "Bolly"),
        ("Picture_0B_by_freespace.jpg", "CC-BY-4.0", "Trevor \"Freespace\""),
        ("Picture_1A_by_freespace.jpg", "CC-BY-4.0", "Trevor \"Freespace\""),
        ("Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "Jakub Mede"),
        ("aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "Clemens Engelhardt"),
        ("sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    )),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds", (
        ("Kleiber_by_Lukas_Baubkus.jpg", "CC-BY-SA-3.0", "Lukas Baubkus"),
    )),
    "plasma-workspace-wallpapers": ("usr/share/wallpapers", tuple(
        (f"{name}/contents/images/{size}.jpg", "GPL-2+", "KDE Visual Design Group")
        for name, size in (
            ("BytheWater", "1920x1080"), ("ColdRipple", "1920x1080"),
            ("ColorfulCups", "2560x1600"), ("DarkestHour", "1920x1080"),
            ("EveningGlow", "1920x1080"), ("FallenLeaf", "1920x1080"), ("Grey", "1920x1080"),
            ("Kite", "1920x1080"), ("OneStandsOut", "1920x1080"), ("Path", "1920x1080"),
            ("Volna", "5120x2880"), ("summer_1am", "1920x1080")))),
}

LICENSES_FILE = "LICENSES.json"


def _run(cmd: list[str], cwd: str) -> None:
  try:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   text=True)
  except FileNotFoundError as e:
    raise FootageError(f"{cmd[0]} is not installed: the Debian photos need a Debian/Ubuntu "
                       f"machine (apt-get, dpkg-deb); build without --photos instead") from e
  except subprocess.CalledProcessError as e:
    raise FootageError(f"`{' '.join(cmd)}` failed: {e.stderr.strip()[-400:]}; run "
                       f"`apt-get update` once and check the network") from e


def _version(deb: str) -> str:
  out = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True,
                       text=True)
  return out.stdout.strip()


def fetch(cache: str, packages: tuple[str, ...] | None = None) -> str:
  """Downloads and unpacks the wallpaper packages; returns the `{cache}/photos` folder.

  Re-running reuses downloaded .deb files. A listed photo missing from a package is an error
  naming it (the package changed: update `PACKAGES`).
  """
  cache = os.path.abspath(os.path.expanduser(cache))
  debs, extract, photos = (os.path.join(cache, d) for d in ("debs", "extract", "photos"))
  for d in (debs, extract, photos):
    os.makedirs(d, exist_ok=True)
  licences = []
  for pkg in packages or tuple(PACKAGES):
    if pkg not in PACKAGES:
      raise FootageError(f"Debian package {pkg!r} is not in the photo allow-list; choose from "
                         f"{sorted(PACKAGES)}")
    found = sorted(glob.glob(os.path.join(debs, f"{pkg}_*.deb")))
    if not found:
      print(f"apt-get download {pkg}", file=sys.stderr, flush=True)
      _run(["apt-get", "download", pkg], debs)
      found = sorted(glob.glob(os.path.join(debs, f"{pkg}_*.deb")))
      if not found:
        raise FootageError(f"apt-get download {pkg} wrote no {pkg}_*.deb into {debs}")
    deb = found[-1]
    root = os.path.join(extract, pkg)
    if not os.path.isdir(root):
      _run(["dpkg-deb", "-x", deb, root + ".tmp"], cache)
      os.replace(root + ".tmp", root)
    prefix, files = PACKAGES[pkg]
    out_dir = os.path.join(photos, pkg)
    os.makedirs(out_dir, exist_ok=True)
    copyright_src = os.path.join(root, "usr", "share", "doc", pkg, "copyright")
    if os.path.isfile(copyright_src):
      shutil.copyfile(copyright_src, os.path.join(out_dir, "copyright"))
    version = _version(deb)
    for rel, licence, author in files:
      src = os.path.join(root, prefix, rel)
      if not os.path.isfile(src):
        raise FootageError(f"{pkg} {version} has no {prefix}/{rel}; the package changed: update "
                           f"cv/data/footage/debian.py PACKAGES")
      dst_name = rel.split("/")[0] + os.path.splitext(rel)[1] if "/" in rel else rel
      shutil.copyfile(src, os.path.join(out_dir, dst_name))
      licences.append(dict(package=pkg, version=version, file=f"{pkg}/{dst_name}",
                           source=f"/{prefix}/{rel}", licence=licence, author=author))
  fileio.write_json(os.path.join(photos, LICENSES_FILE), licences)
  return photos
