"""The decoding's one owner: its ranges, its one resolution order (given > the registry
version's evaluated values > params.yaml), and what predict does with it."""

import numpy as np
import pytest
import torch

from colorize.decoding import NEUTRAL, Decoding, checked, resolve
from colorize.errors import ConfigError, UserError
from colorize.model import bins
from colorize.model.file import save_model
from colorize.predict.predict import predict
from conftest import REPO, network, photo_tiles, write_rgb

EVALUATED = Decoding(0.38, 0.3)  # a registry version's
PARAMS = Decoding(0.2, 0.55)  # the repository's params.yaml


@pytest.mark.parametrize("given,fallbacks,expected", [
    ((None, None), (EVALUATED, PARAMS), EVALUATED),
    ((1.0, None), (EVALUATED, PARAMS), Decoding(1.0, 0.3)),  # each value on its own
    ((None, 0.0), (None, PARAMS), Decoding(0.2, 0.0)),  # no version: params
    ((0.6, 1.5), (EVALUATED, PARAMS), Decoding(0.6, 1.5)),
    ((None, None), (None, None), None),  # nothing anywhere: the caller asks the user
    ((0.5, None), (), None),
])
def test_each_value_comes_from_the_first_source_that_has_it(given, fallbacks, expected):
    assert resolve(*given, *fallbacks) == expected


@pytest.mark.parametrize("temperature,correction,message", [
    (0, None, "--temperature: 0 must be a temperature in [0.01, 100]"),
    (1e-300, None, "--temperature: 1e-300 must be"),  # would overflow to a white image
    (float("nan"), None, "--temperature: nan must be"),
    (101, None, "--temperature: 101 must be"),
    (None, -1, "--prior-correction: -1 is out of range [0, 2]"),
    (None, 2.5, "--prior-correction: 2.5 is out of range"),
    (True, None, "--temperature: True must be"),
])
def test_bad_values_are_named_by_the_option(temperature, correction, message):
    with pytest.raises(ConfigError) as e:
        checked(temperature, correction, ("--temperature", "--prior-correction"))
    assert str(e.value).startswith(message), str(e.value)


def test_params_yaml_is_the_default_and_tags_round_trip(settings):
    assert settings.evaluate.decoding == PARAMS
    assert checked(None, None) == (None, None)
    assert Decoding.from_tags(PARAMS.tags()) == PARAMS
    assert PARAMS.tags() == {"temperature": "0.2", "prior_correction": "0.55"}
    assert Decoding.from_tags({"head": "regression"}) is None
    assert NEUTRAL == Decoding(1.0, 0.0) and PARAMS.label() == "T=0.2 A=0.55"


@pytest.fixture
def classifier(tmp_path):
    torch.manual_seed(0)
    model = network(decoder_width=16, head="classification")
    model.set_prior(np.random.default_rng(0).dirichlet(np.ones(bins.num_bins())))
    save_model(model.eval(), tmp_path / "c.pt", size=32)
    write_rgb(tmp_path / "in" / "p.png", photo_tiles(1, 40)[0])
    return tmp_path


def test_predict_uses_the_option_then_params_and_refuses_outside_a_repository(
        classifier, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    model, photo = str(classifier / "c.pt"), str(classifier / "in" / "p.png")
    predict([photo], str(classifier / "a"), model)
    assert "temperature 0.2, prior correction 0.55" in capsys.readouterr().out
    predict([photo], str(classifier / "b"), model, temperature=1.0)
    assert "temperature 1, prior correction 0.55" in capsys.readouterr().out
    a, b = ((classifier / d / "p.png").read_bytes() for d in "ab")
    assert a != b  # the option changed the colours
    monkeypatch.chdir(classifier)  # outside any repository, no params.yaml to fall back on
    with pytest.raises(UserError, match="choose --temperature"):
        predict([photo], str(classifier / "c"), model, temperature=1.0)
