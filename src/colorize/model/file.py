"""The model file (models/model.pt): weights plus the plain values needed to rebuild the network.

    {"format": "colorize-model/3", "model": <params.yaml's model section>, "size": working size,
     "state_dict": weights, "meta": {"best_epoch", "run_id", "experiment", ...}}

Training checkpoints (train/checkpoint.py) hold the same dict under "network", so a checkpoint
can be used like a model file. Files are read with `torch.load(weights_only=True)`: a file
someone hands you may hold tensors and plain values only, never code, so opening a model file
cannot run anything. A file that is not a colorize model (or that tries to smuggle in objects)
is refused with a ModelError. Files of format 2 (the network's parts numbered, not named) are
read too: the weights are the same tensors in the same order. Model sections written before a
part became optional lack its key (ADDED_KEYS): they read as that part off, which is what they
built.

Bounded before anything is built: the archive must be torch.save's (a zip of uncompressed
records, so nothing is inflated; the tensors are memory-mapped, not read), its recorded
architecture and working size must be ones this version builds (params.yaml's bounds), and
every tensor's name and shape must be what that architecture expects (checked on a network
built on the meta device: no memory, no initialisation) before the weights are assigned.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter, ValidationError

from colorize.config import ModelSettings, Multiple8
from colorize.device import pick_device
from colorize.errors import UserError, shortened
from colorize.files import atomic_path
from colorize.model.network import Colorizer

FORMAT = "colorize-model/3"
FORMAT_V2 = "colorize-model/2"
CHECKPOINT_FORMAT = "colorize-checkpoint/2"
# model section keys added since format 3, with the value every earlier file built
ADDED_KEYS = {"global_context": False, "hints": False}
# The pickled part of a model file (names, values, tensor references) is a few hundred KB.
MAX_PICKLE_BYTES = 64 << 20


class ModelError(UserError):
    """A model spec or file that cannot be used."""


def build(arch: Any, where: str = "model") -> Colorizer:
    """The network a model section describes (validated like params.yaml's); ModelError naming
    the bad field."""
    return Colorizer(_validated(ModelSettings, arch, where))


def _validated(kind: Any, value: Any, where: str) -> Any:
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as e:
        error = e.errors()[0]
        field = ".".join([where, *(shortened(str(part)) for part in error["loc"])])
        raise ModelError(f"{field}: {error['msg']} (got {shortened(repr(error.get('input')))})"
                         ) from None


def network_entry(model: Colorizer, size: int, meta: dict | None = None) -> dict:
    """The model file's content (also a training checkpoint's "network")."""
    return {"format": FORMAT, "state_dict": model.state_dict(),
            "model": model.config.model_dump(), "size": int(size), "meta": meta or {}}


def save_model(model: Colorizer, path: str | Path, size: int, meta: dict | None = None) -> None:
    """The deliverable: best weights plus what is needed to rebuild and use them."""
    with atomic_path(path) as tmp:
        torch.save(network_entry(model, size, meta), tmp)


def read_state(path: str | Path) -> dict:
    """torch.load with weights_only=True and the tensors memory-mapped, after checking the
    archive (see the module docstring); every failure is a ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # "pickle protocol" warnings for foreign files
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
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


def _check_archive(path: Path) -> None:
    """torch.save writes a zip of uncompressed records: anything else would be unpickled from
    a stream or inflated into memory before a single check."""
    try:
        with zipfile.ZipFile(path) as zf:
            records = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ModelError(f"{path}: not a readable model file (not written by torch.save); use "
                         "a model file made by colorize train") from None
    for r in records:
        if r.compress_type != zipfile.ZIP_STORED:
            raise ModelError(f"{path}: refused: its record {r.filename} is compressed, which "
                             "torch.save never writes")
        if r.filename.endswith(".pkl") and r.file_size > MAX_PICKLE_BYTES:
            raise ModelError(f"{path}: refused: its record {r.filename} holds {r.file_size} "
                             f"bytes (at most {MAX_PICKLE_BYTES})")


