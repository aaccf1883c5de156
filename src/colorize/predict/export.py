"""`colorize export`: the network with its decoding as ONNX, checked against PyTorch.

Inputs: `L` (N, 1, H, W) float32, L*/50 - 1, H and W multiples of 8; for the classification
head also `temperature` and `prior_correction`, one-element float32 tensors (the correction
and the annealed mean are inside the graph).
Output: `ab` (N, 2, H, W), ab / 110. LAB conversion, resizing and the full-resolution join stay
with the caller: predict/photo.py shows the method. The decoding `colorize predict` would use
for this model (colorize/decoding.py: the registry version's, else params.yaml's) is recorded
in the file's metadata (`temperature`, `prior_correction`) as the suggested inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from colorize.config import repository_decoding
from colorize.decoding import NEUTRAL, Decoding, resolve
from colorize.model.network import WithDecoding
from colorize.predict.load import resolve as resolve_model

TOLERANCE = 1e-4  # max abs difference on normalized ab (x110 = ab units)


def export_onnx(spec: str | None, out: str | Path, opset: int = 17) -> dict:
    found = resolve_model(spec)
    print(f"model: {found.description}")
    net, size = found.model, found.size
    classification = net.config.head == "classification"
    graph = WithDecoding(net).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(1, 1, size, size),)
    names = ["L"]
    if classification:
        example += (torch.ones(1), torch.zeros(1))
        names += ["temperature", "prior_correction"]
    axes = {"L": {0: "batch", 2: "height", 3: "width"}, "ab": {0: "batch", 2: "height",
                                                              3: "width"}}
    tmp = out.with_name(f".{out.name}.tmp")
    torch.onnx.export(graph, example, str(tmp), dynamo=False, input_names=names,
                      output_names=["ab"], opset_version=opset, dynamic_axes=axes)
    diff = check(graph, tmp, size)
    suggested = (resolve(None, None, found.decoding, repository_decoding())
                 if classification else None)
    _add_metadata(tmp, {"working_size": str(size), "head": net.config.head,
                        **(suggested.tags() if suggested else {})})
    tmp.replace(out)
    print(f"wrote {out} ({net.config.head} head, working size {size}"
          + (f", suggested {suggested.label()}" if suggested else "")
          + f"); max |onnx - torch| = {diff:.2e} (tolerance {TOLERANCE:g})")
    return {"path": str(out), "size": size, "max_abs_diff": diff, "decoding": suggested}


def _add_metadata(path: Path, values: dict[str, str]) -> None:
    import onnx

    graph = onnx.load(str(path))
    for key, value in values.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))


def check(graph: WithDecoding, path: Path, size: int) -> float:
    """Largest difference between onnxruntime and PyTorch on random inputs (and, for the
    classification head, at two decodings)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 1, size, size))
                         .astype(np.float32))
    classification = graph.net.config.head == "classification"
    decoded = [NEUTRAL, Decoding(0.2, 0.5)] if classification else [None]
    diff = 0.0
    for d in decoded:
        feed = {"L": x.numpy()}
        args = (x,)
        if d is not None:
            feed["temperature"] = np.array([d.temperature], np.float32)
            feed["prior_correction"] = np.array([d.prior_correction], np.float32)
            args += (torch.tensor([d.temperature]), torch.tensor([d.prior_correction]))
        with torch.no_grad():
            expected = graph(*args).numpy()
        diff = max(diff, float(np.abs(session.run(None, feed)[0] - expected).max()))
    if diff > TOLERANCE:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX output differs from PyTorch by {diff} > {TOLERANCE}")
    return diff
