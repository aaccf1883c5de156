"""Training data: the memory-mapped LAB store as a torch Dataset, with augmentation whose
randomness is a function of (seed, epoch, image) only, optional colour hints simulated from each
crop's truth (model.hints; model/hints.py, seeded by (seed, epoch, image) too: validation's by
(seed, 0, image), the same every epoch) and optional scene labels (each photo's folder in its
source: data.labels folders).

albumentations keeps one random generator per Compose; DataLoader workers each get a copy of
it, so with num_workers > 0 every worker would replay the same crops. Here each item reseeds the
transform from (seed, epoch, index) before use: crops differ between images, epochs and workers,
do not depend on num_workers, DDP ranks or order, and a rerun repeats them exactly.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset, DistributedSampler, Sampler  # noqa: E402

from colorize import lab  # noqa: E402
from colorize.errors import UserError  # noqa: E402
from colorize.model.hints import item_rng as hint_rng  # noqa: E402
from colorize.model.hints import simulate as simulate_hints  # noqa: E402
from colorize.preprocess.store import LabStore  # noqa: E402


def train_transform(crop: int, scale_min: float) -> A.Compose:
    # Geometric only: colours must stay true. Resized crops give many views of each photo.
    return A.Compose([
        A.RandomResizedCrop(size=(crop, crop), scale=(scale_min, 1.0), ratio=(0.75, 4 / 3)),
        A.HorizontalFlip(p=0.5),
    ])


NO_LABEL = -100  # cross-entropy's ignore_index: a photo whose folder training never saw


def folder_labels(train: LabStore, *others: LabStore) -> tuple[list[str], list[np.ndarray]]:
    """Scene classes from the folders the photos sit in (`a/airfield/0001.jpg` -> `a/airfield`),
    numbered in sorted order over the training split -> (class names, one int64 label array per
    store given: train first). Photos of other splits in folders training never saw get
    NO_LABEL."""
    def folder(name: str | None) -> str:
        if name is None:
            raise UserError(f"{train.dir}: written before photo names were kept; rerun the "
                            "preprocess stage for data.labels: folders")
        return str(PurePosixPath(name).parent)

    classes = sorted({folder(n) for n in train.names})
    if len(classes) < 2:
        raise UserError(f"data.labels: folders needs photos in at least two folders; the "
                        f"training split has {classes or 'none'}")
    number = {c: k for k, c in enumerate(classes)}
    return classes, [np.array([number.get(folder(n), NO_LABEL) for n in store.names], np.int64)
                     for store in (train, *others)]


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class LabDataset(Dataset):
    """Yields (x, ab, label): float32 tensors x = L normalized (1, H, W), followed with
    `hints` by the hint channels (1 + 3, H, W), ab / AB_SCALE (2, H, W), and the photo's
    scene class (NO_LABEL without labels).

    Indexed by an int (no augmentation: validation) or by (epoch, index) from EpochSampler
    (augmented, reproducibly)."""

    def __init__(self, store: LabStore, transform: A.Compose | None = None, seed: int = 0,
                 labels: np.ndarray | None = None, hints: bool = False, hint_free: float = 0.0):
        self.store, self.transform, self.seed, self.labels = store, transform, seed, labels
        self.hints, self.hint_free = hints, hint_free

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, key: int | tuple[int, int]
                    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, i = key if isinstance(key, tuple) else (None, key)
        x = np.asarray(self.store[i], dtype=np.float32).transpose(1, 2, 0)  # H, W, 3
        if self.transform is not None and epoch is not None:
            self.transform.set_random_seed(item_seed(self.seed, epoch, i))
            x = self.transform(image=x)["image"]
        # NumPy until the end: no torch op (and no OpenMP team) in the prefetch thread.
        x = x.transpose(2, 0, 1)
        inputs = lab.normalize_l(x[:1])
        if self.hints:
            rng = hint_rng(self.seed, epoch or 0, i)
            # hint_free: training items that get no hint at all, besides the draw's 1/8.
            none = epoch is not None and self.hint_free and rng.random() < self.hint_free
            inputs = np.concatenate([inputs, simulate_hints(x[1:], rng, 0 if none else None)])
        return (torch.from_numpy(np.ascontiguousarray(inputs)),
                torch.from_numpy(np.ascontiguousarray(lab.normalize_ab(x[1:]))),
                NO_LABEL if self.labels is None else int(self.labels[i]))


class EpochSampler(Sampler):
    """This rank's share of a permutation seeded by (seed, epoch), as (epoch, index) keys.

    The permutation is DistributedSampler's, also for one process (world size 1): rank r takes
    positions r, r + W, ..., so the union of all ranks' k-th batches of batch_size / W images is
    exactly one process's k-th batch of batch_size images."""

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1):
        self.inner = DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=True,
                                        seed=seed, drop_last=world > 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class Prefetch:
    """Iterate a DataLoader in a background thread (for num_workers = 0): reading and cropping
    the next batch overlaps with the network's step, as NumPy, OpenCV and PyTorch release the
    GIL. Without worker processes, nothing competes with PyTorch's threads for the cores."""

    def __init__(self, loader: Iterable, depth: int = 2):
        self.loader, self.depth = loader, depth

    def __iter__(self) -> Iterator:
        items: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            """Hand over one item unless the consumer has stopped."""
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for item in self.loader:
                    if not put(item):
                        return
                put(done)
            except BaseException as e:  # handed to the consumer, raised there
                put(e)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while (item := items.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # the consumer stopped early (max steps, an error): release the producer
            stop.set()
            thread.join()
