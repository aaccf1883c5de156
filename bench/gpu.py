"""GPU readiness: every CUDA path of the project, run and timed on one device, in one table.

One row per path, each PASS, FAIL (with the reason) or skipped (with the reason):
  training  N optimizer steps of params.yaml's network at three precisions: bf16 autocast +
            channels_last, fp16 autocast + gradient scaler (the path of GPUs without bf16,
            forced here), and train.compile (torch.compile); at crops 128 and 224 and batches 64
            and 256, --steps timed steps each (200). Each row: images/s of
              (a) model only: the project's parts (train.loop.build_parts) stepping on one batch
                  already on the device (bench/train.py's "model only": warm-up excluded, median
                  step), and
              (b) the whole loop: train.loop.make_data + train_epoch over the memory-mapped
                  shards, with augmentation, hints and train.num_workers DataLoader workers,
            b/a, the peak memory (device: torch.cuda.max_memory_allocated; CPU: the peak RSS), and
            a sanity check: the loss is finite and falls over the steps (a and b) and the
            forward ran at the precision named.
  ddp       `python -m torch.distributed.run --nproc_per_node 1` running this file as a child.
            The project joins no process group at world size 1 (train/dist.py), so the child
            joins one (NCCL on CUDA, gloo on the CPU) and wraps the network as build_parts does
            for more processes (SyncBatchNorm on CUDA, then DistributedDataParallel): it must
            step exactly as the plain network. Then a 3-epoch train.loop.fit with
            train.checkpoint.Checkpoints is killed (SIGTERM to torchrun, SIGKILL if that fails)
            once epoch 1 is checkpointed, rerun, and must resume after epoch 1.
  eval      evaluate.score.score (what the sweep's Objective calls each epoch) with the model on
            the device: it must run and match the same model's metrics on the CPU (on CUDA
            both with cuDNN's default TF32 convolutions and without).
  predict   predict.predict.predict (what `colorize predict` runs), which must put the model
            on the GPU by itself where there is one (model/file.py's device "auto"; this run
            found models left on the CPU before): a 1920x1080 photo, a folder of 256x256
            photos, a 12000x8000 scan (--scan; on by default on CUDA without --tiny): wall
            time, peak device memory, peak host RSS, and every PNG written at its input's size.
  served    predict.service.ColorizerService.predict (the registered pyfunc), which must load
            its model on the device by itself;
            "skipped: mlflow not installed" where mlflow cannot be imported.
  onnx      predict.export.export_onnx of the trained model (its own check against PyTorch on
            the CPU), then onnxruntime against the model on the device.
The model of the later sections is the one the first training row trained.

Data: the first --images photos of --archive (default ../shared/data/miniplaces-11k.tar beside
the repository; bench/gpu_carry.sh copies them into .gpudata/ for a machine without it),
prepared, preprocessed and their prior computed in-process by the project's own stages. Nothing
here imports mlflow (but the served row), dvc, optuna, gradio, pandas or matplotlib: the header
lists any that got imported before the served row, and that is a FAIL.

Usage: python bench/gpu.py [--device cuda|cpu] [--tiny] [--steps N] [--images N]
       [--workers N] [--archive TAR] [--out FILE.json] [--work DIR] [--scan] [--budget-s S]
  GPU machine: the one-line command in bench/gpu_carry.sh (at most 8 minutes on an H200).
  Dry run on the CPU (tests/test_gpu_bench.py): python bench/gpu.py --device cpu --tiny
  --out gpu.json: crop 64, batch 4, 8 steps, one combination per precision, torch.compile with
  the aot_eager backend (inductor's C++ build alone takes a minute there). No row starts after
  --budget-s (420) seconds, training rows none after 55% of it: those are skipped, not cut.
Exit status: 1 when a row FAILs, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import gc
import io
import json
import math
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

T0 = time.perf_counter()  # a ddp child's lines say how long after its imports they came
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "miniplaces-11k.tar"
# Not on the GPU machine (or not wanted there): none may be imported outside the served row.
FORBIDDEN = ("mlflow", "dvc", "optuna", "gradio", "pandas", "matplotlib", "sklearn")
SECTIONS = ("training", "ddp", "eval", "predict", "served", "onnx")
MARK = "GPU-BENCH"  # prefix of the lines a ddp child prints for its parent
CODE = "bench-gpu"  # the checkpoints' code fingerprint (train.train's needs mlflow)
HOLD_S = 600  # how long a child held after its checkpoint waits to be killed
EVAL_TOL = {"tf32": (5e-3, 5e-3), "fp32": (1e-3, 1e-4)}  # (abs, rel) on each headline metric
ONNX_DEVICE_TOL = 1e-3  # onnxruntime vs the model on the device (fp32), normalized ab


class UsageError(Exception):
    """A mistake in the command line or its files: one line, exit status 2."""


@dataclass
class Row:
    section: str
    what: str
    setting: str
    device: str
    precision: str
    result: str = "PASS"
    seconds: float | None = None
    images_per_s: float | None = None  # training: (b) the whole loop; predict: photos/s
    model_only_images_per_s: float | None = None  # training: (a)
    ratio: float | None = None  # training: b / a
    memory_mb: float | None = None  # peak device memory (CUDA) or peak RSS (CPU)
    host_rss_mb: float | None = None
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        """Record a failed check; the first reason is the row's."""
        if self.result == "PASS":
            self.result = f"FAIL: {reason}"
        self.details.setdefault("failures", []).append(reason)

    def check(self, ok: bool, reason: str) -> bool:
        if not ok:
            self.fail(reason)
        return ok


