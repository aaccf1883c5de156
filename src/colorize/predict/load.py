"""Resolve a model spec: a checkpoint path, models:/name@alias, runs:/<id>/model, or the default."""

from __future__ import annotations

from pathlib import Path

import torch

from colorize.model.checkpoint import load_model
from colorize.model.network import Colorizer

DEFAULT_MODEL = "models/model.pt"


def resolve(spec: str | None) -> tuple[Colorizer, int]:
    """-> (model in eval mode on CPU, working size)."""
    if spec is None:
        spec = DEFAULT_MODEL if Path(DEFAULT_MODEL).exists() else "models:/colorizer@newest"
    if spec.startswith(("models:/", "runs:/")):
        return _from_mlflow(spec)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such model file (give a checkpoint path, "
                                "models:/colorizer@<alias> or runs:/<run id>/model)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" in state:  # models/model.pt
        return load_model(path)
    if "model" in state and "settings" in state:  # a training checkpoint (last.pt)
        s = state["settings"]
        model = Colorizer(int(s["model.decoder_width"]))
        model.load_state_dict(state["model"])
        return model.eval(), int(s["preprocess.size"])
    raise ValueError(f"{spec}: not a colorize model or checkpoint")


class Exported(torch.nn.Module):
    """A torch.export graph (traced in eval mode) behind the nn.Module interface predict uses."""

    def __init__(self, graph: torch.nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.graph(L)

    def train(self, mode: bool = True) -> Exported:
        return self  # the graph is fixed in eval mode; switching modes is not supported


def _from_mlflow(uri: str) -> tuple[Colorizer, int]:
    import mlflow

    from colorize.track.mlflow_run import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    info = mlflow.models.get_model_info(uri)
    if "pytorch" in info.flavors:  # the network logged with mlflow.pytorch
        size = (info.metadata or {}).get("working_size")
        if size is None:  # fall back to the signature's input shape (N, 1, S, S)
            size = info.signature.inputs.inputs[0].shape[-1]
        net = mlflow.pytorch.load_model(uri, map_location="cpu")
        if isinstance(net, torch.export.ExportedProgram):
            net = net.module()
        if not isinstance(net, Colorizer):  # MLflow's default "pt2" format: an exported graph
            net = Exported(net)
        return net.eval(), int(size)
    service = mlflow.pyfunc.load_model(uri).unwrap_python_model()  # the registered pyfunc
    return service.model, service.size
