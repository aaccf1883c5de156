"""How the classification head's colour distribution becomes one colour: the one owner of it.

Two numbers decode the predicted distribution over the ab bins (model/bins.py):
  temperature T        annealed mean, softmax(z / T): 1 = the mean colour (faithful, pale),
                       towards 0 the most likely colour (vivid); in [0.01, 100] (0.01 is
                       already the most likely colour; far smaller overflows to no colour)
  prior correction A   z - A log p~ before that: 0 = as trained, more = rarer, more saturated
                       colours (p~: the training prior mixed with the uniform); in [0, 2]
Defaults come from one place, params.yaml (evaluate.temperature, evaluate.prior_correction),
and one order decides which value a call uses (`resolve`): the command line or request, then
the values the registry version was evaluated at, then params.yaml. Evaluate, predict, the
served model, request, ONNX export and the sweep all go through this module. The regression
head has nothing to decode: it ignores the decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from colorize.errors import ConfigError

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0
MAX_CORRECTION = 2.0


def check_temperature(value: Any) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and MIN_TEMPERATURE <= value <= MAX_TEMPERATURE):
        raise ValueError(f"{value!r} must be a temperature in [{MIN_TEMPERATURE:g}, "
                         f"{MAX_TEMPERATURE:g}] (1 = mean colour, smaller = more vivid)")
    return float(value)


def check_correction(value: Any) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= MAX_CORRECTION):
        raise ValueError(f"{value!r} is out of range [0, {MAX_CORRECTION:g}] (0 = as trained, "
                         "more = rarer, more saturated colours)")
    return float(value)


@dataclass(frozen=True)
class Decoding:
    """A validated (temperature, prior correction); ValueError names the bad value."""

    temperature: float
    prior_correction: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "prior_correction", check_correction(self.prior_correction))

    def label(self) -> str:
        return f"T={self.temperature:g} A={self.prior_correction:g}"

    def params(self) -> dict[str, float]:
        """As the served model's request parameters and the registry's tags take them."""
        return {"temperature": self.temperature, "prior_correction": self.prior_correction}

    def tags(self) -> dict[str, str]:
        """Registry version tags (MLflow tags are strings; `from_tags` reads them back)."""
        return {k: repr(v) for k, v in self.params().items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Decoding | None:
        """The decoding a registry version was evaluated at; None when it has none (a
        regression version, or one registered before decodings were recorded)."""
        try:
            return cls(float(tags["temperature"]), float(tags["prior_correction"]))
        except (KeyError, ValueError):
            return None


def checked(temperature: Any, correction: Any,
            names: tuple[str, str] = ("temperature", "prior_correction")
            ) -> tuple[float | None, float | None]:
    """Values given by a user (None: not given), each validated; a bad one is a ConfigError
    that starts with its name (the option, or the request parameter)."""
    out = []
    for name, value, check in ((names[0], temperature, check_temperature),
                               (names[1], correction, check_correction)):
        try:
            out.append(None if value is None else check(value))
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None
    return out[0], out[1]


# Decoding a regression model, or a classification model "as trained" at its mean colour.
NEUTRAL = Decoding(1.0, 0.0)


def resolve(temperature: float | None, correction: float | None,
            *fallbacks: Decoding | None) -> Decoding | None:
    """Each value from the first source that has it: the given value (the command line or a
    request), then each fallback in order (the registry version's evaluated decoding, then
    params.yaml). None when some value has no source at all."""
    for source in fallbacks:
        if source is not None:
            temperature = source.temperature if temperature is None else temperature
            correction = source.prior_correction if correction is None else correction
    if temperature is None or correction is None:
        return None
    return Decoding(temperature, correction)
