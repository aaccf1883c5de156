"""The training loop: one readable loop for one process or many (DDP), on the CPU or a GPU.

`fit` reads top to bottom: data, build, resume, then per epoch train_epoch, validate, keep the
best, checkpoint. Each piece is a function of its own.
- Batches: `train.batch_size` is the global batch; each of W ranks takes batch_size / W images.
  The order is a permutation seeded by (seed, epoch) and each image's crop by (seed, epoch,
  image), so one process and W processes see the same global batches (train/data.py).
  Validation runs in batches of the same per-rank size.
- Precision: bf16 autocast where supported, fp16 with a gradient scaler on GPUs without bf16,
  fp32 with amp "off" (device.py). Optional torch.compile and gradient clipping.
- Schedule, per step: linear warmup over `warmup_steps` (at most 1/5 of the steps), then
  cosine to lr/100 at the last step (or constant).
- Optional exponential moving average of the weights (train.ema, `EMA`): then the average is
  what is validated, kept as the best model and saved.
- Optional progressive resizing (train.low_res_epochs): the first epochs train on crops of half
  the size in batches of four times the photos, the same pixels (and FLOPs) a step, so those
  epochs see 4x the photos for the same compute; the last epochs at the full crop.
- Optional scene-classification loss (train.scene_loss, labels from data.labels): added to
  the colour loss for the gradient; the losses reported are the colour loss alone.
- A checkpoint every epoch (train/checkpoint.py): a run resumed after epoch e continues exactly
  as the uninterrupted run would have, on every rank. The best model is the one with the lowest
  validation loss (the training loss).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from colorize.config import ConfigError, Settings
from colorize.device import autocast, grad_scaler, pick_device, precision_name
from colorize.model.file import build, network_entry
from colorize.model.network import Colorizer
from colorize.preprocess.store import LabStore
from colorize.train import dist
from colorize.train.checkpoint import Checkpoints
from colorize.train.data import (
    EpochSampler,
    LabDataset,
    Prefetch,
    folder_labels,
    train_transform,
)
from colorize.train.loss import SceneLoss, make_loss

LOW_RES = 2  # train.low_res_epochs: crops this many times smaller, batches its square larger


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
    scene_loss: float = 0.0  # train.scene_loss: the scene classifier's mean training loss


@dataclass
class FitResult:
    model: Colorizer  # holds the best weights (lowest validation loss), on the CPU
    history: list[Epoch]
    best_epoch: int
    best_val_loss: float
    resumed_from: int  # epochs that were already done in a checkpoint


@dataclass
class Data:
    """This rank's loaders over the memory-mapped splits."""
    sampler: EpochSampler
    train: DataLoader
    val: DataLoader
    steps: int  # optimizer steps per epoch
    low: DataLoader | None  # train.low_res_epochs: half-size crops, batches of 4x the photos
    low_steps: int  # optimizer steps per low-resolution epoch
    train_images: int
    val_images: int
    classes: list[str]  # scene classes (data.labels), empty without


class EMA:
    """Exponential moving average of a network's weights and batch-norm statistics.

    After step n (counting from 1) each float tensor e moves toward the live one p by
    e += (1 - d_n) (p - e), with d_n = min(decay, (1 + n) / (10 + n)): the short warm-up of
    the decay keeps the random initial weights from lingering in short runs (d_1 = 2/11).
    Integer buffers (batch-norm's step counter) are copied."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.net = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = net.state_dict()
        for name, e in self.net.state_dict().items():
            if e.dtype.is_floating_point:
                e.lerp_(live[name], 1.0 - d)
            else:
                e.copy_(live[name])

    def state_dict(self) -> dict:
        return {"updates": self.updates, "weights": self.net.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        self.net.load_state_dict(state["weights"])


@dataclass
class Parts:
    """Everything a step touches. `model` is `net` wrapped for DDP (world > 1), `step` that
    model compiled (train.compile) or itself."""
    net: Colorizer
    model: torch.nn.Module
    step: Callable[[torch.Tensor], torch.Tensor]
    loss: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: str
    ema: EMA | None = None
    scene: SceneLoss | None = None

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are validated and kept: the moving average, or the live ones."""
        return self.ema.net if self.ema is not None else self.model


@dataclass
class Best:
    val_loss: float = math.inf
    epoch: int = 0
    weights: dict | None = None  # on the CPU


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


