"""The real pipeline end to end: `dvc repro` in a temporary git repository on tiny real photos
(a copy of the session's built repository), with the classification head and a real MLflow
SQLite store; then what DVC must keep up to date, the run and the registry, every way to name
the model, `dvc plots`, and `dvc exp run`."""

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from colorize.decoding import Decoding
from colorize.preprocess.store import LabStore
from conftest import BIN, copy_repo, mlflow_client, photo_tiles, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory):
    return copy_repo(built_repo, tmp_path_factory.mktemp("pipeline") / "repo")


def _run_id(root):
    return json.loads((root / "models/run.json").read_text())["run_id"]


def test_repro_writes_metrics_for_model_and_gray_baseline(repo):
    root, env = repo
    shown = json.loads(run([BIN / "dvc", "metrics", "show", "--json"], root, env).stdout)
    metrics = json.loads((root / "metrics/evaluate_detail.json").read_text())
    # DVC's metrics are the headline alone: the test split, model beside gray.
    headline_file = json.loads((root / "metrics/evaluate.json").read_text())
    assert shown[""]["data"] == {"metrics/evaluate.json": {"data": headline_file}}
    test = metrics["test"]
    assert headline_file == {
        "split": "test", "photos": test["images"],
        "ciede2000": test["model"]["ciede2000"], "ciede2000_gray": test["gray"]["ciede2000"],
        "auc": test["model"]["auc"], "auc_gray": test["gray"]["auc"],
        "colourfulness": test["model"]["colourfulness_ratio"]}
    table = run([BIN / "dvc", "metrics", "show"], root, env).stdout.splitlines()
    assert max(map(len, table)) <= 120, table  # readable in a 120-column terminal
    headline = ["ciede2000", "auc", "auc_rebalanced", "psnr", "ssim", "mse_ab",
                "colourfulness_ratio"]
    for split in ("test", "val"):
        assert list(metrics[split]["model"]) == headline
        assert list(metrics[split]["gray"]) == headline
    assert metrics["headline"] == "test" and metrics["head"] == "classification"
    assert (metrics["temperature"], metrics["prior_correction"]) == (0.2, 0.55)
    gray = metrics["test"]["gray"]
    assert gray["colourfulness_ratio"] == 0.0 and gray["mse_ab"] > 0
    for split in ("test", "val"):  # each split's gray error is its own photos' mean ab^2
        labs = LabStore(root / "data/processed" / split).batch(0, metrics[split]["images"])
        assert metrics[split]["gray"]["mse_ab"] == pytest.approx(
            float(np.mean(labs[:, 1:].astype(np.float64) ** 2)), abs=1e-3)
    data = json.loads((root / "metrics/data.json").read_text())
    # 80 tiles of 4 photos: one (p31) is a resized copy of another's crop, and is dropped.
    assert (data["found"], data["used"], data["rejected_by_reason"]) == (
        80, 79, {"near_duplicate": 1})
    assert data["train"] + data["val"] + data["test"] == 79 and data["test"] > 0
    assert (metrics["val"]["images"], metrics["test"]["images"]) == (data["val"], data["test"])
    rows = (root / "plots/tradeoff.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [
        "gray", *(f"T={t} A={a}" for a in (0.55, 0) for t in (1, 0.6, 0.38, 0.2))]
    hints = [r.split(",") for r in (root / "plots/hints.csv").read_text().splitlines()]
    assert hints[0] == ["hints", "model_ciede2000", "gray_ciede2000", "model_psnr", "gray_psnr"]
    assert [int(r[0]) for r in hints[1:]] == [0, 1, 2, 5, 10]
    val = metrics["val"]
    assert float(hints[1][1]) == val["model"]["ciede2000"]  # 0 hints: the operating point
    assert float(hints[1][2]) == val["gray"]["ciede2000"]
    # The default network takes hints (model.hints): with 10 its score moves (on 2 epochs of
    # 60 tiny photos, not necessarily down); gray with the hints painted in improves.
    assert float(hints[-1][1]) != float(hints[1][1])
    assert float(hints[-1][2]) < float(hints[1][2])
    # The prior comes from the training split only and is a distribution.
    prior = np.load(root / "data/prior/ab_prior.npy")
    assert prior.shape == (262,) and abs(prior.sum() - 1) < 1e-9
    # run.json holds no absolute path: a clone elsewhere still finds its store.
    assert str(root) not in (root / "models/run.json").read_text()


