"""The model file (models/model.pt): weights plus the plain values needed to rebuild the network.

    {"format": "colorize-model/3", "model": <params.yaml's model section>, "size": working size,
     "state_dict": weights, "meta": {"best_epoch", "run_id", "experiment", ...}}

Training checkpoints (train/checkpoint.py) hold the same dict under "network", so a checkpoint
can be used like a model file. Files are read with `torch.load(weights_only=True)`: a file
someone hands you may hold tensors and plain values only, never code, so opening a model file
cannot run anything. A file that is not a colorize model (or that tries to smuggle in objects)
is refused with a ModelError. Files of format 2 (the network's parts numbered, not named) are
read too: the weights are the same tensors in the same order.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from colorize.config import ModelSettings
from colorize.errors import UserError
from colorize.files import atomic_path
from colorize.model.network import Colorizer

FORMAT = "colorize-model/3"
FORMAT_V2 = "colorize-model/2"
CHECKPOINT_FORMAT = "colorize-checkpoint/2"


class ModelError(UserError):
    """A model spec or file that cannot be used."""


def build(arch: dict[str, Any]) -> Colorizer:
    """The network a model section describes (validated like params.yaml's)."""
    try:
        return Colorizer(ModelSettings.model_validate(arch))
    except ValidationError as e:
        error = e.errors()[0]
        raise ModelError(f"model.{'.'.join(map(str, error['loc']))}: {error['msg']} "
                         f"(got {error.get('input')!r})") from None


def network_entry(model: Colorizer, size: int, meta: dict | None = None) -> dict:
    """The model file's content (also a training checkpoint's "network")."""
    return {"format": FORMAT, "state_dict": model.state_dict(),
            "model": model.config.model_dump(), "size": int(size), "meta": meta or {}}


def save_model(model: Colorizer, path: str | Path, size: int, meta: dict | None = None) -> None:
    """The deliverable: best weights plus what is needed to rebuild and use them."""
    with atomic_path(path) as tmp:
        torch.save(network_entry(model, size, meta), tmp)


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
    """-> (model in eval mode on CPU, working size, meta). Reads model files and training
    checkpoints (last.pt: the weights after its last epoch)."""
    state = read_state(path)
    meta: dict = {}
    if state.get("format") == CHECKPOINT_FORMAT:
        meta = {"epochs_done": len(state.get("history", [])), "checkpoint": True}
        state = state["network"]
    if state.get("format") == FORMAT_V2:
        state = _upgrade_v2(state, path)
    if state.get("format") != FORMAT:
        raise ModelError(f"{path}: not a colorize model file (expected {FORMAT} or a training "
                         "checkpoint); retrain, or convert it with a matching colorize version")
    model = build(state["model"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the recorded architecture "
                         f"({str(e).splitlines()[0][:120]})") from None
    return model.eval(), int(state["size"]), {**state.get("meta", {}), **meta}


def _upgrade_v2(state: dict, path: str | Path) -> dict:
    """Format 2 numbered the network's parts (trunk.5, decoder.7, ...); format 3 names them.
    The modules were built in the same order, so the tensors pair up in order (checked by
    shape). Format 2's model section may lack logit_stride, which was then always 4."""
    arch = {"logit_stride": 4, **state["model"]}
    names = build(arch).state_dict()
    old = state["state_dict"]
    if len(old) != len(names) or any(
            tuple(t.shape) != tuple(ref.shape)
            for t, ref in zip(old.values(), names.values(), strict=True)):
        raise ModelError(f"{path}: a {FORMAT_V2} file whose weights do not fit its recorded "
                         "architecture; retrain")
    return {**state, "format": FORMAT, "model": arch,
            "state_dict": dict(zip(names, old.values(), strict=True))}
