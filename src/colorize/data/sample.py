"""The default data set: real colour photographs from Python wheels and pinned Debian packages.

Python wheels (scikit-image, scikit-learn, matplotlib) ship 9 photos; Debian packages ship scene
photos and wallpapers. Each package is pinned by version and SHA-256 (from bookworm's Packages
index) and fetched by URL and unpacked in Python (debian.py), so the photos, hence the split and
the results, are the same on every machine and every day. Every file's origin (package and
version) and licence go to SOURCES.csv, each package's copyright file to licences/. Drawings and
gray images among them are dropped later by prepare's measured rules, not by a hand list.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from colorize.data.debian import MIRROR, SNAPSHOT, Package, deb_files, fetch_deb
from colorize.data.rcc import rcc_files
from colorize.data.sources import SAMPLE_MANIFEST, SourceError, is_image_name
from colorize.files import write_bytes, write_csv

# Debian bookworm (main, arch all): Filename, Size and SHA256 from dists/bookworm/main/
# binary-all/Packages.xz. All data tarballs are xz, readable by tarfile on any Python 3.11.
SCENES = (
    Package("scratch", "1.4.0.6~dfsg1-6.1",
            "pool/main/s/scratch/scratch_1.4.0.6~dfsg1-6.1_all.deb", 25_654_320,
            "36c582eb93110f64f06c4e685c41e933ccba2fa68db12f79b10bfe840b21fc10",
            "CC-BY-SA-3.0", ("usr/share/scratch/Media/Backgrounds",)),
    Package("lxqt-themes", "1.2.0-1",
            "pool/main/l/lxqt-themes/lxqt-themes_1.2.0-1_all.deb", 25_778_012,
            "d518df36b515b09d36cb00b12645dd8ce170bb82bb0966297741905ce3edc8e1",
            "LGPL-2.1+", ("usr/share/lxqt/wallpapers",)),
    Package("mate-backgrounds", "1.26.0-1",
            "pool/main/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb", 46_638_500,
            "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
            "GPL-2+", ("usr/share/backgrounds/mate/nature",)),
    Package("lomiri-wallpapers-16.04", "20.04.0-2",
            "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-16.04_20.04.0-2_all.deb",
            15_783_184, "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
            "CC-BY/CC-BY-SA/CC0 (per file)", ("usr/share/backgrounds",)),
    Package("tuxpaint-data", "1:0.9.28-sdl2-1",
            "pool/main/t/tuxpaint/tuxpaint-data_0.9.28-sdl2-1_all.deb", 7_855_540,
            "f5d0de8f9a70d2efc1241d19f26168cb8bf279f1b77abd3631e7a1a55c40e5e5",
            "GPL-2+", ("usr/share/tuxpaint/templates",)),
    Package("palapeli-data", "4:22.12.3-1",
            "pool/main/p/palapeli/palapeli-data_22.12.3-1_all.deb", 2_136_268,
            "69a15dce2ac25ed8708ac518cd0cee5f4eb0c70ed15da2fdb8899a19ac0ee058",
            "GPL-2+", ("usr/share/palapeli/collection",)),
)
# Landmark, animal, object and underwater photos of GCompris' activities, inside Qt bundles.
_RCC = "usr/share/gcompris-qt/rcc"
GCOMPRIS = (
    Package("gcompris-qt-data", "3.1-2",
            "pool/main/g/gcompris-qt/gcompris-qt-data_3.1-2_all.deb", 44_196_292,
            "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
            "GPL-3+/CC-BY-SA (per file)",
            tuple(f"{_RCC}/{b}.rcc" for b in (
                "categorization", "clickgame", "erase", "explore_farm_animals",
                "explore_monuments", "explore_world_animals", "explore_world_music"))),
)
PACKAGE_GROUPS = {"scenes": SCENES, "gcompris": GCOMPRIS}
SAMPLE_GROUPS = ("scenes", "gcompris")  # the groups the default sample set takes
DEFAULT_PACKAGES = tuple(p for group in SAMPLE_GROUPS for p in PACKAGE_GROUPS[group])


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


def fetch_sample(out_dir: str | Path, packages: Sequence[Package] = DEFAULT_PACKAGES,
                 mirror: str = MIRROR, snapshot: str = SNAPSHOT, cache: str | Path | None = None
                 ) -> Path:
    """Populate out_dir with the sample photos, SOURCES.csv and licences/.

    Idempotent: a complete folder (SOURCES.csv written) holding exactly these package versions
    is left alone. Built in a temporary folder and moved into place, so an interrupted fetch
    never leaves a folder that looks complete. The .deb files stay in `cache` (default:
    <out_dir's parent>/.debs), so a rerun or an interrupted download resumes instead of
    fetching again."""
    out_dir = Path(out_dir)
    if _holds(out_dir, packages):
        print(f"sample photos already in {out_dir}")
        return out_dir
    cache = Path(cache) if cache else out_dir.parent / ".debs"
    missing = sum(p.size for p in packages if not (cache / p.file_name).exists())
    print(f"sample: {len(packages)} pinned Debian packages, {missing / 1e6:.1f} MB to download")
    debs = [fetch_deb(p, cache, mirror, snapshot) for p in packages]  # all verified first
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        stage = Path(tmp) / "sample"
        rows = []
        for name, src, origin, licence in python_package_photos():
            write_bytes(stage / name, src.read_bytes())
            rows.append({"file": name, "origin": origin, "licence": licence})
        for package, deb in zip(packages, debs, strict=True):
            rows += _unpack(package, deb, stage)
        write_csv(stage / SAMPLE_MANIFEST, ["file", "origin", "licence"],
                  sorted(rows, key=lambda r: r["file"]))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        stage.rename(out_dir)
    print(f"fetched {len(rows)} sample photos into {out_dir} (origins in {SAMPLE_MANIFEST})")
    return out_dir


def _unpack(package: Package, deb: Path, stage: Path) -> list[dict[str, str]]:
    """Write the package's photos (no GIF) and copyright file; their SOURCES.csv rows."""
    copyright_path = f"usr/share/doc/{package.name}/copyright"
    files = deb_files(deb, [*package.folders, copyright_path])
    if copyright_path not in files:
        raise SourceError(f"{deb.name}: no {copyright_path}; fix the pinned table in sample.py")
    write_bytes(stage / "licences" / f"{package.name}.copyright", files[copyright_path])
    rows = []
    for folder in package.folders:
        if folder.endswith(".rcc"):  # a Qt resource bundle: the images inside it
            found = rcc_files(files[folder], f"{deb.name}:{folder}") if folder in files else ()
        else:
            found = ((p.removeprefix(folder + "/"), data) for p, data in sorted(files.items())
                     if p.startswith(folder + "/"))
        before = len(rows)
        for rel, data in found:
            if is_image_name(rel) and not rel.lower().endswith(".gif"):
                name = f"debian/{package.name}/{rel}"
                write_bytes(stage / name, data)
                rows.append({"file": name, "origin": package.origin, "licence": package.licence})
        if len(rows) == before:
            raise SourceError(f"{deb.name}: no images in {folder}; fix the pinned table in "
                              f"sample.py")
    return rows


def _holds(out_dir: Path, packages: Sequence[Package]) -> bool:
    """Whether out_dir is a complete sample folder made from exactly these package versions."""
    manifest = out_dir / SAMPLE_MANIFEST
    if not manifest.exists():
        return False
    with manifest.open(newline="") as f:
        origins = {r["origin"] for r in csv.DictReader(f) if r["origin"].startswith("Debian ")}
    return origins == {p.origin for p in packages}