class Report:
    """The rows so far; rewrites --out after each row, so a run cut short keeps what it did."""

    def __init__(self, header: dict, out: Path | None):
        self.header, self.out, self.rows = header, out, []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.save()
        speed = _speed(row)
        print(f"[gpu] {row.section}: {row.what} ({row.setting}) -> {row.result}"
              f"{f'; {speed}' if speed else ''}", file=sys.stderr, flush=True)

    def save(self) -> None:
        if self.out is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        tmp.write_text(json.dumps({"header": self.header, "rows": [asdict(r) for r in self.rows]},
                                  indent=1, default=str))
        tmp.replace(self.out)

    def markdown(self) -> str:
        h = self.header
        lines = [f"# GPU check {h['date']}: commit {h['commit']}, torch {h['torch']}, "
                 f"{h['device_name']} ({h['device']}), {h['setting']}", "",
                 "| section | what | setting | device | precision | time or speed | memory | "
                 "result |", "|---|---|---|---|---|---|---|---|"]
        # Sections in their order; training rows by precision, crop, batch (not run order).
        for r in sorted(self.rows, key=lambda r: (SECTIONS.index(r.section),
                                                  r.details.get("combo", []))):
            cuda = h["device"] == "cuda"
            memory = ", ".join(x for x in (
                f"{'device' if cuda else 'RSS'} {r.memory_mb:.0f} MiB"
                if r.memory_mb is not None else "",
                f"RSS {r.host_rss_mb:.0f} MiB" if r.host_rss_mb is not None and cuda else "")
                if x)
            lines.append(f"| {r.section} | {r.what} | {r.setting} | {r.device} | {r.precision} | "
                         f"{_speed(r)} | {memory} | {r.result} |")
        seen = {w: r for r in self.rows for w in r.warnings}
        if seen:
            lines += ["", "Warnings (first occurrence):"]
            lines += [f"- {r.section} / {r.what}: {w}" for w, r in seen.items()]
        return "\n".join(lines)


def _speed(r: Row) -> str:
    if r.result.startswith("skipped"):
        return ""
    if r.section == "training":
        a = f"{r.model_only_images_per_s:.0f}" if r.model_only_images_per_s else "-"
        b = f"{r.images_per_s:.0f}" if r.images_per_s else "-"
        ratio = f" (b/a {r.ratio:.2f})" if r.ratio else ""
        return f"a {a} / b {b} img/s{ratio}"
    parts = [f"{r.seconds:.2f} s" if r.seconds is not None else "",
             f"{r.images_per_s:.1f} img/s" if r.images_per_s else ""]
    return ", ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# Measuring


