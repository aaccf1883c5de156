"""Data-parallel training under torchrun: who this process is, and the few collectives used.

`colorize train` runs unchanged in one process or under
`torchrun --nproc_per_node N` (or torchrun's multi-machine rendezvous): when torchrun's WORLD_SIZE
is above 1, `session()` joins the process group (NCCL on CUDA, gloo on CPU). Rank 0 alone writes
checkpoints, DVC outputs and the MLflow run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> Context:
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")))
    return Context()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def session(device: str = "auto") -> Iterator[Context]:
    """Join torchrun's process group for the duration (a no-op in a single process)."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield context()
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    else:  # torchrun sets OMP_NUM_THREADS=1; share this machine's cores between its ranks
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield context()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if context().world > 1:
        dist.barrier()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum of each value over all ranks."""
    if context().world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()

