"""Colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep
Priors"): "this spot is this colour", given to the network as three channels beside L:

    0, 1  the hint's a*, b* / AB_SCALE (normalized like the targets), 0 where there is none
    2     the mask: 1 where a hint is, which tells a gray hint (ab = 0) from no hint

A hint is a square patch: its top-left pixel, its side (1-9 px at the network's working size)
and one ab colour. `simulate` draws hints from the truth for training and evaluation (the
paper's scheme: the count geometric with stopping probability 1/8, so about one photo in eight
gets none; sides uniform in 1..9; positions Gaussian around the centre, sigma a quarter of the
size; each patch carrying the mean ab of the truth under it). `paint` writes any hints, drawn
or a person's, into the channels. Both are vectorised over the hints: no Python loop per hint.
A person's hints (`UserHint`: a point of the photo and an sRGB colour, from `--hint`,
`--hints FILE.json` or a served request) are parsed and mapped to the working size here too, so
every way in checks them the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from colorize import lab
from colorize.errors import UserError, shortened

CHANNELS = 3
STOP = 1 / 8  # the geometric count's stopping probability: P(no hint) = 1/8, mean 7 hints
MAX_SIDE = 9  # patch sides are drawn from 1..MAX_SIDE


@dataclass(frozen=True)
class Patches:
    """n hints: top-left corners, sides (working-size pixels) and colours (n, 2) in ab units."""
    top: np.ndarray
    left: np.ndarray
    side: np.ndarray
    ab: np.ndarray

    def __len__(self) -> int:
        return len(self.side)


def draw(rng: np.random.Generator, height: int, width: int, count: int | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the hints go -> (top, left, side), each (n,). count None: geometric (STOP)."""
    n = int(rng.geometric(STOP)) - 1 if count is None else count
    side = rng.integers(1, MAX_SIDE + 1, n)
    side = np.minimum(side, min(height, width))

    def corner(extent: int) -> np.ndarray:
        room = extent - side + 1  # the top-left corners that keep the patch inside
        return np.clip(rng.normal(room / 2, room / 4), 0, room - 1).astype(np.int64)

    return corner(height), corner(width), side


def patch_means(ab: np.ndarray, top: np.ndarray, left: np.ndarray, side: np.ndarray
                ) -> np.ndarray:
    """Mean ab (n, 2) of the truth ab (2, H, W) under each patch, from one integral image."""
    s = np.zeros((2, ab.shape[1] + 1, ab.shape[2] + 1))
    s[:, 1:, 1:] = np.asarray(ab, np.float64).cumsum(1).cumsum(2)
    bottom, right = top + side, left + side
    sums = s[:, bottom, right] - s[:, top, right] - s[:, bottom, left] + s[:, top, left]
    return (sums / side.astype(np.float64) ** 2).T.astype(np.float32)


def simulate(ab: np.ndarray, rng: np.random.Generator, count: int | None = None
             ) -> np.ndarray:
    """Hints drawn from the truth ab (2, H, W) in ab units -> the channels (3, H, W)."""
    top, left, side = draw(rng, *ab.shape[1:], count)
    return paint(ab.shape[1:], Patches(top, left, side, patch_means(ab, top, left, side)))


def paint(shape: tuple[int, int], patches: Patches) -> np.ndarray:
    """The channels (3, H, W) float32 for these patches (clipped to the image; where patches
    overlap, one of them)."""
    out = np.zeros((CHANNELS, *shape), np.float32)
    if not len(patches):
        return out
    d = np.arange(max(1, int(patches.side.max())))
    inside = ((d[None, :, None] < patches.side[:, None, None])
              & (d[None, None, :] < patches.side[:, None, None]))  # (n, d, d)
    rows = np.broadcast_to(patches.top[:, None, None] + d[None, :, None], inside.shape)[inside]
    cols = np.broadcast_to(patches.left[:, None, None] + d[None, None, :], inside.shape)[inside]
    which = np.broadcast_to(np.arange(len(patches))[:, None, None], inside.shape)[inside]
    keep = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    rows, cols, which = rows[keep], cols[keep], which[keep]
    colours = np.asarray(patches.ab, np.float32) / lab.AB_SCALE
    out[0, rows, cols] = colours[which, 0]
    out[1, rows, cols] = colours[which, 1]
    out[2, rows, cols] = 1.0
    return out


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The hints of one training item: a function of (seed, epoch, image) only, independent of
    its crop's random stream."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, index, 1]))


EVALUATION_SEED = 2017  # evaluation's hints: the same points for every model and every run


def for_evaluation(ab: np.ndarray, count: int, start: int) -> np.ndarray:
    """`count` hints for each truth ab (N, 2, H, W) of a split's images start..start+N-1 ->
    the channels (N, 3, H, W): the training distribution of places and sides, seeded by
    (EVALUATION_SEED, count, image) only."""
    if not len(ab):
        return np.zeros((0, CHANNELS, *ab.shape[2:]), np.float32)
    seeds = (np.random.SeedSequence([EVALUATION_SEED, count, start + j]) for j in range(len(ab)))
    return np.stack([simulate(a, np.random.default_rng(s), count)
                     for a, s in zip(ab, seeds, strict=True)])


