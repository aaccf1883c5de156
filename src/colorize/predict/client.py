"""`colorize request`: send photos to a served model (`colorize serve`, `mlflow models serve`) and
save the answers, with `colorize predict`'s layout and promises (predict/layout.py): folders
are taken, an output never replaces an input or an earlier output of the same run, and every
photo that gets no output is listed with its reason.

A shell one-liner that puts a base64 photo on curl's command line fails for photos over about
100 KB ("Argument list too long"); this client posts each photo in its own request body. The
request is MLflow's scoring protocol: {"dataframe_records": [{"image": <base64 file>}],
"params": {"temperature": T, "prior_correction": A}}; the answer has `image` (base64 PNG)
and `error` per row.

Nothing a server sends is trusted: each photo has a total deadline (DEADLINE_S, however slowly
the answer drips), an answer over its byte cap is cut off, a malformed answer or an HTTP error
skips that photo with the reason (the others are still sent), and the PNG is checked (format
and the photo's size) before it is written. A photo is checked locally first (the same gate
as everywhere, data/images.py), so a bomb is never sent. Only an unreachable server stops the
run (exit 2).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import socket
import threading
import urllib.parse

from tqdm import tqdm

from colorize.data.images import (
    SERVED_MAX_PIXELS,
    ImageError,
    max_file_bytes,
    probe,
    read_image_file,
)
from colorize.errors import UserError
from colorize.files import write_bytes
from colorize.predict.layout import Skipped, collect, output_folder, report, unique_targets

MAX_PIXELS = SERVED_MAX_PIXELS
DEADLINE_S = 300.0  # per photo, for the whole exchange
# The answer: a base64 PNG of up to MAX_PIXELS RGB pixels (PNG never needs much more than the
# raw 3 bytes a pixel), in a small JSON.
MAX_ANSWER_BYTES = (3 * MAX_PIXELS + (1 << 20)) * 4 // 3 + (1 << 20)


class BadAnswer(Exception):
    """This photo got no usable answer (the message says why); the run goes on."""


def request_body(photo: bytes, temperature: float | None, correction: float | None) -> bytes:
    body: dict = {"dataframe_records": [{"image": base64.b64encode(photo).decode("ascii")}]}
    params = {k: v for k, v in (("temperature", temperature), ("prior_correction", correction))
              if v is not None}
    if params:  # the rest: the served version's defaults
        body["params"] = params
    return json.dumps(body).encode()


def post(url: str, body: bytes, deadline_s: float | None = None,
         max_answer: int | None = None) -> tuple[int, bytes]:
    """POST to URL/invocations -> (HTTP status, body). The whole exchange ends by the deadline
    (default DEADLINE_S): a watchdog shuts the socket down, whatever the server does. UserError
    when the server cannot be reached; BadAnswer for a late or oversize (over max_answer,
    default MAX_ANSWER_BYTES) answer."""
    # The limits are read when called, not when defined, so that they can be changed.
    deadline_s = DEADLINE_S if deadline_s is None else deadline_s
    max_answer = MAX_ANSWER_BYTES if max_answer is None else max_answer
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--url {url}: not an http:// or https:// address")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=min(deadline_s, 30.0))
    expired = threading.Event()
    # getresponse() lets go of conn.sock when the answer ends with the connection (HTTP/1.0,
    # "Connection: close"): the watchdog keeps its own hold on the socket.
    held: list[socket.socket] = []
    answer = None

    def expire() -> None:
        expired.set()
        for sock in {conn.sock, *held} - {None}:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(deadline_s, expire)
    watchdog.start()
    try:
        try:
            conn.request("POST", f"{parts.path.rstrip('/')}/invocations", body,
                         {"Content-Type": "application/json"})
        except (ConnectionRefusedError, socket.gaierror) as e:
            raise UserError(f"{url}: cannot reach the served model ({e}); start it with "
                            "`colorize serve` or `mlflow models serve` (README, Serve)") from None
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading (a body over its limit): its answer says why
        held.append(conn.sock)
        answer = conn.getresponse()
        data = bytearray()
        while chunk := answer.read1(1 << 16):
            data += chunk
            if len(data) > max_answer:
                raise BadAnswer(f"answer over {max_answer} bytes, cut off")
        if expired.is_set():  # the shut-down socket reads as the answer's end: it is not
            raise BadAnswer(f"no complete answer within {deadline_s:g} s")
        return answer.status, bytes(data)
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set():
            raise BadAnswer(f"no complete answer within {deadline_s:g} s") from None
        raise BadAnswer(f"connection failed ({e})") from None
    finally:
        watchdog.cancel()
        if answer is not None:
            answer.close()
        conn.close()


def colorize_remote(photo: bytes, url: str, temperature: float | None = None,
                    correction: float | None = None, deadline_s: float | None = None) -> bytes:
    """One photo's bytes -> the served model's PNG, checked: a PNG of the photo's own size.
    BadAnswer with the reason otherwise."""
    size = probe(photo, MAX_PIXELS)
    status, data = post(url, request_body(photo, temperature, correction), deadline_s)
    text = data.decode("utf-8", errors="replace")
    if status != 200:
        try:
            message = json.loads(text).get("message")
            text = message if isinstance(message, str) else text
        except (ValueError, AttributeError, RecursionError):  # deep nesting: RecursionError
            pass
        first = text.strip().splitlines()[0][:300] if text.strip() else "no message"
        raise BadAnswer(f"HTTP {status}: {first}")
    try:
        row = json.loads(text)["predictions"][0]
        if row.get("error"):
            raise BadAnswer(f"the server: {row['error']}")
        png = base64.b64decode(row["image"], validate=True)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError,
            binascii.Error) as e:
        raise BadAnswer(f"not the served model's answer ({type(e).__name__})") from None
    try:
        got = probe(png, MAX_PIXELS)
    except ImageError as e:
        raise BadAnswer(f"the answer is not an image ({e})") from None
    if (got.format, got.width, got.height) != ("PNG", size.width, size.height):
        raise BadAnswer(f"the answer is a {got.width}x{got.height} {got.format}, not a "
                        f"{size.width}x{size.height} PNG")
    return png


def request(photos: list[str], url: str, out_dir: str, temperature: float | None = None,
            correction: float | None = None) -> dict:
    """Send each photo (files and folders, as for predict) and write its PNG (layout: see
    predict/layout.py). -> {"written": [...], "skipped": [(photo, reason)], "renamed": [...]}"""
    out_root = output_folder(out_dir)
    found, skipped = collect(photos)
    jobs, renamed = unique_targets(found, out_root)
    written: list[str] = []
    for source, target in tqdm(jobs, desc="request", unit="photo"):
        try:
            data = read_image_file(source, max_file_bytes(MAX_PIXELS))
            png = colorize_remote(data, url, temperature, correction)
        except ImageError as e:
            skipped.append(Skipped(str(source), e.reason, e.detail))
            continue
        except BadAnswer as e:
            skipped.append(Skipped(str(source), "no answer", str(e)))
            continue
        path = out_root / target
        try:
            write_bytes(path, png)
        except OSError as e:
            skipped.append(Skipped(str(source), "unwritable", f"{path}: {e.strerror or e}"))
            continue
        written.append(str(path))
    return report(written, skipped, renamed, out_root, f" with {url}")
