"""The real pipeline end to end: `dvc repro` in a temporary git repository on tiny real photos,
with a real MLflow SQLite store; then `dvc exp run -S ...`, `dvc metrics show`, `dvc plots show`."""

import json
import subprocess

import mlflow
import numpy as np
import pytest
import torch

from conftest import BIN, make_pipeline_repo, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    env = make_pipeline_repo(root)
    run([BIN / "dvc", "repro"], root, env)
    return root, env


def _client(root):
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.MlflowClient()


def test_repro_writes_metrics_for_model_and_gray_baseline(repo):
    root, env = repo
    out = json.loads(run([BIN / "dvc", "metrics", "show", "--json"], root, env).stdout)
    text = json.dumps(out)
    for key in ("ciede2000", "auc", "psnr", "ssim", "mse_ab", "colourfulness_ratio"):
        assert key in text
    metrics = json.loads((root / "metrics/evaluate.json").read_text())
    assert set(metrics) == {"model", "gray", "val_images"}
    assert metrics["gray"]["colourfulness_ratio"] == 0.0
    data = json.loads((root / "metrics/data.json").read_text())
    assert data["used"] == 20 and data["train"] + data["val"] == 20


def test_second_repro_is_up_to_date(repo):
    root, env = repo
    out = run([BIN / "dvc", "repro"], root, env)
    assert "up to date" in out.stdout.lower()


def test_mlflow_run_holds_params_curves_images_and_tags(repo):
    root, _ = repo
    client = _client(root)
    run_id = json.loads((root / "models/run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.data.params["train.epochs"] == "2"
    assert run.data.tags["dvc_experiment"] == "workspace"
    assert len(run.data.tags["data_manifest_sha256"]) == 64
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2]
    assert "eval_model_ciede2000" in run.data.metrics
    assert "eval_gray_auc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id, "samples")}
    assert {"samples/epoch_001.png", "samples/epoch_002.png", "samples/samples.png"} <= artifacts
    # The run id is written in a DVC-tracked file, so dvc.lock ties results to the run.
    assert "models/run.json" in (root / "dvc.lock").read_text()


def test_registered_model_loads_and_colorizes(repo):
    import base64

    import cv2

    from colorize.imaging import encode_png
    from colorize.predict.service import image_frame
    from conftest import photo_tiles

    root, _ = repo
    client = _client(root)
    version = client.get_model_version_by_alias("colorizer", "newest")
    run_id = json.loads((root / "models/run.json").read_text())["run_id"]
    assert version.run_id == run_id
    # The registered pyfunc takes image files and answers colorized images at full size.
    service = mlflow.pyfunc.load_model("models:/colorizer@newest")
    photo = photo_tiles(1, 50)[0][:, :45]
    answer = service.predict(image_frame([encode_png(photo)]))
    png = base64.b64decode(answer["image"][0])
    out = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == photo.shape
    # The network itself is logged with the torch flavor beside it.
    logged = mlflow.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = 'model'", output_format="list")
    assert len(logged) == 1
    net = mlflow.pytorch.load_model(logged[0].model_uri)
    with torch.no_grad():
        ab = net(torch.zeros(1, 1, 32, 32))
    assert ab.shape == (1, 2, 32, 32) and torch.isfinite(ab).all()
    grid = cv2.imread(str(root / "plots/samples.png"))
    assert grid is not None and grid.shape[1] > 3 * 32 and np.std(grid) > 0


def test_predict_accepts_every_model_spec(repo, monkeypatch, tmp_path):
    from colorize.predict.load import resolve
    from colorize.predict.photo import colorize_batch
    from conftest import photo_tiles

    root, _ = repo
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    run_id = json.loads((root / "models/run.json").read_text())["run_id"]
    photo = photo_tiles(3, 64)[2][:50]
    outputs = []
    for spec in (str(root / "models/model.pt"), "models:/colorizer@newest",
                 f"runs:/{run_id}/model"):
        model, size = resolve(spec)
        assert size == 32, spec
        outputs.append(colorize_batch(model, size, [photo, photo], amp="off")[0])
    for out in outputs[1:]:
        assert np.abs(out.astype(int) - outputs[0]).max() <= 1


def test_plots_render_offline(repo):
    root, env = repo
    run([BIN / "dvc", "plots", "show", "-o", "dvc_plots"], root, env)
    html = (root / "dvc_plots/index.html").read_text()
    assert "<script src=\"http" not in html and "cdn.jsdelivr" not in html
    assert "samples.png" in html


def test_dvc_exp_run_is_its_own_mlflow_run(repo):
    root, env = repo
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    run([BIN / "dvc", "exp", "run", "-S", "train.lr=0.0005"], root, env)
    runs = _client(root).search_runs(
        [mlflow.get_experiment_by_name("colorize").experiment_id],
        filter_string="params.`train.lr` = '0.0005'")
    assert len(runs) == 1
    assert runs[0].data.tags["dvc_experiment"] not in ("", "workspace")
    assert "eval_model_auc" in runs[0].data.metrics


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_model_answers_an_image_over_http(repo):
    import base64
    import time
    import urllib.request

    import cv2

    from colorize.imaging import encode_png
    from conftest import photo_tiles

    root, env = repo
    port = _free_port()
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    server = subprocess.Popen(
        [BIN / "mlflow", "models", "serve", "-m", "models:/colorizer@newest",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(server.stdout.read().decode()[-3000:]) from None
                time.sleep(1)
        photo = photo_tiles(2, 60)[1][:, :41]
        body = json.dumps({"dataframe_records": [
            {"image": base64.b64encode(encode_png(photo)).decode()}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        png = base64.b64decode(answer["predictions"][0]["image"])
        out = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert out.shape == photo.shape
    finally:
        server.terminate()
        server.wait(timeout=30)
