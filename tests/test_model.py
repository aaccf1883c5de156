import pytest
import torch

from colorize.model.network import Colorizer, count_parameters


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
            + _conv(w // 2, w // 2) + _bn(w // 2) + _conv(w // 2, w // 4) + _bn(w // 4)
            + _conv(w // 4, 2) + 2)


@pytest.mark.parametrize("width", [128, 64])
def test_parameter_count_matches_hand_count(width):
    assert count_parameters(Colorizer(width)) == TRUNK + _decoder(width)


def test_tutorial_width_is_about_095m():
    assert TRUNK + _decoder(128) == 954_434


@pytest.mark.parametrize("width,size", [(128, 64), (64, 48), (32, 72)])
def test_output_shape_is_two_channels_at_input_resolution(width, size):
    model = Colorizer(width).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 1, size, size))
    assert out.shape == (2, 2, size, size)


def test_trunk_takes_one_channel_and_never_downloads_weights():
    model = Colorizer()
    assert model.trunk[0].in_channels == 1
    assert len(model.trunk) == 6  # conv1, bn1, relu, maxpool, layer1, layer2
