"""Checkpoints: tensors and plain containers only, loadable with `weights_only=True`.

A checkpoint alone is enough to sample: it carries the weights, the inference EMA, the network
spec (kind, UNet keywords, preconditioning constants), the diffusion constants, the
normalisation statistics, the data shapes and, for the record, the resolved config (DESIGN.md §4).
"""

from __future__ import annotations

from pathlib import Path

import torch

from halocm.io import atomic_path


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write atomically: a killed run never leaves a half-written checkpoint behind."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a halocm checkpoint ({type(err).__name__})") from None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
