"""Training objectives of the two heads, on normalized ab targets (ab / AB_SCALE).

regression: L1 (default), MSE or Huber per pixel. MSE regresses the conditional mean of ab;
L1 and Huber the (closer to) conditional median, which stays nearer gray where colour is
ambiguous.

classification: cross-entropy of the logits against soft-encoded targets (5 nearest bins,
Gaussian sigma 5, at the logits' resolution), each pixel weighted by its nearest bin's
rebalancing weight (train.rebalance; model/bins.py). The soft encoding is a table gather.

scene (train.scene_loss, Iizuka et al. 2016): cross-entropy of a linear classifier on the
network's global context vector against the photo's scene class, added to the colour loss with
that weight. The classifier is a training aid, not part of the saved model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from colorize import lab
from colorize.model import bins
from colorize.model.network import Colorizer, GlobalContext
from colorize.train.data import NO_LABEL

REGRESSION: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "huber": lambda pred, target: F.huber_loss(pred, target, delta=0.1),
}


class ClassificationLoss(nn.Module):
    """Rebalanced soft cross-entropy: logits (N, Q, H/s, W/s) at the head's stride s
    (model.logit_stride), ab (N, 2, H, W) normalized; targets are pooled to 1/s."""

    def __init__(self, prior: np.ndarray, rebalance: float):
        super().__init__()
        self.encode = bins.SoftEncoder()
        weights = bins.rebalance_weights(prior, rebalance) if rebalance > 0 else np.ones(
            len(prior))
        self.register_buffer("class_weight", torch.tensor(weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        factor = ab.shape[-1] // logits.shape[-1]  # targets at the logits' resolution
        target = F.avg_pool2d(ab.float(), factor) * lab.AB_SCALE
        idx, w = self.encode(target)
        logp = F.log_softmax(logits.float(), dim=1)
        ce = -(logp.gather(1, idx) * w).sum(1)
        return (ce * self.class_weight[idx[:, 0]]).mean()


class RegressionLoss(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, pred: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return REGRESSION[self.kind](pred.float(), ab)


def make_loss(head: str, regression_loss: str, prior: np.ndarray | None,
              rebalance: float) -> nn.Module:
    if head == "regression":
        return RegressionLoss(regression_loss)
    if prior is None:
        raise ValueError("the classification head needs the ab prior (run the prior stage)")
    return ClassificationLoss(prior, rebalance)


class SceneLoss(nn.Module):
    """Scene classification from the global context vector, which a forward hook on
    GlobalContext.pool keeps from the network's last forward pass (so the network's own output
    stays the colour head's). Call `detach()` when training ends."""

    def __init__(self, net: Colorizer, classes: int):
        super().__init__()
        if net.global_context is None:
            raise ValueError("the scene loss needs model.global_context")
        self.classifier = nn.Linear(GlobalContext.CHANNELS, classes)
        self.vector: torch.Tensor | None = None
        self._hook = net.global_context.pool.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.vector = output.flatten(1)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(self.vector.float()), labels,
                               ignore_index=NO_LABEL)

    def detach(self) -> None:
        self._hook.remove()
        self.vector = None