def make_data(settings: Settings, data_dir: Path, device: torch.device) -> Data:
    t, ctx = settings.train, dist.context()
    if t.batch_size % ctx.world:
        raise ConfigError(f"train.batch_size: {t.batch_size} must be divisible by the "
                          f"{ctx.world} training processes (it is the global batch)")
    train_store, val_store = LabStore(data_dir / "train"), LabStore(data_dir / "val")
    classes, (train_labels, val_labels) = (
        folder_labels(train_store, val_store) if settings.data.labels == "folders"
        else ([], (None, None)))
    sampler = EpochSampler(len(train_store), t.seed, ctx.rank, ctx.world)
    per_rank = t.batch_size // ctx.world
    common = {"batch_size": per_rank, "num_workers": t.num_workers,
              "persistent_workers": t.num_workers > 0, "pin_memory": device.type == "cuda"}

    def loader(crop: int, batch: int) -> DataLoader:
        return DataLoader(LabDataset(train_store, train_transform(crop, t.crop_scale_min),
                                     t.seed, train_labels, settings.model.hints, t.hint_free),
                          sampler=sampler, drop_last=len(sampler) > batch,
                          **{**common, "batch_size": batch})

    train = loader(t.crop, per_rank)
    low = loader(t.crop // LOW_RES, LOW_RES**2 * per_rank) if t.low_res_epochs else None
    val = DataLoader(Subset(LabDataset(val_store, seed=t.seed, labels=val_labels,
                                       hints=settings.model.hints),
                            range(ctx.rank, len(val_store), ctx.world)), **common)
    steps, low_steps = (min(len(x), t.max_steps_per_epoch or len(x)) if x is not None else 0
                        for x in (train, low))
    return Data(sampler, train, val, steps, low, low_steps, len(train_store), len(val_store),
                classes)


def build_parts(settings: Settings, prior: np.ndarray | None, device: torch.device,
                total_steps: int, classes: int = 0) -> Parts:
    """The network (with the training prior for the classification head), its DDP wrapper,
    loss (and the scene loss over `classes` classes), optimizer, schedule and gradient
    scaler."""
    t = settings.train
    net = build(settings.model.model_dump()).to(device, memory_format=torch.channels_last)
    if settings.model.head == "classification":
        if prior is None:
            raise ValueError("fit: the classification head needs the training split's prior")
        net.set_prior(prior)  # saved with the model: the prior correction at inference
    if dist.context().world > 1 and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    model = DistributedDataParallel(net) if dist.context().world > 1 else net
    ema = EMA(net, t.ema) if t.ema else None  # copied before the scene loss hooks the network
    scene = SceneLoss(net, classes).to(device) if t.scene_loss else None
    params = [*net.parameters(), *(scene.parameters() if scene is not None else [])]
    opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total_steps, t.warmup_steps, t.lr_schedule))
    return Parts(net, model, torch.compile(model) if t.compile else model,
                 make_loss(settings.model.head, t.loss, prior, t.rebalance).to(device),
                 opt, sched, grad_scaler(device, t.amp), device, t.amp, ema, scene)


