"""Noise-level schedules: Karras grids, CT/iCT curricula, lognormal sampling, ECT gaps.

Conventions: consistency grids are ASCENDING, t_1 = σ_min < … < t_N = σ_max (Song et al.
2023); EDM sampling grids are DESCENDING and end in 0 (Karras et al. 2022, Eq. 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def _karras_grid(n: int, sigma_min: float, sigma_max: float, rho: float) -> np.ndarray:
    """Ascending σ_i = (σ_min^{1/ρ} + i/(n−1) (σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ, i = 0..n−1."""
    if n < 2:
        raise ValueError(f"a Karras grid needs n >= 2 levels, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    grid = (lo + np.arange(n) / (n - 1) * (hi - lo)) ** rho
    # Pin the endpoints: t_1 must equal σ_min exactly for the boundary condition f(x, t_1) = x.
    grid[0], grid[-1] = sigma_min, sigma_max
    return grid


def karras_sigmas(
    n: int,
    sigma_min: float,
    sigma_max: float,
    rho: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """ASCENDING Karras grid t_1 = σ_min < … < t_n = σ_max (Song et al. 2023, Sec. 5)."""
    grid = _karras_grid(n, sigma_min, sigma_max, rho)
    return torch.as_tensor(grid, dtype=dtype, device=device)


def edm_sampling_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> Tensor:
    """DESCENDING Karras grid of n levels, then 0 (Karras et al. 2022, Eq. 5): n + 1 values.

    n = 1 is [σ_max, 0]: one Euler step to 0, i.e. the denoiser D(σ_max z, σ_max) itself."""
    grid = [sigma_max] if n == 1 else _karras_grid(n, sigma_min, sigma_max, rho)[::-1]
    return torch.as_tensor(np.append(grid, 0.0), dtype=torch.float32)


def ct_n_steps(k: int, total: int, s0: int, s1: int) -> int:
    """N(k) = ⌈√(k/K ((s1+1)² − s0²) + s0²) − 1⌉ + 1 (Song et al. 2023, App. C); N(0) = s0."""
    frac = min(max(k / total, 0.0), 1.0)
    return math.ceil(math.sqrt(frac * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1


def ct_ema_decay(k: int, total: int, s0: int, s1: int, mu0: float) -> float:
    """μ(k) = exp(s0 ln μ0 / N(k)) (Song et al. 2023, App. C); μ(0) = μ0."""
    return math.exp(s0 * math.log(mu0) / ct_n_steps(k, total, s0, s1))


def ict_n_steps(k: int, total: int, s0: int = 10, s1: int = 1280) -> int:
    """N(k) = min(s0 2^⌊k/K'⌋, s1) + 1, K' = ⌊K/(log2⌊s1/s0⌋ + 1)⌋ (Song & Dhariwal 2023, Eq. 8)."""
    stage_len = max(math.floor(total / (math.log2(s1 // s0) + 1)), 1)
    return min(s0 * 2 ** (k // stage_len), s1) + 1


def lognormal_index_probs(sigmas: Tensor, p_mean: float, p_std: float) -> Tensor:
    """p(n) ∝ erf((ln t_{n+1} − P_mean)/(√2 P_std)) − erf((ln t_n − P_mean)/(√2 P_std)).

    The lognormal mass of each interval [t_n, t_{n+1}] of an ascending grid (Song & Dhariwal
    2023, Sec. 3.5): N − 1 float64 probabilities summing to 1.
    """
    log_t = torch.as_tensor(sigmas, dtype=torch.float64).log()
    cdf = torch.erf((log_t - p_mean) / (math.sqrt(2.0) * p_std))
    mass = cdf[1:] - cdf[:-1]
    return mass / mass.sum()


def sample_lognormal_sigma(
    n: int,
    p_mean: float,
    p_std: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """n draws of σ with ln σ ~ N(p_mean, p_std²) (Karras et al. 2022, Sec. 5), float32."""
    draw_device = generator.device if generator is not None else device
    normal = torch.randn(n, generator=generator, device=draw_device)
    return (p_mean + p_std * normal).exp().to(device)


def sample_training_sigma(
    n: int,
    p_mean: float,
    p_std: float,
    *,
    uniform_fraction: float,
    sigma_min: float,
    sigma_max: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """n noise levels for denoising training: ln σ ~ N(p_mean, p_std²) (Karras et al. 2022),
    except a `uniform_fraction` of draws uniform in [ln σ_min, ln σ_max].

    The lognormal alone almost never reaches σ_max (P(σ > 40) ≈ 2·10⁻⁵ for N(−1.2, 1.2²)),
    where one-step sampling starts; the uniform part covers the whole range.
    """
    sigma = sample_lognormal_sigma(n, p_mean, p_std, generator=generator, device=device)
    if uniform_fraction == 0:
        return sigma
    draw_device = generator.device if generator is not None else device
    pick = torch.rand(n, generator=generator, device=draw_device) < uniform_fraction
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    uniform = (lo + (hi - lo) * torch.rand(n, generator=generator, device=draw_device)).exp()
    return torch.where(pick.to(sigma.device), uniform.to(sigma.device), sigma)


def ect_stage(k: int, total: int, stages: int) -> int:
    """The ECT stage a = min(⌊k · stages/K⌋, stages − 1) of step k of K."""
    return min(int(k * stages // total), stages - 1)


# n(t) = 1 + ECT_K sigmoid(−ECT_B t): Geng et al. 2024's default mapping function.
ECT_K, ECT_B = 8.0, 1.0


def ect_target_sigma(t: Tensor, stage: int, q: float) -> Tensor:
    """r = max(t (1 − n(t)/q^(a+1)), 0), n(t) = 1 + 8 sigmoid(−t) (Geng et al. 2024, Eq. 12).

    The gap t − r shrinks by q at each stage a = 0, 1, …; n(t) widens it at small t, where
    r = 0 makes the target the clean data (a denoising loss).
    """
    n = 1.0 + ECT_K * torch.sigmoid(-ECT_B * t)
    return (t * (1.0 - n / q ** (stage + 1))).clamp(min=0.0)


def consistency_step_sigmas(
    n_steps: int, sigma_max: float, intermediate: Sequence[float]
) -> list[float]:
    """[σ_max] + n_steps − 1 levels from `intermediate` (decreasing) for Song et al. 2023, Alg. 1.

    With fewer steps than levels the chosen ones are spread evenly across the list, both ends
    included (one extra step takes the first, largest level).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    levels = [float(s) for s in intermediate]
    extra = n_steps - 1
    if extra > len(levels):
        raise ValueError(
            f"{n_steps} steps need {extra} intermediate sigmas, only {len(levels)} configured"
        )
    if any(s >= sigma_max for s in levels):
        raise ValueError(f"intermediate sigmas must be < sigma_max={sigma_max}, got {levels}")
    if extra == 0:
        return [float(sigma_max)]
    if extra == 1:
        return [float(sigma_max), levels[0]]
    idx = np.round(np.linspace(0, len(levels) - 1, extra)).astype(int)
    return [float(sigma_max)] + [levels[i] for i in idx]
