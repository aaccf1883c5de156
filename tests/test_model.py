"""The network: hand-counted parameters, output shapes per head and trunk depth, and each head
learning (overfitting one batch of real photos)."""

import math

import numpy as np
import pytest
import torch

from colorize import lab
from colorize.model import bins
from colorize.model.network import Colorizer, count_parameters, predict_ab
from colorize.train.loss import make_loss
from conftest import photo_tiles


def _conv(c_in, c_out, k=3):
    return k * k * c_in * c_out


def _bn(c):
    return 2 * c


# Hand count of the ResNet-18 trunk with a 1-channel conv1, up to layer2.
TRUNK = (
    _conv(1, 64, 7) + _bn(64)
    + 2 * (2 * (_conv(64, 64) + _bn(64)))                       # layer1: 2 basic blocks
    + (_conv(64, 128) + _bn(128) + _conv(128, 128) + _bn(128)    # layer2 block 1
       + _conv(64, 128, 1) + _bn(128))                           # ... its downsample
    + 2 * (_conv(128, 128) + _bn(128))                           # layer2 block 2
)


def _decoder(w):
    return (_conv(128, w) + _bn(w) + _conv(w, w // 2) + _bn(w // 2)
            + _conv(w // 2, w // 2) + _bn(w // 2) + _conv(w // 2, w // 4) + _bn(w // 4))


@pytest.mark.parametrize("width", [128, 64])
def test_regression_parameter_count_matches_hand_count(width):
    head = _conv(width // 4, 2) + 2
    assert count_parameters(Colorizer(width)) == TRUNK + _decoder(width) + head


def test_tutorial_network_is_about_095m_and_classification_adds_q_logits():
    assert TRUNK + _decoder(128) + _conv(32, 2) + 2 == 954_434
    q = bins.num_bins()
    assert count_parameters(Colorizer(128, "classification")) == (
        TRUNK + _decoder(128) + _conv(32, q, 1) + q)


@pytest.mark.parametrize("head,depth,stride,size", [
    ("regression", 2, 1, 64), ("regression", 3, 1, 48), ("regression", 4, 1, 64),
    ("classification", 2, 4, 64), ("classification", 2, 2, 64), ("classification", 4, 4, 96)])
def test_output_shapes(head, depth, stride, size):
    model = Colorizer(32, head, depth, logit_stride=stride).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, size, size))
        ab = model.decode(out, 0.5)
    channels = 2 if head == "regression" else bins.num_bins()
    assert out.shape == (2, channels, size // stride, size // stride)
    assert ab.shape == (2, 2, size, size)


def test_trunk_takes_one_channel_and_depth_4_is_the_whole_resnet18():
    model = Colorizer(trunk_depth=4)
    assert model.trunk[0].in_channels == 1
    assert len(model.trunk) == 6 and len(model.deep) == 2  # conv1..layer2, layer3, layer4
    assert model.deep[1][0].conv1.out_channels == 512


@pytest.mark.parametrize("head,depth", [("regression", 2), ("classification", 2),
                                        ("classification", 4)])
def test_each_head_overfits_one_batch(head, depth):
    torch.manual_seed(0)
    rgb = np.stack(photo_tiles(4, 32))
    labs = np.stack([lab.rgb_to_lab(x) for x in rgb]).transpose(0, 3, 1, 2)
    L = lab.normalize_l(torch.from_numpy(labs[:, :1]))
    ab = lab.normalize_ab(torch.from_numpy(labs[:, 1:]))
    prior = bins.smooth_prior(bins.histogram(labs[:, 1:].transpose(0, 2, 3, 1)))
    model = Colorizer(32, head, depth)
    loss_fn = make_loss(head, "l1", prior, 0.5)
    floor = _floor(loss_fn, ab) if head == "classification" else 0.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        loss = loss_fn(model(L), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] - floor < 0.3 * (losses[0] - floor), (losses[0], losses[-1], floor)
    # ... and the fitted colours are close to the truth (train mode: batch statistics).
    with torch.no_grad():
        err = (lab.denormalize_ab(model.decode(model(L), 1.0)) - lab.denormalize_ab(ab)).abs()
    assert err.mean().item() < 0.5 * lab.denormalize_ab(ab).abs().mean().item()


def _floor(loss_fn, ab: torch.Tensor) -> float:
    """The classification loss's minimum: the soft targets' own (weighted) entropy, reached
    when the predicted distribution equals the targets."""
    target = torch.nn.functional.avg_pool2d(ab, 2) * lab.AB_SCALE
    idx, w = bins.SoftEncoder()(target)
    dense = torch.zeros(ab.shape[0], bins.num_bins(), *target.shape[-2:])
    dense.scatter_(1, idx, w)
    return loss_fn(torch.log(dense + 1e-12), ab).item()


def test_predict_ab_returns_ab_units_at_input_size():
    model = Colorizer(16, "classification").eval()
    out = predict_ab(model, np.full((3, 24, 40), 50.0), batch_size=2, temperature=0.38)
    assert out.shape == (3, 2, 24, 40) and np.isfinite(out).all()
    assert np.abs(out).max() <= 110


def test_prior_correction_divides_the_distribution_by_the_prior():
    model = Colorizer(16, "classification").eval()
    prior = np.zeros(bins.num_bins())
    prior[_bin(0, 0)], prior[_bin(10, 0)] = 0.8, 0.2
    model.set_prior(prior)
    # Mixed with 20% uniform: p~ = 0.64 + 0.2/262 and 0.16 + 0.2/262; an unseen colour gets
    # 0.2/262, not log(0): its boost is bounded.
    assert bins.CORRECTION_UNIFORM == 0.2
    assert model.log_prior.min().item() == pytest.approx(math.log(0.2 / 262))
    z = torch.full((1, bins.num_bins(), 1, 1), -1e4)
    z[0, _bin(0, 0)] = z[0, _bin(10, 0)] = math.log(0.5)
    a = [lab.denormalize_ab(model.decode(z, 1.0, alpha))[0, 0, 0, 0].item()
         for alpha in (0.0, 0.5, 1.0)]
    # weights 0.5 / p~^alpha, normalized, times the bins' a (0 and 10):
    # alpha 0: 5; 0.5: 10 * 2.49406 / (1.24926 + 2.49406) = 6.6627; 1: 10 * 6.22032 /
    # (1.56064 + 6.22032) = 7.9943.
    assert a == pytest.approx([5.0, 6.6627, 7.9943], abs=1e-3)


def _bin(a, b):
    return int(np.flatnonzero((bins.centres() == (a, b)).all(1))[0])
