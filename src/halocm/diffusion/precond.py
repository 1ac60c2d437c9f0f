"""Preconditioning: D(x, σ, cond, params) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ), ...).

Two parameterisations share one backbone F and one c_noise = ¼ ln σ, so a denoiser's weights
warm-start a consistency model unchanged:

- EDM (Karras et al. 2022, Table 1): c_skip = σ_d²/(σ² + σ_d²), c_out = σ σ_d/√(σ² + σ_d²).
- Consistency (Song et al. 2023, App. C): c_skip = σ_d²/((σ − σ_min)² + σ_d²),
  c_out = σ_d (σ − σ_min)/√(σ² + σ_d²); then c_skip(σ_min) = 1 and c_out(σ_min) = 0 exactly,
  which enforces the boundary condition f(x, σ_min) = x.

Both use c_in = 1/√(σ² + σ_d²).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def edm_coefficients(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) of EDM (Karras et al. 2022, Table 1); c_noise = ¼ ln σ."""
    var = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / var
    c_out = sigma * sigma_data / var.sqrt()
    c_in = 1 / var.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def consistency_coefficients(
    sigma: Tensor, sigma_min: float, sigma_data: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) of Song et al. 2023, App. C; c_noise = ¼ ln σ as in EDM."""
    shifted = sigma - sigma_min
    var = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / (shifted**2 + sigma_data**2)
    c_out = sigma_data * shifted / var.sqrt()
    c_in = 1 / var.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def per_sample_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """σ as a (B,) tensor on x's device, from a scalar or a (B,) tensor.

    Kept in its own precision (at least float32) so that σ = σ_min given in that precision makes
    σ − σ_min exactly zero.
    """
    sigma = torch.as_tensor(sigma, device=x.device)
    sigma = sigma.to(torch.promote_types(sigma.dtype, torch.float32))
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(
            f"sigma must be a scalar or shape ({x.shape[0]},), got {tuple(sigma.shape)}"
        )
    return sigma


def _column(c: Tensor, dtype: torch.dtype) -> Tensor:
    return c.to(dtype)[:, None, None, None]


def _precondition(net, x, cond, params, coefficients) -> Tensor:
    c_skip, c_out, c_in, c_noise = coefficients
    # Mix in at least float32 whatever the backbone's (autocast) precision.
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(dtype)
    f_x = net(_column(c_in, dtype) * x, c_noise, cond, params)
    return _column(c_skip, dtype) * x + _column(c_out, dtype) * f_x.to(dtype)


class EDMPrecond(nn.Module):
    """The EDM denoiser D(x, σ) ≈ E[x0 | x]: pretraining target, warm start and CD teacher."""

    def __init__(self, net: nn.Module, sigma_data: float):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, sigma, cond: Tensor | None, params: Tensor | None) -> Tensor:
        sigma = per_sample_sigma(sigma, x)
        coefficients = edm_coefficients(sigma, self.sigma_data)
        return _precondition(self.net, x, cond, params, coefficients)


class ConsistencyPrecond(nn.Module):
    """The consistency function f(x, σ), with f(x, σ_min) = x exactly (Song et al. 2023, Eq. 7)."""

    def __init__(self, net: nn.Module, sigma_min: float, sigma_data: float):
        super().__init__()
        self.net = net
        self.sigma_min = float(sigma_min)
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, sigma, cond: Tensor | None, params: Tensor | None) -> Tensor:
        sigma = per_sample_sigma(sigma, x)
        coefficients = consistency_coefficients(sigma, self.sigma_min, self.sigma_data)
        return _precondition(self.net, x, cond, params, coefficients)
