"""Shared fixtures: tiny real photos (tiles of the photos bundled with scikit-image)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = REPO.parent / "shared" / "data"


def photo_tiles(n: int, size: int) -> list[np.ndarray]:
    """n distinct RGB uint8 tiles (size x size) cut from real colour photos."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    tiles = []
    for k in range(n):
        img = photos[k % len(photos)]
        step = k // len(photos)
        h, w = img.shape[:2]
        crop = min(h, w) // 2
        y = (step * 37) % (h - crop)
        x = (step * 53) % (w - crop)
        tile = img[y:y + crop, x:x + crop]
        tiles.append(cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA))
    return tiles


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def settings():
    """The repository's params.yaml: tests override what they need (settings.override)."""
    from colorize import config

    return config.load(REPO / "params.yaml")


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """A folder of 16 tiny real photos (48 px), in two subfolders, PNG and JPEG."""
    root = tmp_path / "photos"
    for i, tile in enumerate(photo_tiles(16, 48)):
        ext = "png" if i % 2 else "jpg"
        write_rgb(root / f"sub{i % 2}" / f"img{i:02d}.{ext}", tile)
    return root


def run(args, cwd, env, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                         text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def bench_script(name: str):
    """bench/<name>.py as a module (bench is no package), registered as bench_<name>, which
    its dataclasses need."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "bench" / f"{name}.py")
        module = sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[key]


def model_config(**values):
    """params.yaml's model section with some values replaced (validated as params are)."""
    from colorize import config

    base = config.load(REPO / "params.yaml").model.model_dump()
    return config.ModelSettings.model_validate({**base, **values})


def network(**values):
    """The network of params.yaml's model section with some values replaced."""
    from colorize.model.network import Colorizer

    return Colorizer(model_config(**values))


def smooth_fields(rng, n, size):
    """Random smooth ab fields (a 4 x 4 grid of colours, bilinearly upsampled): colour that L
    says nothing about, so only hints can tell it."""
    import torch
    import torch.nn.functional as F

    coarse = torch.from_numpy(rng.uniform(-60, 60, (n, 2, 4, 4)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear",
                         align_corners=False).numpy()


def train_hint_model(path: Path, head: str, steps: int = 500) -> Path:
    """A tiny network with hint channels (32 px working size), trained on colour it can only
    learn from the hints: `steps` batches of 16 random smooth fields (about 20 s for 500), with
    the project's loss for `head` (classification: uniform prior, no rebalancing)."""
    import torch

    from colorize import lab
    from colorize.model import bins
    from colorize.model import hints as H
    from colorize.model.file import save_model
    from colorize.train.loss import make_loss

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = network(head=head, decoder_width=32, hints=True)
    prior = np.full(bins.num_bins(), 1 / bins.num_bins())
    loss_fn = make_loss(head, "l1", prior if head == "classification" else None, 0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        ab = smooth_fields(rng, 16, 32)
        given = np.stack([H.simulate(a, rng) for a in ab])
        L = rng.uniform(-1, 1, (16, 1, 32, 32)).astype(np.float32)
        x = torch.from_numpy(np.concatenate([L, given], 1))
        loss = loss_fn(net(x), torch.from_numpy(ab) / lab.AB_SCALE)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(net.eval(), path, size=32)
    return path


def pipeline_env() -> dict:
    """The environment to run dvc / colorize in: PATH to this venv, no analytics, no MLflow or
    DVC variables of the caller's, a git identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1",
               NO_ALBUMENTATIONS_UPDATE="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def set_params(root: Path, name: str = "params.yaml", **sections) -> Path:
    """Write root/name: root's params.yaml with some values replaced."""
    import yaml

    p = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        p[section].update(values)
    (root / name).write_text(yaml.safe_dump(p, sort_keys=False))
    return root / name


# Where the pipeline repositories keep their photos: inside the fetch stage's output
# (data/raw/folder), as data/raw/sample is for the default source, so the photos are a DVC
# output and `dvc pull` and queued workspaces get them too.
PHOTOS = "data/raw/folder/photos"


def make_pipeline_repo(root: Path, photos: int = 20, **params) -> dict:
    """A git + DVC repository with this project's pipeline, tiny real photos (40 px) in PHOTOS
    and tiny params (2 epochs at 32 px). Returns `pipeline_env()`."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "scripts", root / "scripts")
    for i, tile in enumerate(photo_tiles(photos, 40)):
        write_rgb(root / PHOTOS / f"p{i:02d}.{'png' if i % 2 else 'jpg'}", tile)
    base = {"data": {"source": "folder", "path": PHOTOS, "val_fraction": 0.25, "min_size": 16},
            "preprocess": {"size": 32, "workers": 1},
            "train": {"epochs": 2, "batch_size": 4, "crop": 32},
            "evaluate": {"grid_images": 2}}
    set_params(root, **{s: {**base.get(s, {}), **params.get(s, {})} for s in {*base, *params}})
    env = pipeline_env()
    run(["git", "init", "-q"], root, env)
    run([BIN / "dvc", "init", "-q"], root, env)
    run([BIN / "dvc", "config", "core.analytics", "false"], root, env)
    run([BIN / "dvc", "config", "plots.html_template", "plots/offline.html"], root, env)
    run(["bash", "scripts/offline_plots_template.sh", ".dvc/plots/offline.html"], root, env)
    shutil.copy(REPO / ".dvc/plots/labelled_scatter.json", root / ".dvc/plots")
    ignored = ["/data/raw/", "/mlflow.db", "/mlartifacts/", "/models/checkpoints/", "/sweeps/",
               "/logs/", "/.*.lock"]
    (root / ".gitignore").write_text("\n".join(ignored) + "\n")
    return env


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 (a free port), serving `handler` from a thread while the
    `with` block runs."""

    def __init__(self, handler: type, path: str = ""):
        from http.server import ThreadingHTTPServer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}{path}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def mlflow_client(root: Path):
    """A client on the repository's own SQLite store."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.MlflowClient()


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> Path:
    """The whole pipeline reproduced once with `dvc repro`: 80 tiny real photos, the
    classification head with rebalancing, the local MLflow store, nothing committed. Tests
    work on copies of it (`copy_repo`), never on it."""
    root = tmp_path_factory.mktemp("built") / "repo"
    root.mkdir()
    env = make_pipeline_repo(root, photos=80, train={"rebalance": 0.25})
    run([BIN / "dvc", "repro"], root, env)
    return root


def copy_repo(built: Path, dest: Path) -> tuple[Path, dict]:
    """A copy of the built repository at `dest` (git, DVC cache, MLflow store and all: the
    store's recorded locations are rewritten on first use, as for any moved checkout)."""
    shutil.copytree(built, dest, symlinks=True)
    return dest, pipeline_env()
