"""Draw normalised maps from a trained network: per-sample seeds, either sampler."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from halocm.diffusion.samplers import consistency_sample, edm_heun_sample, per_sample_randn
from halocm.diffusion.schedules import consistency_step_sigmas, edm_sampling_sigmas


def sample_seed(seed: int, index: int, realization: int) -> int:
    """A seed for map `index`, realisation `realization`: independent of batching."""
    return int(np.random.SeedSequence([seed, index, realization]).generate_state(1)[0])


def make_generators(seed: int, indices, realization: int, device) -> list[torch.Generator]:
    return [
        torch.Generator(device=device).manual_seed(sample_seed(seed, int(i), realization))
        for i in indices
    ]


def nfe(kind: str, n_steps: int) -> int:
    """Network evaluations: one per consistency step; Heun costs 2n − 1 (Karras et al. 2022)."""
    return n_steps if kind == "consistency" else 2 * n_steps - 1


@torch.no_grad()
def consistency_batch(
    net: nn.Module,
    cond: torch.Tensor,
    params: torch.Tensor,
    *,
    n_steps: int,
    generators: list[torch.Generator],
    out_channels: int,
    sigma_max: float,
    intermediate_sigmas: tuple[float, ...],
) -> torch.Tensor:
    """One batch of normalised samples by Song et al. 2023, Alg. 1: from σ_max, then through
    `n_steps − 1` of `intermediate_sigmas`."""
    z = per_sample_randn(_shape(cond, out_channels), generators, device=cond.device)
    sigmas = consistency_step_sigmas(n_steps, sigma_max, intermediate_sigmas)
    return consistency_sample(net, z, sigmas, cond=cond, params=params, generators=generators)


@torch.no_grad()
def teacher_batch(
    net: nn.Module,
    cond: torch.Tensor,
    params: torch.Tensor,
    *,
    n_steps: int,
    generators: list[torch.Generator],
    out_channels: int,
    sigma_min: float,
    sigma_max: float,
    rho: float,
    churn: float = 0.0,
    churn_range: tuple[float, float] = (0.05, 50.0),
) -> torch.Tensor:
    """One batch of normalised samples of the denoiser: EDM Heun on `n_steps` Karras levels,
    stochastic with `churn` > 0."""
    z = per_sample_randn(_shape(cond, out_channels), generators, device=cond.device)
    sigmas = edm_sampling_sigmas(n_steps, sigma_min, sigma_max, rho).to(cond.device)
    return edm_heun_sample(
        net,
        z,
        sigmas,
        cond=cond,
        params=params,
        churn=churn,
        churn_range=churn_range,
        generators=generators,
    )


def _shape(cond: torch.Tensor, out_channels: int) -> tuple[int, ...]:
    return (cond.shape[0], out_channels, *cond.shape[-2:])
