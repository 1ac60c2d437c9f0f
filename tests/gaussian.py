"""Known answers for the diffusion maths (docs/design.md §5), shared by the tests.

A Gaussian random field x ~ N(0, C) with C diagonal in (orthonormal) 2-D Fourier space, power
P_k per mode, has the exact denoiser D(x, σ) = C (C + σ²)⁻¹ x and the exact consistency map
f(x_σ, σ)_k = a_k(σ) x̂_σ,k with a_k(σ) = √((P_k + σ_min²)/(P_k + σ²)). Every operator is a
per-mode multiplier, so losses and samplers have closed-form expectations. The point mass
(x0 = μ always) is the P → 0 limit: x0 + t z lies on the PF-ODE trajectory of z for every t,
so consistency losses with the exact map vanish identically there.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor


def _sigma_column(sigma, x: Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma[:, None, None, None]


def apply_multiplier(x: Tensor, m: Tensor) -> Tensor:
    """Multiply each Fourier mode of x by m (broadcast to x's shape), back in x's dtype."""
    xk = torch.fft.fft2(x.double(), norm="ortho")
    return torch.fft.ifft2(xk * m, norm="ortho").real.to(x.dtype)


def mode_power(x: Tensor) -> Tensor:
    """|x̂_k|² per mode and sample (B, C, H, W), orthonormal FFT."""
    return torch.fft.fft2(x.double(), norm="ortho").abs() ** 2


class GaussianField:
    """x ~ N(0, C), E|x̂_k|² = P_k; pixel variance = mean_k P_k."""

    def __init__(self, power: Tensor, sigma_min: float = 0.002):
        self.power = power.double()
        self.sigma_min = sigma_min

    @classmethod
    def power_law(cls, size: int, variance: float = 0.25, k0: float = 2.0, sigma_min=0.002):
        """P ∝ 1/(1 + (|k|/k0)²), scaled so the pixel variance is `variance`."""
        freq = torch.fft.fftfreq(size, dtype=torch.float64) * size
        k = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
        shape = 1 / (1 + (k / k0) ** 2)
        return cls(shape * variance / shape.mean(), sigma_min)

    def sample(self, n: int, channels: int = 1, generator=None) -> Tensor:
        size = self.power.shape[-1]
        white = torch.randn(n, channels, size, size, generator=generator, dtype=torch.float64)
        return apply_multiplier(white, self.power.sqrt()).float()

    def a(self, sigma) -> Tensor:
        """a_k(σ) = √((P_k + σ_min²)/(P_k + σ²)), shape (..., H, W) for σ of shape (...)."""
        s = torch.as_tensor(sigma, dtype=torch.float64)[..., None, None]
        return torch.sqrt((self.power + self.sigma_min**2) / (self.power + s**2))

    def denoiser(self) -> Exact:
        return Exact(lambda x, s: apply_multiplier(x, self.power / (self.power + s**2)), self)

    def consistency(self) -> Exact:
        p, m2 = self.power, self.sigma_min**2
        return Exact(lambda x, s: apply_multiplier(x, torch.sqrt((p + m2) / (p + s**2))), self)

    # Closed-form expectations of the losses with the l2 (per-element mean) distance.

    def pair_loss(self, t_student: float, t_target: float) -> float:
        """E mean_pix (f(x0 + t_s z, t_s) − f(x0 + t_t z, t_t))², same x0 and z."""
        a_s, a_t = self.a(t_student), self.a(t_target)
        per_mode = (a_s - a_t) ** 2 * self.power + (a_s * t_student - a_t * t_target) ** 2
        return float(per_mode.mean())

    def step_ratio(self, t_from: float, t_to: float, solver: str) -> Tensor:
        """Per-mode factor x(t_to)/x(t_from) of one Euler/Heun step of dx/dt = t x/(P + t²)."""
        h = t_to - t_from
        g_from = t_from / (self.power + t_from**2)
        g_to = t_to / (self.power + t_to**2)
        if solver == "euler":
            return 1 + h * g_from
        return 1 + h / 2 * (g_from + g_to * (1 + h * g_from))

    def exact_ratio(self, t_from: float, t_to: float) -> Tensor:
        """Exact PF-ODE factor √((P + t_to²)/(P + t_from²))."""
        return torch.sqrt((self.power + t_to**2) / (self.power + t_from**2))

    def cd_loss(self, t_hi: float, t_lo: float, solver: str) -> float:
        """E mean_pix (f(x_hi, t_hi) − f(x̂_lo, t_lo))² with the exact teacher, student, target."""
        err = self.exact_ratio(t_hi, t_lo) - self.step_ratio(t_hi, t_lo, solver)
        return float((self.a(t_lo) ** 2 * err**2 * (self.power + t_hi**2)).mean())

    def edm_mmse(self, sigma: float) -> float:
        """E mean_pix (D(x0 + σz, σ) − x0)² of the exact denoiser: mean_k P σ²/(P + σ²)."""
        return float((self.power * sigma**2 / (self.power + sigma**2)).mean())

    def heun_multiplier(self, sigmas, heun: bool = True) -> Tensor:
        """Per-mode output/latent factor of the Euler/Heun sampler on a grid ending in 0."""
        levels = [float(s) for s in sigmas]
        m = torch.full_like(self.power, levels[0])
        for t_cur, t_next in itertools.pairwise(levels):
            if t_next == 0:
                m = m * self.power / (self.power + t_cur**2)  # Euler to 0 returns D(x, t_cur).
            else:
                m = m * self.step_ratio(t_cur, t_next, "heun" if heun else "euler")
        return m


class Exact:
    """A D(x, σ, cond, params) callable around a per-mode multiplier; counts its calls."""

    def __init__(self, fn, field):
        self.fn, self.sigma_min, self.calls = fn, field.sigma_min, 0

    def __call__(self, x, sigma, cond=None, params=None):
        self.calls += 1
        return self.fn(x, _sigma_column(sigma, x))


class PointMass:
    """x0 = μ always: D(x, σ) = μ and f(x, σ) = μ + (σ_min/σ)(x − μ) exactly."""

    def __init__(self, mu: Tensor, sigma_min: float = 0.002):
        self.mu, self.sigma_min = mu, sigma_min

    def sample(self, n: int) -> Tensor:
        return self.mu.expand(n, *self.mu.shape).clone()

    def denoiser(self):
        mu = self.mu

        def denoise(x, sigma, cond=None, params=None):
            return mu.expand_as(x).to(x.dtype)

        denoise.sigma_min = self.sigma_min
        return denoise

    def consistency(self):
        mu, sigma_min = self.mu.double(), self.sigma_min

        def f(x, sigma, cond=None, params=None):
            s = _sigma_column(sigma, x)
            return (mu + sigma_min / s * (x.double() - mu)).to(x.dtype)

        f.sigma_min = sigma_min
        return f


def ring_power(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Ring-averaged power per integer |k| bin: (k bins, mean over samples, standard error)."""
    size = x.shape[-1]
    freq = torch.fft.fftfreq(size, dtype=torch.float64) * size
    k = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2).round().long()
    per_sample = mode_power(x).mean(dim=1)  # (B, H, W), channels averaged
    bins = torch.unique(k)
    rings = torch.stack([per_sample[:, k == b].mean(dim=1) for b in bins], dim=1)  # (B, n_bins)
    return bins, rings.mean(0), rings.std(0) / math.sqrt(x.shape[0])


def ring_average(power: Tensor) -> Tensor:
    """The same ring binning applied to a per-mode (H, W) spectrum."""
    size = power.shape[-1]
    freq = torch.fft.fftfreq(size, dtype=torch.float64) * size
    k = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2).round().long()
    return torch.stack([power[k == b].mean() for b in torch.unique(k)])
