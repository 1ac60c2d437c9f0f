"""Draw normalised maps from a trained network: per-sample seeds, either sampler."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from halocm.config import Config
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
def sample_batch(
    net: nn.Module,
    kind: str,
    cond: torch.Tensor,
    params: torch.Tensor,
    *,
    n_steps: int,
    cfg: Config,
    generators: list[torch.Generator],
    out_channels: int,
) -> torch.Tensor:
    """One batch of normalised samples: consistency Alg. 1, or EDM Heun for the teacher."""
    d = cfg.diffusion
    shape = (cond.shape[0], out_channels, *cond.shape[-2:])
    z = per_sample_randn(shape, generators, device=cond.device)
    if kind == "consistency":
        sigmas = consistency_step_sigmas(n_steps, d.sigma_max, cfg.sample.intermediate_sigmas)
        return consistency_sample(net, z, sigmas, cond=cond, params=params, generators=generators)
    sigmas = edm_sampling_sigmas(n_steps, d.sigma_min, d.sigma_max, d.rho).to(cond.device)
    return edm_heun_sample(net, z, sigmas, cond=cond, params=params)