class Peak:
    """Peak memory over a block: the device's (CUDA) and this process's RSS (VmHWM, reset
    through /proc/self/clear_refs; the process's lifetime peak where that is refused)."""

    def __init__(self, device: torch.device):
        self.device, self.device_mb, self.host_mb = device, None, None

    def __enter__(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.device_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.host_mb = _host_peak_mb()

    @property
    def memory_mb(self) -> float | None:
        """The row's memory column: the device's peak, or on the CPU the RSS peak."""
        return self.device_mb if self.device.type == "cuda" else self.host_mb


def _host_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loss_falls(losses: list[float]) -> tuple[bool, str]:
    """Finite, and the mean of the last quarter of the steps below that of the first."""
    if not losses:
        return False, "no step ran"
    if not all(math.isfinite(x) for x in losses):
        bad = next(i for i, x in enumerate(losses) if not math.isfinite(x))
        return False, f"loss {losses[bad]} at step {bad + 1}"
    k = max(1, len(losses) // 4)
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    return last < first, f"loss {first:.4f} -> {last:.4f} over {len(losses)} steps"


@contextlib.contextmanager
def forced_precision(name: str | None) -> Iterator[None]:
    """Make the project's autocast and gradient scaler (colorize.device) use `name`: fp16 with a
    scaler is the path of GPUs without bf16, which an H200 takes only when told to."""
    if name is None:
        yield
        return
    import colorize.device as D

    original = D.precision_name
    D.precision_name = lambda device, amp="auto": "fp32" if amp == "off" else name
    try:
        yield
    finally:
        D.precision_name = original


@contextlib.contextmanager
def compile_backend(name: str) -> Iterator[None]:
    """torch.compile with another backend than inductor (train.loop calls torch.compile)."""
    if name == "inductor":
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=name)
    try:
        yield
    finally:
        torch.compile = original


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class LossLog(torch.nn.Module):
    """The loop's loss function, keeping every value it returns (no sync until read)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.values = inner, []

    def forward(self, out: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        loss = self.inner(out, ab)
        self.values.append(loss.detach())
        return loss

    def floats(self) -> list[float]:
        return torch.stack(self.values).float().cpu().tolist() if self.values else []


# ---------------------------------------------------------------------------------------------
# Data and settings


def subset_archive(source: Path, n: int, out: Path) -> list[bytes]:
    """The first n photos of `source` as a tar of their own (bench/train.py's way); their
    bytes too."""
    blobs: list[bytes] = []
    try:
        tarfile.open(source).close()
    except (tarfile.TarError, OSError) as e:
        why = " ".join(str(e).split())[:120]
        raise UsageError(f"--archive {source}: not a readable tar file ({why})") from None
    with tarfile.open(source) as src, tarfile.open(out, "w") as dst:
        for member in src:
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                data = src.extractfile(member).read()
                dst.addfile(member, io.BytesIO(data))
                blobs.append(data)
                if len(blobs) == n:
                    break
    return blobs


def base_settings(args: argparse.Namespace, work: Path):
    """params.yaml with the bench's data, size and device; training values set per row."""
    from colorize import config

    return config.load(REPO / "params.yaml").override(
        data={"source": "archive", "path": str(work / "photos.tar"),
              "val_fraction": 0.2 if args.tiny else 0.05, "test_fraction": 0.0,
              "max_flat_fraction": 1.0},
        preprocess={"size": max(args.crops), "workers": args.preprocess_workers},
        train={"device": args.device, "num_workers": args.workers, "epochs": 1,
               "max_steps_per_epoch": 0, "crop": args.crops[0], "batch_size": args.batches[0]},
        evaluate={"grid_images": 2})


def build_data(args: argparse.Namespace, settings, work: Path) -> tuple[Path, np.ndarray]:
    """prepare + preprocess + the prior (the project's stages, in-process) -> (store, prior)."""
    from colorize.data.prepare import prepare
    from colorize.preprocess.preprocess import preprocess
    from colorize.preprocess.prior import compute_prior  # prior() would plot: matplotlib

    with contextlib.redirect_stdout(sys.stderr):
        prepare(settings.data, work / "interim", work / "data.json")
        preprocess(settings.data, settings.preprocess, work / "interim/manifest.csv",
                   work / "processed")
    prior = compute_prior(work / "processed/train")
    np.save(work / "prior.npy", prior)
    return work / "processed", prior


def training_settings(base, crop: int, batch: int, compile_: bool):
    return base.override(train={"crop": crop, "batch_size": batch, "compile": compile_})


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class Precision:
    label: str
    force: str | None  # what colorize.device is made to use; None: its own choice
    compile: bool


def own_precision(device: torch.device) -> str:
    """What the project picks by itself (train.amp auto): bf16 on an H200."""
    from colorize.device import precision_name

    return precision_name(device, "auto")


def precisions(device: torch.device) -> list[Precision]:
    return [Precision("bf16 + channels_last", "bf16", False),
            Precision("fp16 + GradScaler", "fp16", False),
            Precision(f"{own_precision(device)} + torch.compile", None, True)]


def combo_key(device: torch.device, p: Precision, crop: int, batch: int) -> list[int]:
    """A training row's place in the table: precision, crop, batch."""
    return [[x.label for x in precisions(device)].index(p.label), crop, batch]


def fixed_batch(settings, data_dir: Path, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented training batch (with its hint channels), on the device, channels_last."""
    from colorize.preprocess.store import LabStore
    from colorize.train.data import LabDataset, train_transform

    t = settings.train
    store = LabStore(data_dir / "train")
    ds = LabDataset(store, train_transform(t.crop, t.crop_scale_min), t.seed, None,
                    settings.model.hints, t.hint_free)
    items = [ds[(1, i % len(ds))] for i in range(t.batch_size)]
    x, ab = (torch.stack([item[k] for item in items]) for k in (0, 1))
    return (x.to(device).contiguous(memory_format=torch.channels_last),
            ab.to(device).contiguous(memory_format=torch.channels_last))


def model_only(settings, prior: np.ndarray, data_dir: Path, device: torch.device, steps: int,
               warm: int, row: Row) -> tuple[float, list[float]]:
    """(a): build_parts' network, loss, optimizer, schedule and scaler stepping on one batch
    already on the device: the loop's step without its data. -> (images/s, losses)."""
    from colorize.device import autocast
    from colorize.train.loop import build_parts, seed_everything

    t = settings.train
    seed_everything(t.seed)  # as fit does: its deterministic mode holds for (b) too
    parts = build_parts(settings, prior, device, warm + steps)
    x, ab = fixed_batch(settings, data_dir, device)
    parts.model.train()
    times, losses = [], []
    for i in range(warm + steps):
        sync(device)
        start = time.perf_counter()
        with autocast(parts.device, parts.amp):
            out = parts.step(x)
        loss = parts.loss(out, ab)
        parts.opt.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.opt)
        parts.scaler.update()
        parts.sched.step()
        losses.append(loss.item())  # a sync per step, as bench/train.py's and the loop's check
        sync(device)
        if i >= warm:
            times.append(time.perf_counter() - start)
    row.details["autocast_output_dtype"] = str(out.dtype).removeprefix("torch.")
    row.details["weights_channels_last"] = parts.net.trunk.conv1.weight.is_contiguous(
        memory_format=torch.channels_last)
    row.details["grad_scaler"] = parts.scaler.is_enabled()
    if parts.scaler.is_enabled():
        row.details["final_loss_scale"] = parts.scaler.get_scale()
    return t.batch_size / statistics.median(times), losses


def whole_loop(settings, prior: np.ndarray, data_dir: Path, device: torch.device, steps: int,
               warm: int, row: Row, model_path: Path | None) -> tuple[float, list[float]]:
    """(b): make_data + build_parts + train_epoch, epoch after epoch until `steps` steps were
    timed after `warm` untimed ones (workers start, kernels are chosen, torch.compile
    compiles). -> (images/s of the timed steps, every step's loss). Saves the network to
    `model_path` when given (the later sections' model)."""
    from colorize.model.file import save_model
    from colorize.train.loop import build_parts, make_data, seed_everything

    t = settings.train
    seed_everything(t.seed)
    data = make_data(settings, data_dir, device)
    parts = build_parts(settings, prior, device, warm + steps, len(data.classes))
    parts.loss = log = LossLog(parts.loss)
    row.details.update(steps_per_epoch=len(data.train), train_images=data.train_images)
    try:
        epoch = _steps(parts, data, settings, warm, 0)
        sync(device)
        start = time.perf_counter()
        _steps(parts, data, settings, steps, epoch)
        sync(device)
        seconds = time.perf_counter() - start
    finally:
        del data  # stops the DataLoader's persistent workers
        gc.collect()
    if model_path is not None:
        net = copy.deepcopy(parts.net).float().cpu().to(memory_format=torch.contiguous_format)
        save_model(net.eval(), model_path, settings.preprocess.size,
                   meta={"experiment": "bench/gpu.py"})
    return steps * t.batch_size / seconds, log.floats()


def _steps(parts, data, settings, n: int, epoch: int) -> int:
    """n optimizer steps of train_epoch, over as many epochs as they take -> the last epoch."""
    from colorize.train.loop import train_epoch

    done, per_epoch = 0, len(data.train)
    while done < n:
        epoch += 1
        data.steps = min(n - done, per_epoch)
        train_epoch(parts, data, epoch, settings, bar_on=False)
        done += data.steps
    return epoch


def training_row(args, base, prior, data_dir: Path, device: torch.device, p: Precision,
                 crop: int, batch: int, model_path: Path | None) -> Row:
    settings = training_settings(base, crop, batch, p.compile)
    backend = args.compile_backend if p.compile else None
    row = Row("training", p.label, f"crop {crop}, batch {batch}, {args.steps} steps, "
              f"{settings.train.num_workers} workers"
              + (f", backend {backend}" if backend else ""), args.device_name, p.label,
              details={"combo": combo_key(device, p, crop, batch)})
    wanted = p.force or own_precision(device)
    start = time.perf_counter()
    with forced_precision(p.force), compile_backend(backend or "inductor"):
        with Peak(device) as peak_a:
            a, losses_a = model_only(settings, prior, data_dir, device, args.steps, args.warm,
                                     row)
        with Peak(device) as peak_b:
            b, losses_b = whole_loop(settings, prior, data_dir, device, args.steps, args.warm,
                                     row, model_path)
    row.seconds = round(time.perf_counter() - start, 2)
    row.model_only_images_per_s, row.images_per_s = round(a, 1), round(b, 1)
    row.ratio = round(b / a, 3)
    row.memory_mb = max(x for x in (peak_a.memory_mb, peak_b.memory_mb) if x is not None)
    row.host_rss_mb = peak_b.host_mb
    row.details.update(memory_mb_a=peak_a.memory_mb, memory_mb_b=peak_b.memory_mb)
    for name, losses in (("a", losses_a), ("b", losses_b)):
        ok, how = loss_falls(losses)
        row.details[f"loss_{name}"] = how
        row.check(ok, f"({name}) {how}")
    row.check(row.details["autocast_output_dtype"] == {"bf16": "bfloat16", "fp16": "float16",
                                                       "fp32": "float32"}[wanted],
              f"the forward ran in {row.details['autocast_output_dtype']}, not {wanted}")
    row.check(p.force != "fp16" or row.details["grad_scaler"], "fp16 without a gradient scaler")
    row.check(row.details["weights_channels_last"], "the weights are not channels_last")
    return row


# ---------------------------------------------------------------------------------------------
# ddp: a torchrun child (this file with --child ddp) and its parent


def ddp_child(args: argparse.Namespace) -> int:
    """Under torchrun: the DDP step check (--ddp-check), then fit with checkpoints; holds after
    epoch --hold-after (to be killed there); writes --result."""
    from colorize import config
    from colorize.model import bins
    from colorize.train import dist
    from colorize.train.checkpoint import Checkpoints
    from colorize.train.loop import fit

    settings = config.from_dict(json.loads(Path(args.settings).read_text()))
    prior = bins.load_prior(args.prior)
    out: dict = {"pid": os.getpid(), "env_world_size": os.environ.get("WORLD_SIZE")}

    def on_epoch(e, _net) -> None:
        print(f"{MARK}-EPOCH {json.dumps({**asdict(e), 't': _since_start()})}", flush=True)
        if e.epoch == args.hold_after:
            print(f"{MARK}-HOLD {json.dumps({'pid': os.getpid(), 't': _since_start()})}",
                  flush=True)
            time.sleep(HOLD_S)

    with dist.session(settings.train.device):  # as train.train: a no-op at world size 1
        out["project_joined_group"] = torch.distributed.is_initialized()
        if args.ddp_check:
            check = ddp_step_check(settings, prior, Path(args.data))
            check.update(forbidden_imported=forbidden_imported(), t=_since_start(),
                         project_joined_group=out["project_joined_group"])
            print(f"{MARK}-DDP {json.dumps(check)}", flush=True)
        checkpoints = Checkpoints(args.ckpt, CODE, settings.train.epochs, log=print)
        result = fit(settings, args.data, checkpoints, prior, on_epoch=on_epoch, log=print,
                     progress=False)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    out.update(resumed_from=result.resumed_from, epochs=[e.epoch for e in result.history],
               history=[asdict(e) for e in result.history], best_epoch=result.best_epoch,
               forbidden_imported=forbidden_imported())
    out["t"] = _since_start()
    Path(args.result).write_text(json.dumps(out))
    return 0


def ddp_step_check(settings, prior: np.ndarray, data_dir: Path) -> dict:
    """Join a process group (the project joins none at world size 1), wrap the network as
    build_parts does for world > 1 (SyncBatchNorm on CUDA, then DDP) and check that three fp32
    SGD steps give the weights that the plain network gets (SGD: Adam would magnify the
    rounding noise of near-zero gradients into whole steps)."""
    import torch.distributed as tdist
    from torch.nn.parallel import DistributedDataParallel

    from colorize.device import pick_device
    from colorize.model.file import build
    from colorize.train.loss import make_loss

    device = pick_device(settings.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend)
    torch.manual_seed(settings.train.seed)
    net = build(settings.model.model_dump()).to(device, memory_format=torch.channels_last)
    net.set_prior(prior)
    plain = copy.deepcopy(net)
    if device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    synced = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in net.modules())
    ddp = DistributedDataParallel(net)
    loss_fn = make_loss(settings.model.head, settings.train.loss, prior,
                        settings.train.rebalance).to(device)
    x, ab = fixed_batch(settings, data_dir, device)
    with tf32(False):
        for model in (ddp, plain):
            opt = torch.optim.SGD(model.parameters(), lr=settings.train.lr)
            for _ in range(3):
                loss = loss_fn(model(x), ab)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in
                   zip(ddp.module.parameters(), plain.parameters(), strict=True))
    total = torch.ones(1, device=device)
    tdist.all_reduce(total)
    return {"backend": tdist.get_backend(), "world": tdist.get_world_size(),
            "sync_batchnorm_layers": synced, "max_weight_diff": diff,
            "all_reduce": float(total.item())}


