"""bench/gpu.py, the GPU readiness check, dry-run on the CPU: a real subprocess with --tiny on 64
tiny real photos, whose JSON must show every section run and passed (the served row needs
mlflow: skipped only where it is absent), and whose outputs are checked here again."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import pytest

from conftest import REPO, bench_script, photo_tiles

SCRIPT = REPO / "bench" / "gpu.py"
SECTIONS = {"training", "ddp", "eval", "predict", "served", "onnx"}


def photo_archive(path: Path, n: int = 64, size: int = 96) -> Path:
    """A tar of n distinct real photos (JPEG tiles of scikit-image's), as --archive takes."""
    with tarfile.open(path, "w") as tar:
        for i, tile in enumerate(photo_tiles(n, size)):
            data = cv2.imencode(".jpg", cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))[1].tobytes()
            info = tarfile.TarInfo(f"photos/p{i:03d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("gpu")
    archive = photo_archive(tmp / "photos.tar")
    # One OpenMP thread: on CPUs shared with other work, spinning OpenMP teams make each step
    # take seconds instead of milliseconds.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--archive",
                          str(archive), "--out", str(tmp / "gpu.json"), "--work", str(tmp / "w")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr[-4000:]}"
    return json.loads((tmp / "gpu.json").read_text()), tmp / "w", out


def rows(report: dict, section: str) -> list[dict]:
    return [r for r in report["rows"] if r["section"] == section]


def image_size(path: str | Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


@pytest.mark.slow
def test_every_section_runs_and_the_table_is_printed(dry_run):
    import torch

    report, _, out = dry_run
    assert {r["section"] for r in report["rows"]} == SECTIONS
    h = report["header"]
    assert h["device"] == "cpu" and h["torch"] == torch.__version__ and h["tiny"]
    assert h["commit"] and h["date"] and h["device_name"]
    # Nothing but the served row may import what the GPU machine lacks.
    assert h["forbidden_imported_before_served"] == []
    assert "| section | what | setting | device | precision |" in out.stdout
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(report["rows"])  # one line per row, under the header line
    assert not [r for r in report["rows"] if r["result"].startswith("FAIL")]


@pytest.mark.slow
def test_training_rows_step_at_each_precision_and_learn(dry_run):
    report, _, _ = dry_run
    training = rows(report, "training")
    assert [r["what"].split(" + ")[1] for r in training] == [
        "channels_last", "GradScaler", "torch.compile"]
    for r in training:
        assert r["result"] == "PASS", r
        assert r["images_per_s"] > 0 and r["model_only_images_per_s"] > 0 and r["ratio"] > 0
        assert r["memory_mb"] > 0
        for phase in ("a", "b"):  # "loss 5.37 -> 4.47 over 9 steps"
            first, last = (float(x) for x in r["details"][f"loss_{phase}"].split()[1:4:2])
            assert last < first
        assert r["details"]["weights_channels_last"]
    bf16, fp16, compiled = training
    assert bf16["details"]["autocast_output_dtype"] == "bfloat16"
    assert not bf16["details"]["grad_scaler"]
    assert fp16["details"]["autocast_output_dtype"] == "float16"
    assert fp16["details"]["grad_scaler"] and fp16["details"]["final_loss_scale"] > 0
    assert "backend aot_eager" in compiled["setting"]


@pytest.mark.slow
def test_ddp_steps_like_one_process_and_resumes_after_the_kill(dry_run):
    from colorize.model.file import read_state

    report, work, _ = dry_run
    check, kill = rows(report, "ddp")
    assert check["result"] == "PASS", check
    assert check["details"]["backend"] == "gloo" and check["details"]["world"] == 1
    assert check["details"]["max_weight_diff"] <= 1e-5
    assert kill["result"] == "PASS", kill
    d = kill["details"]
    assert d["checkpoint_epochs"] == 1 and d["resumed_from"] == 1 and d["epochs"] == [1, 2, 3]
    assert "after epoch 1" in d["resumed_line"] and d["forbidden_imported"] == []
    # The resumed run finished: its checkpoint holds all three epochs.
    assert len(read_state(work / "ddp-checkpoints" / "last.pt")["history"]) == 3


@pytest.mark.slow
def test_evaluation_on_the_device_matches_the_cpu(dry_run):
    report, _, _ = dry_run
    (row,) = rows(report, "eval")
    assert row["result"] == "PASS", row
    assert row["details"]["max_abs_diff_tf32"] <= 1e-3
    assert row["details"]["device"] == row["details"]["cpu"]  # one device: identical metrics
    assert len(row["details"]["cpu"]) == 4  # evaluate.temperatures


@pytest.mark.slow
def test_predict_writes_each_photo_at_its_size(dry_run):
    report, work, _ = dry_run
    photo, folder, scan = rows(report, "predict")
    assert photo["result"] == folder["result"] == "PASS", (photo, folder)
    assert [image_size(p) for p in photo["details"]["written"]] == [(1920, 1080)]
    written = folder["details"]["written"]
    assert len(written) == 8 and {image_size(p) for p in written} == {(256, 256)}
    assert all(Path(p).is_relative_to(work / "predict") for p in written)
    assert scan["result"].startswith("skipped:") and "--scan" in scan["result"]


@pytest.mark.slow
def test_served_model_runs_where_mlflow_is_installed(dry_run):
    report, _, _ = dry_run
    (row,) = rows(report, "served")
    if importlib.util.find_spec("mlflow") is None:
        assert row["result"] == "skipped: mlflow not installed"
    else:
        assert row["result"] == "PASS", row
        assert row["details"]["sizes"] == [[1920, 1080], [256, 256]]


@pytest.mark.slow
def test_onnx_export_matches_torch(dry_run):
    import onnxruntime as ort

    report, _, _ = dry_run
    (row,) = rows(report, "onnx")
    assert row["result"] == "PASS", row
    assert row["details"]["max_abs_diff_cpu"] <= 1e-4
    assert row["details"]["max_abs_diff_device"] <= 1e-3
    session = ort.InferenceSession(row["details"]["path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["L", "temperature", "prior_correction",
                                                      "hints"]


def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys):
    gpu = bench_script("gpu")
    assert gpu.main(["--device", "cpu", "--archive", str(tmp_path / "none.tar")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --archive") and "\n" not in err
    assert gpu.main(["--device", "cpu", "--crops", "60", "--archive", str(SCRIPT)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --crops")
    few = photo_archive(tmp_path / "few.tar", n=3, size=40)
    assert gpu.main(["--device", "cpu", "--tiny", "--archive", str(few), "--work",
                     str(tmp_path / "w")]) == 2
    assert "3 photos, need 16" in capsys.readouterr().err


def test_loss_falls_needs_finite_falling_losses():
    gpu = bench_script("gpu")
    assert gpu.loss_falls([5.0, 4.9, 4.5, 4.0])[0]
    assert not gpu.loss_falls([4.0, 4.5, 4.9, 5.0])[0]
    assert not gpu.loss_falls([5.0, float("nan"), 4.0, 3.0])[0]
    assert not gpu.loss_falls([])[0]
