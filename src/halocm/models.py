"""Build the preconditioned networks (denoiser or consistency model) from config and data shapes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from halocm.config import Config, config_from_dict
from halocm.diffusion.precond import ConsistencyPrecond, EDMPrecond
from halocm.nn.unet import build_unet

Kind = Literal["denoiser", "consistency"]


@dataclass(frozen=True)
class DataShapes:
    """What the network needs to know about the data: channels, parameters, map side."""

    target_channels: int
    cond_channels: int
    n_params: int
    resolution: int

    @classmethod
    def from_arrays(cls, target, condition, params) -> DataShapes:
        return cls(
            target_channels=int(target.shape[1]),
            cond_channels=int(condition.shape[1]),
            n_params=int(params.shape[1]) if params is not None and params.ndim == 2 else 0,
            resolution=int(target.shape[-1]),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def build_network(cfg: Config, shapes: DataShapes, kind: Kind) -> nn.Module:
    """A UNet backbone wrapped in EDM (denoiser) or consistency preconditioning."""
    unet = build_unet(
        cfg,
        in_channels=shapes.target_channels,
        cond_channels=shapes.cond_channels,
        n_params=shapes.n_params,
        resolution=shapes.resolution,
    )
    if kind == "denoiser":
        return EDMPrecond(unet, sigma_data=cfg.diffusion.sigma_data)
    return ConsistencyPrecond(
        unet, sigma_min=cfg.diffusion.sigma_min, sigma_data=cfg.diffusion.sigma_data
    )


def network_from_checkpoint(ckpt: dict, *, weights: str = "ema") -> nn.Module:
    """Rebuild the network a checkpoint was trained as and load its `weights` ("ema"/"model")."""
    cfg = config_from_dict(ckpt["config"], source="checkpoint config")
    net = build_network(cfg, DataShapes(**ckpt["shapes"]), ckpt["kind"])
    net.load_state_dict(ckpt[weights])
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """θ_ema ← μ θ_ema + (1 − μ) θ; buffers copied."""
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)