def load_model(path: str | Path, device: str = "cpu") -> tuple[Colorizer, int, dict]:
    """-> (model in eval mode on `device`, working size, meta). Reads model files and training
    checkpoints (last.pt: the weights after its last epoch). `device` as train.device: "auto"
    (the GPU where there is one: prediction, serving, evaluation), "cpu" or "cuda"."""
    state = read_state(path)
    extra: dict = {}
    if state.get("format") == CHECKPOINT_FORMAT:
        extra = {"epochs_done": len(_field(state, "history", list, path, optional=True)),
                 "checkpoint": True}
        state = _field(state, "network", dict, path)
    if state.get("format") == FORMAT_V2:
        state = _upgrade_v2(state, path)
    if state.get("format") != FORMAT:
        raise ModelError(f"{path}: not a colorize model file (expected {FORMAT} or a training "
                         "checkpoint); retrain, or convert it with a matching colorize version")
    config = _validated(ModelSettings, {**ADDED_KEYS, **_field(state, "model", dict, path)},
                        f"{path}: model")
    size = _validated(Multiple8, state.get("size"), f"{path}: size")
    meta = _meta(_field(state, "meta", dict, path, optional=True), path)
    weights = _field(state, "state_dict", dict, path)
    with torch.device("meta"):  # the expected tensors, without memory or initialisation
        model = Colorizer(config)
    _check_tensors(weights, model.state_dict(), path)
    model.load_state_dict(weights, assign=True)
    return model.to(pick_device(device)).eval(), size, {**meta, **extra}


def _field(state: dict, key: str, kind: type, path: str | Path, optional: bool = False) -> Any:
    value = state.get(key, kind() if optional else None)
    if not isinstance(value, kind):
        raise ModelError(f"{path}: {key}: expected a {kind.__name__}, got "
                         f"{type(value).__name__}")
    return value


# The meta values that are shown (predict/load.py), with their types; "checkpoint" and
# "epochs_done" are not the file's to claim: load_model sets them for training checkpoints.
_META = {"run_id": str, "best_epoch": int, "experiment": str}
_META_SET_HERE = ("checkpoint", "epochs_done")


def _meta(meta: dict, path: str | Path) -> dict:
    for key, kind in _META.items():
        if key in meta and not isinstance(meta[key], kind):
            raise ModelError(f"{path}: meta.{key}: expected a {kind.__name__}, got "
                             f"{type(meta[key]).__name__}")
    return {k: v for k, v in meta.items() if k not in _META_SET_HERE}


def _check_tensors(weights: dict, expected: dict, path: str | Path) -> None:
    """Every tensor the architecture needs, with its shape and dtype, and no other. (A float
    tensor of another precision would be assigned as it is, and fail at the first photo.)"""
    missing, extra = expected.keys() - weights.keys(), weights.keys() - expected.keys()
    if missing or extra:
        def names(keys: set) -> str:  # keys of a crafted file: any type, any length
            return "[" + ", ".join(sorted(shortened(repr(k)) for k in keys)[:3]) + "]"

        raise ModelError(f"{path}: weights do not fit the recorded architecture (missing "
                         f"{names(missing)}, unexpected {names(extra)})")
    for name, ref in expected.items():
        t = weights[name]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(ref.shape):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            want = tuple(ref.shape)
        elif t.dtype != ref.dtype and (t.dtype.is_floating_point or ref.dtype.is_floating_point):
            got, want = (str(x.dtype).removeprefix("torch.") for x in (t, ref))
        else:
            continue
        raise ModelError(f"{path}: weights do not fit the recorded architecture ({name}: "
                         f"{got}, expected {want})")


def _upgrade_v2(state: dict, path: str | Path) -> dict:
    """Format 2 numbered the network's parts (trunk.5, decoder.7, ...); format 3 names them.
    The modules were built in the same order, so the tensors pair up in order (checked by
    shape). Format 2's model section may lack logit_stride, which was then always 4."""
    arch = {"logit_stride": 4, **ADDED_KEYS, **_field(state, "model", dict, path)}
    with torch.device("meta"):
        names = build(arch, f"{path}: model").state_dict()
    old = _field(state, "state_dict", dict, path)
    if len(old) != len(names) or any(
            not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(ref.shape)
            for t, ref in zip(old.values(), names.values(), strict=True)):
        raise ModelError(f"{path}: a {FORMAT_V2} file whose weights do not fit its recorded "
                         "architecture; retrain")
    return {**state, "format": FORMAT, "model": arch,
            "state_dict": dict(zip(names, old.values(), strict=True))}
