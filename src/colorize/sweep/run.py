"""`colorize sweep`: run (or continue) the study, then report the best parameters."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from colorize.config import ConfigError, Settings
from colorize.sweep.report import (
    apply_command,
    apply_to_params,
    best_params,
    log_to_parent,
    write_best,
)
from colorize.sweep.study import make_study, run_workers


def sweep(settings: Settings, workers: int = 1, apply: bool = False,
          params_path: str = "params.yaml", data_dir: str = "data/processed", **overrides) -> dict:
    if workers < 1:
        raise ConfigError(f"--workers: {workers} must be at least 1")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        settings = dataclasses.replace(settings,
                                       sweep=dataclasses.replace(settings.sweep, **changes))
        settings.check()
    if not (Path(data_dir) / "train" / "index.json").exists():
        raise FileNotFoundError(f"{data_dir}: no preprocessed data; run "
                                "`dvc repro preprocess` first")
    start = time.perf_counter()
    run_workers(settings, workers, data_dir)
    seconds = time.perf_counter() - start
    study = make_study(settings.sweep)
    best = best_params(study)
    log_to_parent(study, settings, best)
    print(f"sweep '{study.study_name}': {len(study.trials)} trials in total, "
          f"this call {seconds:.0f}s with {workers} worker(s)")
    if best is None:
        print("no trial completed: no best parameters")
        return {"seconds": seconds, "best": None}
    path = write_best(best, Path(params_path).parent / "sweeps")
    print(f"best: trial {best['trial']}, val_loss {best['best_val_loss']:.5f}, "
          f"{best['params']} ({best['counts']})\nwritten to {path}\napply with:\n"
          f"  {apply_command(best)}")
    if apply:
        apply_to_params(best, params_path)
        print(f"applied to {params_path}")
    return {"seconds": seconds, "best": best, "file": str(path)}