def train_epoch(parts: Parts, data: Data, epoch: int, settings: Settings,
                bar_on: bool) -> tuple[float, float, float]:
    """One epoch of optimizer steps -> (mean training loss over all ranks, images/s, mean
    scene loss)."""
    t = settings.train
    start = time.perf_counter()
    data.sampler.set_epoch(epoch)
    low = epoch <= t.low_res_epochs
    loader, steps = (data.low, data.low_steps) if low else (data.train, data.steps)
    parts.model.train()
    total = torch.zeros((), device=parts.device)
    scene_total = torch.zeros((), device=parts.device)
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{t.epochs}{' (half size)' if low else ''}",
               unit="step", leave=False, disable=not bar_on)
    batches = loader if t.num_workers else Prefetch(loader)
    for step, (x, ab, labels) in enumerate(batches):  # x: L, and the hint channels if any
        if step == steps:
            break
        x, ab = _to(x, parts.device), _to(ab, parts.device)
        with autocast(parts.device, parts.amp):
            out = parts.step(x)
        loss = objective = parts.loss(out, ab)
        if parts.scene is not None:
            scene = parts.scene(labels.to(parts.device))
            objective = loss + t.scene_loss * scene
            scene_total += scene.detach()
        if not torch.isfinite(objective):
            raise DivergedError(f"loss is {objective.item()} at epoch {epoch}, step {step + 1} "
                                f"(train.lr={t.lr} may be too high)")
        parts.opt.zero_grad(set_to_none=True)
        parts.scaler.scale(objective).backward()
        if t.grad_clip:
            parts.scaler.unscale_(parts.opt)
            torch.nn.utils.clip_grad_norm_(parts.net.parameters(), t.grad_clip)
        parts.scaler.step(parts.opt)
        parts.scaler.update()
        parts.sched.step()
        if parts.ema is not None:
            parts.ema.update(parts.net)
        total += loss.detach()
        if bar_on:
            bar.update()
            speed = (step + 1) * len(x) * dist.context().world / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{total.item() / (step + 1):.4f}", img_s=f"{speed:.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    world = dist.context().world
    images, steps = steps * loader.batch_size * world, max(steps, 1)
    mean, scene = dist.all_sum([total.item() / steps, scene_total.item() / steps], parts.device)
    return mean / world, round(images / seconds, 2), scene / world


@torch.no_grad()
def validate(parts: Parts, loader: DataLoader) -> float:
    """The training loss of the kept weights over the whole validation split (per-pixel mean,
    all ranks)."""
    model = parts.kept
    model.eval()
    total, n = 0.0, 0
    for x, ab, _ in loader:
        x, ab = _to(x, parts.device), _to(ab, parts.device)
        with autocast(parts.device, parts.amp):
            out = model(x)
        total += parts.loss(out, ab).item() * len(x)
        n += len(x)
    total, n = dist.all_sum([total, n], parts.device)
    return total / max(n, 1)


def fit(settings: Settings, data_dir: str | Path, checkpoints: Checkpoints,
        prior: np.ndarray | None = None,
        on_epoch: Callable[[Epoch, Colorizer], None] | None = None,
        log: Callable[[str], None] = print, progress: bool = True) -> FitResult:
    """Train (or resume from `checkpoints`) and return the best model. `prior` (the ab prior
    over the bins) is needed by the classification head. `on_epoch` runs on rank 0."""
    t, ctx = settings.train, dist.context()
    device = pick_device(t.device, ctx.local_rank)
    seed_everything(t.seed)
    data = make_data(settings, Path(data_dir), device)
    total_steps = t.low_res_epochs * data.low_steps + (t.epochs - t.low_res_epochs) * data.steps
    parts = build_parts(settings, prior, device, total_steps, len(data.classes))
    history, best = _resume(parts, checkpoints.open())
    resumed_from = len(history)
    low_res = (f" (1..{t.low_res_epochs}: crop {t.crop // LOW_RES}, batch "
               f"{LOW_RES**2 * t.batch_size})" if t.low_res_epochs else "")
    log(f"training on {device} ({precision_name(device, t.amp)}"
        f"{f', {ctx.world} processes' if ctx.world > 1 else ''}), {data.train_images} train / "
        f"{data.val_images} val images, {settings.model.head} head, batch {t.batch_size}, "
        f"crop {t.crop}, epochs {resumed_from + 1}..{t.epochs}{low_res}"
        f"{f', {len(data.classes)} scene classes' if data.classes else ''}")
    bar_on = progress and ctx.is_main and sys.stderr.isatty()
    for epoch in range(resumed_from + 1, t.epochs + 1):
        start = time.perf_counter()
        train_loss, speed, scene = train_epoch(parts, data, epoch, settings, bar_on)
        val = validate(parts, data.val)
        if not math.isfinite(val):
            raise DivergedError(f"validation loss is {val} at epoch {epoch}")
        record = Epoch(epoch, train_loss, val, round(time.perf_counter() - start, 3), speed,
                       parts.opt.param_groups[0]["lr"], scene)
        history.append(record)
        if val < best.val_loss:  # lowest validation loss wins (the seed used max: a bug)
            kept = parts.ema.net if parts.ema is not None else parts.net
            best = Best(val, epoch, {k: v.detach().cpu().clone()
                                     for k, v in kept.state_dict().items()})
        checkpoints.save(_training_state(parts, history, best, settings.preprocess.size))
        if ctx.is_main:
            log(f"epoch {epoch}/{t.epochs}: train {train_loss:.5f} val {val:.5f} "
                f"{f'scene {scene:.3f} ' if parts.scene is not None else ''}"
                f"({speed:.1f} img/s, {record.seconds:.0f} s)")
            if on_epoch is not None:
                on_epoch(record, parts.net)
    if parts.scene is not None:
        parts.scene.detach()
    if best.weights is None:
        raise DivergedError("no epoch finished")
    net = parts.net
    net.load_state_dict(best.weights)
    return FitResult(net.to(memory_format=torch.contiguous_format).cpu().eval(), history,
                     best.epoch, best.val_loss, resumed_from)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _training_state(parts: Parts, history: list[Epoch], best: Best, size: int) -> dict:
    return {"network": network_entry(parts.net, size), "optimizer": parts.opt.state_dict(),
            "scheduler": parts.sched.state_dict(), "scaler": parts.scaler.state_dict(),
            "ema": parts.ema.state_dict() if parts.ema is not None else None,
            "scene": parts.scene.state_dict() if parts.scene is not None else None,
            "history": [asdict(e) for e in history],
            "best": {"val_loss": best.val_loss, "epoch": best.epoch, "weights": best.weights}}


def _resume(parts: Parts, state: dict | None) -> tuple[list[Epoch], Best]:
    """Load a checkpoint's training state into the parts -> (history, best)."""
    if state is None:
        return [], Best()
    parts.net.load_state_dict(state["network"]["state_dict"])
    parts.opt.load_state_dict(state["optimizer"])
    parts.sched.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    if parts.ema is not None:
        parts.ema.load_state_dict(state["ema"])
    if parts.scene is not None:
        parts.scene.load_state_dict(state["scene"])
    return [Epoch(**e) for e in state["history"]], Best(**state["best"])
