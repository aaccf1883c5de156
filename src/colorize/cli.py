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
