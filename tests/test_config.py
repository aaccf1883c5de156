import pytest

from colorize import config
from colorize.config import ConfigError


def test_repository_params_are_valid():
    s = config.load(config.Path(__file__).resolve().parents[1] / "params.yaml")
    assert s.data.source == "sample"
    assert s.flat()["model.decoder_width"] == s.model.decoder_width


@pytest.mark.parametrize("raw,key", [
    ({"train": {"lr": -1}}, "train.lr"),
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"train": {"crop": 100}}, "train.crop"),
    ({"train": {"amp": "fp8"}}, "train.amp"),
    ({"model": {"decoder_width": 30}}, "model.decoder_width"),
    ({"data": {"source": "imagenet"}}, "data.source"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction"),
    ({"data": {"colour": 1}}, "data.colour"),
    ({"preprocess": {"size": 100}}, "preprocess.size"),
    ({"tracking": {"alias": "latest"}}, "tracking.alias"),
    ({"trian": {}}, "trian"),
    ({"train": {"crop": 256}, "preprocess": {"size": 128}}, "train.crop"),
])
def test_bad_values_are_rejected_with_the_key_named(raw, key):
    with pytest.raises(ConfigError) as e:
        config.from_dict(raw)
    assert str(e.value).startswith(key)


def test_scientific_notation_string_is_a_float():
    assert config.from_dict({"train": {"lr": "1e-3"}}).train.lr == 1e-3


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_parameter_and_exits_2(tmp_path, capsys):
    from colorize.cli import main

    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  lr: -0.1\n")
    assert main(["--params", str(bad), "prepare"]) == 2
    assert "train.lr: -0.1 is out of range" in capsys.readouterr().err
