"""The network: hand-counted parameters, named parts, output shapes per head and trunk depth,
each head learning (overfitting one batch of real photos), model files of the older format, and
inference that hands the network tensors on its own device and returns host arrays."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from colorize import lab
from colorize.decoding import NEUTRAL, Decoding
from colorize.evaluate.score import score
from colorize.model import bins
from colorize.model.file import FORMAT_V2, ModelError, load_model
from colorize.model.inference import predict_ab
from colorize.model.network import Colorizer, Trunk, count_parameters
from colorize.preprocess.store import LabStore, write_index, write_shard
from colorize.train.loss import make_loss
from conftest import model_config, network, photo_tiles


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
    assert count_parameters(network(head="regression", decoder_width=width, hints=False)) == (
        TRUNK + _decoder(width) + head)
    # Colour hints (the default): three more input channels for conv1, 64 filters of 7 x 7.
    assert count_parameters(network(head="regression", decoder_width=width, hints=True)) == (
        TRUNK + _decoder(width) + head + 3 * 64 * 7 * 7)


def test_tutorial_network_has_954434_parameters_and_classification_q_logits_more():
    tutorial = network(head="regression", decoder_width=128, trunk_depth=2, hints=False)
    assert count_parameters(tutorial) == 954_434  # "about 0.95M" (Melas-Kyriazi 2018)
    classification = network(head="classification", decoder_width=128, trunk_depth=2,
                             hints=False)
    # The head: a 1x1 conv to 262 logits instead of a 3x3 conv to 2 channels.
    assert count_parameters(classification) - 954_434 == (32 * 262 + 262) - (9 * 32 * 2 + 2)


def test_the_network_is_built_from_a_model_config_only():
    with pytest.raises(TypeError):
        Colorizer()  # no code defaults: params.yaml's model section says what to build
    model = network(head="classification", trunk_depth=4, decoder_width=32, hints=False)
    assert [name for name, _ in model.named_children()] == ["trunk", "context", "decoder",
                                                            "head"]
    assert model.trunk.conv1.in_channels == 1
    assert model.trunk.stages == ["layer1", "layer2", "layer3", "layer4"]
    assert model.trunk.layer4[0].conv1.out_channels == 512
    assert list(model.context.fuse) == ["layer3", "layer2"]  # from the deepest stage back
    assert model.decoder.block2.conv.in_channels == 32 + 64  # layer1's features join at 1/4
    assert model.head.out_channels == bins.num_bins()
    assert network(trunk_depth=2).context is None


@pytest.mark.parametrize("head,depth,stride,size", [
    ("regression", 2, 4, 64), ("regression", 3, 4, 48), ("regression", 4, 4, 64),
    ("classification", 2, 4, 64), ("classification", 2, 2, 64), ("classification", 4, 4, 96)])
def test_output_shapes(head, depth, stride, size):
    model = network(decoder_width=32, head=head, trunk_depth=depth, logit_stride=stride).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, size, size))
        ab = model.decode(out, 0.5)
    channels, s = (2, 1) if head == "regression" else (bins.num_bins(), stride)
    assert out.shape == (2, channels, size // s, size // s)
    assert ab.shape == (2, 2, size, size)


@pytest.mark.parametrize("head,depth,stride", [("regression", 2, 4), ("classification", 2, 4),
                                               ("classification", 2, 2),
                                               ("classification", 4, 4)])
def test_each_head_overfits_one_batch(head, depth, stride):
    torch.manual_seed(0)
    rgb = np.stack(photo_tiles(4, 32))
    labs = np.stack([lab.rgb_to_lab(x) for x in rgb]).transpose(0, 3, 1, 2)
    L = lab.normalize_l(torch.from_numpy(labs[:, :1]))
    ab = lab.normalize_ab(torch.from_numpy(labs[:, 1:]))
    prior = bins.smooth_prior(bins.histogram(labs[:, 1:].transpose(0, 2, 3, 1)))
    model = network(decoder_width=32, head=head, trunk_depth=depth, logit_stride=stride)
    loss_fn = make_loss(head, "l1", prior, 0.5)
    floor = _floor(loss_fn, ab, stride) if head == "classification" else 0.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        loss = loss_fn(model(L), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses) >= floor - 1e-4  # the floor is a true lower bound
    assert losses[-1] - floor < 0.3 * (losses[0] - floor), (losses[0], losses[-1], floor)
    # ... and the fitted colours are close to the truth (train mode: batch statistics).
    with torch.no_grad():
        err = (lab.denormalize_ab(model.decode(model(L), 1.0)) - lab.denormalize_ab(ab)).abs()
    assert err.mean().item() < 0.5 * lab.denormalize_ab(ab).abs().mean().item()


def _floor(loss_fn, ab: torch.Tensor, stride: int) -> float:
    """The classification loss's minimum: the soft targets' own (weighted) entropy at the
    logits' resolution (1/stride), reached when the predicted distribution equals them."""
    target = torch.nn.functional.avg_pool2d(ab, stride) * lab.AB_SCALE
    idx, w = bins.SoftEncoder()(target)
    dense = torch.zeros(ab.shape[0], bins.num_bins(), *target.shape[-2:])
    dense.scatter_(1, idx, w)
    return loss_fn(torch.log(dense + 1e-12), ab).item()


