"""Vivid and right: decodings and models compared on photos never trained on (issue 19).

Each model's logits are computed once per split (and once more on the mirrored photos, for flip
averaging); every decoding is then scored from them. Decodings are CHOSEN on the validation
split by the rule below and REPORTED on the test split: the test split is scored only for the
reference rows and for what the rule chose.

    rule: among the decodings whose validation colourfulness is at least --vivid (0.85) of the
    truth's, the lowest validation CIEDE2000.
    at the default's colour: the same with the default decoding's validation colourfulness as
    the floor (is there a more accurate way to be exactly as colourful as the default?).

Usage:
  python bench/quality.py --data DIR/data/processed --prior DIR/data/prior/ab_prior.npy \
      --model 40k=DIR/models/model.pt:160000 [--model NAME=PATH:CROPS ...] --out quality.json
CROPS is the number of training crops (for the FLOP column: CROPS x the forward FLOPs at
the stored size; a training step costs about 3 forwards for every model alike).
Prints one table per model (validation: every decoding; test: references and the choices).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from colorize import lab
from colorize.evaluate.score import GRAY, Scores
from colorize.model import bins, decoders
from colorize.model.file import load_model
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore

WANTED = ("ciede2000", "auc", "auc_rebalanced", "psnr", "ssim", "mse_ab", "colourfulness_ratio")
SEARCH = ("ciede2000", "auc", "colourfulness_ratio")  # what the rule needs: a faster search
ACCURATE = (0.6, 0.0)  # the accurate end (T, A): the pale half of every blend


@dataclass(frozen=True)
class Way:
    """One decoding: family (mean | entropy | fading | expected | blend | regression), its
    knobs, and what is applied around it. blend: the annealed mean at T, A (vivid) and at
    ACCURATE mixed by the confidence to the power gamma; expected: bonus is the chroma bonus."""
    family: str
    T: float = 1.0
    A: float = 0.0
    quantile: float = 0.5
    gamma: float = 1.0
    gamut: bool = False
    flip: bool = False
    guided: tuple[int, float] | None = None
    bonus: float = 0.0

    def label(self) -> str:
        if self.family == "regression":
            core = "regression"
        elif self.family == "mean":
            core = f"mean T={self.T:g} A={self.A:g}"
        elif self.family == "entropy":
            core = f"entropy T={self.T:g}..{self.quantile:g} A={self.A:g}"
        elif self.family == "fading":
            core = f"fading q={self.quantile:g} g={self.gamma:g} A={self.A:g}"
        elif self.family == "blend":
            core = f"blend T={self.T:g} A={self.A:g} with T={ACCURATE[0]:g} A={ACCURATE[1]:g} " \
                f"by confidence^{self.gamma:g}"
        else:
            core = f"expected-CIEDE2000 T={self.T:g} A={self.A:g}"
            core += f" chroma bonus {self.bonus:g}" if self.bonus else ""
        for on, name in ((self.gamut, "L-gamut"), (self.flip, "flip"),
                         (self.guided is not None, f"guided{self.guided}")):
            core += f" +{name}" if on else ""
        return core


def forward_flops(model: Colorizer, size: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    return counter.get_total_flops()


@torch.no_grad()
def outputs(model: Colorizer, L: np.ndarray, flip: bool, batch: int = 64) -> torch.Tensor:
    """The head's raw output for every image (fp32 forward, kept as float16)."""
    model.eval()
    out = []
    for i in range(0, len(L), batch):
        x = lab.normalize_l(torch.from_numpy(L[i:i + batch])[:, None])
        if flip:
            out.append(model(x.flip(-1)).flip(-1).half())
        else:
            out.append(model(x).half())
    return torch.cat(out)


