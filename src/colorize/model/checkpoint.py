"""The model file: weights and the few plain values needed to rebuild the network.

Loaded with `torch.load(weights_only=True)`: a file someone hands you can hold tensors and plain
values only, never code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from colorize.files import atomic_path
from colorize.model.network import Colorizer


def save_model(model: Colorizer, path: str | Path, size: int, meta: dict | None = None) -> None:
    """The deliverable: best weights plus what is needed to rebuild and use them."""
    state = {"state_dict": model.state_dict(), "decoder_width": model.decoder_width,
             "size": size, "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(path: str | Path) -> tuple[Colorizer, int]:
    """-> (model in eval mode on CPU, working size)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = Colorizer(state["decoder_width"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), int(state["size"])
