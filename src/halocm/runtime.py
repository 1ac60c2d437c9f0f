"""Where computation runs: the device from config, and global seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from halocm.errors import EnvironmentFault


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; `cuda` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EnvironmentFault(
            "device: cuda requested, but no CUDA device is available (allowed here: cpu, auto)"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
