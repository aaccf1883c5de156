"""The training loop: one readable loop for one process or many (DDP), on the CPU or a GPU.

- Batches: `train.batch_size` is the global batch; each of W ranks takes batch_size / W images.
  The order is a permutation seeded by (seed, epoch) and each image's crop by (seed, epoch,
  image), so one process and W processes see the same global batches (train/data.py).
- Precision: bf16 autocast where supported, fp16 with a gradient scaler on GPUs without bf16,
  fp32 with amp "off" (device.py). Optional torch.compile and gradient clipping.
- Schedule, per step: linear warmup over `warmup_steps` (at most 1/5 of the steps), then
  cosine to lr/100 at the last step (or constant).
- A checkpoint every epoch (rank 0, atomic), holding model, optimizer, schedule, scaler and
  history: a run resumed after epoch e continues exactly as the uninterrupted run would have, on
  every rank. The best model is the one with the lowest validation loss (the training loss).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from colorize.config import ConfigError, Settings
from colorize.device import autocast, grad_scaler, pick_device, precision_name
from colorize.files import atomic_path
from colorize.model.checkpoint import build, read_state
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore
from colorize.train import dist
from colorize.train.data import EpochSampler, LabDataset, Prefetch, train_transform
from colorize.train.loss import make_loss


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Epoch:
    epoch: int
    train_loss: float
    val_loss: float
    seconds: float  # the whole epoch, validation included
    images_per_s: float  # training steps only
    lr: float = 0.0


@dataclass
class FitResult:
    model: Colorizer  # holds the best weights (lowest validation loss), on the CPU
    history: list[Epoch]
    best_epoch: int
    best_val_loss: float
    resumed_from: int  # epochs that were already done in a checkpoint
    checkpoint_dir: Path
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of train.lr after `step` optimizer steps (warmup, then cosine to 1/100).
    The warmup is at most a fifth of all steps, so short runs (tests, tiny data) still train."""
    warmup = min(warmup, total // 5)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def validation_loss(model, loss_fn, loader, device, amp) -> float:
    """The training loss over the whole validation split (per-pixel mean, all ranks)."""
    model.eval()
    total, n = 0.0, 0
    for L, ab in loader:
        L, ab = _to(L, device), _to(ab, device)
        with autocast(device, amp):
            out = model(L)
        total += loss_fn(out, ab).item() * len(L)
        n += len(L)
    total, n = dist.all_sum([total, n], device)
    return total / max(n, 1)


def fit(settings: Settings, data_dir: str | Path, checkpoint_dir: str | Path,
        prior: np.ndarray | None = None,
        on_epoch: Callable[[Epoch, Colorizer], None] | None = None,
        extra: dict | None = None, log: Callable[[str], None] = print,
        progress: bool = True) -> FitResult:
    """Train (or resume) and return the best model. `prior` (the ab prior over the bins) is
    needed by the classification head. `extra` is stored in the checkpoint (the MLflow run
    id, for one) and handed back on resume in FitResult.extra. `on_epoch` runs on rank 0."""
    t = settings.train
    ctx = dist.context()
    device = pick_device(t.device, ctx.local_rank)
    seed_everything(t.seed)
    if t.batch_size % ctx.world:
        raise ConfigError(f"train.batch_size: {t.batch_size} must be divisible by the "
                          f"{ctx.world} training processes (it is the global batch)")
    data_dir, checkpoint_dir = Path(data_dir), Path(checkpoint_dir)
    train_store, val_store = LabStore(data_dir / "train"), LabStore(data_dir / "val")
    sampler = EpochSampler(len(train_store), t.seed, ctx.rank, ctx.world)
    per_rank = t.batch_size // ctx.world
    loader_args = {"num_workers": t.num_workers, "persistent_workers": t.num_workers > 0,
                   "pin_memory": device.type == "cuda"}
    loader = DataLoader(LabDataset(train_store, train_transform(t.crop, t.crop_scale_min),
                                   t.seed),
                        batch_size=per_rank, sampler=sampler,
                        drop_last=len(sampler) > per_rank, **loader_args)
    val_loader = DataLoader(Subset(LabDataset(val_store), range(ctx.rank, len(val_store),
                                                                  ctx.world)),
                            batch_size=settings.evaluate.batch_size, **loader_args)
    steps = len(loader) if not t.max_steps_per_epoch else min(len(loader), t.max_steps_per_epoch)

    net = build(settings.model.model_dump()).to(device, memory_format=torch.channels_last)
    if settings.model.head == "classification":
        if prior is None:
            raise ValueError("fit: the classification head needs the training split's prior")
        net.set_prior(prior)  # saved with the model: the prior correction at inference
    if ctx.world > 1 and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    loss_fn = make_loss(settings.model.head, t.loss, prior, t.rebalance).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, t.epochs * steps, t.warmup_steps, t.lr_schedule))
    scaler = grad_scaler(device, t.amp)

    state = _resume_state(checkpoint_dir / "last.pt", t.epochs, log)
    history: list[Epoch] = []
    best = {"val_loss": math.inf, "epoch": 0, "model": None}
    if state:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = [Epoch(**e) for e in state["history"]]
        best = state["best"]
        extra = {**state.get("extra", {}), **(extra or {})}
        log(f"resuming from {checkpoint_dir / 'last.pt'} after epoch {len(history)}")
    resumed_from, extra = len(history), extra or {}
    model = DistributedDataParallel(net) if ctx.world > 1 else net
    step_fn = torch.compile(model) if t.compile else model
    log(f"training on {device} ({precision_name(device, t.amp)}"
        f"{f', {ctx.world} processes' if ctx.world > 1 else ''}), {len(train_store)} train / "
        f"{len(val_store)} val images, {settings.model.head} head, batch {t.batch_size}, "
        f"crop {t.crop}, epochs {resumed_from + 1}..{t.epochs}")

    bar_on = progress and ctx.is_main and sys.stderr.isatty()
    for epoch in range(resumed_from + 1, t.epochs + 1):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        total = torch.zeros((), device=device)
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{t.epochs}", unit="step", leave=False,
                   disable=not bar_on)
        batches = loader if t.num_workers else Prefetch(loader)
        for step, (L, ab) in enumerate(batches):
            if step == steps:
                break
            L, ab = _to(L, device), _to(ab, device)
            with autocast(device, t.amp):
                out = step_fn(L)
            loss = loss_fn(out, ab)
            if not torch.isfinite(loss):
                raise DivergedError(f"loss is {loss.item()} at epoch {epoch}, step {step + 1} "
                                    f"(train.lr={t.lr} may be too high)")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), t.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            total += loss.detach()
            if bar_on:
                bar.update()
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{total.item() / (step + 1):.4f}",
                                img_s=f"{(step + 1) * t.batch_size / elapsed:.0f}")
        bar.close()
        train_seconds = time.perf_counter() - start
        train_loss = dist.all_sum([total.item() / max(steps, 1)], device)[0] / ctx.world
        val = validation_loss(model, loss_fn, val_loader, device, t.amp)
        if not math.isfinite(val):
            raise DivergedError(f"validation loss is {val} at epoch {epoch}")
        record = Epoch(epoch, train_loss, val, round(time.perf_counter() - start, 3),
                       round(steps * t.batch_size / train_seconds, 2),
                       opt.param_groups[0]["lr"])
        history.append(record)
        if val < best["val_loss"]:  # lowest validation loss wins (the seed used max: a bug)
            best = {"val_loss": val, "epoch": epoch,
                    "model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
        if ctx.is_main:
            _save_checkpoint(checkpoint_dir, net, opt, sched, scaler, history, best, extra,
                             settings)
            log(f"epoch {epoch}/{t.epochs}: train {record.train_loss:.5f} val {val:.5f} "
                f"({record.images_per_s:.1f} img/s, {record.seconds:.0f} s)")
            if on_epoch is not None:
                on_epoch(record, net)
    if best["model"] is None:
        raise DivergedError("no epoch finished")
    net.load_state_dict(best["model"])
    return FitResult(net.to(memory_format=torch.contiguous_format).cpu().eval(), history,
                     best["epoch"], best["val_loss"], resumed_from, checkpoint_dir, extra)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _save_checkpoint(folder: Path, net, opt, sched, scaler, history, best, extra,
                     settings) -> None:
    state = {"model": net.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
             "history": [asdict(e) for e in history], "best": best, "extra": extra,
             "settings": settings.flat(), "epochs": settings.train.epochs}
    with atomic_path(folder / "last.pt") as tmp:  # a crash mid-save keeps the previous one
        torch.save(state, tmp)


def _resume_state(path: Path, epochs: int, log) -> dict | None:
    """The state every rank resumes from, or None. A finished run's folder is kept under a new
    name (by rank 0) so that a forced rerun starts fresh without destroying what the user
    already has."""
    finished = None
    if dist.context().is_main and path.exists():
        if len(read_state(path)["history"]) >= epochs:
            finished = path.parent.with_name(f"{path.parent.name}-done-{int(time.time())}")
            shutil.move(path.parent, finished)
            log(f"{path} holds a finished run; kept it as {finished} and starting fresh")
    dist.barrier()
    return read_state(path) if path.exists() else None