def forbidden_imported() -> list[str]:
    """The FORBIDDEN modules imported so far (None in sys.modules marks one as absent)."""
    return sorted(m for m in FORBIDDEN if sys.modules.get(m) is not None)


def _since_start() -> float:
    return round(time.perf_counter() - T0, 2)


class Child:
    """A torchrun launch of this file's ddp child; its output lines in a queue."""

    def __init__(self, args, settings_file: Path, data_dir: Path, ckpt: Path, result: Path,
                 hold_after: int = 0, ddp_check: bool = False):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "1", __file__, "--child", "ddp", "--settings",
               str(settings_file), "--data", str(data_dir), "--prior", str(args.prior_path),
               "--ckpt", str(ckpt), "--result", str(result), "--hold-after", str(hold_after)]
        if ddp_check:
            cmd.append("--ddp-check")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True, cwd=REPO)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.log.append(line.rstrip())
                self.lines.put(line.rstrip())
        self.lines.put(None)

    def wait_for(self, marker: str, timeout: float) -> str | None:
        """The first line starting with `marker`, or None (the child ended or timed out)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(marker):
                return line
        return None

    def tail(self) -> str:
        """Why it failed: the last exception line it printed, else its last lines."""
        errors = [x.strip() for x in self.log if re.match(
            r"^(\[rank\d+\]:)?\s*[\w.]*(Error|Exception|Interrupt)\b", x.strip())
            and "ChildFailedError" not in x]
        return errors[-1][:300] if errors else " | ".join(self.log[-6:])[-300:]

    def stop(self) -> None:
        """SIGTERM to torchrun (which stops its worker), SIGKILL after 30 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        state = [x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                 if x.startswith("State:")]
    except OSError:
        return False
    return bool(state) and "Z" not in state[0].split()[1]


def ddp_rows(args, base, data_dir: Path, work: Path) -> list[Row]:
    """Launch 1: DDP check + fit, killed once epoch 1 is checkpointed. Launch 2: the resume.
    The rows keep the warnings the children printed."""
    children: list[Child] = []
    rows = _ddp_launches(args, base, data_dir, work, children)
    for row in rows:
        row.warnings = child_warnings(*children)
    return rows


