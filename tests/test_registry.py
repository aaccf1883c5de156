"""The registry a newcomer can trust: aliases after concurrent evaluations, promotion, a real served
model answering a photo over 1 MB through `colorize request`, and a store that still resolves
after the checkout moves."""

import json
import shutil
import socket
import subprocess
import time
import urllib.request

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
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(server.stdout.read().decode()[-3000:]) from None
                time.sleep(1)
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