# A person's hints: "this point of my photo is this colour".

HINT_FORMAT = "X,Y,#RRGGBB (X, Y in the photo's pixels from its top-left corner)"


@dataclass(frozen=True)
class UserHint:
    """A hint in a photo's own pixels: centre (x, y), an sRGB colour (only its a*b* are used;
    the photo keeps its own L*) and the side of its square in the photo's pixels."""
    x: int
    y: int
    rgb: tuple[int, int, int]
    side: int = 1

    def label(self) -> str:
        return f"{self.x},{self.y},#{bytes(self.rgb).hex()}"


def parse_colour(text: Any, where: str) -> tuple[int, int, int]:
    if isinstance(text, str) and len(text) == 7 and text[0] == "#":
        try:
            return tuple(bytes.fromhex(text[1:]))  # type: ignore[return-value]
        except ValueError:
            pass
    raise UserError(f"{where}: {shortened(repr(text))} is not a colour (#rrggbb, e.g. #3a7bd5)")


def _coordinate(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{where}: {shortened(repr(value))} is not a pixel coordinate (a whole "
                        "number from 0)")
    return value


def from_values(values: Any, where: str) -> UserHint:
    """[x, y, "#rrggbb"] or [x, y, "#rrggbb", side] (JSON) -> a hint; UserError naming it."""
    if not isinstance(values, list) or len(values) not in (3, 4):
        raise UserError(f"{where}: {shortened(repr(values))} is not a hint "
                        '([x, y, "#rrggbb"] or [x, y, "#rrggbb", side])')
    side = _coordinate(values[3], f"{where} side") if len(values) == 4 else 1
    if side < 1:
        raise UserError(f"{where}: side {side} must be at least 1")
    return UserHint(_coordinate(values[0], f"{where} x"), _coordinate(values[1], f"{where} y"),
                    parse_colour(values[2], where), side)


def from_list(values: Any, where: str) -> list[UserHint]:
    """A JSON list of hints (a --hints file's entry, a served row's) -> the hints; UserError
    naming `where` and the hint's place (from 1)."""
    if not isinstance(values, list):
        raise UserError(f"{where}: expected a list of hints")
    return [from_values(v, f"{where} hint {k + 1}") for k, v in enumerate(values)]


def parse(text: str, where: str = "--hint") -> UserHint:
    """'X,Y,#RRGGBB' (a command line's --hint) -> a hint; UserError naming it."""
    parts = text.split(",")
    if len(parts) != 3:
        raise UserError(f"{where}: {shortened(repr(text))} is not {HINT_FORMAT}")
    try:
        x, y = int(parts[0]), int(parts[1])
    except ValueError:
        raise UserError(f"{where}: {shortened(repr(text))} is not {HINT_FORMAT}") from None
    return from_values([x, y, parts[2].strip()], f"{where} {shortened(text)}")


def user_channels(given: list[UserHint], height: int, width: int, size: int,
                  photo: str) -> np.ndarray:
    """A photo's hints (its own pixels, height x width) -> the channels (3, size, size) at the
    network's working size (the photo is resized to size x size, aspect ignored). A hint
    outside the photo is a UserError naming the photo and the hint."""
    for h in given:
        if not (h.x < width and h.y < height):
            raise UserError(f"{photo}: hint {h.label()} is outside the photo ({width} x "
                            f"{height} pixels; x, y count from 0 at the top-left corner)")
    if not given:
        return np.zeros((CHANNELS, size, size), np.float32)
    centre_x = np.array([h.x * size // width for h in given])
    centre_y = np.array([h.y * size // height for h in given])
    side = np.array([max(1, round(h.side * size / min(height, width))) for h in given])
    rgb = np.array([h.rgb for h in given], np.float32)[None] / 255.0
    ab = lab.rgb_to_lab(rgb)[0, :, 1:]
    return paint((size, size), Patches(centre_y - (side - 1) // 2, centre_x - (side - 1) // 2,
                                       side, ab))


MAX_HINTS_FILE_BYTES = 16 << 20


def read_file(path: str | Path) -> dict[str, list[UserHint]]:
    """`--hints FILE.json`: {"photo file name": [[x, y, "#rrggbb"(, side)], ...], ...} ->
    the hints per name; UserError naming the file and the bad entry."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_HINTS_FILE_BYTES + 1)
    except OSError as e:
        raise UserError(f"--hints {path}: {e.strerror or e}") from None
    if len(raw) > MAX_HINTS_FILE_BYTES:
        raise UserError(f"--hints {path}: larger than {MAX_HINTS_FILE_BYTES >> 20} MB")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise UserError(f"--hints {path}: not JSON ({shortened(str(e))})") from None
    if not isinstance(data, dict):
        raise UserError(f'--hints {path}: expected an object {{"photo.jpg": [[x, y, '
                        '"#rrggbb"], ...]}}')
    return {name: from_list(values, f"--hints {path}: {shortened(name)}")
            for name, values in data.items()}