def test_second_repro_is_up_to_date_and_a_metric_edit_retrains_nothing(repo):
    root, env = repo
    assert "up to date" in run([BIN / "dvc", "repro"], root, env).stdout.lower()
    metrics_py = root / "src/colorize/evaluate/metrics.py"
    original = metrics_py.read_text()
    metrics_py.write_text(original + "\n# an edit to an evaluation metric\n")
    try:
        status = json.loads(run([BIN / "dvc", "status", "--json"], root, env).stdout)
    finally:
        metrics_py.write_text(original)
    assert set(status) == {"evaluate"}, status  # prepare, preprocess, prior, train up to date


def test_mlflow_run_holds_params_curves_images_datasets_and_tags(repo):
    root, _ = repo
    client = mlflow_client(root)
    run_id = _run_id(root)
    r = client.get_run(run_id)
    # workspace@<commit, "unknown" here: nothing committed>.<training fingerprint>
    assert re.fullmatch(r"workspace@(?:[0-9a-f]{8}|unknown)\.[0-9a-f]{6}", r.info.run_name)
    assert r.data.params["train.epochs"] == "2"
    assert r.data.params["model.head"] == "classification"
    assert r.data.tags["dvc_experiment"] == "workspace"
    assert len(r.data.tags["data_manifest_sha256"]) == 64
    assert [m.step for m in client.get_metric_history(run_id, "training/val_loss")] == [1, 2]
    # Per-epoch curves under training/ (MLflow's first section), throughput under system/
    # (its last); the evaluation's metrics unprefixed, between them.
    sections = {k.split("/")[0] for k in r.data.metrics if "/" in k}
    assert sections == {"training", "system"}
    assert {"training/train_loss", "training/lr", "system/epoch_seconds"} <= set(r.data.metrics)
    assert "eval_model_auc_rebalanced" in r.data.metrics and "eval_gray_auc" in r.data.metrics
    metrics = json.loads((root / "metrics/evaluate_detail.json").read_text())
    assert r.data.tags["eval_split"] == "test"  # eval_* are the test split's, val_* validation's
    assert r.data.metrics["eval_model_ciede2000"] == metrics["test"]["model"]["ciede2000"]
    assert r.data.metrics["val_model_ciede2000"] == metrics["val"]["model"]["ciede2000"]
    contexts = sorted(d.tags[0].value for d in r.inputs.dataset_inputs)
    assert contexts == ["testing", "training", "validation"]
    artifacts = {a.path for a in client.list_artifacts(run_id, "samples")}
    assert {"samples/epoch_001.png", "samples/epoch_002.png"} <= artifacts
    evaluation = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert "evaluation/samples.png" in evaluation and "evaluation/tradeoff.csv" in evaluation
    assert "evaluation/hints.csv" in evaluation
    assert "models/run.json" in (root / "dvc.lock").read_text()


def test_registered_version_is_described_aliased_and_colorizes(repo):
    import base64

    import cv2

    from colorize.imaging import encode_png
    from colorize.predict.service import image_frame

    root, _ = repo
    client = mlflow_client(root)
    version = client.get_model_version_by_alias("colorizer", "workspace")
    assert version.run_id == _run_id(root)
    assert version.tags["pipeline"] == "workspace" and version.tags["head"] == "classification"
    assert version.tags["hints"] == "true"  # the default network takes colour hints
    assert "CIEDE2000" in version.description and "gray" in version.description
    # The registered pyfunc (logged from code) takes image files, answers full-size images,
    # and takes the temperature as a request parameter.
    assert Decoding.from_tags(version.tags) == Decoding(0.2, 0.55)  # what it was evaluated at
    service = mlflow.pyfunc.load_model("models:/colorizer@workspace")
    photo = photo_tiles(1, 50)[0][:, :45]
    request = image_frame([encode_png(photo)])
    answers = [service.predict(request, params=p) for p in (
        {"temperature": 1.0}, {"temperature": 0.2}, {"temperature": 0.2, "prior_correction": 0.55},
        None)]
    outs = [cv2.imdecode(np.frombuffer(base64.b64decode(a["image"][0]), np.uint8),
                         cv2.IMREAD_COLOR) for a in answers]
    assert outs[0].shape == photo.shape
    assert not np.array_equal(outs[0], outs[1])  # T changes the colours
    # No parameters: the evaluated decoding (T 0.2, A 0.55), the same pixels as asking for it.
    assert np.array_equal(outs[2], outs[3])
    # The optional `hints` column passes the signature: a row with a hint is colorized with
    # it (other pixels than without), a row with a bad hint gets its error, the others as usual.
    hinted = request.assign(hints=['[[20, 25, "#ff0000", 9]]'])
    bad = image_frame([encode_png(photo)]).assign(hints=['[[99, 1, "#ff0000"]]'])
    answer = service.predict(pd.concat([hinted, bad, request], ignore_index=True))
    assert answer["error"][0] == "" and answer["error"][2] == ""
    assert "outside the photo" in answer["error"][1] and answer["image"][1] == ""
    with_hint, without = (cv2.imdecode(np.frombuffer(base64.b64decode(answer["image"][k]),
                                                     np.uint8), cv2.IMREAD_COLOR) for k in (0, 2))
    assert np.array_equal(without, outs[3]) and not np.array_equal(with_hint, without)
    assert list(answers[0].columns) == ["image", "error"]
    with pytest.raises(Exception, match="temperature"):
        service.predict(image_frame([encode_png(photo)]), params={"temperature": -1.0})
    # The network itself is logged with the torch flavour beside it.
    logged = mlflow.search_logged_models(
        experiment_ids=[client.get_run(_run_id(root)).info.experiment_id],
        filter_string=f"source_run_id = '{_run_id(root)}' AND name = 'model'",
        output_format="list")
    net = mlflow.pytorch.load_model(logged[0].model_uri)
    with torch.no_grad():
        logits = net(torch.zeros(1, 1, 32, 32))
    assert logits.shape == (1, 262, 8, 8) and torch.isfinite(logits).all()  # 1/4 size


