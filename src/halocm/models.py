"""Build the networks (denoiser, consistency model, conditional mean) from an explicit spec.

A network spec is a plain dict — {"kind", "unet": UNet keywords, "precond": constants} — that
a checkpoint stores, so a checkpoint rebuilds its network by itself (`weights_only=True`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from halocm.data.halos import OMEGA_B
from halocm.data.normalize import (
    NormStats,
    denormalize_condition,
    denormalize_params,
    normalize_target,
)
from halocm.diffusion.precond import ConsistencyPrecond, EDMPrecond
from halocm.errors import BadInput
from halocm.nn.unet import build_unet

Kind = Literal["denoiser", "consistency", "mean"]
OMEGA_M = "Omega_m"  # the parameter the cosmic skip reads
# Tensors a network fills in itself when a checkpoint written before they existed lacks them.
FILLED_WHEN_ABSENT = frozenset({"skip_width"})


class ConditionalMean(nn.Module):
    """μ(cond, params) ≈ E[target | cond, params]: a per-channel affine map of a skip built
    from the DMO channel, plus the UNet with no noisy input (zero input channels, a constant
    noise embedding), trained by MSE. The affine part is fitted by least squares before
    training (`fit_affine`); the UNet, whose output starts at zero, learns what it misses.

    The skip is the normalised DMO channel itself, or, given the data's `stats` (a NormStats
    dict), the cosmic skip: the DMO map times each channel's cosmic fraction (`skip_fractions`),
    in that channel's normalisation. Hydro dark matter is then (1 − Ωb/Ωm) × DMO from the
    start, exact for every Ωm, and the UNet learns only what the halos move (docs/design.md §5).
    Each channel's skip is the DMO map smoothed by its own Gaussian width (`skip_width`,
    pixels; 0 for none), which `fit_affine` picks by the same least squares among the widths
    it is given (only 0 unless `mean.smooth_skip`): gas, smoother than the dark matter it
    follows, otherwise inherits the DMO map's pixel-scale structure."""

    def __init__(self, net: nn.Module, stats: dict | None = None):
        super().__init__()
        self.net = net
        self.stats = None if stats is None else NormStats.from_dict(stats)
        if self.stats is not None and OMEGA_M not in self.stats.param_names:
            raise BadInput(
                f"the cosmic skip (mean.cosmic_skip) needs the parameter {OMEGA_M}; the data "
                f"have {self.stats.param_names}: set mean.cosmic_skip=false"
            )
        self.slope = nn.Parameter(torch.zeros(net.out_channels))
        self.offset = nn.Parameter(torch.zeros(net.out_channels))
        self.register_buffer("skip_width", torch.zeros(net.out_channels))

    def forward(self, cond: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
        nothing = cond.new_zeros(cond.shape[0], 0, *cond.shape[-2:])
        learned = self.net(nothing, cond.new_zeros(cond.shape[0]), cond, params)
        skip = self.skip(cond, params, self.skip_width.tolist())
        return self.slope[:, None, None] * skip + self.offset[:, None, None] + learned

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the skip was smoothed: every width was 0.
        state_dict.setdefault(prefix + "skip_width", torch.zeros_like(self.skip_width))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def skip(
        self, cond: torch.Tensor, params: torch.Tensor | None, widths: list[float]
    ) -> torch.Tensor:
        """(B, C or 1, H, W): what the affine map scales, channel c's built from the DMO map
        smoothed by widths[c] pixels."""
        if self.stats is None:
            return smoothed_per_channel(cond[:, :1], widths)
        dmo = denormalize_condition(cond, self.stats)[:, :1]
        smoothed = smoothed_per_channel(dmo, widths)
        omega_m = denormalize_params(params, self.stats)[:, self.stats.param_names.index(OMEGA_M)]
        fractions = skip_fractions(omega_m, self.stats.channel_names)
        return normalize_target(fractions[:, :, None, None] * smoothed, self.stats)

    @torch.no_grad()
    def fit_affine(
        self,
        target: torch.Tensor,
        cond: torch.Tensor,
        params: torch.Tensor | None,
        widths: tuple[float, ...] = (0.0,),
    ) -> None:
        """Least squares target_c ≈ slope_c · skip_c + offset_c over all maps and pixels, for
        each of the skip's `widths` (pixels); each channel keeps the width that leaves the least."""
        y = target.double().transpose(0, 1).flatten(1)  # (C, N·H·W)
        best = torch.full((y.shape[0],), float("inf"), dtype=torch.double, device=y.device)
        for width in widths:
            x = self.skip(cond, params, [width] * y.shape[0]).double().expand_as(target)
            slope, offset, sse = least_squares(x.transpose(0, 1).flatten(1), y)
            better = sse < best
            best = torch.where(better, sse, best)
            self.slope.copy_(torch.where(better, slope.float(), self.slope))
            self.offset.copy_(torch.where(better, offset.float(), self.offset))
            self.skip_width.masked_fill_(better, width)


# The widths `mean.smooth_skip` chooses from, in pixels: from none to about a group halo's gas
# core on the default maps (0.2 Mpc/h pixels).
SKIP_WIDTHS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


def least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per row of (C, N) x and y: slope, offset and the sum of squared residuals of y ≈ a x + b."""
    dx = x - x.mean(1, keepdim=True)
    slope = ((y - y.mean(1, keepdim=True)) * dx).sum(1) / dx.pow(2).sum(1).clamp(min=1e-12)
    offset = y.mean(1) - slope * x.mean(1)
    sse = (y - slope[:, None] * x - offset[:, None]).pow(2).sum(1)
    return slope, offset, sse


def smoothed_per_channel(dmo: torch.Tensor, widths: list[float]) -> torch.Tensor:
    """(B, 1, H, W) → channel c smoothed by widths[c] pixels, each distinct width blurred once;
    (B, 1, H, W) when every channel shares one width, which broadcasts (the default: none)."""
    blurred = {w: gaussian_blur(dmo, w) for w in dict.fromkeys(widths)}
    if len(blurred) == 1:
        return next(iter(blurred.values()))
    return torch.cat([blurred[w] for w in widths], 1)


def gaussian_blur(x: torch.Tensor, width: float) -> torch.Tensor:
    """(B, 1, H, W) maps smoothed by a normalised Gaussian of `width` pixels (x itself at 0),
    edges replicated: weights ≥ 0 keep a mass map positive."""
    if width <= 0:
        return x
    radius = math.ceil(3 * width)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / width) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def skip_fractions(omega_m: torch.Tensor, channel_names: list[str]) -> torch.Tensor:
    """(B, C): the share of the DMO mass that each channel's cosmic skip takes: 1 − f_b for
    dm_hydro and f_b for gas (f_b = Ωb/Ωm, the field's split where no halo has moved mass), 1
    for any other channel (stars have no cosmic share: their skip is the DMO map's shape)."""
    f_b = (OMEGA_B / omega_m).clamp(0.0, 1.0)
    shares = {"dm_hydro": 1.0 - f_b, "gas": f_b}
    return torch.stack([shares.get(name, torch.ones_like(f_b)) for name in channel_names], 1)


PRECONDS: dict[str, type[nn.Module]] = {
    "denoiser": EDMPrecond,
    "consistency": ConsistencyPrecond,
    "mean": ConditionalMean,
}


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


def network_spec(
    kind: Kind,
    model: dict,
    shapes: DataShapes,
    *,
    sigma_min: float,
    sigma_data: float,
    stats: dict | None = None,
) -> dict:
    """The spec of a `kind` network: the UNet of `model` (the UNet's size knobs) sized for
    the data, with EDM (σ_data) or consistency (σ_min, σ_data) preconditioning; the
    conditional mean sees no noisy input and has no preconditioning; given the data's `stats`
    (a NormStats dict), its skip is the cosmic one (ConditionalMean)."""
    unet = {
        "in_channels": 0 if kind == "mean" else shapes.target_channels,
        "out_channels": shapes.target_channels,
        "cond_channels": shapes.cond_channels,
        "n_params": shapes.n_params,
        "resolution": shapes.resolution,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in model.items()},
    }
    precond = {"sigma_data": float(sigma_data)}
    if kind == "consistency":
        precond = {"sigma_min": float(sigma_min), **precond}
    if kind == "mean":
        precond = {} if stats is None else {"stats": stats}
    return {"kind": kind, "unet": unet, "precond": precond}


def build_network(spec: dict) -> nn.Module:
    """A UNet backbone wrapped in the preconditioning of `spec["kind"]`."""
    return PRECONDS[spec["kind"]](build_unet(**spec["unet"]), **spec["precond"])


def network_from_checkpoint(ckpt: dict, *, weights: str = "ema") -> nn.Module:
    """Rebuild the network a checkpoint was trained as and load its `weights` ("ema"/"model")."""
    if "network" not in ckpt:
        raise ValueError("checkpoint has no network spec: it was written by an older halocm")
    net = build_network(ckpt["network"])
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