def _ddp_launches(args, base, data_dir: Path, work: Path, children: list[Child]) -> list[Row]:
    from colorize.model.file import read_state

    t = base.train
    settings = base.override(train={
        "crop": args.crops[0], "batch_size": args.batches[0], "epochs": 3,
        "max_steps_per_epoch": args.ddp_steps})
    settings_file = work / "ddp-settings.json"
    settings_file.write_text(json.dumps(settings.model_dump(mode="json")))
    ckpt = work / "ddp-checkpoints"
    backend = "nccl" if args.device == "cuda" else "gloo"
    setting = (f"torchrun --nproc_per_node 1, {backend}, crop {args.crops[0]}, batch "
               f"{args.batches[0]}, 3 epochs of {args.ddp_steps} steps, {t.num_workers} workers")
    check = Row("ddp", "DDP step == plain step (world 1)", setting, args.device_name, "fp32")
    kill = Row("ddp", "kill after epoch 1 + resume", setting, args.device_name,
               own_precision(torch.device(args.device)))
    limit = 240 if args.device == "cuda" else 180  # a hung NCCL must not eat the budget
    start = time.perf_counter()
    first = Child(args, settings_file, data_dir, ckpt, work / "ddp-1.json", hold_after=1,
                  ddp_check=True)
    children.append(first)
    try:
        held = first.wait_for(f"{MARK}-HOLD", limit)
        if held is None:
            reason = f"no checkpoint after epoch 1: {first.tail()}"
            check.fail(reason)
            kill.fail(reason)
            return [check, kill]
        worker = json.loads(held.split(" ", 1)[1])["pid"]
        kill.details["seconds_to_checkpoint_1"] = round(time.perf_counter() - start, 2)
        epoch1 = [json.loads(line.split(" ", 1)[1]) for line in first.log
                  if line.startswith(f"{MARK}-EPOCH")]
        first.proc.send_signal(signal.SIGTERM)  # to torchrun, which stops its worker
        try:
            first.proc.wait(timeout=60)
            how = f"SIGTERM to torchrun (exit {first.proc.returncode})"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
            first.proc.kill()
            first.proc.wait()
            how = "SIGTERM ignored for 60 s: SIGKILL"
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
            kill.fail(f"the worker {worker} outlived torchrun (killed now)")
    finally:
        first.stop()
    check.seconds = round(time.perf_counter() - start, 2)
    _ddp_check_result(check, first, backend)
    kill.details.update(killed=how, checkpoint_epochs=len(read_state(ckpt / "last.pt")["history"])
                        if (ckpt / "last.pt").exists() else 0)
    kill.check(kill.details["checkpoint_epochs"] == 1,
               f"last.pt holds {kill.details['checkpoint_epochs']} epochs after the kill, not 1")
    if (work / "ddp-1.json").exists():
        kill.fail("the killed run finished anyway")
    kill.details["seconds_to_kill"] = round(time.perf_counter() - start, 2)
    second = Child(args, settings_file, data_dir, ckpt, work / "ddp-2.json")
    children.append(second)
    try:
        second.proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        second.stop()
    kill.seconds = round(time.perf_counter() - start, 2)
    if second.proc.returncode != 0 or not (work / "ddp-2.json").exists():
        kill.fail(f"the rerun failed (exit {second.proc.returncode}): {second.tail()}")
        return [check, kill]
    out = json.loads((work / "ddp-2.json").read_text())
    resumed_line = next((x for x in second.log if "resuming from" in x), "")
    kill.details.update(resumed_from=out["resumed_from"], epochs=out["epochs"],
                        resumed_line=resumed_line.strip(),
                        forbidden_imported=out["forbidden_imported"])
    kill.check(out["resumed_from"] == 1, f"resumed from epoch {out['resumed_from']}, not 1")
    kill.check(out["epochs"] == [1, 2, 3], f"history holds epochs {out['epochs']}")
    kill.check(bool(epoch1) and out["history"][0]["train_loss"] == epoch1[0]["train_loss"],
               "the resumed history's epoch 1 is not the killed run's")
    kill.check(not out["forbidden_imported"],
               f"the child imported {out['forbidden_imported']}")
    return [check, kill]


def child_warnings(*children: Child) -> list[str]:
    """The distinct warning lines the ddp children printed (theirs are not this process's)."""
    return list(dict.fromkeys(line.strip()[:200] for c in children for line in c.log
                              if "Warning:" in line))[:6]


def _ddp_check_result(row: Row, child: Child, expected: str) -> None:
    """The DDP check's numbers, from the child's --ddp-check output (printed in its log)."""
    found = next((x for x in child.log if x.startswith(f"{MARK}-DDP")), None)
    if found is None:
        row.fail(f"the child printed no DDP check: {child.tail()}")
        return
    info = json.loads(found.split(" ", 1)[1])
    row.details.update(info)
    row.check(info["backend"] == expected, f"backend {info['backend']}, not {expected}")
    row.check(info["world"] == 1 and info["all_reduce"] == 1.0, "all_reduce over 1 rank != 1")
    row.check(info["max_weight_diff"] <= 1e-5,
              f"DDP weights differ from plain ones by {info['max_weight_diff']:.2e}")
    row.check(not info["forbidden_imported"], f"the child imported {info['forbidden_imported']}")
    if expected == "nccl":
        row.check(info["sync_batchnorm_layers"] > 0, "no SyncBatchNorm layer on CUDA")


# ---------------------------------------------------------------------------------------------
# eval, predict, served, onnx


