"""The `colorize` command: one subcommand per pipeline stage (what dvc.yaml runs), plus tools."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _settings(args):
    from colorize import config

    return config.load(args.params)


def cmd_fetch(args) -> None:
    from colorize.data.fetch import fetch

    fetch(_settings(args).data)


def cmd_prepare(args) -> None:
    from colorize.data.prepare import prepare

    prepare(_settings(args).data)


def cmd_preprocess(args) -> None:
    from colorize.preprocess.run import preprocess

    s = _settings(args)
    preprocess(s.data, s.preprocess, workers=args.workers)


def cmd_train(args) -> None:
    from colorize.train.stage import run

    run(_settings(args))


def cmd_evaluate(args) -> None:
    from colorize.evaluate.run import evaluate, log_to_mlflow

    s = _settings(args)
    log_to_mlflow(s, evaluate(s))


def cmd_predict(args) -> None:
    from colorize.predict.run import predict

    predict(args.inputs, args.out, args.model, args.batch_size,
            amp="off" if args.fp32 else "auto")


def cmd_export(args) -> None:
    from colorize.predict.export import export_onnx

    export_onnx(args.model, args.out)


def cmd_sweep(args) -> None:
    from colorize.sweep.run import sweep

    sweep(_settings(args), workers=args.workers, apply=args.apply, params_path=args.params,
          n_trials=args.n_trials, epochs=args.epochs, storage=args.storage, study=args.study)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="colorize", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("fetch", help="stage 0: obtain the configured source's raw data"
                   ).set_defaults(func=cmd_fetch)
    sub.add_parser("prepare", help="stage 1: collect images, write the split manifest"
                   ).set_defaults(func=cmd_prepare)
    p = sub.add_parser("preprocess", help="stage 2: decode, resize, LAB, sharded arrays")
    p.add_argument("--workers", type=int, default=None, help="override preprocess.workers")
    p.set_defaults(func=cmd_preprocess)
    sub.add_parser("train", help="stage 3: train with checkpoints, log to MLflow"
                   ).set_defaults(func=cmd_train)
    sub.add_parser("evaluate", help="stage 4: metrics vs the gray baseline, register the model"
                   ).set_defaults(func=cmd_evaluate)
    p = sub.add_parser("predict", help="colorize your own photos at full resolution")
    p.add_argument("inputs", nargs="+", help="photos and/or folders")
    p.add_argument("--out", required=True, help="output folder (PNG files)")
    p.add_argument("--model", default=None, help="checkpoint path, models:/colorizer@<alias> or "
                   "runs:/<id>/model (default: models/model.pt, else models:/colorizer@newest)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--fp32", action="store_true",
                   help="plain fp32 (default: bf16 autocast where the CPU/GPU supports it)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("export", help="export the network to ONNX (needs onnxruntime)")
    p.add_argument("--model", default=None, help="as for predict")
    p.add_argument("--out", default="models/colorizer.onnx")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("sweep", help="Optuna study over train.lr and model.decoder_width")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--n-trials", type=int, default=None, help="override sweep.n_trials")
    p.add_argument("--epochs", type=int, default=None, help="override sweep.epochs")
    p.add_argument("--storage", default=None, help="override sweep.storage (file or RDB URL)")
    p.add_argument("--study", default=None, help="override sweep.study")
    p.add_argument("--apply", action="store_true", help="write the best values to params.yaml")
    p.set_defaults(func=cmd_sweep)

    args = parser.parse_args(argv)
    from colorize.config import ConfigError
    from colorize.data.download import DownloadError
    from colorize.data.sources import SourceError

    try:
        args.func(args)
    except (ConfigError, SourceError, DownloadError, FileNotFoundError) as e:
        print(f"colorize {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