def test_predict_ab_decodes_once_per_decoding_in_ab_units_at_input_size():
    torch.manual_seed(0)
    model = network(decoder_width=16, head="classification").eval()
    L = np.full((3, 24, 40), 50.0)
    vivid, pale = predict_ab(model, L, [Decoding(0.2, 0.55), NEUTRAL], batch_size=2)
    assert vivid.shape == pale.shape == (3, 2, 24, 40) and vivid.dtype == np.float32
    assert np.abs(vivid).max() <= 110 and np.isfinite(vivid).all()
    # T = 1, A = 0 is the mean of the predicted distribution: the explicit expectation.
    with torch.no_grad():
        logits = model(lab.normalize_l(torch.from_numpy(L[:1].astype(np.float32))[:, None]))
        p = torch.softmax(logits, 1)
        mean = torch.einsum("nqhw,qc->nchw", p, torch.from_numpy(bins.centres()))
    assert np.allclose(pale[0, :, ::4, ::4], mean[0].numpy(), atol=1e-3)
    assert not np.allclose(vivid, pale, atol=1)  # each decoding decoded on its own


class OnDevice(torch.Tensor):
    """A tensor that behaves as if it lived on an accelerator: NumPy refuses it until .cpu()
    (as a CUDA tensor's .numpy() does)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.numpy:
            raise TypeError("can't convert an accelerator tensor to numpy: .cpu() it first")
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out.as_subclass(torch.Tensor) if func is torch.Tensor.cpu else out


class OnAnotherDevice(nn.Module):
    """A regression model whose parameters are on another device than the host (meta): it
    refuses inputs from elsewhere, as a CUDA model does, and answers OnDevice tensors."""

    def __init__(self):
        super().__init__()
        self.config = model_config(head="regression")
        self.weight = nn.Parameter(torch.zeros(1, device="meta"))

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        if L.device != self.weight.device:
            raise RuntimeError(f"input on {L.device}, model on {self.weight.device}")
        return torch.full((L.shape[0], 2, *L.shape[2:]), 0.1).as_subclass(OnDevice)

    def decode(self, out, temperature=1.0, correction=0.0):
        return out


def test_inference_and_scoring_move_inputs_to_the_model_and_results_to_the_host(tmp_path):
    """The sweep scores every epoch of a model on the training device (evaluate's scorer):
    inputs must reach the model on its device and results come back to the host."""
    model = OnAnotherDevice()
    ab = predict_ab(model, np.full((2, 16, 16), 50.0), [NEUTRAL])[0]
    assert isinstance(ab, np.ndarray) and np.allclose(ab, 11.0)
    photo = lab.rgb_to_lab(photo_tiles(1, 16)[0]).transpose(2, 0, 1)
    (tmp_path / "val").mkdir()
    write_shard(tmp_path / "val" / "shard-00000-x.npy", np.stack([photo] * 3).astype(np.float16))
    write_index(tmp_path / "val", 16, [{"file": "shard-00000-x.npy", "count": 3,
                                        "ids": ["a", "b", "c"], "names": []}])
    prior = np.full(bins.num_bins(), 1 / bins.num_bins())
    scores = score(model, LabStore(tmp_path / "val"), prior, [NEUTRAL], progress=False)
    assert len(scores[NEUTRAL].rows) == 3 and scores[NEUTRAL].summary()["mse_ab"] > 0


def test_prior_correction_divides_the_distribution_by_the_prior():
    model = network(decoder_width=16, head="classification").eval()
    prior = np.zeros(bins.num_bins())
    prior[_bin(0, 0)], prior[_bin(10, 0)] = 0.8, 0.2
    model.set_prior(prior)
    # Mixed with 20% uniform: p~ = 0.64 + 0.2/262 and 0.16 + 0.2/262; an unseen colour gets
    # 0.2/262, not log(0): its boost is bounded.
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


class Format2(nn.Module):
    """The network as format-2 files numbered its parts (colorize before the named parts):
    trunk = conv1, bn1, relu, maxpool, layer1, layer2; one decoder Sequential; depth 2."""

    def __init__(self, w: int, head: str):
        super().__init__()
        r = resnet18(weights=None)
        r.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        self.trunk = nn.Sequential(*list(r.children())[:6])

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU()]

        up = [nn.Upsample(scale_factor=2)]
        out = ([nn.Conv2d(w // 4, 2, 3, padding=1), *up] if head == "regression"
               else [nn.Conv2d(w // 4, bins.num_bins(), 1)])
        self.decoder = nn.Sequential(*block(128, w), *up, *block(w, w // 2),
                                     *block(w // 2, w // 2),
                                     *(up if head == "regression" else []),
                                     *block(w // 2, w // 4), *out)
        if head == "classification":
            self.register_buffer("log_prior", torch.randn(bins.num_bins()))

    def forward(self, L):
        return self.decoder(self.trunk(L))


def test_the_trunk_is_torchvisions_resnet18_initialised_and_computed_alike():
    """torchvision draws the initialisation; the stages it fills are the network's own copy of
    their structure, with the same names, values, outputs and gradients, bit for bit."""
    torch.manual_seed(0)
    r = resnet18(weights=None)
    torch.manual_seed(0)
    trunk = Trunk(4)
    for name in ("bn1", "layer1", "layer2", "layer3", "layer4"):
        theirs, ours = getattr(r, name).state_dict(), getattr(trunk, name).state_dict()
        assert list(theirs) == list(ours)
        assert all(torch.equal(theirs[k], ours[k]) for k in theirs), name
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    inputs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    ours = trunk(inputs[0])["layer4"]
    y = r.maxpool(r.relu(r.bn1(trunk.conv1(inputs[1]))))
    theirs = r.layer4(r.layer3(r.layer2(r.layer1(y))))
    assert torch.equal(ours, theirs)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    assert torch.equal(inputs[0].grad, inputs[1].grad)


def test_loading_a_model_file_does_not_import_torchvision(tmp_path):
    """The network of a model file is built on the meta device and needs no initialisation,
    so `colorize predict` skips torchvision's import (about 2 s on a cold start)."""
    from colorize.model.file import save_model

    save_model(network(head="classification", decoder_width=16),
               tmp_path / "m.pt", 32)
    code = ("import sys; from colorize.model.file import load_model; "
            f"load_model({str(tmp_path / 'm.pt')!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("head", ["regression", "classification"])
def test_format_2_model_files_load_with_the_same_outputs(tmp_path, head):
    torch.manual_seed(1)
    old = Format2(16, head)
    for m in old.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    old.eval()
    arch = {"head": head, "trunk_depth": 2, "decoder_width": 16}  # format 2: no logit_stride
    torch.save({"format": FORMAT_V2, "state_dict": old.state_dict(), "model": arch, "size": 32,
                "meta": {"best_epoch": 3}}, tmp_path / "v2.pt")
    model, size, meta = load_model(tmp_path / "v2.pt")
    assert (size, meta["best_epoch"], model.config.logit_stride) == (32, 3, 4)
    L = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 1, 32, 32))
                         .astype(np.float32))
    with torch.no_grad():
        assert torch.equal(model(L), old(L))
    # A format-2 file whose weights do not fit its architecture is refused by name.
    torch.save({"format": FORMAT_V2, "state_dict": old.state_dict(),
                "model": {**arch, "decoder_width": 32}, "size": 32}, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="bad.pt: a colorize-model/2 file whose weights"):
        load_model(tmp_path / "bad.pt")
