"""The registry a newcomer can trust: aliases after concurrent evaluations, promotion, a real served
model answering a photo over 1 MB through `colorize request`, and a store that still resolves
after the checkout moves."""

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import BIN, copy_repo, mlflow_client, photo_tiles, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory):
    return copy_repo(built_repo, tmp_path_factory.mktemp("registry") / "checkout")


def test_concurrent_evaluations_leave_the_alias_on_the_newest_version(repo):
    root, env = repo
    procs = [subprocess.Popen([str(BIN / "colorize"), "evaluate"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    for p in procs:
        out = p.communicate(timeout=300)[0].decode()
        assert p.returncode == 0, out
    client = mlflow_client(root)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='colorizer'"))
    assert versions == [1, 2, 3]
    assert int(client.get_model_version_by_alias("colorizer", "workspace").version) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _big_photo(path):
    """A 2400x1800 JPEG over 1 MB: a real photo, enlarged, with sensor-like noise."""
    base = cv2.resize(photo_tiles(1, 300)[0], (2400, 1800), interpolation=cv2.INTER_CUBIC)
    noisy = np.clip(base + np.random.default_rng(0).normal(0, 6, base.shape), 0, 255)
    cv2.imwrite(str(path), cv2.cvtColor(noisy.astype(np.uint8), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert path.stat().st_size > 1_000_000
    return path


def test_promoted_version_serves_a_photo_over_1mb(repo, tmp_path):
    root, env = repo
    out = run([BIN / "colorize", "promote", "2"], root, env)
    assert "colorizer@champion -> version 2" in out.stdout
    assert int(mlflow_client(root).get_model_version_by_alias("colorizer", "champion").version) == 2
    bad = run([BIN / "colorize", "promote", "9"], root, env, check=False)
    assert bad.returncode == 2 and "has no version '9'" in bad.stderr

    port = _free_port()
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    server = subprocess.Popen(
        [BIN / "mlflow", "models", "serve", "-m", "models:/colorizer@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server)
        photo = _big_photo(tmp_path / "big.jpg")
        for T in ("1", "0.2"):
            run([BIN / "colorize", "request", photo, "--url", url, "--out", tmp_path / T,
                 "--temperature", T], root, env)
        a, b = (cv2.imread(str(tmp_path / T / "big.png")) for T in ("1", "0.2"))
        assert a.shape == (1800, 2400, 3) and not np.array_equal(a, b)
        refused = run([BIN / "colorize", "request", photo, "--url", url, "--out",
                       tmp_path / "x", "--temperature", "0"], root, env, check=False)
        assert refused.returncode == 2 and "--temperature: 0.0 must be" in refused.stderr
        junk = tmp_path / "junk.jpg"
        junk.write_bytes(b"not a photo")
        skipped = run([BIN / "colorize", "request", junk, "--url", url, "--out",
                       tmp_path / "y"], root, env, check=False)
        assert skipped.returncode == 1 and "skipped" in skipped.stdout
        assert "unreadable" in skipped.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)


def _vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))


def _bomb_png(side: int = 20000) -> bytes:
    """A valid 8-bit gray PNG of side x side: a few hundred KB, 400 MB decoded."""
    import struct
    import zlib

    z = zlib.compressobj(9)
    idat = b"".join(z.compress(bytes(side + 1)) for _ in range(side)) + z.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0,
                                                                0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_colorize_serve_caps_bodies_and_stays_small_under_bombs(repo, tmp_path):
    """`colorize serve`: MLflow's scoring app with a body limit. A body over --max-body-mb is a
    413 that `colorize request` lists as skipped; bombs sent at once leave the worker's peak
    memory where a normal photo's request puts it."""
    import base64
    import json as js
    from concurrent.futures import ThreadPoolExecutor

    root, env = repo
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [BIN / "colorize", "serve", "--model", "models:/colorizer@workspace", "--port",
         str(port), "--max-body-mb", "1"], cwd=root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        _wait_for(url, server)
        small = tmp_path / "small.jpg"
        cv2.imwrite(str(small), cv2.cvtColor(photo_tiles(1, 96)[0], cv2.COLOR_RGB2BGR))
        run([BIN / "colorize", "request", small, _big_photo(tmp_path / "big.jpg"), "--url", url,
             "--out", tmp_path / "o"], root, env, check=False)
        assert (tmp_path / "o" / "small.png").is_file()
        assert not (tmp_path / "o" / "big.png").exists()  # 1.4 MB of base64: refused
        good = js.dumps({"dataframe_records": [
            {"image": base64.b64encode(small.read_bytes()).decode()}]}).encode()
        body = js.dumps({"dataframe_records": [
            {"image": base64.b64encode(_bomb_png()).decode()}]}).encode()

        def post(payload):
            req = urllib.request.Request(f"{url}/invocations", data=payload,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as answer:
                return js.loads(answer.read())["predictions"][0]["error"]

        with ThreadPoolExecutor(20) as pool:  # 20 good requests at once: all answered
            assert list(pool.map(post, [good] * 20)) == [""] * 20
        baseline = _vm_kib(server.pid, "VmHWM")
        start = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            errors = list(pool.map(post, [body] * 3))
        seconds = time.perf_counter() - start
        assert all(e.startswith("too_large: 20000x20000 exceeds") for e in errors), errors
        grown = (_vm_kib(server.pid, "VmHWM") - baseline) / 1024
        assert grown < 100, f"peak memory grew {grown:.0f} MiB under 3 bombs"
        assert seconds < 10, seconds
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, server: subprocess.Popen) -> None:
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=2)
            return
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError(server.stdout.read().decode()[-3000:]) from None
            time.sleep(1)


def test_moved_checkout_and_a_clone_with_the_store_still_resolve(repo, tmp_path):
    root, env = repo
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), cv2.cvtColor(photo_tiles(1, 64)[0], cv2.COLOR_RGB2BGR))
    moved = root.parent / "moved"
    shutil.move(root, moved)  # `mv` of the whole checkout
    out = run([BIN / "colorize", "predict", photo, "--out", tmp_path / "a", "--model",
               "models:/colorizer@workspace"], moved, env)
    assert "colorizer version 3" in out.stdout and (tmp_path / "a" / "p.png").exists()
    assert "moved" in mlflow_client(moved).get_run(
        json.loads((moved / "models/run.json").read_text())["run_id"]).info.artifact_uri
    # A clone elsewhere, given a copy of the store, resolves the same run and version.
    clone = tmp_path / "clone"
    run(["git", "add", "-A"], moved, env)
    run(["git", "commit", "-qm", "results"], moved, env)
    run(["git", "clone", "-q", moved, clone], tmp_path, env)
    for name in ("mlflow.db", "mlartifacts"):
        (shutil.copytree if (moved / name).is_dir() else shutil.copy)(moved / name,
                                                                       clone / name)
    run_id = json.loads((clone / "models/run.json").read_text())["run_id"]
    out = run([BIN / "colorize", "predict", photo, "--out", tmp_path / "b", "--model",
               f"runs:/{run_id}"], clone, env)
    assert (tmp_path / "b" / "p.png").exists()
    assert np.array_equal(cv2.imread(str(tmp_path / "a" / "p.png")),
                          cv2.imread(str(tmp_path / "b" / "p.png")))
