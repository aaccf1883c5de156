"""Models side by side on one validation store: a markdown table of every metric (each model at
each decoding it is scored at, and gray), a labelled sample grid, and the colourfulness/CIEDE2000
trade-off figure. What the README's tables and pictures are made with.

Usage: python scripts/compare_models.py --data data/processed --prior data/prior/ab_prior.npy \
         --model regression=models:/colorizer/4 --model classification=models:/colorizer/5 \
         --temperatures 1,0.6,0.38,0.2 --corrections 0,0.55 --out docs/
Model specs are anything `colorize predict --model` takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from colorize import imaging
from colorize.decoding import NEUTRAL, Decoding
from colorize.evaluate.score import GRAY, HEADLINE, score
from colorize.files import write_text
from colorize.model import bins
from colorize.model.inference import predict_ab
from colorize.predict.load import resolve
from colorize.preprocess.store import LabStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/processed")
    parser.add_argument("--prior", default="data/prior/ab_prior.npy")
    parser.add_argument("--model", action="append", required=True, help="NAME=SPEC")
    parser.add_argument("--temperatures", default="1,0.6,0.38,0.2")
    parser.add_argument("--corrections", default="0")
    parser.add_argument("--grid", default="1:0.55,0.2:0.55",
                        help="classification decodings shown in the grid, T:A,...")
    parser.add_argument("--grid-images", type=int, default=6)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    store = LabStore(Path(args.data) / "val")
    prior = bins.load_prior(args.prior)
    temps = [float(t) for t in args.temperatures.split(",")]
    alphas = [float(a) for a in args.corrections.split(",")]
    rows, points, columns, labels = [], {}, [], []
    labs = store.batch(0, min(args.grid_images, len(store)))
    gray = None
    for spec in args.model:
        name, _, model_spec = spec.partition("=")
        found = resolve(model_spec)
        model = found.model
        regression = model.config.head == "regression"
        decoded = [NEUTRAL] if regression else [Decoding(t, a) for a in alphas for t in temps]
        scores = score(model, store, prior, decoded, wanted=HEADLINE)
        gray = scores[GRAY].summary()
        for d in decoded:
            s = scores[d].summary()
            label = name if regression else f"{name}, {d.label()}"
            rows.append([label, *(s[k] for k in HEADLINE)])
            points.setdefault((name, d.prior_correction), []).append(
                (s["ciede2000"], s["colourfulness_ratio"], d.temperature))
        shown = ([NEUTRAL] if regression else
                 [Decoding(*(float(x) for x in g.split(":"))) for g in args.grid.split(",")])
        columns += predict_ab(model, labs[:, 0], shown, batch_size=len(labs))
        labels += [name if regression else f"{name[:5]} {d.label()}" for d in shown]
    rows.insert(0, ["gray (ab = 0)", *(gray[k] for k in HEADLINE)])
    out = Path(args.out)
    header = "| | " + " | ".join(HEADLINE) + " |\n|---" * 1 + "|---" * len(HEADLINE) + "|\n"
    table = header + "".join("| " + " | ".join(str(x) for x in r) + " |\n" for r in rows)
    write_text(out / "comparison.md", table)
    print(table)
    imaging.save_png(imaging.sample_grid(labs[:, 0], columns, labs[:, 1:],
                                         labels=("gray input", *labels, "ground truth")),
                     out / "comparison.png")
    plot(points, gray, out / "tradeoff.png")


def plot(points: dict, gray: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (name, alpha), pts in points.items():
        x, y, t = zip(*sorted(pts), strict=True)
        label = name if len(pts) == 1 else f"{name}, prior correction {alpha:g}"
        ax.plot(x, y, "o-" if len(pts) > 1 else "s", label=label)
        if len(pts) > 1:
            for xi, yi, ti in zip(x, y, t, strict=True):
                ax.annotate(f"T={ti:g}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    ax.plot([gray["ciede2000"]], [0], "kx", label="gray (ab = 0)")
    ax.axvline(gray["ciede2000"], color="k", lw=0.5, ls=":")
    ax.set_xlabel("CIEDE2000 (lower is better)")
    ax.set_ylabel("colourfulness / truth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
