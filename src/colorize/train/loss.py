"""Training objectives of the two heads, on normalized ab targets (ab / AB_SCALE).

regression: L1 (default), MSE or Huber per pixel. MSE regresses the conditional mean of ab;
L1 and Huber the (closer to) conditional median, which stays nearer gray where colour is
ambiguous.

classification: cross-entropy of the logits against soft-encoded targets (5 nearest bins,
Gaussian sigma 5, at the logits' resolution), each pixel weighted by its nearest bin's
rebalancing weight (train.rebalance; model/bins.py). The soft encoding is a table gather.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from colorize import lab
from colorize.model import bins

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
