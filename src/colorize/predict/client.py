"""`colorize request`: send photos to a served model (`mlflow models serve`) and save the answers.

A shell one-liner that puts a base64 photo on curl's command line fails for photos over about
100 KB ("Argument list too long"); this client posts each photo in its own request body, of any
size, and writes the colorized PNG (same layout as `colorize predict`: OUT/<name>.png).
The request is MLflow's scoring protocol: {"dataframe_records": [{"image": <base64 file>}],
"params": {"temperature": T, "prior_correction": A}}; the answer has `image` (base64 PNG)
and `error` per row.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from colorize.errors import UserError
from colorize.files import write_bytes


def request_body(photo: bytes, temperature: float | None, correction: float | None) -> bytes:
    body: dict = {"dataframe_records": [{"image": base64.b64encode(photo).decode("ascii")}]}
    params = {k: v for k, v in (("temperature", temperature), ("prior_correction", correction))
              if v is not None}
    if params:  # the rest: the served version's defaults
        body["params"] = params
    return json.dumps(body).encode()


def colorize_remote(photo: bytes, url: str, temperature: float | None = None,
                    correction: float | None = None, timeout: float = 300.0) -> bytes:
    """One photo's bytes -> the served model's PNG bytes; UserError with the server's reason."""
    req = urllib.request.Request(f"{url.rstrip('/')}/invocations",
                                 data=request_body(photo, temperature, correction),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            row = json.loads(answer.read())["predictions"][0]
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except ValueError:
            pass
        raise UserError(f"{url}: the server refused the request (HTTP {e.code}): "
                        f"{detail.strip().splitlines()[0][:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"{url}: cannot reach the served model ({getattr(e, 'reason', e)}); "
                        "start it with `mlflow models serve ...` (README, Serving)") from None
    if row.get("error"):
        raise ValueError(row["error"])
    return base64.b64decode(row["image"])


def request(photos: list[str], url: str, out_dir: str, temperature: float | None = None,
            correction: float | None = None) -> dict:
    """Send each photo; write OUT/<stem>.png. -> {"written": [...], "skipped": [(photo, why)]}"""
    written, skipped = [], []
    for name in photos:
        path = Path(name)
        try:
            png = colorize_remote(path.read_bytes(), url, temperature, correction)
        except (OSError, ValueError) as e:
            skipped.append((name, str(e)))
            print(f"  skipped {name}: {e}")
            continue
        target = Path(out_dir) / f"{path.stem}.png"
        write_bytes(target, png)
        written.append(str(target))
    print(f"colorized {len(written)} photo(s) with {url} into {out_dir}; "
          f"skipped {len(skipped)}")
    return {"written": written, "skipped": skipped}
