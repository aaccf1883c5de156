"""`colorize sweep`: run (or continue) the study, then report the best parameters.
`colorize sweep --apply` runs nothing: it writes the best trial of the existing study into
params.yaml."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

from colorize.config import ConfigError, Settings
from colorize.errors import UserError
from colorize.sweep.report import (
    apply_command,
    apply_to_params,
    best_params,
    log_to_parent,
    write_best,
)
from colorize.sweep.storage import is_url, open_storage, redact
from colorize.sweep.study import make_study, run_workers


def sweep(settings: Settings, *, workers: int = 1, apply: bool = False,
          params_path: str | Path = "params.yaml", data_dir: str | Path = "data/processed",
          prior_path: str | Path = "data/prior/ab_prior.npy",
          manifest: str | Path = "data/interim/manifest.csv", **overrides) -> dict:
    if workers < 1:
        raise ConfigError(f"--workers: {workers} must be at least 1")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        settings = settings.override(sweep=changes)
    if apply:
        return _apply_existing(settings, params_path)
    for needed, stage in ((Path(data_dir) / "train" / "index.json", "preprocess"),
                          (Path(prior_path), "prior")):
        if not needed.exists():
            raise UserError(f"{needed} not found: run `dvc repro {stage}` first")
    start = time.perf_counter()
    run_workers(settings, workers, data_dir, prior_path, manifest)
    seconds = time.perf_counter() - start
    study = make_study(settings.sweep)
    best = best_params(study, settings.sweep.metric)
    # The parent run's tags show the settings: never a database password.
    log_to_parent(study, settings.override(sweep={"storage": redact(settings.sweep.storage)}),
                  best)
    print(f"sweep '{study.study_name}': {len(study.trials)} trials in total, "
          f"this call {seconds:.0f}s with {workers} worker(s)")
    if best is None:
        print("no trial completed: no best parameters")
        return {"seconds": seconds, "best": None}
    path = write_best(best, Path(params_path).parent / "sweeps")
    print(f"best: trial {best['trial']}, {best['metric']} {best['value']:.5f}, "
          f"{best['params']} ({best['counts']})\nwritten to {path}\napply with:\n"
          f"  {apply_command(best)}\nor: colorize sweep --apply")
    return {"seconds": seconds, "best": best, "file": str(path)}


def _apply_existing(settings: Settings, params_path: str | Path) -> dict:
    sweep_settings = settings.sweep
    where = redact(sweep_settings.storage)  # never print a database password
    if not is_url(sweep_settings.storage) and not Path(sweep_settings.storage).exists():
        raise UserError(f"no study to apply: {where} does not exist (run `colorize sweep` "
                        "first)")
    # Load, not create: --apply on a server must not leave an empty study behind.
    try:
        optuna.load_study(study_name=sweep_settings.study,
                          storage=open_storage(sweep_settings.storage, sweep_settings.heartbeat_s))
    except KeyError:
        raise UserError(f"no study named {sweep_settings.study!r} in {where} "
                        "(run `colorize sweep` first)") from None
    best = best_params(make_study(sweep_settings), sweep_settings.metric)
    if best is None:
        raise UserError(f"study {sweep_settings.study!r} has no completed trial yet: nothing "
                        "to apply (run `colorize sweep`)")
    apply_to_params(best, params_path)
    values = ", ".join(f"{k}: {v}" for k, v in best["params"].items())
    trained = (f", after {best['epochs']} epoch(s) of training; params.yaml's train.epochs is "
               f"{settings.train.epochs}" if best.get("epochs") else "")
    print(f"applied trial {best['trial']} ({best['metric']} {best['value']:.5f}{trained}) to "
          f"{params_path}: {values}")
    return {"best": best, "applied": str(params_path)}
