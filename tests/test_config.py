"""params.yaml is the only source of defaults; every bad or missing value is named."""

import pytest
import yaml

from colorize import config
from colorize.config import ConfigError
from conftest import REPO


def test_settings_hold_exactly_the_values_of_the_file(settings):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    from_file = {f"{section}.{key}": tuple(v) if isinstance(v, list) else v
                 for section, values in raw.items() for key, v in values.items()}
    assert settings.flat() == from_file  # what MLflow logs is what DVC tracks
    assert settings.data.source == "sample" and settings.model.head == "classification"


def test_no_field_has_a_default_in_code():
    for section in config.Settings.model_fields.values():
        for name, field in section.annotation.model_fields.items():
            assert field.is_required(), f"{name} has a default in code"


@pytest.mark.parametrize("override,message", [
    ({"train": {"lr": -1}}, "train.lr: -1 is out of range"),
    ({"train": {"lr": "fast"}}, "train.lr: "),
    ({"train": {"lr": True}}, "train.lr: expected a number, got a boolean"),
    ({"train": {"epochs": 2.5}}, "train.epochs: "),
    ({"train": {"crop": 100}}, "train.crop: 100 must be a multiple of 8"),
    ({"train": {"amp": "fp8"}}, "train.amp: "),
    ({"train": {"rebalance": 1.5}}, "train.rebalance: 1.5 is out of range"),
    ({"model": {"decoder_width": 30}}, "model.decoder_width: "),
    ({"model": {"head": "gan"}}, "model.head: "),
    ({"model": {"trunk_depth": 5}}, "model.trunk_depth: "),
    ({"data": {"source": "imagenet"}}, "data.source: "),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction: 1.5 is out of range"),
    ({"data": {"colour": 1}}, "data.colour: unknown key"),
    ({"preprocess": {"size": 100}}, "preprocess.size: 100 must be a multiple of 8"),
    ({"evaluate": {"temperature": 0}}, "evaluate.temperature: 0.0 must be a temperature"),
    ({"evaluate": {"temperature": -1}}, "evaluate.temperature: -1.0 must be a temperature"),
    ({"evaluate": {"temperatures": [1.0, float("nan")]}}, "evaluate.temperatures: "),
    ({"tracking": {"alias": "Latest"}}, "tracking.alias: 'Latest' is reserved by MLflow"),
    ({"sweep": {"lr_max": 1e-5}}, "sweep.lr_max: 1e-05 is below sweep.lr_min"),
    ({"train": {"crop": 256}, "preprocess": {"size": 128}}, "train.crop: 256 is larger than"),
    ({"train": {"low_res_epochs": 3, "epochs": 3}},
     "train.low_res_epochs: 3 leaves none of the 3 epochs at the full crop"),
    ({"train": {"low_res_epochs": 1, "crop": 120}}, "train.low_res_epochs: needs train.crop (120)"),
    ({"train": {"scene_loss": 0.1}, "model": {"global_context": True}},
     "train.scene_loss: 0.1 needs scene labels (data.labels: folders)"),
    ({"train": {"scene_loss": 0.1}, "data": {"labels": "folders"}},
     "train.scene_loss: 0.1 needs the global context vector"),
    ({"data": {"labels": "files"}}, "data.labels: "),
])
def test_bad_values_are_rejected_with_the_key_named(settings, override, message):
    with pytest.raises(ConfigError) as e:
        settings.override(**override)
    assert str(e.value).startswith(message), str(e.value)


def test_missing_key_and_unknown_section_are_named(settings):
    raw = settings.model_dump()
    del raw["train"]["lr"]
    with pytest.raises(ConfigError, match=r"^train\.lr: missing from params\.yaml"):
        config.from_dict(raw)
    with pytest.raises(ConfigError, match=r"^trian: unknown section"):
        config.from_dict({**settings.model_dump(), "trian": {}})


def test_scientific_notation_string_is_a_float(settings):
    assert settings.override(train={"lr": "1e-3"}).train.lr == 1e-3


def test_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="parameters file not found"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
