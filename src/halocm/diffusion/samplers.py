"""Samplers: pure functions (net, latents, sigmas, ...) -> x, run without gradients.

`latents` are unit-normal draws z of the output's shape; each sampler scales them by its
first σ. Noise injected later comes from per-sample generators when given, so sample k is
the same whatever the batch it is drawn in (EDM's per-sample seeding).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor


def per_sample_randn(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    *,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Unit normal tensor whose row k is drawn from generators[k] alone."""
    shape = tuple(shape)
    if shape[0] != len(generators):
        raise ValueError(f"batch {shape[0]} needs as many generators, got {len(generators)}")
    rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generators]
    return torch.stack(rows).to(device)


def _sigma_list(sigmas) -> list[float]:
    return [float(s) for s in (sigmas.tolist() if isinstance(sigmas, Tensor) else sigmas)]


def _full(x: Tensor, sigma: float) -> Tensor:
    dtype = torch.promote_types(x.dtype, torch.float32)
    return torch.full((x.shape[0],), sigma, device=x.device, dtype=dtype)


@torch.no_grad()
def consistency_sample(f, latents: Tensor, sigmas, *, cond, params, generators=None) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1); one step when len(sigmas) = 1.

    x = f(σ_0 z, σ_0); for τ in sigmas[1:]: x ← f(x + √(τ² − σ_min²) z', τ). No clamping:
    the fields are normalised log-densities, not images in [−1, 1]. σ_min is f.sigma_min.
    """
    levels = _sigma_list(sigmas)
    sigma_min = float(f.sigma_min)
    x = f(latents * levels[0], _full(latents, levels[0]), cond, params)
    for tau in levels[1:]:
        z = _randn_like(x, generators)
        x = f(x + math.sqrt(tau**2 - sigma_min**2) * z, _full(x, tau), cond, params)
    return x


def _noise_level(t, x: Tensor) -> tuple[Tensor, float | Tensor]:
    """σ as the network takes it, (B,), and as it scales x: a float, or (B, 1, 1, 1)."""
    if isinstance(t, Tensor):
        return t, t[:, None, None, None]
    return _full(x, t), t


def pf_ode_step(denoiser, x: Tensor, t_cur, t_next, cond, params, *, heun: bool) -> Tensor:
    """One step of the PF-ODE dx/dt = (x − D(x, t))/t from t_cur to t_next (Karras et al.
    2022, Alg. 1 with S_churn = 0): Euler, plus Heun's trapezoidal correction when `heun`.

    t_cur and t_next are floats (one level for the batch, as samplers step) or (B,) tensors
    (a level per sample, as consistency distillation draws them); t_next must be > 0 for Heun.
    """
    s_cur, t_cur = _noise_level(t_cur, x)
    s_next, t_next = _noise_level(t_next, x)
    h = t_next - t_cur
    slope = (x - denoiser(x, s_cur, cond, params)) / t_cur
    x_next = x + h * slope
    if not heun:
        return x_next
    slope_next = (x_next - denoiser(x_next, s_next, cond, params)) / t_next
    return x + h * (slope + slope_next) / 2


@torch.no_grad()
def edm_heun_sample(
    denoiser,
    latents: Tensor,
    sigmas,
    *,
    cond,
    params,
    churn: float = 0.0,
    churn_range: tuple[float, float] = (0.05, 50.0),
    generators=None,
) -> Tensor:
    """EDM Heun sampler (Karras et al. 2022): the deterministic PF-ODE (Alg. 1) when `churn`
    is 0, else the stochastic sampler of Alg. 2 with S_noise = 1.

    `sigmas` descend and end in 0 (edm_sampling_sigmas); n levels above 0 cost 2n − 1 calls:
    the last step, to σ = 0 where the slope is undefined, is an Euler step. With churn, a step
    from t in `churn_range` (S_tmin, S_tmax) starts at t̂ = (1 + γ) t, γ = min(churn / n,
    √2 − 1), after adding noise of variance t̂² − t²: each step then removes more noise than
    the ODE would, which corrects part of the errors of earlier steps at no extra call.
    """
    levels = _sigma_list(sigmas)
    gamma = min(churn / (len(levels) - 1), math.sqrt(2.0) - 1.0)
    lo, hi = churn_range
    x = latents * levels[0]
    for t_cur, t_next in itertools.pairwise(levels):
        if gamma > 0 and lo <= t_cur <= hi:
            t_hat = (1.0 + gamma) * t_cur
            x = x + math.sqrt(t_hat**2 - t_cur**2) * _randn_like(x, generators)
            t_cur = t_hat
        x = pf_ode_step(denoiser, x, t_cur, t_next, cond, params, heun=t_next > 0)
    return x


def _randn_like(x: Tensor, generators) -> Tensor:
    if generators is None:
        return torch.randn_like(x)
    return per_sample_randn(x.shape, generators, device=x.device, dtype=x.dtype)