def eval_row(args, base, data_dir: Path, prior: np.ndarray, model_path: Path,
             device: torch.device) -> Row:
    """evaluate.score.score as the sweep's Objective calls it (the network on the device, the
    store's arrays on the host), against the same model on the CPU."""
    from colorize.decoding import NEUTRAL, Decoding
    from colorize.evaluate.score import HEADLINE, score
    from colorize.model.file import load_model
    from colorize.preprocess.store import LabStore

    cpu_model, size, _ = load_model(model_path)
    dev_model = copy.deepcopy(cpu_model).to(device)
    e = base.evaluate
    decoded = ([Decoding(t, e.prior_correction) for t in e.temperatures]
               if cpu_model.config.head == "classification" else [NEUTRAL])
    store = LabStore(data_dir / "val")
    row = Row("eval", "score() on the device vs the CPU",
              f"{len(store)} val images at {size} px, {len(decoded)} decodings, batch "
              f"{e.batch_size}", args.device_name, "fp32 (TF32 convs on CUDA, as run)")

    def summaries(model) -> dict:
        scores = score(model, store, prior, decoded, e.batch_size, wanted=HEADLINE, gray=False,
                       progress=False)
        return {d.label(): scores[d].summary() for d in decoded}

    start = time.perf_counter()
    with Peak(device) as peak:
        on_device = summaries(dev_model)
    row.seconds = round(time.perf_counter() - start, 2)
    row.images_per_s = round(len(store) * len(decoded) / row.seconds, 1)
    row.memory_mb, row.host_rss_mb = peak.memory_mb, peak.host_mb
    on_cpu = summaries(cpu_model)
    runs = {"tf32": on_device}
    if device.type == "cuda":
        with tf32(False):
            runs["fp32"] = summaries(dev_model)
    row.details["cpu"] = on_cpu
    for name, got in runs.items():
        atol, rtol = EVAL_TOL[name]
        diffs = {(d, k): abs(v - on_cpu[d][k]) for d in got for k, v in got[d].items()}
        worst = max(diffs, key=diffs.get)
        row.details[f"max_abs_diff_{name}"] = diffs[worst]
        row.details[f"worst_{name}"] = " ".join(worst)
        bad = [key for key, v in diffs.items() if v > atol + rtol * abs(on_cpu[key[0]][key[1]])]
        row.check(not bad, f"{name}: {' '.join(worst)} differs from the CPU by "
                           f"{diffs[worst]:.4g}")
    row.details["device"] = on_device
    return row


@contextlib.contextmanager
def models_seen(module) -> Iterator[list[str]]:
    """The predict module's model resolver, watched: yields the device type of each model it
    resolved (the GPU's where there is one, as `colorize predict` loads them)."""
    original = module.resolve_model
    used: list[str] = []

    def resolve(*args, **kwargs):
        found = original(*args, **kwargs)
        used.append(next(found.model.parameters()).device.type)
        return found

    module.resolve_model = resolve
    try:
        yield used
    finally:
        module.resolve_model = original


def image_sizes(files: list) -> list[tuple[int, int]]:
    """(width, height) of each image file, from its header."""
    from PIL import Image

    sizes = []
    for f in files:
        with Image.open(f) as image:
            sizes.append(image.size)
    return sizes


def write_photo(rgb: np.ndarray, path: Path) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise OSError(f"could not write {path}")
    return path


def resized(blob: bytes, width: int, height: int) -> np.ndarray:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_CUBIC),
                        cv2.COLOR_BGR2RGB)


def predict_rows(args, base, blobs: list[bytes], model_path: Path, device: torch.device,
                 work: Path, clock: Clock) -> list[Row]:
    import colorize.predict.predict as P

    e = base.evaluate
    root = work / "predict"
    cases = [("1920x1080 photo", [write_photo(resized(blobs[0], 1920, 1080),
                                              root / "photo" / "photo.jpg")], 1),
             (f"{args.predict_photos} photos of 256x256",
              [root / "folder"], args.predict_photos)]
    for i in range(args.predict_photos):
        write_photo(resized(blobs[(i + 1) % len(blobs)], 256, 256),
                    root / "folder" / f"p{i:03d}.jpg")
    rows = []
    for name, inputs, count in [*cases, ("12000x8000 scan", None, 1)]:
        row = Row("predict", f"predict(): {name}", "", args.device_name,
                  "auto (as `colorize predict`)")
        if inputs is None:
            if not args.scan:
                row.result = "skipped: the scan needs --scan (default on CUDA without --tiny)"
                rows.append(row)
                continue
            if clock.over():
                row.result = f"skipped: past the --budget-s {args.budget_s:g} s budget"
                rows.append(row)
                continue
            inputs = [write_photo(resized(blobs[0], 12000, 8000), root / "scan" / "scan.jpg")]
        out = root / f"out-{len(rows)}"
        row.setting = f"model on the device, batch size 8, out {out.name}"
        try:
            with Peak(device) as peak, models_seen(P) as used, \
                    contextlib.redirect_stdout(sys.stderr):
                start = time.perf_counter()
                result = P.predict([str(p) for p in inputs], str(out), str(model_path),
                                   batch_size=8, temperature=e.temperature,
                                   correction=e.prior_correction)
                row.seconds = round(time.perf_counter() - start, 2)
        except Exception as error:  # noqa: BLE001 - the row says why
            row.fail(_one_line(error))
            rows.append(row)
            continue
        row.images_per_s = round(count / row.seconds, 2)
        row.memory_mb, row.host_rss_mb = peak.memory_mb, peak.host_mb
        written = sorted(result["written"])
        sources = sorted(p for i in inputs for p in ([i] if i.is_file() else i.iterdir()))
        sizes, expected = image_sizes(written), image_sizes(sources)
        row.details.update(written=written, sizes=sizes, model_device=used,
                           skipped=result["skipped"])
        row.check(used == [device.type], f"the network ran on {used}, not {device.type}")
        row.check(not result["skipped"], f"skipped {result['skipped'][:2]}")
        row.check(len(written) == count, f"{len(written)} PNGs written, not {count}")
        row.check(sorted(sizes) == sorted(expected), f"PNG sizes {sizes[:3]} != {expected[:3]}")
        rows.append(row)
    return rows


def served_row(args, base, blobs: list[bytes], model_path: Path, device: torch.device) -> Row:
    """The registered pyfunc's predict (predict/service.py) with the model on the device."""
    import importlib.util

    row = Row("served", "ColorizerService.predict", "a 1920x1080 and a 256x256 photo",
              args.device_name, "auto (as served)")
    if importlib.util.find_spec("mlflow") is None:
        row.result = "skipped: mlflow not installed"
        return row
    import base64

    from colorize.imaging import encode_png
    from colorize.predict.service import ColorizerService, image_frame

    e = base.evaluate
    service = ColorizerService()
    context = argparse.Namespace(
        artifacts={"checkpoint": str(model_path)},
        model_config={"decoding": {"temperature": e.temperature,
                                   "prior_correction": e.prior_correction}})
    service.load_context(context)
    on = next(service.model.parameters()).device.type
    row.check(on == device.type, f"the served model loaded on {on}, not {device.type}")
    photos = [resized(blobs[0], 1920, 1080), resized(blobs[1 % len(blobs)], 256, 256)]
    frame = image_frame([encode_png(p) for p in photos])
    with Peak(device) as peak:
        start = time.perf_counter()
        response = service.predict(None, frame)
        row.seconds = round(time.perf_counter() - start, 2)
    row.memory_mb, row.host_rss_mb = peak.memory_mb, peak.host_mb
    errors = [x for x in response["error"] if x]
    sizes = image_sizes([io.BytesIO(base64.b64decode(b)) for b in response["image"] if b])
    row.details.update(sizes=sizes, errors=errors)
    row.check(not errors, f"errors {errors[:2]}")
    row.check(sizes == [(1920, 1080), (256, 256)], f"sizes {sizes}")
    return row