def decode(model: Colorizer, way: Way, raw: torch.Tensor, raw_flip: torch.Tensor | None,
           L: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """ab (n, 2, H, W) in ab units for one batch of raw outputs."""
    out = raw.float()
    if way.flip:
        out = (out + raw_flip.float()) / 2
    if way.family == "regression":
        ab = lab.denormalize_ab(out)
    else:
        if way.gamut:
            out = decoders.mask_by_lightness(out, L, allowed)
        def corrected(T: float, A: float) -> torch.Tensor:  # (logits - A log p~) / T
            return (out - A * model.log_prior.reshape(1, -1, 1, 1)) / T

        z = corrected(way.T, way.A)
        if way.family == "mean":
            ab = bins.annealed_mean(z, 1.0)
        elif way.family == "entropy":  # T: the confident end, quantile: the uncertain end,
            # a per-pixel temperature of its own: the logits only prior-corrected, not divided
            ab = decoders.entropy_tempered(corrected(1.0, way.A), way.T, way.quantile)
        elif way.family == "blend":
            ab = decoders.blend(out, bins.annealed_mean(z, 1.0),
                                bins.annealed_mean(corrected(*ACCURATE), 1.0), way.gamma)
        else:
            p = torch.softmax(z, 1)
            ab = (decoders.fading(p, way.quantile, way.gamma) if way.family == "fading"
                  else decoders.expected(p, way.bonus))
        ab = F.interpolate(ab, scale_factor=model.output_stride, mode="bilinear",
                           align_corners=False)
    if way.guided is not None:
        ab = decoders.guided(ab, L, *way.guided)
    return ab


def score_ways(model, ways, L, ab_true, raw, raw_flip, prior, allowed, batch=64,
               wanted=WANTED) -> dict:
    inverse = 1.0 / np.maximum(prior, 1e-12)
    scores = {w: Scores(wanted) for w in ways}
    scores[GRAY] = Scores(wanted)
    for i in range(0, len(L), batch):
        Lb, tb = L[i:i + batch], ab_true[i:i + batch]
        Lt = torch.from_numpy(Lb)[:, None]
        weight = inverse[bins.nearest_bin(tb.transpose(0, 2, 3, 1))]
        for w in ways:
            ab = decode(model, w, raw[i:i + batch],
                        None if raw_flip is None else raw_flip[i:i + batch], Lt,
                        allowed).numpy()
            scores[w].add_batch(Lb, tb, ab, weight)
        scores[GRAY].add_batch(Lb, tb, np.zeros_like(tb), weight)
    return {(k if k == GRAY else k.label()): v.summary() for k, v in scores.items()}


def candidate_ways(head: str) -> list[Way]:
    if head == "regression":
        return [Way("regression"), Way("regression", flip=True),
                Way("regression", guided=(4, 1e-3))]
    ways = [Way("mean", T, A) for A in (0.0, 0.55) for T in (1.0, 0.6, 0.38, 0.2)]
    ways += [Way("fading", quantile=q, gamma=g, A=A)
             for q, g, A in itertools.product((0.5, 0.7), (0.5, 1.0, 2.0), (0.0, 0.3))]
    ways += [Way("expected", T, A) for T, A in itertools.product((1.0, 0.6), (0.0, 0.3, 0.55))]
    ways += [Way("expected", 1.0, A) for A in (0.8, 1.0, 1.3)]
    ways += [Way("entropy", T, A, quantile=1.0) for T, A in itertools.product((0.2, 0.05),
                                                                            (0.0, 0.55))]
    ways += [Way("blend", 0.2, A, gamma=g) for A, g in itertools.product((0.55, 0.8, 1.0),
                                                                         (0.5, 1.0, 2.0))]
    ways += [Way("expected", 1.0, 0.0, bonus=b)
             for b in (0.05, 0.08, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.2)]
    ways += [Way("expected", 1.5, 0.0, bonus=b) for b in (0.1, 0.12, 0.13)]
    ways += [Way("expected", 1.0, A, bonus=b) for A, b in itertools.product((0.3, 0.55),
                                                                           (0.04, 0.06, 0.08, 0.1))]
    return ways


def refinements(best: Way) -> list[Way]:
    """The chosen decoding with each refinement alone and all together."""
    out = [replace(best, gamut=True), replace(best, flip=True),
           replace(best, guided=(4, 1e-3)), replace(best, guided=(8, 1e-2))]
    return out + [replace(best, gamut=True, flip=True, guided=(4, 1e-3))]


def choose(rows: dict[str, dict], ways: list[Way], vivid: float) -> Way | None:
    ok = [w for w in ways if rows[w.label()]["colourfulness_ratio"] >= vivid]
    return min(ok, key=lambda w: rows[w.label()]["ciede2000"]) if ok else None


def table(title: str, rows: dict[str, dict]) -> str:
    cols = [c for c in ("ciede2000", "auc", "auc_rebalanced", "psnr", "ssim",
                        "colourfulness_ratio") if c in next(iter(rows.values()))]
    head = "| " + title + " | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1) + "\n"
    return head + "".join(f"| {k} | " + " | ".join(f"{v[c]:.4f}" for c in cols) + " |\n"
                          for k, v in rows.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--prior", required=True, type=Path)
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH:CROPS")
    ap.add_argument("--vivid", type=float, default=0.85)
    ap.add_argument("--search", action="store_true", help="score every candidate decoding on "
                    "validation and choose by the rule (else only the reference rows)")
    ap.add_argument("--out", type=Path, default=Path("quality.json"))
    ap.add_argument("--limit", type=int, default=0, help="score only this many photos a split "
                    "(a quick check of the script)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    prior = bins.load_prior(args.prior)
    splits = {}
    for split in ("val", "test"):
        store = LabStore(args.data / split)
        labs = store.batch(0, min(len(store), args.limit or len(store)))
        splits[split] = (np.ascontiguousarray(labs[:, 0]), np.ascontiguousarray(labs[:, 1:]))
    train = LabStore(args.data / "train")
    counts = np.zeros((decoders.L_BANDS, bins.num_bins()))
    # The lightness gamut, from the training split only.
    for i in range(0, min(len(train), args.limit * 10 or len(train)), 512):
        labs = train.batch(i, min(i + 512, len(train)))
        counts += decoders.lightness_counts(labs[:, 0], labs[:, 1:], 4)
    allowed = torch.from_numpy(decoders.allowed_bins(counts))
    print(f"lightness gamut: {int(allowed.sum())} of {allowed.numel()} (band, bin) pairs seen "
          f"in {len(train)} training photos")
    report = {}
    for spec in args.model:
        name, rest = spec.split("=", 1)
        path, crops = rest.rsplit(":", 1)
        model, size, _ = load_model(path)
        flops = forward_flops(model, size)
        start = time.perf_counter()
        raw = {s: outputs(model, splits[s][0], False) for s in splits}
        raw_flip = {s: outputs(model, splits[s][0], True) for s in splits}
        print(f"{name}: {model.config.head}, forward {flops / 1e9:.3f} GFLOP at {size} px, "
              f"training {int(crops) * flops / 1e12:.1f} TFLOP (x3 with backward); outputs in "
              f"{time.perf_counter() - start:.0f} s")
        reference = [Way("mean", 0.2, 0.55), Way("mean", 0.6, 0.0)] \
            if model.config.head != "regression" else [Way("regression")]
        ways = candidate_ways(model.config.head) if args.search else reference
        val = score_ways(model, ways, *splits["val"], raw["val"], raw_flip["val"], prior,
                         allowed, wanted=SEARCH)
        best = choose(val, ways, args.vivid) if args.search else None
        chosen = [best] if best else []
        if best is not None and best.family != "regression":
            more = refinements(best)
            val.update(score_ways(model, more, *splits["val"], raw["val"], raw_flip["val"],
                                  prior, allowed, wanted=SEARCH))
            final = choose(val, [best, *more], args.vivid)
            chosen = list(dict.fromkeys([best, final]))
        matched = None
        if args.search and model.config.head != "regression":
            matched = choose(val, ways, val[reference[0].label()]["colourfulness_ratio"])
        reported = list(dict.fromkeys(reference + chosen + ([matched] if matched else [])))
        print(table(f"{name} validation ({len(splits['val'][0])}), search", val))
        val = score_ways(model, reported, *splits["val"], raw["val"], raw_flip["val"], prior,
                         allowed)
        test = score_ways(model, reported, *splits["test"], raw["test"], raw_flip["test"],
                          prior, allowed)
        print(table(f"{name} validation ({len(splits['val'][0])})", val))
        print(f"chosen on validation: {[w.label() for w in chosen]}")
        if matched is not None:
            print(f"at the default decoding's colour: {matched.label()}")
        print(table(f"{name} test ({len(splits['test'][0])})", test))
        report[name] = {"head": model.config.head, "forward_gflop": flops / 1e9,
                        "training_crops": int(crops),
                        "training_forward_tflop": int(crops) * flops / 1e12,
                        "chosen": [w.label() for w in chosen],
                        "at_default_colour": None if matched is None else matched.label(),
                        "val": val, "test": test}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
