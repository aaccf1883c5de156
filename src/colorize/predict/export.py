"""`colorize export`: the network as ONNX (L normalized in, ab normalized out, any size /8).

Pre- and post-processing (LAB, resizing, joining with the full-resolution L) stay with the
caller: see predict/photo.py for the method. Outputs are checked against PyTorch after export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from colorize.predict.load import resolve

TOLERANCE = 1e-4  # max abs difference on normalized ab (x110 = ab units), measured ~2e-7


def export_onnx(spec: str | None, out: str | Path, opset: int = 17) -> dict:
    model, size = resolve(spec)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 1, size, size)
    torch.onnx.export(model, (example,), str(out), dynamo=False, input_names=["L"],
                      output_names=["ab"], opset_version=opset,
                      dynamic_axes={"L": {0: "batch", 2: "height", 3: "width"},
                                    "ab": {0: "batch", 2: "height", 3: "width"}})
    diff = check(model, out, size)
    print(f"wrote {out} (working size {size}); max |onnx - torch| = {diff:.2e} "
          f"(tolerance {TOLERANCE:g})")
    return {"path": str(out), "size": size, "max_abs_diff": diff}


def check(model: torch.nn.Module, path: Path, size: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 1, size, size))
                         .astype(np.float32))
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"L": x.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > TOLERANCE:
        raise RuntimeError(f"ONNX output differs from PyTorch by {diff} > {TOLERANCE}")
    return diff
