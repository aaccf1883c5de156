"""The `fetch` stage: obtain the raw data of the configured source into data/raw/<source>/.

sample    -> the offline photos (sample.py), at data.path
places205 -> MIT Places205's archive from data.url, at data.path (download.py: resume, verify)
folder / archive -> nothing to fetch: the user's own files at data.path are read in place
"""

from __future__ import annotations

from pathlib import Path

from colorize.config import DataSettings
from colorize.data.download import download
from colorize.data.sample import fetch_sample
from colorize.data.sources import SourceError
from colorize.files import write_text


def fetch(data: DataSettings, raw_dir: str | Path) -> Path:
    target = Path(raw_dir) / data.source
    if data.source == "sample":
        fetch_sample(data.path)
    elif data.source == "places205":
        path = Path(data.path)
        if target.resolve() not in path.resolve().parents:
            raise SourceError(f"data.path: {path} must be inside {target}/ for places205 "
                              f"(e.g. {target}/{data.url.rsplit('/', 1)[-1]})")
        download(data.url, path, hash_file=Path("data") / f"{path.name}.sha256")
    else:
        if not Path(data.path).exists():
            raise SourceError(f"data.path: {data.path} not found (point it at a folder or a "
                              f"tar/zip archive of your photos)")
        target.mkdir(parents=True, exist_ok=True)
        write_text(target / "README.txt", f"Nothing to fetch for data.source={data.source}: "
                   f"photos are read from {data.path}.\n")
    return target
