"""What the stages share: where they read and write files (the config's `paths`), and what
a checkpoint carries besides the training state."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config


def synthetic_path(cfg: Config) -> Path:
    """Where `halocm generate` writes the simulator's maps."""
    return Path(cfg.paths.raw_dir) / "synthetic.npz"


def source_path(cfg: Config) -> Path:
    """The raw input of `prepare`: the simulator's maps, or `data.path`."""
    return synthetic_path(cfg) if cfg.data.source == "synthetic" else Path(cfg.data.path)


def split_path(cfg: Config, split: str) -> Path:
    return Path(cfg.paths.processed_dir) / f"{split}.npz"


def norm_stats_path(cfg: Config) -> Path:
    return Path(cfg.paths.processed_dir) / "norm_stats.json"


def mean_path(cfg: Config) -> Path:
    return Path(cfg.paths.models_dir) / "mean.pt"


def denoiser_path(cfg: Config) -> Path:
    return Path(cfg.paths.models_dir) / "denoiser.pt"


def consistency_path(cfg: Config) -> Path:
    return Path(cfg.paths.models_dir) / "consistency.pt"


def checkpoint_extra(cfg: Config, spec: dict, mode: str, stats, shapes, residual=None) -> dict:
    """What a checkpoint carries besides the training state: enough to sample without the
    config (network spec, diffusion constants, statistics, the residual's mean network and
    scale), and the resolved config itself."""
    return {
        "kind": spec["kind"],
        "mode": mode,
        "network": spec,
        "residual": None if residual is None else residual.state(),
        "diffusion": cfg.diffusion.model_dump(),
        "config": cfg.to_dict(),
        "norm_stats": stats.to_dict(),
        "shapes": shapes.to_dict(),
    }
