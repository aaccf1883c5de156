"""Training throughput, side by side in one run, at equal batch and crop (images per second of
training steps: forward, loss, backward, optimizer step):

  (a) model only:  the network on one in-memory batch, again and again (the upper bound)
  (b) project:     the project's whole training loop (train.loop.fit): memory-mapped LAB shards,
                   albumentations crops and flips seeded per image, the configured head and loss
                   (its second epoch: the first warms up)
  (c) seed-style:  the tutorial's loop: PIL decode, torchvision RandomResizedCrop + flip, skimage
                   rgb2lab per item per epoch, fp32, the same network and loss

Data: the first --images photos of ../shared/data/miniplaces-11k.tar (128 px Places JPEGs),
prepared and preprocessed into a temporary folder by the project's own stages.
Usage: python bench/train.py [--images 2048] [--steps 60] [--batch 16] [--crop 128]
       [--head classification] [--device cpu|cuda]
The last two lines are `ratio project/model-only R` and `ratio project/seed-style S`.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gpu import DEFAULT_ARCHIVE as MINIPLACES  # bench/gpu.py, beside this script
from gpu import subset_archive, sync

REPO = Path(__file__).resolve().parents[1]


def settings_for(args, data_dir: Path):
    from colorize import config

    return config.load(REPO / "params.yaml").override(
        data={"source": "archive", "path": str(data_dir / "photos.tar"), "val_fraction": 0.05,
              "max_flat_fraction": 1.0},
        preprocess={"size": args.crop, "workers": 2},
        model={"head": args.head},
        train={"crop": args.crop, "batch_size": args.batch, "epochs": 1,
               "max_steps_per_epoch": args.steps, "device": args.device,
               "num_workers": args.workers},
        evaluate={"batch_size": 64})


def model_only(settings, prior, steps: int) -> float:
    """(a): one fixed batch in memory, channels_last, the project's precision and loss."""
    from colorize.device import autocast, pick_device
    from colorize.model.file import build
    from colorize.train.loss import make_loss

    t, device = settings.train, pick_device(settings.train.device)
    torch.manual_seed(0)
    net = build(settings.model.model_dump()).to(device, memory_format=torch.channels_last)
    loss_fn = make_loss(settings.model.head, t.loss, prior, t.rebalance).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr)
    L = torch.rand(t.batch_size, 1, t.crop, t.crop, device=device) * 2 - 1
    ab = torch.rand(t.batch_size, 2, t.crop, t.crop, device=device) * 0.6 - 0.3
    L, ab = (x.contiguous(memory_format=torch.channels_last) for x in (L, ab))
    times = []
    for i in range(steps + 5):
        sync(device)
        start = time.perf_counter()
        with autocast(device, t.amp):
            out = net(L)
        loss = loss_fn(out, ab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        sync(device)
        if i >= 5:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
    return t.batch_size / statistics.median(times)


def project(settings, prior, data_dir: Path, compile_: bool = False) -> float:
    """(b): the real loop on the memory-mapped store: images/s of the training steps of its
    second epoch (the first one warms up kernels and, with torch.compile, compiles)."""
    from colorize.train.checkpoint import Checkpoints
    from colorize.train.loop import fit

    settings = settings.override(train={"epochs": 2, "compile": compile_})
    checkpoints = Checkpoints(data_dir / f"ckpt-{compile_}", code="", epochs=2,
                              log=lambda _: None)
    result = fit(settings, data_dir / "processed", checkpoints, prior, log=lambda _: None,
                 progress=False)
    return result.history[-1].images_per_s


class SeedStyle(torch.utils.data.Dataset):
    """The tutorial's dataset: decode, crop and convert every image on every access."""

    def __init__(self, blobs: list[bytes], crop: int):
        from torchvision import transforms

        self.blobs = blobs
        self.augment = transforms.Compose([transforms.RandomResizedCrop(crop, scale=(0.3, 1.0)),
                                           transforms.RandomHorizontalFlip()])

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int):
        from PIL import Image
        from skimage.color import rgb2lab

        img = self.augment(Image.open(io.BytesIO(self.blobs[i])).convert("RGB"))
        lab = rgb2lab(np.asarray(img)).astype(np.float32).transpose(2, 0, 1)
        return torch.from_numpy((lab[:1] - 50) / 50), torch.from_numpy(lab[1:] / 110)


def seed_style(settings, prior, blobs: list[bytes], steps: int) -> float:
    """(c): fp32, contiguous tensors, per-item PIL + skimage, the same network and loss."""
    from colorize.device import pick_device
    from colorize.model.file import build
    from colorize.train.loss import make_loss

    t, device = settings.train, pick_device(settings.train.device)
    torch.manual_seed(0)
    net = build(settings.model.model_dump()).to(device)
    loss_fn = make_loss(settings.model.head, t.loss, prior, t.rebalance).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr)
    loader = torch.utils.data.DataLoader(SeedStyle(blobs, t.crop), batch_size=t.batch_size,
                                         shuffle=True, drop_last=True,
                                         num_workers=t.num_workers)
    seen, start = 0, None
    for step, (L, ab) in enumerate(loader):
        if step == 3:  # warm-up steps excluded
            sync(device)
            start, seen = time.perf_counter(), 0
        loss = loss_fn(net(L.to(device)), ab.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        seen += len(L)
        if step == steps + 2:
            break
    sync(device)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--head", choices=("regression", "classification"), default=None,
                        help="default: params.yaml model.head")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, (b) and (c)")
    parser.add_argument("--compile", action="store_true",
                        help="add a row: (b) with train.compile (torch.compile)")
    args = parser.parse_args()
    if not MINIPLACES.exists():
        sys.exit(f"{MINIPLACES} not found (the shared data folder beside the repository)")
    from colorize import config
    from colorize.data.prepare import prepare
    from colorize.device import pick_device, precision_name
    from colorize.model import bins
    from colorize.preprocess.preprocess import preprocess
    from colorize.preprocess.prior import prior as write_prior

    args.head = args.head or config.load(REPO / "params.yaml").model.head
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        blobs = subset_archive(MINIPLACES, args.images, data_dir / "photos.tar")
        settings = settings_for(args, data_dir)
        prepare(settings.data, data_dir / "interim", data_dir / "data.json")
        preprocess(settings.data, settings.preprocess, data_dir / "interim/manifest.csv",
                   data_dir / "processed")
        write_prior(data_dir / "processed/train", data_dir / "prior.npy", data_dir / "prior.png")
        prior = bins.load_prior(data_dir / "prior.npy")
        device = pick_device(args.device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        rows = [
            ("(a) model only, in-memory batch", precision_name(device, settings.train.amp),
             model_only(settings, prior, args.steps)),
            ("(b) project: whole training loop", precision_name(device, settings.train.amp),
             project(settings, prior, data_dir)),
            ("(c) seed-style: PIL + skimage per item", "fp32",
             seed_style(settings, prior, blobs, args.steps)),
        ]
        if args.compile:
            rows.append(("(b) with torch.compile", precision_name(device, settings.train.amp),
                         project(settings, prior, data_dir, compile_=True)))
    print(f"\n{name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.head} head, batch {args.batch}, crop {args.crop}, {args.steps} steps, "
          f"DataLoader workers {args.workers}\n")
    print("| loop | precision | images/s |\n|---|---|---|")
    for label, precision, ips in rows:
        print(f"| {label} | {precision} | {ips:.1f} |")
    (_, _, a), (_, _, b), (_, _, c) = rows[:3]
    print(f"\nratio project/model-only {b / a:.3f}")
    print(f"ratio project/seed-style {b / c:.2f}")


if __name__ == "__main__":
    main()
