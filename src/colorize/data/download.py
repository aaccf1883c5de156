"""HTTP download with resume, size and checksum verification, and an atomic move into place.

The file is written to `<dest>.part`. An interrupted transfer leaves only the .part file, which
the next call resumes with an HTTP Range request. When the transfer completes, the size is checked
against the server's Content-Length and the SHA-256 against the expected hash: one pinned in the
code (`expected_sha256`), or else the recorded one (`<dest>.sha256`, written on the first
successful download and meant to be committed); only then is the file moved to `dest`. So a file
at `dest` is always complete and verified. A file that fails the check is moved aside to
`<dest>.corrupt`, never used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from colorize.errors import UserError
from colorize.files import write_text

CHUNK = 1 << 20


class DownloadError(UserError):
    """A download failed; the message names the fix. `status` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, hash_file: str | os.PathLike | None = None,
             timeout: float = 60.0, expected_sha256: str | None = None) -> Path:
    """Fetch url to dest (resuming a partial download) and verify it. Returns dest.

    With `expected_sha256`, that hash is enforced and no hash file is read or written; a file
    already at dest is checked against it too (the pin may be newer than the file)."""
    dest = Path(dest)
    if expected_sha256:
        expected, record = expected_sha256.lower(), None
    else:
        record = Path(hash_file) if hash_file else dest.with_name(dest.name + ".sha256")
        expected = record.read_text().split()[0] if record.exists() else None
    if dest.exists():
        if expected_sha256:
            _verify(dest, dest, expected, record)
        return dest  # otherwise only ever created by the verified move below
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part file already holds every byte
            return _verify_and_move(part, dest, expected, record)
        raise DownloadError(f"{url}: server answered HTTP {e.code} {e.reason}", e.code) from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: cannot connect ({getattr(e, 'reason', e)})") from e
    with response:
        if response.status == 206:
            total = _total_from_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: the server ignored Range (or nothing was there): start over
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        with part.open(mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                        desc=f"download {dest.name}") as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"{url}: connection lost after {f.tell()} bytes "
                                        f"({e}); run again to resume") from e
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} of {total} bytes; run again to resume")
    return _verify_and_move(part, dest, expected, record)


def _verify_and_move(part: Path, dest: Path, expected: str | None, record: Path | None) -> Path:
    digest = _verify(part, dest, expected, record)
    if record and not expected:  # the first download records the hash
        write_text(record, f"{digest}  {dest.name}\n")
    part.replace(dest)
    return dest


def _verify(path: Path, dest: Path, expected: str | None, record: Path | None) -> str:
    """The SHA-256 of path. On a mismatch, path is moved to <dest>.corrupt and refused."""
    digest = sha256_of(path)
    if expected and digest != expected:
        bad = dest.with_name(dest.name + ".corrupt")
        path.replace(bad)
        what, fix = ((f"recorded {expected} ({record})",
                      f"delete {record} if the upstream file really changed") if record else
                     (f"pinned {expected}", "if it fails again, the server or the pin is wrong"))
        raise DownloadError(f"{dest.name}: SHA-256 {digest} does not match the {what}; the file "
                            f"was moved to {bad}. Run again to download it afresh; {fix}.")
    return digest


def _total_from_range(content_range: str | None) -> int | None:
    # 'bytes 100-999/1000' -> 1000
    if content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    return None
