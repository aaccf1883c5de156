"""The model file (models/model.pt): weights plus the plain values needed to rebuild the network.

Loaded with `torch.load(weights_only=True)`: a file someone hands you may hold tensors and plain
values only, never code, so opening a model file cannot run anything. A file that is not a
colorize model (or that tries to smuggle in objects) is refused with a ModelError.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from colorize.errors import UserError
from colorize.files import atomic_path
from colorize.model.network import Colorizer

FORMAT = "colorize-model/2"


class ModelError(UserError):
    """A model spec or file that cannot be used."""


def architecture(model: Colorizer) -> dict[str, Any]:
    return {"head": model.head, "trunk_depth": model.trunk_depth,
            "decoder_width": model.decoder_width, "logit_stride": model.logit_stride}


def build(arch: dict[str, Any]) -> Colorizer:
    return Colorizer(int(arch["decoder_width"]), str(arch["head"]), int(arch["trunk_depth"]),
                     int(arch.get("logit_stride", 4)))


def save_model(model: Colorizer, path: str | Path, size: int, meta: dict | None = None) -> None:
    """The deliverable: best weights plus what is needed to rebuild and use them."""
    state = {"format": FORMAT, "state_dict": model.state_dict(), "model": architecture(model),
             "size": int(size), "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_state(path: str | Path) -> dict:
    """torch.load with weights_only=True, with every failure turned into a ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        with warnings.catch_warnings():  # "pickle protocol" warnings for foreign files
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and values
        raise ModelError(f"{path}: refused: the file holds objects other than tensors and plain "
                         "values, and loading it could run code; use a model file made by "
                         "colorize train") from None
    except Exception as e:  # a foreign or damaged file fails in many ways inside the unpickler
        raise ModelError(f"{path}: not a readable model file ({type(e).__name__}); use a "
                         "model file made by colorize train") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a colorize model file")
    return state


def load_model(path: str | Path) -> tuple[Colorizer, int, dict]:
    """-> (model in eval mode on CPU, working size, meta). Reads models/model.pt files and
    training checkpoints (last.pt)."""
    state = read_state(path)
    if state.get("format") == FORMAT:
        model, size, meta = build(state["model"]), state["size"], state.get("meta", {})
        weights = state["state_dict"]
    elif "model" in state and "settings" in state:  # a training checkpoint
        s = state["settings"]
        model = build({k.split(".", 1)[1]: v for k, v in s.items() if k.startswith("model.")})
        size, weights = s["preprocess.size"], state["model"]
        meta = {"epochs_done": len(state.get("history", [])), "checkpoint": True}
    else:
        raise ModelError(f"{path}: not a colorize model file (expected {FORMAT} or a training "
                         "checkpoint); retrain, or convert it with a matching colorize version")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the recorded architecture "
                         f"({str(e).splitlines()[0][:120]})") from None
    return model.eval(), int(size), meta
