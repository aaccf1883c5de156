"""The training loop: Adam + MSE on normalized ab, a checkpoint every epoch, exact resume.

Determinism: the shuffle order and the augmentation of epoch e depend only on (seed, e), and the
checkpoint holds model, optimizer and history, so a run resumed after epoch e continues exactly as
the uninterrupted run would have.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from colorize.config import Settings
from colorize.device import autocast, pick_device, precision_name
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore
from colorize.train.dataset import LabDataset, train_transform

# Per-pixel losses on normalized ab. MSE regresses the conditional mean; L1 and Huber the
# (closer to) conditional median, which stays nearer gray where the colour is ambiguous.
LOSSES = {
    "mse": torch.nn.functional.mse_loss,
    "l1": torch.nn.functional.l1_loss,
    "huber": lambda pred, target: torch.nn.functional.huber_loss(pred, target, delta=0.1),
}


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    images_per_s: float


@dataclass
class FitResult:
    model: Colorizer  # holds the best weights (lowest validation loss)
    history: list[Epoch]
    best_epoch: int
    best_val_loss: float
    resumed_from: int  # epochs that were already done in a checkpoint
    checkpoint_dir: Path
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.no_grad()
def validation_loss(model, loader, device, amp, loss: str = "mse") -> float:
    """The training loss over the whole validation split (per-pixel mean)."""
    model.eval()
    total, n = 0.0, 0
    for L, ab in loader:
        L, ab = _to(L, device), _to(ab, device)
        with autocast(device, amp):
            pred = model(L)
        total += LOSSES[loss](pred.float(), ab).item() * ab.numel()
        n += ab.numel()
    return total / max(n, 1)


def fit(settings: Settings, data_dir: str | Path, checkpoint_dir: str | Path,
        on_epoch: Callable[[Epoch, Colorizer], None] | None = None,
        extra: dict | None = None, log: Callable[[str], None] = print) -> FitResult:
    """Train (or resume) and return the best model. `extra` is stored in the checkpoint
    (the MLflow run id, for one) and handed back on resume in FitResult.extra."""
    t = settings.train
    device = pick_device(t.device)
    seed_everything(t.seed)
    data_dir, checkpoint_dir = Path(data_dir), Path(checkpoint_dir)
    train_store, val_store = LabStore(data_dir / "train"), LabStore(data_dir / "val")
    train_set = LabDataset(train_store, train_transform(t.crop, t.crop_scale_min))
    val_loader = DataLoader(LabDataset(val_store), batch_size=settings.evaluate.batch_size)

    model = Colorizer(settings.model.decoder_width).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    # Per-epoch schedule; cosine decays to 1% of lr by the last epoch.
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs, eta_min=t.lr / 100)
             if t.lr_schedule == "cosine" else torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1))
    state = _load_checkpoint(checkpoint_dir / "last.pt", t.epochs, log)
    history: list[Epoch] = []
    best = {"val_loss": math.inf, "epoch": 0, "model": None}
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = [Epoch(**e) for e in state["history"]]
        best = state["best"]
        extra = {**state.get("extra", {}), **(extra or {})}
        log(f"resuming from {checkpoint_dir / 'last.pt'} after epoch {len(history)}")
    resumed_from = len(history)
    extra = extra or {}
    log(f"training on {device} ({precision_name(device, t.amp)}), {len(train_store)} train / "
        f"{len(val_store)} val images, crop {t.crop}, epochs {resumed_from + 1}..{t.epochs}")

    for epoch in range(resumed_from + 1, t.epochs + 1):
        start = time.perf_counter()
        model.train()
        transform_seed = t.seed * 100_003 + epoch
        train_set.transform.set_random_seed(transform_seed)
        order = torch.Generator().manual_seed(transform_seed)
        loader = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, generator=order,
                            drop_last=len(train_set) > t.batch_size,
                            num_workers=t.num_workers)
        total, steps, seen = 0.0, 0, 0
        for L, ab in loader:
            L, ab = _to(L, device), _to(ab, device)
            with autocast(device, t.amp):
                pred = model(L)
            loss = LOSSES[t.loss](pred.float(), ab)
            if not torch.isfinite(loss):
                raise DivergedError(f"loss is {loss.item()} at epoch {epoch}, step {steps + 1} "
                                    f"(train.lr={t.lr} may be too high)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
            seen += L.shape[0]
            if t.max_steps_per_epoch and steps >= t.max_steps_per_epoch:
                break
        sched.step()
        val = validation_loss(model, val_loader, device, t.amp, t.loss)
        if not math.isfinite(val):
            raise DivergedError(f"validation loss is {val} at epoch {epoch}")
        seconds = time.perf_counter() - start
        record = Epoch(epoch, total / max(steps, 1), val, round(seconds, 3),
                       round(seen / seconds, 2))
        history.append(record)
        if val < best["val_loss"]:  # lowest validation loss wins (the seed used max: a bug)
            best = {"val_loss": val, "epoch": epoch,
                    "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        _save_checkpoint(checkpoint_dir, model, opt, sched, history, best, extra, settings)
        log(f"epoch {epoch}/{t.epochs}: train {record.train_loss:.5f} val {val:.5f} "
            f"({record.images_per_s:.1f} img/s)")
        if on_epoch is not None:
            on_epoch(record, model)

    model.load_state_dict(best["model"])
    return FitResult(model.to(memory_format=torch.contiguous_format).cpu().eval(), history,
                     best["epoch"], best["val_loss"], resumed_from, checkpoint_dir, extra)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _save_checkpoint(folder: Path, model, opt, sched, history, best, extra, settings) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(),
             "history": [asdict(e) for e in history], "best": best, "extra": extra,
             "settings": settings.flat(), "epochs": settings.train.epochs}
    tmp = folder / "last.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / "last.pt")  # atomic: a crash mid-save keeps the previous checkpoint


def _load_checkpoint(path: Path, epochs: int, log) -> dict | None:
    """The state to resume from, or None. A finished run's folder is kept under a new name so
    that a forced rerun starts fresh without destroying what the user already has."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if len(state["history"]) >= epochs:
        keep = path.parent.with_name(f"{path.parent.name}-done-{int(time.time())}")
        shutil.move(path.parent, keep)
        log(f"{path} holds a finished run; kept it as {keep} and starting fresh")
        return None
    return state
