"""params.yaml -> typed, validated settings. Every error names the offending key."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

SOURCES = ("sample", "folder", "archive", "places205")


class ConfigError(ValueError):
    """A bad value in params.yaml (the message names the key)."""


@dataclass(frozen=True)
class DataSettings:
    source: str = "sample"
    path: str = "data/raw/sample"
    url: str = "http://data.csail.mit.edu/places/places205/testSetPlaces205_resize.tar.gz"
    val_fraction: float = 0.2
    min_size: int = 32
    min_colourfulness: float = 10.0
    max_flat_fraction: float = 0.09
    max_pixels: int = 50_000_000

    def check(self) -> None:
        _choice("data.source", self.source, SOURCES)
        _range("data.val_fraction", self.val_fraction, 0.0, 1.0, inclusive=False)
        _range("data.min_size", self.min_size, 1, None)
        _range("data.min_colourfulness", self.min_colourfulness, 0.0, None)
        _range("data.max_flat_fraction", self.max_flat_fraction, 0.0, 1.0)
        _range("data.max_pixels", self.max_pixels, 1, None)


@dataclass(frozen=True)
class PreprocessSettings:
    size: int = 192
    shard_size: int = 512
    workers: int = 2

    def check(self) -> None:
        _range("preprocess.size", self.size, 8, 4096)
        _multiple("preprocess.size", self.size, 8)
        _range("preprocess.shard_size", self.shard_size, 1, None)
        _range("preprocess.workers", self.workers, 1, 256)


@dataclass(frozen=True)
class ModelSettings:
    decoder_width: int = 128

    def check(self) -> None:
        _range("model.decoder_width", self.decoder_width, 4, 2048)
        _multiple("model.decoder_width", self.decoder_width, 4)


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    loss: str = "mse"
    crop: int = 128
    crop_scale_min: float = 0.3
    amp: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    max_steps_per_epoch: int = 0

    def check(self) -> None:
        _range("train.epochs", self.epochs, 1, None)
        _range("train.batch_size", self.batch_size, 1, None)
        _range("train.lr", self.lr, 0.0, 10.0, inclusive=False)
        _range("train.weight_decay", self.weight_decay, 0.0, None)
        _choice("train.lr_schedule", self.lr_schedule, ("cosine", "constant"))
        _choice("train.loss", self.loss, ("mse", "l1", "huber"))
        _range("train.crop", self.crop, 8, 4096)
        _multiple("train.crop", self.crop, 8)
        _range("train.crop_scale_min", self.crop_scale_min, 0.0, 1.0)
        _choice("train.amp", self.amp, ("auto", "off"))
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _range("train.num_workers", self.num_workers, 0, 64)
        _range("train.max_steps_per_epoch", self.max_steps_per_epoch, 0, None)


@dataclass(frozen=True)
class EvaluateSettings:
    batch_size: int = 16
    grid_images: int = 8

    def check(self) -> None:
        _range("evaluate.batch_size", self.batch_size, 1, None)
        _range("evaluate.grid_images", self.grid_images, 1, 64)


@dataclass(frozen=True)
class TrackingSettings:
    experiment: str = "colorize"
    registered_model: str = "colorizer"
    alias: str = "newest"
    log_model: bool = True

    def check(self) -> None:
        if not self.experiment:
            raise ConfigError("tracking.experiment: must not be empty")
        if not self.registered_model:
            raise ConfigError("tracking.registered_model: must not be empty")
        # MLflow reserves 'latest' and 'v<N>' as version references.
        if self.alias == "latest" or (self.alias[:1] == "v" and self.alias[1:].isdigit()):
            raise ConfigError(f"tracking.alias: {self.alias!r} is reserved by MLflow")


@dataclass(frozen=True)
class SweepSettings:
    study: str = "colorize-sweep"
    storage: str = "sweeps/journal.log"  # a journal file, or an RDB URL for many machines
    n_trials: int = 8  # total for the study: a rerun with a higher number continues it
    epochs: int = 10
    lr_min: float = 1e-4
    lr_max: float = 1e-2
    decoder_widths: tuple[int, ...] = (32, 64, 128, 256)
    sampler_seed: int = 0
    pruner: str = "median"
    pruner_warmup_epochs: int = 3
    heartbeat_s: int = 30

    def check(self) -> None:
        if not self.study:
            raise ConfigError("sweep.study: must not be empty")
        _range("sweep.n_trials", self.n_trials, 1, None)
        _range("sweep.epochs", self.epochs, 1, None)
        _range("sweep.lr_min", self.lr_min, 0.0, 10.0, inclusive=False)
        _range("sweep.lr_max", self.lr_max, self.lr_min, 10.0)
        if not self.decoder_widths:
            raise ConfigError("sweep.decoder_widths: must list at least one width")
        for w in self.decoder_widths:
            _range("sweep.decoder_widths", w, 4, 2048)
            _multiple("sweep.decoder_widths", w, 4)
        _choice("sweep.pruner", self.pruner, ("median", "none"))
        _range("sweep.pruner_warmup_epochs", self.pruner_warmup_epochs, 0, None)
        _range("sweep.heartbeat_s", self.heartbeat_s, 1, None)


@dataclass(frozen=True)
class Settings:
    data: DataSettings = field(default_factory=DataSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)

    def check(self) -> None:
        for f in fields(self):
            getattr(self, f.name).check()
        if self.train.crop > self.preprocess.size:
            raise ConfigError(
                f"train.crop: {self.train.crop} is larger than preprocess.size "
                f"{self.preprocess.size}"
            )

    def flat(self) -> dict[str, Any]:
        """Flattened 'section.key' -> value, as logged to MLflow."""
        return {
            f"{section}.{k}": v
            for section, values in dataclasses.asdict(self).items()
            for k, v in values.items()
        }


def from_dict(raw: dict[str, Any] | None, extra_sections: tuple[str, ...] = ()) -> Settings:
    """Build settings from a params mapping; unknown keys and wrong types are errors."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: top level must be a mapping of sections")
    known = {f.name: f for f in fields(Settings)}
    for section in raw:
        if section not in known and section not in extra_sections:
            raise ConfigError(f"{section}: unknown section (expected one of {sorted(known)})")
    parts = {}
    for name, f in known.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: must be a mapping, got {type(values).__name__}")
        parts[name] = _build(f.default_factory, name, values)
    settings = Settings(**parts)
    settings.check()
    return settings


def load(path: str | os.PathLike = "params.yaml") -> Settings:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    return from_dict(raw)


def load_raw(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text()) or {}


def _build(cls, section: str, values: dict[str, Any]):
    by_name = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in by_name:
            raise ConfigError(f"{section}.{key}: unknown key (expected one of {sorted(by_name)})")
        default = getattr(cls(), key)
        kwargs[key] = _coerce(f"{section}.{key}", value, type(default))
    return cls(**kwargs)


def _coerce(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is tuple:
        if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
        return tuple(value)
    if kind is float:
        if isinstance(value, str):  # YAML reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _range(key, value, lo, hi, inclusive=True):
    ok_lo = lo is None or (value >= lo if inclusive else value > lo)
    ok_hi = hi is None or (value <= hi if inclusive else value < hi)
    if not (ok_lo and ok_hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        bounds = f"[{lo_s}, {hi_s}]" if inclusive else f"({lo_s}, {hi_s})"
        raise ConfigError(f"{key}: {value!r} is out of range {bounds}")


def _multiple(key, value, m):
    if value % m:
        raise ConfigError(f"{key}: {value} must be a multiple of {m} (the trunk downsamples by 8)")


def _choice(key, value, choices):
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