def onnx_row(args, model_path: Path, device: torch.device, work: Path) -> Row:
    """export_onnx as `colorize export` runs it (the model file, on the CPU, with its own check
    against PyTorch there), then onnxruntime against the same network on the device."""
    import importlib.util

    row = Row("onnx", "export_onnx + onnxruntime vs the device", "", args.device_name,
              "fp32 (TF32 off)")
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        row.result = f"skipped: {' and '.join(missing)} not installed"
        return row
    import onnxruntime as ort

    from colorize.model.file import load_model
    from colorize.model.hints import simulate
    from colorize.model.network import WithDecoding
    from colorize.predict.export import TOLERANCE, export_onnx

    out = work / "model.onnx"
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        exported = export_onnx(str(model_path), out)
    row.seconds = round(time.perf_counter() - start, 2)
    model, size, _ = load_model(model_path)
    graph = WithDecoding(model.to(device)).eval()
    # The CPU provider, as export.check uses (a CUDA one would bring TF32 of its own).
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    values = {"L": rng.uniform(-1, 1, (2, 1, size, size)).astype(np.float32),
              "temperature": np.array([0.38], np.float32),
              "prior_correction": np.array([0.55], np.float32),
              "hints": np.stack([simulate(rng.uniform(-60, 60, (2, size, size)), rng, count=5)
                                 for _ in range(2)]).astype(np.float32)}
    feed = {n: values[n] for n in graph.input_names}
    with tf32(False), torch.no_grad():
        expected = graph(*(torch.from_numpy(v).to(device) for v in feed.values()))
    got = session.run(None, feed)[0]
    diff = float(np.abs(got - expected.float().cpu().numpy()).max())
    row.setting = f"opset 17, working size {size}, onnxruntime {ort.__version__} on the CPU"
    row.details.update(path=str(out), max_abs_diff_cpu=exported["max_abs_diff"],
                       max_abs_diff_device=diff, tolerance_cpu=TOLERANCE,
                       tolerance_device=ONNX_DEVICE_TOL)
    row.check(exported["max_abs_diff"] <= TOLERANCE,
              f"onnx vs torch on the CPU {exported['max_abs_diff']:.2e}")
    row.check(diff <= ONNX_DEVICE_TOL, f"onnx vs torch on the device {diff:.2e}")
    return row


# ---------------------------------------------------------------------------------------------
# The run


