"""Data-parallel training under `torchrun`: the process group, this process's rank, shards.

`torchrun --nproc_per_node=N -m halocm train` starts N copies of the same command with
RANK, LOCAL_RANK and WORLD_SIZE in the environment (docs/design.md §9). Each copy builds the same
network, takes its slice of the same global batch and lets DistributedDataParallel average the
gradients, so one step equals a one-process step on the whole global batch. A plain
`halocm train` sets none of these variables and runs exactly as without this module.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def is_main_process() -> bool:
    """Rank 0 alone writes checkpoints, logs and MLflow runs; True outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Group:
    """This process's place in the data-parallel group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> Group:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """This rank's contiguous slice of each tensor of the global batch."""
        if self.size == 1:
            return batch
        n = batch[0].shape[0]
        if n % self.size:
            raise ValueError(
                f"a global batch of {n} cannot be split evenly over "
                f"{self.size} processes: make batch_size a multiple of it"
            )
        per = n // self.size
        return tuple(t[self.rank * per : (self.rank + 1) * per] for t in batch)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over ranks: the global batch's loss, the same on every rank."""
        if self.size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.size


def rank_seed(seed: int, rank: int) -> int:
    """Distinct noise per rank (rank 0 keeps `seed`): equal streams would correlate shards."""
    return seed + 1_000_003 * rank


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's group for the duration (gloo on CPU, NCCL on CUDA); yield the device.

    On CUDA each process takes GPU LOCAL_RANK. Outside torchrun, or when a caller has already
    initialised the group, this does nothing and `device` is returned unchanged.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # Generous timeout: rank 0 validates while the others wait at the next all-reduce.
    dist.init_process_group(backend, timeout=datetime.timedelta(hours=1))
    try:
        yield device
        dist.barrier()  # every rank returns only once rank 0 has published the outputs
    finally:
        dist.destroy_process_group()
