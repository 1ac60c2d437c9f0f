"""Preconditioning: D(x, σ, cond, params) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ), ...).

Two parameterisations share one backbone F and one c_noise = ¼ ln σ, so a denoiser's weights
warm-start a consistency model unchanged:

- EDM (Karras et al. 2022, Table 1): c_skip = σ_d²/(σ² + σ_d²), c_out = σ σ_d/√(σ² + σ_d²).
- Consistency (Song et al. 2023, App. C): c_skip = σ_d²/((σ − σ_min)² + σ_d²),
  c_out = σ_d (σ − σ_min)/√(σ² + σ_d²); then c_skip(σ_min) = 1 and c_out(σ_min) = 0 exactly,
  which enforces the boundary condition f(x, σ_min) = x.

Both use c_in = 1/√(σ² + σ_d²).

The spectral skip (`diffusion.spectral_skip`, docs/design.md §4) replaces the scalar c_skip by
the Wiener filter of the training residuals' power P(k) per channel and Fourier mode: each mode
of x is scaled by P/(P + s²), s = σ (EDM) or σ − σ_min (consistency), and c_out becomes the
rms error of that estimate, s √(mean_k P/(P + σ²)). A white spectrum, P ≡ σ_d², gives back both
scalar parameterisations exactly; a field with no power at some scale passes none of the noise
there, so the network has nothing to cancel pixel by pixel.
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


def spectral_skip(x: Tensor, power: Tensor, shift: Tensor) -> Tensor:
    """x (B, C, H, W) with each Fourier mode scaled by its Wiener gain P/(P + s²); power
    (C, H, W) per mode of the orthonormal DFT, shift s (B,). Written as x minus what the gain
    removes, so that s = 0 returns x exactly (the consistency boundary condition)."""
    removed = shift[:, None, None, None] ** 2 / (power + shift[:, None, None, None] ** 2)
    return x - torch.fft.ifft2(removed * torch.fft.fft2(x, norm="ortho"), norm="ortho").real


def spectral_output_scale(power: Tensor, shift: Tensor, sigma: Tensor) -> Tensor:
    """(B, C) c_out of the spectral skip: s √(mean_k P/(P + σ²)); s σ_d/√(σ² + σ_d²) when white."""
    passed = (power / (power + sigma[:, None, None, None] ** 2)).mean((-2, -1))
    return shift[:, None] * passed.sqrt()


def residual_power(r: Tensor) -> Tensor:
    """(C, H, W): the mean power per mode of the orthonormal DFT of maps r (N, C, H, W), the P
    of the spectral skip; floored so that a mode with none still has a defined gain at s = 0."""
    power = torch.fft.fft2(r.double(), norm="ortho").abs().pow(2).mean(0)
    return power.clamp(min=1e-12).float()


def _column(c: Tensor, dtype: torch.dtype) -> Tensor:
    return c.to(dtype)[:, None, None, None]


def _precondition(net, x, cond, params, coefficients, skip_power, sigma, shift) -> Tensor:
    c_skip, c_out, c_in, c_noise = coefficients
    # Mix in at least float32 whatever the backbone's (autocast) precision.
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(dtype)
    f_x = net(_column(c_in, dtype) * x, c_noise, cond, params).to(dtype)
    if skip_power is None:
        return _column(c_skip, dtype) * x + _column(c_out, dtype) * f_x
    c_out = spectral_output_scale(skip_power, shift, sigma).to(dtype)
    return spectral_skip(x, skip_power, shift).to(dtype) + c_out[:, :, None, None] * f_x


def _register_skip_power(precond: nn.Module, sigma_data: float, spectral: bool) -> None:
    """The spectral skip's buffer `skip_power` (C, H, W), white (σ_d²) until set from data
    (`residual_power`); None for the scalar skip."""
    precond.spectral = bool(spectral)
    if not precond.spectral:
        precond.skip_power = None
        return
    net = precond.net
    shape = (net.out_channels, net.resolution, net.resolution)
    precond.register_buffer("skip_power", torch.full(shape, float(sigma_data) ** 2))


class EDMPrecond(nn.Module):
    """The EDM denoiser D(x, σ) ≈ E[x0 | x]: pretraining target, warm start and CD teacher."""

    def __init__(self, net: nn.Module, sigma_data: float, spectral: bool = False):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        _register_skip_power(self, sigma_data, spectral)

    def forward(self, x: Tensor, sigma, cond: Tensor | None, params: Tensor | None) -> Tensor:
        sigma = per_sample_sigma(sigma, x)
        coefficients = edm_coefficients(sigma, self.sigma_data)
        return _precondition(self.net, x, cond, params, coefficients, self.skip_power, sigma, sigma)


class ConsistencyPrecond(nn.Module):
    """The consistency function f(x, σ), with f(x, σ_min) = x exactly (Song et al. 2023, Eq. 7)."""

    def __init__(self, net: nn.Module, sigma_min: float, sigma_data: float, spectral: bool = False):
        super().__init__()
        self.net = net
        self.sigma_min = float(sigma_min)
        self.sigma_data = float(sigma_data)
        _register_skip_power(self, sigma_data, spectral)

    def forward(self, x: Tensor, sigma, cond: Tensor | None, params: Tensor | None) -> Tensor:
        sigma = per_sample_sigma(sigma, x)
        coefficients = consistency_coefficients(sigma, self.sigma_min, self.sigma_data)
        shift = sigma - self.sigma_min
        return _precondition(self.net, x, cond, params, coefficients, self.skip_power, sigma, shift)


def edm_twin(student: ConsistencyPrecond) -> EDMPrecond:
    """The EDM denoiser on a consistency model's backbone and skip (its denoising warm-up)."""
    twin = EDMPrecond(student.net, student.sigma_data, spectral=student.spectral)
    if student.spectral:
        twin.skip_power.copy_(student.skip_power)
    return twin
