"""params.yaml -> typed, validated settings (pydantic). Every error names the offending key.

params.yaml is the only source of defaults: no field here has a default value, so a key missing
from the file is an error that names it, and the values the pipeline runs with are exactly the
ones DVC tracks. Tests and tools start from the repository's params.yaml and override what they
need with `Settings.override`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from colorize.decoding import Decoding, check_correction, check_temperature
from colorize.errors import ConfigError, shortened

__all__ = ["ConfigError", "Settings", "load", "from_dict", "repository_decoding"]


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's true/false must not pass as 1.0 / 0.0
        raise ValueError("expected a number, got a boolean")
    return value


# A finite float; YAML reads '1e-3' (no dot) as a string, which pydantic parses.
Number = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]


def _multiple_of_8(value: int) -> int:
    if value % 8:
        raise ValueError(f"{value} must be a multiple of 8 (the trunk downsamples by 8)")
    return value


# The network's working size (preprocess.size, a model file's `size`) and training crops.
MAX_WORKING_SIZE = 1024
Multiple8 = Annotated[StrictInt, Field(ge=8, le=MAX_WORKING_SIZE),
                      AfterValidator(_multiple_of_8)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(Section):
    source: Literal["sample", "folder", "archive", "places205"]
    path: Name
    url: Name
    val_fraction: Annotated[Number, Field(gt=0, lt=1)]
    test_fraction: Annotated[Number, Field(ge=0, lt=1)]
    min_size: Annotated[StrictInt, Field(ge=1)]
    min_colourfulness: Annotated[Number, Field(ge=0)]
    min_train_colourfulness: Annotated[Number, Field(ge=0)]  # training split only
    labels: Literal["none", "folders"]  # scene classes: none, or each photo's folder
    max_flat_fraction: Annotated[Number, Field(ge=0, le=1)]
    max_pixels: Annotated[StrictInt, Field(ge=1)]

    @model_validator(mode="after")
    def _room_to_train(self) -> DataSettings:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"data.test_fraction: {self.test_fraction} plus data.val_fraction "
                             f"{self.val_fraction} leaves no photo to train on")
        return self


class PreprocessSettings(Section):
    size: Multiple8
    shard_size: Annotated[StrictInt, Field(ge=1)]
    workers: Annotated[StrictInt, Field(ge=1, le=256)]


class ModelSettings(Section):
    head: Literal["regression", "classification"]
    trunk_depth: Literal[2, 3, 4]
    logit_stride: Literal[2, 4]  # classification head: logits at 1/stride of the input size
    decoder_width: Annotated[StrictInt, Field(ge=4, le=2048, multiple_of=4)]
    global_context: StrictBool  # a pooled image vector fused into the decoder (Iizuka 2016)
    hints: StrictBool  # three more input channels: colour hints (model/hints.py)


class TrainSettings(Section):
    seed: StrictInt
    epochs: Annotated[StrictInt, Field(ge=1)]
    batch_size: Annotated[StrictInt, Field(ge=1)]
    lr: Annotated[Number, Field(gt=0, lt=10)]
    weight_decay: Annotated[Number, Field(ge=0)]
    lr_schedule: Literal["cosine", "constant"]
    loss: Literal["mse", "l1", "huber"]
    rebalance: Annotated[Number, Field(ge=0, le=0.99)]
    crop: Multiple8
    crop_scale_min: Annotated[Number, Field(gt=0, le=1)]
    amp: Literal["auto", "off"]
    device: Literal["auto", "cpu", "cuda"]
    num_workers: Annotated[StrictInt, Field(ge=0, le=64)]
    max_steps_per_epoch: Annotated[StrictInt, Field(ge=0)]
    warmup_steps: Annotated[StrictInt, Field(ge=0)]
    grad_clip: Annotated[Number, Field(ge=0)]  # max gradient norm; 0 = off
    ema: Annotated[Number, Field(ge=0, lt=1)]  # weight-averaging decay; 0 = off
    scene_loss: Annotated[Number, Field(ge=0)]  # weight of the scene-classification loss
    hint_free: Annotated[Number, Field(ge=0, lt=1)]  # model.hints: more items with no hint
    compile: StrictBool
    nproc: Annotated[StrictInt, Field(ge=1, le=1024)]  # >1: `colorize train` runs under torchrun
    low_res_epochs: Annotated[StrictInt, Field(ge=0)]  # first epochs at crop / 2, batch x 4

    @model_validator(mode="after")
    def _low_res_fits(self) -> TrainSettings:
        if self.low_res_epochs >= self.epochs:
            raise ValueError(f"train.low_res_epochs: {self.low_res_epochs} leaves none of the "
                             f"{self.epochs} epochs at the full crop")
        if self.low_res_epochs and self.crop % 16:
            raise ValueError(f"train.low_res_epochs: needs train.crop ({self.crop}) a multiple "
                             "of 16 (its half is the trunk's multiple of 8)")
        return self


Temperature = Annotated[Number, AfterValidator(check_temperature)]  # colorize/decoding.py
PriorCorrection = Annotated[Number, AfterValidator(check_correction)]


class EvaluateSettings(Section):
    batch_size: Annotated[StrictInt, Field(ge=1)]
    grid_images: Annotated[StrictInt, Field(ge=1, le=64)]
    temperature: Temperature  # the operating point: headline metrics, served default
    prior_correction: PriorCorrection  # logits - alpha log p (ditto)
    temperatures: Annotated[tuple[Temperature, ...], Field(min_length=1)]  # the trade-off plot

    @property
    def decoding(self) -> Decoding:
        """The operating point: what evaluate reports and predict uses by default."""
        return Decoding(self.temperature, self.prior_correction)


class TrackingSettings(Section):
    experiment: Name
    registered_model: Name
    alias: Name  # moved by `dvc repro` in the workspace to the version it produced
    champion_alias: Name  # set by `colorize promote VERSION`; what the README serves
    log_model: StrictBool

    @field_validator("alias", "champion_alias")
    @classmethod
    def _alias(cls, v: str) -> str:
        # MLflow reserves 'latest' and 'v<N>' as version references.
        if v.lower() == "latest" or (v[:1] == "v" and v[1:].isdigit()):
            raise ValueError(f"{_short(v)} is reserved by MLflow")
        return v


class SweepSettings(Section):
    study: Name
    storage: Name  # a journal file, or an RDB URL for many machines
    n_trials: Annotated[StrictInt, Field(ge=1)]  # the study's total: a rerun continues it
    epochs: Annotated[StrictInt, Field(ge=1)]
    metric: Literal["ciede2000", "auc", "auc_rebalanced", "val_loss"]  # the objective
    lr_min: Annotated[Number, Field(gt=0, lt=10)]
    lr_max: Annotated[Number, Field(gt=0, lt=10)]
    decoder_widths: Annotated[tuple[Annotated[StrictInt, Field(ge=4, le=2048, multiple_of=4)],
                                    ...], Field(min_length=1)]
    heads: Annotated[tuple[Literal["regression", "classification"], ...], Field(min_length=1)]
    trunk_depths: Annotated[tuple[Literal[2, 3, 4], ...], Field(min_length=1)]
    rebalance_min: Annotated[Number, Field(ge=0, le=0.99)]
    rebalance_max: Annotated[Number, Field(ge=0, le=0.99)]
    sampler_seed: StrictInt
    pruner: Literal["median", "none"]
    pruner_warmup_epochs: Annotated[StrictInt, Field(ge=0)]
    heartbeat_s: Annotated[StrictInt, Field(ge=1)]

    @model_validator(mode="after")
    def _ranges(self) -> SweepSettings:
        if self.lr_max < self.lr_min:
            raise ValueError(f"sweep.lr_max: {self.lr_max} is below sweep.lr_min "
                             f"{self.lr_min}")
        if self.rebalance_max < self.rebalance_min:
            raise ValueError(f"sweep.rebalance_max: {self.rebalance_max} is below "
                             f"sweep.rebalance_min {self.rebalance_min}")
        if self.metric == "val_loss" and len(set(self.heads)) > 1:
            raise ValueError("sweep.metric: val_loss cannot compare the regression and "
                             "classification heads (different losses); use ciede2000, auc or "
                             "auc_rebalanced, or sweep one head")
        return self


class Settings(Section):
    data: DataSettings
    preprocess: PreprocessSettings
    model: ModelSettings
    train: TrainSettings
    evaluate: EvaluateSettings
    tracking: TrackingSettings
    sweep: SweepSettings

    @model_validator(mode="after")
    def _crop_fits(self) -> Settings:
        if self.train.crop > self.preprocess.size:
            raise ValueError(f"train.crop: {self.train.crop} is larger than preprocess.size "
                             f"{self.preprocess.size}")
        return self

    @model_validator(mode="after")
    def _scene_loss_has_labels(self) -> Settings:
        if self.train.scene_loss and self.data.labels == "none":
            raise ValueError(f"train.scene_loss: {self.train.scene_loss} needs scene labels "
                             "(data.labels: folders)")
        if self.train.scene_loss and not self.model.global_context:
            raise ValueError(f"train.scene_loss: {self.train.scene_loss} needs the global "
                             "context vector it classifies (model.global_context: true)")
        return self

    def flat(self) -> dict[str, Any]:
        """Flattened 'section.key' -> value, as logged to MLflow."""
        return {f"{section}.{k}": v for section, values in self.model_dump().items()
                for k, v in values.items()}

    def override(self, **sections: dict[str, Any]) -> Settings:
        """A validated copy with some values replaced: override(train={"epochs": 3})."""
        raw = self.model_dump()
        for section, values in sections.items():
            if section not in raw:
                raise ConfigError(f"{section}: unknown section (expected one of {sorted(raw)})")
            raw[section] = {**raw[section], **values}
        return from_dict(raw)


def from_dict(raw: Any) -> Settings:
    """Validate a params mapping; raises ConfigError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: the top level must be a mapping of sections "
                          "(data, preprocess, model, train, evaluate, tracking, sweep)")
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors()[0])) from None