class Clock:
    """The --budget-s budget: training may use `training_share` of it, the rest the others."""

    def __init__(self, budget_s: float, training_share: float = 0.55):
        self.start, self.budget_s, self.share = time.monotonic(), budget_s, training_share

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def over(self, training: bool = False) -> bool:
        if not self.budget_s:
            return False
        return self.elapsed() > self.budget_s * (self.share if training else 1.0)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def guarded(report: Report, make: Callable[[], Row | list[Row]], fallback: Row) -> None:
    """Run one row (or rows); an exception FAILs the row with its one-line reason, and the
    warnings it raised are kept with it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ResourceWarning)  # garbage collection's timing
        try:
            rows = make()
        except Exception as error:  # noqa: BLE001 - the row says why; the traceback to stderr
            traceback.print_exc(file=sys.stderr)
            fallback.fail(_one_line(error))
            rows = fallback
    messages = list(dict.fromkeys(
        f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught))
    for row in rows if isinstance(rows, list) else [rows]:
        row.warnings = list(dict.fromkeys([*row.warnings, *messages]))[:6]
        report.add(row)


def header(args: argparse.Namespace) -> dict:
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        got = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                             capture_output=True, timeout=10)
        if got.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, text=True,
                                   capture_output=True, timeout=10).stdout.strip()
            commit = got.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    carried = Path(args.archive).with_name("commit.txt")
    if commit == "unknown" and carried.is_file():
        commit = f"{carried.read_text().strip()} (from gpu_carry.sh)"
    shm = shutil.disk_usage("/dev/shm").total / 2**30 if Path("/dev/shm").exists() else None
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "device": args.device, "device_name": args.device_name,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()
            if args.device == "cuda" else None, "cpus": os.cpu_count(),
            "dev_shm_gib": round(shm, 1) if shm else None, "tiny": args.tiny,
            "setting": f"{args.steps} steps, {args.images} photos, {args.workers} workers"
                       f"{', --tiny' if args.tiny else ''}",
            "argv": sys.argv[1:]}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    return platform.processor() or "CPU"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"),
                   default="cuda" if torch.cuda.is_available() else "cpu",
                   help="default: cuda where there is one")
    p.add_argument("--tiny", action="store_true",
                   help="crop 64, batch 4, a few steps, one combination per precision")
    p.add_argument("--steps", type=int, help="timed steps per training row (200; --tiny 8)")
    p.add_argument("--images", type=int, help="photos taken from --archive (2048; --tiny 64)")
    p.add_argument("--workers", type=int, help="train.num_workers (8; --tiny 1)")
    p.add_argument("--crops", help="training crops, comma-separated (128,224; --tiny 64)")
    p.add_argument("--batches", help="training batches, comma-separated (64,256; --tiny 4)")
    p.add_argument("--archive", default=str(DEFAULT_ARCHIVE),
                   help="a tar of photos (default: ../shared/data/miniplaces-11k.tar)")
    p.add_argument("--out", type=Path, help="write the rows as JSON here too")
    p.add_argument("--work", type=Path, help="keep the data and outputs here (default: a "
                                             "temporary folder, removed)")
    p.add_argument("--scan", action=argparse.BooleanOptionalAction, default=None,
                   help="predict a 12000x8000 scan (default: on CUDA without --tiny)")
    p.add_argument("--budget-s", type=float, default=420,
                   help="start no row after this many seconds (0: no limit); training starts "
                        "none after 55%% of it (default 420: the whole run in 8 minutes)")
    p.add_argument("--compile-backend", help="torch.compile backend of the compile rows "
                                             "(inductor; aot_eager with --tiny on the CPU)")
    p.add_argument("--child", choices=("ddp",), help=argparse.SUPPRESS)
    for name in ("--settings", "--data", "--prior", "--ckpt", "--result"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--hold-after", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--ddp-check", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (use --device cpu)")
    tiny = args.tiny
    args.steps = args.steps or (8 if tiny else 200)
    args.warm = 1 if tiny else 10
    args.images = args.images or (64 if tiny else 2048)
    args.workers = args.workers if args.workers is not None else (1 if tiny else 8)
    try:
        args.crops = [int(x) for x in (args.crops or ("64" if tiny else "128,224")).split(",")]
        args.batches = [int(x) for x in (args.batches or ("4" if tiny else "64,256")).split(",")]
    except ValueError:
        raise UsageError("--crops and --batches take comma-separated integers") from None
    if any(c % 8 or c < 32 for c in args.crops) or any(b < 2 for b in args.batches):
        raise UsageError("--crops: multiples of 8 from 32; --batches: at least 2")
    if args.steps < 4 or args.images < 16:
        raise UsageError("--steps must be at least 4 and --images at least 16")
    args.scan = (args.device == "cuda" and not tiny) if args.scan is None else args.scan
    args.compile_backend = args.compile_backend or (
        "aot_eager" if tiny and args.device == "cpu" else "inductor")
    args.preprocess_workers = 1 if tiny else max(1, min(16, os.cpu_count() or 1))
    args.predict_photos = 8 if tiny else 64
    args.ddp_steps = 3 if tiny else 20
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        raise UsageError(f"--work {args.work}: not empty (give a new or empty folder)")
    if not Path(args.archive).is_file():
        raise UsageError(f"--archive {args.archive}: no such file (a tar of photos; "
                         "bench/gpu_carry.sh makes .gpudata/photos.tar)")
    return args


def combinations(args, device: torch.device) -> list[tuple[Precision, int, int]]:
    """Every (precision, crop, batch); with --tiny the first of each. The first combination
    of every precision runs first, so a tight budget still reaches each path once."""
    combos = [(p, c, b) for p in precisions(device) for c in args.crops for b in args.batches]
    if args.tiny:
        combos = [(p, args.crops[0], args.batches[0]) for p in precisions(device)]
    firsts = [c for i, c in enumerate(combos) if all(c[0] != d[0] for d in combos[:i])]
    return firsts + [c for c in combos if c not in firsts]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    args.device_name = device_name(args.device)
    report = Report(header(args), args.out)
    clock = Clock(args.budget_s)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="gpu-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        blobs = subset_archive(Path(args.archive), args.images, work / "photos.tar")
        if len(blobs) < 16:
            raise UsageError(f"--archive {args.archive}: {len(blobs)} photos, need 16 or more")
        base = base_settings(args, work)
        start = time.perf_counter()
        data_dir, prior = build_data(args, base, work)
        args.prior_path = work / "prior.npy"
        report.header["data_seconds"] = round(time.perf_counter() - start, 1)
        model_path = work / "model.pt"

        combos = combinations(args, device)
        for p, crop, batch in tqdm(combos, desc="training rows", unit="row", file=sys.stderr):
            skipped = Row("training", p.label, f"crop {crop}, batch {batch}", args.device_name,
                          p.label, details={"combo": combo_key(device, p, crop, batch)})
            if clock.over(training=True):
                skipped.result = f"skipped: past {clock.share:.0%} of the --budget-s budget"
                report.add(skipped)
                continue
            save = model_path if not model_path.exists() and not p.compile else None
            guarded(report, lambda p=p, crop=crop, batch=batch, save=save: training_row(
                args, base, prior, data_dir, device, p, crop, batch, save), skipped)
        if not model_path.exists():  # every training row failed: an untrained network
            _untrained_model(base, prior, model_path)
        if device.type == "cuda":
            torch.cuda.empty_cache()

        later: list[tuple[str, Callable[[], Row | list[Row]], Row]] = [
            ("ddp", lambda: ddp_rows(args, base, data_dir, work),
             Row("ddp", "torchrun world 1: DDP + kill/resume", "", args.device_name, "")),
            ("eval", lambda: eval_row(args, base, data_dir, prior, model_path, device),
             Row("eval", "score() on the device vs the CPU", "", args.device_name, "fp32")),
            ("predict", lambda: predict_rows(args, base, blobs, model_path, device, work,
                                             clock),
             Row("predict", "predict()", "", args.device_name, "auto")),
            ("onnx", lambda: onnx_row(args, model_path, device, work),
             Row("onnx", "export_onnx + onnxruntime", "", args.device_name, "fp32"))]
        for section, make, fallback in later:
            if clock.over():
                fallback.result = f"skipped: past the --budget-s {args.budget_s:g} s budget"
                report.add(fallback)
                continue
            print(f"[gpu] {section} ...", file=sys.stderr, flush=True)
            guarded(report, make, fallback)
        # Last: the served row may import mlflow (and pandas); nothing before it may.
        imported = forbidden_imported()
        report.header["forbidden_imported_before_served"] = imported
        if imported:
            bad = Row("served", "imports", "before the served row", args.device_name, "-")
            bad.fail(f"imported {imported} (absent on the GPU machine)")
            report.add(bad)
        served = Row("served", "ColorizerService.predict", "", args.device_name, "auto")
        if clock.over():
            served.result = f"skipped: past the --budget-s {args.budget_s:g} s budget"
            report.add(served)
        else:
            guarded(report, lambda: served_row(args, base, blobs, model_path, device), served)
        report.header["seconds"] = round(clock.elapsed(), 1)
        report.save()
    print(report.markdown())
    print(f"\n{clock.elapsed():.0f} s in all", file=sys.stderr)
    return 1 if any(r.result.startswith("FAIL") for r in report.rows) else 0


def _untrained_model(base, prior: np.ndarray, path: Path) -> None:
    from colorize.model.file import build, save_model

    net = build(base.model.model_dump())
    if base.model.head == "classification":
        net.set_prior(prior)
    save_model(net.eval(), path, base.preprocess.size, meta={"experiment": "untrained"})


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
        if args.child == "ddp":
            return ddp_child(args)
        return run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name not in ("colorize", "pydantic", "albumentations"):
            raise
        print(f"error: {e.name} is not importable: install bench/gpu_carry.sh's wheels and put "
              "src on PYTHONPATH (its header has the command)", file=sys.stderr)
        return 2
    except Exception as e:
        errors = sys.modules.get("colorize.errors")  # e.g. an archive without a usable photo
        if errors is None or not isinstance(e, errors.UserError):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
