"""The default offline data set: real colour photographs shipped inside package registries.

Python wheels (scikit-image, scikit-learn, matplotlib) ship 9 photos; Debian packages ship scene
photos and wallpapers, fetched with `apt-get download` (no install, no root except for the
one-time `apt-get update`). Every file's origin and licence go to SOURCES.csv. Drawings and gray
images among them are dropped later by prepare's measured rules, not by a hand list.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

from colorize.data.sources import SAMPLE_MANIFEST, is_image_name

# package -> (folder inside the package, licence)
DEBIAN_PACKAGES: dict[str, tuple[list[str], str]] = {
    "scratch": (["usr/share/scratch/Media/Backgrounds"], "CC-BY-SA-3.0"),
    "lxqt-themes": (["usr/share/lxqt/wallpapers"], "LGPL-2.1+"),
    "mate-backgrounds": (["usr/share/backgrounds/mate/nature"], "GPL-2+"),
    "lomiri-wallpapers-16.04": (["usr/share/backgrounds"], "CC-BY/CC-BY-SA/CC0 (per file)"),
    "tuxpaint-data": (["usr/share/tuxpaint/templates"], "GPL-2+"),
    "palapeli-data": (["usr/share/palapeli/collection"], "GPL-2+"),
}


def python_package_photos() -> list[tuple[str, Path, str, str]]:
    """(file name, path, origin, licence) of the photos bundled in installed wheels."""
    import matplotlib
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    # Licences as stated in skimage/data/_fetchers.py docstrings.
    sk_photos = {
        "astronaut.png": "public domain (NASA)",
        "chelsea.png": "CC0 (Stefan van der Walt)",
        "coffee.png": "CC0 (Rachel Michetti)",
        "rocket.jpg": "public domain (SpaceX)",
        "motorcycle_left.png": "Middlebury stereo data set (research use)",
        "motorcycle_right.png": "Middlebury stereo data set (research use)",
    }
    out = [(f"skimage/{n}", sk / n, "scikit-image wheel", lic) for n, lic in sk_photos.items()]
    skl = Path(sklearn.__file__).parent / "datasets" / "images"
    out += [(f"sklearn/{n}", skl / n, "scikit-learn wheel",
             "Creative Commons, danielbuechele (sklearn/datasets/images/README.txt)")
            for n in ("china.jpg", "flower.jpg")]
    mpl = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out.append(("matplotlib/grace_hopper.jpg", mpl, "matplotlib wheel", "public domain (US Navy)"))
    return [o for o in out if o[1].exists()]


def fetch_sample(out_dir: str | Path, debian: bool = True, update: bool = True) -> Path:
    """Populate out_dir with the sample photos and SOURCES.csv. Idempotent: a complete folder
    (one whose SOURCES.csv exists) is left alone. Written to a temporary folder and moved into
    place, so an interrupted fetch never leaves a folder that looks complete."""
    out_dir = Path(out_dir)
    if (out_dir / SAMPLE_MANIFEST).exists():
        print(f"sample photos already in {out_dir}")
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        stage = Path(tmp) / "sample"
        for name, src, origin, licence in python_package_photos():
            _copy(src, stage / name)
            rows.append({"file": name, "origin": origin, "licence": licence})
        if debian:
            rows += _fetch_debian(stage, Path(tmp) / "debs", update)
        with (stage / SAMPLE_MANIFEST).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["file", "origin", "licence"])
            w.writeheader()
            w.writerows(sorted(rows, key=lambda r: r["file"]))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        stage.rename(out_dir)
    print(f"fetched {len(rows)} sample photos into {out_dir} (origins in {SAMPLE_MANIFEST})")
    return out_dir


def _fetch_debian(stage: Path, debs: Path, update: bool) -> list[dict[str, str]]:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError("apt-get/dpkg-deb not found: the sample source needs a Debian-like "
                           "system; use data.source=folder or archive instead")
    debs.mkdir(parents=True)
    if update:  # package lists; needs root once. Failure is tolerated when lists already exist.
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    result = subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=debs,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"apt-get download failed (run 'apt-get update' as root once?):\n"
                           f"{result.stderr.strip()}")
    rows = []
    for deb in sorted(debs.glob("*.deb")):
        package = deb.name.split("_")[0]
        folders, licence = DEBIAN_PACKAGES[package]
        tree = debs / package
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        version = deb.name.split("_")[1].replace("%3a", ":")
        for folder in folders:
            for src in sorted((tree / folder).rglob("*")):
                if src.is_file() and is_image_name(src.name) and src.suffix.lower() != ".gif":
                    rel = src.relative_to(tree / folder).as_posix()
                    name = f"debian/{package}/{rel}"
                    _copy(src, stage / name)
                    rows.append({"file": name, "origin": f"Debian package {package} {version}",
                                 "licence": licence})
        copyright_file = tree / "usr/share/doc" / package / "copyright"
        if copyright_file.exists():
            _copy(copyright_file, stage / "licences" / f"{package}.copyright")
    return rows


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
