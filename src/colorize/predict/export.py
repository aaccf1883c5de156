"""`colorize export`: the network with its decoding as ONNX, checked against PyTorch.

Inputs: `L` (N, 1, H, W) float32, L*/50 - 1, H and W multiples of 8; for the classification
head also `temperature` and `prior_correction`, one-element float32 tensors (the correction
and the annealed mean are inside the graph); for a model trained with hints also `hints`
(N, 3, H, W): a*/110, b*/110 and a mask, 1 where a hint is (model/hints.py).
Output: `ab` (N, 2, H, W), ab / 110. LAB conversion, resizing and the full-resolution join stay
with the caller: predict/photo.py shows the method. The decoding `colorize predict` would use
for this model (colorize/decoding.py: the registry version's, else params.yaml's) is recorded
in the file's metadata (`temperature`, `prior_correction`) as the suggested inputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from colorize.config import repository_decoding
from colorize.decoding import NEUTRAL, Decoding, resolve
from colorize.model.hints import simulate
from colorize.model.network import WithDecoding
from colorize.predict.load import resolve as resolve_model

TOLERANCE = 1e-4  # max abs difference on normalized ab (x110 = ab units)
# How a caller feeds the graph and reads it, in the file's metadata (and `colorize export -h`).
SCALING = {"input_L": "float32 (N, 1, H, W): L* / 50 - 1 (L* in [0, 100] -> [-1, 1]); H and W "
                      "multiples of 8 (the network's working size: `working_size`)",
           "input_hints": "float32 (N, 3, H, W): a* / 110, b* / 110 and a mask (1 where a hint "
                          "is, 0 elsewhere, with zeros in a*, b*)",
           "output_ab": "float32 (N, 2, H, W): a* / 110, b* / 110; join with the photo's own L* "
                        "and convert LAB -> sRGB (D65)",
           "decoding_inputs": "temperature, prior_correction: one-element float32 tensors "
                              "(classification head; suggested values below)"}


def export_onnx(spec: str | None, out: str | Path, opset: int = 17) -> dict:
    found = resolve_model(spec, device="cpu")  # the exporter's example inputs are on the CPU
    print(f"model: {found.description}")
    net, size = found.model, found.size
    classification = net.config.head == "classification"
    graph = WithDecoding(net).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = graph.input_names
    example = _inputs(names, np.zeros((1, 1, size, size), np.float32), NEUTRAL,
                      np.zeros((1, 3, size, size), np.float32))
    image = {0: "batch", 2: "height", 3: "width"}
    axes = {"L": image, "ab": image, **({"hints": image} if "hints" in names else {})}
    tmp = out.with_name(f".{out.name}.tmp")
    with warnings.catch_warnings():
        # The tracer warns about two things that are constant by construction: the input's
        # channel count (fixed for one exported graph) and the bin centres (fixed data).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(graph, example, str(tmp), dynamo=False, input_names=names,
                          output_names=["ab"], opset_version=opset, dynamic_axes=axes)
    diff = check(graph, tmp, size)
    suggested = (resolve(None, None, found.decoding, repository_decoding())
                 if classification else None)
    scaling = {k: v for k, v in SCALING.items()
               if (k != "input_hints" or net.config.hints)
               and (k != "decoding_inputs" or classification)}
    _add_metadata(tmp, {"working_size": str(size), "head": net.config.head,
                        "hints": str(net.config.hints).lower(), **scaling,
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


def _inputs(names: list[str], L: np.ndarray, decoding: Decoding, hints: np.ndarray
            ) -> tuple[torch.Tensor, ...]:
    values = {"L": L, "temperature": np.array([decoding.temperature], np.float32),
              "prior_correction": np.array([decoding.prior_correction], np.float32),
              "hints": hints}
    return tuple(torch.from_numpy(values[n]) for n in names)


def check(graph: WithDecoding, path: Path, size: int) -> float:
    """Largest difference between onnxruntime and PyTorch on random inputs (and, for the
    classification head, at two decodings; for a hint model, with hints)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    L = rng.uniform(-1, 1, (2, 1, size, size)).astype(np.float32)
    hints = np.stack([simulate(rng.uniform(-60, 60, (2, size, size)), rng, count=5)
                      for _ in range(2)])
    diff = 0.0
    classification = "temperature" in graph.input_names
    for d in [NEUTRAL, Decoding(0.2, 0.5)] if classification else [NEUTRAL]:
        args = _inputs(graph.input_names, L, d, hints)
        with torch.no_grad():
            expected = graph(*args).numpy()
        feed = {n: a.numpy() for n, a in zip(graph.input_names, args, strict=True)}
        diff = max(diff, float(np.abs(session.run(None, feed)[0] - expected).max()))
    if diff > TOLERANCE:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX output differs from PyTorch by {diff} > {TOLERANCE}")
    return diff