def _describe(error: dict) -> str:
    loc = [shortened(str(part)) for part in error["loc"]]
    kind, msg = error["type"], error["msg"]
    if len(loc) > 2 and loc[-1].isdigit():  # an item of a list: name the list
        loc = loc[:-1]
    key = ".".join(loc) or "params.yaml"
    if kind == "missing":
        return (f"{key}: missing from params.yaml (add it; the repository's params.yaml "
                f"lists every key with its default)")
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return f"{key}: unknown section (expected one of {sorted(Settings.model_fields)})"
        section = Settings.model_fields[loc[0]].annotation
        return f"{key}: unknown key (expected one of {sorted(section.model_fields)})"
    if kind == "value_error":  # our own validators: the message states the value
        msg = msg.removeprefix("Value error, ")
        return msg if re.match(r"\w+\.\w+: ", msg) else f"{key}: {msg}"
    value = error.get("input")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key}: {_short(value)} is out of range ({msg.lower()})"
    if isinstance(value, dict | list | tuple) and len(repr(value)) > 60:
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {_short(value)})"


def _short(value: Any) -> str:
    return shortened(repr(value))


MAX_PARAMS_BYTES = 1 << 20


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without aliases (a few hundred bytes of nested aliases expand to gigabytes)
    and without duplicate keys (plain YAML lets the second silently win)."""

    CONTEXT = "while reading parameters"

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(self.CONTEXT, None,
                                       f"the alias *{shortened(event.anchor)} (aliases are not "
                                       "allowed)", event.start_mark)
        return super().compose_node(parent, index)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except ValueError as e:  # a 5000-digit number, the 13th month, ...: with its line
            shown = _short(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
            raise yaml.MarkedYAMLError(self.CONTEXT, None, f"{shown} cannot be read "
                                       f"({shortened(str(e).split(':')[0], 80)})",
                                       node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.MarkedYAMLError(self.CONTEXT, None,
                                               f"the key {_short(key)} appears twice",
                                               key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader refuses it below
                break
        return super().construct_mapping(node, deep)


def repository_decoding(start: str | os.PathLike | None = None) -> Decoding | None:
    """params.yaml's decoding of the repository around `start` (default: the current folder),
    or None outside a repository."""
    from colorize.paths import find_root

    root = find_root(start)
    if root is None or not (root / "params.yaml").is_file():
        return None
    return load(root / "params.yaml").evaluate.decoding


def load(path: str | os.PathLike = "params.yaml") -> Settings:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found (run from the repository root, "
                          "or pass --params PATH)")
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes, not a parameters file (at most "
                          f"{MAX_PARAMS_BYTES})")
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as e:
        if e.context != _StrictLoader.CONTEXT:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        raise ConfigError(f"{path}: line {e.problem_mark.line + 1}: {e.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    except RecursionError:  # [[[[... 100 000 deep: the composer recurses
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    return from_dict(raw)