def test_predict_accepts_every_model_spec(repo, monkeypatch):
    from colorize.predict.load import resolve
    from colorize.predict.photo import colorize_batch

    root, _ = repo
    monkeypatch.chdir(root / "data")  # a subfolder: the repository is found from its root
    photo = photo_tiles(3, 64)[2][:50]
    outputs = []
    for spec in (None, str(root / "models/model.pt"), "models:/colorizer@workspace",
                 "models:/colorizer/1", f"runs:/{_run_id(root)}"):
        found = resolve(spec)
        assert found.size == 32, spec
        # A registry version brings the decoding it was evaluated at; a file or a run none.
        registered = spec is not None and spec.startswith("models:/")
        assert found.decoding == (Decoding(0.2, 0.55) if registered else None), spec
        outputs.append(colorize_batch(found.model, found.size, [photo], Decoding(0.2, 0.5),
                                      amp="off")[0])
    for out in outputs[1:]:
        assert np.array_equal(out, outputs[0])
    assert not (root / "data" / "mlflow.db").exists()
    # What the browser app offers besides the workspace file: the aliases and every version,
    # each with the test metrics of its run.
    from colorize.predict.load import registered_specs

    specs = registered_specs("colorizer")
    assert specs.index("models:/colorizer@workspace") < specs.index("models:/colorizer/1")
    metrics = resolve("models:/colorizer@workspace").metrics
    evaluated = json.loads((root / "metrics/evaluate_detail.json").read_text())["test"]
    assert metrics["eval_model_ciede2000"] == pytest.approx(evaluated["model"]["ciede2000"])
    assert registered_specs("no-such-model") == []


def test_plots_render_offline(repo):
    root, env = repo
    run([BIN / "dvc", "plots", "show", "-o", "dvc_plots"], root, env)
    html = (root / "dvc_plots/index.html").read_text()
    assert "<script src=\"http" not in html and "cdn.jsdelivr" not in html
    assert "samples.png" in html and "ab_prior.png" in html
    assert "colourfulness ratio" in html  # axis titles
    # The trade-off's points are named (gray, T=0.2 A=0.55, ...): a text mark on the predictor.
    assert '"text": {"field": "predictor", "type": "nominal"}' in html


def test_dvc_exp_run_is_its_own_run_and_moves_no_alias(repo):
    root, env = repo
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    before = mlflow_client(root).get_model_version_by_alias("colorizer", "workspace").version
    run([BIN / "dvc", "exp", "run", "-n", "regression-try", "-S", "model.head=regression"],
        root, env)
    client = mlflow_client(root)
    runs = client.search_runs([mlflow.get_experiment_by_name("colorize").experiment_id],
                              filter_string="params.`model.head` = 'regression'")
    assert len(runs) == 1 and runs[0].info.run_name == "regression-try"
    assert runs[0].data.tags["dvc_experiment"] == "regression-try"
    assert "eval_model_auc_rebalanced" in runs[0].data.metrics
    assert client.get_model_version_by_alias("colorizer", "workspace").version == before
    versions = client.search_model_versions("name = 'colorizer' AND tag.pipeline = "
                                            "'regression-try'")
    assert len(versions) == 1 and versions[0].tags["head"] == "regression"
