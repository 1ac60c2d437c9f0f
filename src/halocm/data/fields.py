"""Periodic 2D fields: Gaussian random fields by filtering white noise in Fourier space,
smoothing, block averages, and periodic cut/paste of square windows.

Fields are (…, m, m) arrays of pixel side `spacing` [Mpc/h]; filters live on the rfft2 grid
(m, m//2 + 1) and multiply the transform of white noise of unit variance per pixel.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft as sfft


@functools.lru_cache(maxsize=16)
def wavenumbers(m: int, spacing: float) -> np.ndarray:
    """|k| [h/Mpc] on the rfft2 grid of an m × m field with the given pixel spacing."""
    ky = 2.0 * np.pi * np.fft.fftfreq(m, d=spacing)
    kx = 2.0 * np.pi * np.fft.rfftfreq(m, d=spacing)
    return np.hypot(ky[:, None], kx[None, :])


def impulse_variance(filt: np.ndarray, m: int) -> float:
    """Variance of white noise (unit σ per pixel) coloured by `filt`: Σ of the squared
    impulse response irfft2(filt), since the coloured field is a circular convolution."""
    return float((sfft.irfft2(filt.astype(float), s=(m, m)) ** 2).sum())


@functools.lru_cache(maxsize=16)
def power_law_filter(
    m: int, spacing: float, amplitude: float, slope: float, k_flat: float = 0.0
) -> tuple[np.ndarray, float]:
    """Filter √P(k)/spacing (white noise → field of spectrum P) and its variance, for
    P(k) = amplitude max(k, k_flat)^slope with k in h/Mpc (white below k_flat); no k = 0
    mode (the mean is set apart)."""
    k = wavenumbers(m, spacing)
    power = np.zeros_like(k)
    power[k > 0] = amplitude * np.maximum(k[k > 0], k_flat) ** slope
    amp = (np.sqrt(power) / spacing).astype(np.float32)
    return amp, impulse_variance(amp, m)


@functools.lru_cache(maxsize=16)
def gaussian_filter(m: int, spacing: float, length: float) -> np.ndarray:
    """Filter giving a unit-variance Gaussian field with P ∝ exp(−k² ℓ²), ℓ = `length`."""
    k = wavenumbers(m, spacing)
    amp = np.exp(-0.5 * (k * length) ** 2)
    amp[0, 0] = 0.0
    return (amp / math.sqrt(impulse_variance(amp, m))).astype(np.float32)


def colour(noise: np.ndarray, filt: np.ndarray) -> np.ndarray:
    """Gaussian random field(s): white noise (B, m, m) coloured by filt (…, m, m//2+1)."""
    m = noise.shape[-1]
    return sfft.irfft2(sfft.rfft2(noise, axes=(-2, -1)) * filt, s=(m, m), axes=(-2, -1))


def smooth(field: np.ndarray, sigma: np.ndarray, spacing: float) -> np.ndarray:
    """Gaussian smoothing (per map σ, Mpc/h) in Fourier space; conserves the periodic total."""
    m = field.shape[-1]
    k2 = wavenumbers(m, spacing) ** 2
    kernel = np.exp(-0.5 * k2[None] * (sigma**2)[:, None, None]).astype(np.float32)
    return colour(field, kernel)


def block_mean(field: np.ndarray, f: int) -> np.ndarray:
    """Means over f × f blocks of the last two axes (m divisible by f): (…, m/f, m/f)."""
    *lead, m, _ = field.shape
    return field.reshape(*lead, m // f, f, m // f, f).mean(axis=(-3, -1))


def central(field: np.ndarray, size: int) -> np.ndarray:
    """The central size × size window of the last two axes (a view)."""
    start = (field.shape[-1] - size) // 2
    return field[..., start : start + size, start : start + size]


def _wrap(start: int, size: int, n: int) -> np.ndarray:
    return (start + np.arange(size)) % n


def cut(field: np.ndarray, iy: int, ix: int, size: int) -> np.ndarray:
    """field[..., iy : iy + size, ix : ix + size] with periodic wrap (a copy)."""
    n = field.shape[-1]
    return field[..., _wrap(iy, size, n)[:, None], _wrap(ix, size, n)[None, :]]


def paste(out: np.ndarray, stamp: np.ndarray, iy: int, ix: int) -> None:
    """out[..., iy : iy + s, ix : ix + s] += stamp with periodic wrap (s ≤ the field's side)."""
    n, s = out.shape[-1], stamp.shape[-1]
    out[..., _wrap(iy, s, n)[:, None], _wrap(ix, s, n)[None, :]] += stamp
