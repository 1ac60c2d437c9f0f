"""Summary statistics that compare generated and true baryonic maps (docs/design.md §6).

Every function takes numpy arrays and returns numpy arrays or Python floats. Maps are
square ``(H, W)`` images or batches ``(..., H, W)``; functions marked *physical* take mass
per pixel (≥ 0) and apply the transform they need themselves (overdensity for spectra,
``log10(1 + x)`` for SSIM, PSNR and the pixel PDF), so the benchmark passes the same arrays
to all of them.

Conventions
-----------
* Fourier: numpy's unnormalised FFT, ``δ̂_k = Σ_x δ_x exp(-i k·x)``; the 2-D power spectrum
  is ``P(k) = L² |δ̂_k|² / N⁴`` in (Mpc/h)², so white noise of variance σ² has the flat
  spectrum ``P = σ² (L/N)²`` and ``Σ_k P(k) / L² = var(δ)`` (Parseval).
* Rings: mode ``k = (2π/L)(m_x, m_y)`` belongs to ring ``i = round(|m|)``, i.e. rings of width
  ``Δk = k_F = 2π/L`` centred on ``i k_F``; ring 0 (the mean) is excluded, empty rings are
  dropped, and the reported ``k`` is the mean ``|k|`` of the modes in the ring.
* Batches: spectra are returned per map; the ratios (``r(k)``, ``pk_err``, ``rk_err``) are
  formed from spectra averaged over every leading axis, as estimators of ⟨P⟩ should be.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import ndimage, stats

__all__ = [
    "METRICS",
    "aperture_mass",
    "correlation_coefficient",
    "cross_power",
    "log_field",
    "mass_bias_scatter",
    "overdensity",
    "pdf_distance",
    "pk_error",
    "power_spectrum",
    "psnr",
    "radial_profile",
    "rank_calibration",
    "ring_modes",
    "rk_error",
    "ssim",
]

# SSIM constants and window (Wang et al. 2004, §III-C): Gaussian σ = 1.5 truncated to 11×11.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy's radius int(3.5 * 1.5 + 0.5) = 5, i.e. an 11-tap window

# Sub-pixel strips per pixel for the fractional coverage of aperture-boundary pixels.
APERTURE_SUPERSAMPLE = 32


# --------------------------------------------------------------------------------------
# Field transforms
# --------------------------------------------------------------------------------------


def overdensity(x: np.ndarray) -> np.ndarray:
    """δ = ρ/ρ̄ − 1 per map, ρ̄ the mean over the last two axes.

    A map whose mean is zero has no defined contrast; it maps to zeros rather than NaN so
    that an empty channel (e.g. no stars) cannot poison batch averages.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=(-2, -1), keepdims=True)
    safe = np.where(mean == 0.0, 1.0, mean)
    return np.where(mean == 0.0, 0.0, x / safe - 1.0)


def log_field(x: np.ndarray) -> np.ndarray:
    """The ``log10(1 + x)`` transform used for SSIM, PSNR and the pixel PDF (docs/design.md §4)."""
    return np.log10(1.0 + np.asarray(x, dtype=np.float64))


# --------------------------------------------------------------------------------------
# Power spectra
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _ring_table(
    n: int, n_bins: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Binning of the ``rfft2`` half-plane of an n×n map into rings of width k_F.

    Returns ``(avg, ring, k_mean, n_modes)``: ``avg`` (n·(n//2+1), n_k) turns |δ̂|² on the
    half-plane into ring means over the full plane, ``ring`` the kept ring indices,
    ``k_mean`` the mean |m| per ring (units of k_F) and ``n_modes`` the full-plane mode count.
    """
    my = np.fft.fftfreq(n, d=1.0 / n)  # integer wavenumbers −n/2 … n/2−1
    mx = np.arange(n // 2 + 1, dtype=np.float64)
    kmag = np.hypot(my[:, None], mx[None, :])
    # A half-plane column mx stands for ±mx, except mx = 0 and the even-n Nyquist column.
    col_weight = np.full(mx.shape, 2.0)
    col_weight[0] = 1.0
    if n % 2 == 0:
        col_weight[-1] = 1.0
    weight = np.broadcast_to(col_weight, kmag.shape).ravel()
    ring_of = np.rint(kmag).astype(np.int64).ravel()
    # Default: rings up to Nyquist; beyond it only the anisotropic corners remain.
    max_ring = n // 2 if n_bins is None else int(n_bins)
    in_range = ring_of <= max_ring
    counts = np.bincount(ring_of[in_range], weights=weight[in_range], minlength=max_ring + 1)
    k_sum = np.bincount(
        ring_of[in_range], weights=(weight * kmag.ravel())[in_range], minlength=max_ring + 1
    )
    ring = np.flatnonzero(counts > 0)
    ring = ring[ring > 0]
    n_modes = counts[ring]
    k_mean = k_sum[ring] / n_modes
    # Dense (half-plane pixels × rings) averaging matrix: one matmul bins a whole batch.
    col_of_ring = np.full(max_ring + 1, -1)
    col_of_ring[ring] = np.arange(ring.size)
    pix = np.flatnonzero(in_range & (ring_of > 0))
    col = col_of_ring[ring_of[pix]]
    avg = np.zeros((ring_of.size, ring.size))
    avg[pix, col] = weight[pix] / n_modes[col]
    for arr in (avg, ring, k_mean, n_modes):
        arr.setflags(write=False)
    return avg, ring, k_mean, n_modes


def _check_square(x: np.ndarray) -> int:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"power spectra need square maps (..., N, N); got shape {x.shape}")
    return x.shape[-1]


def ring_modes(n: int, box_size: float, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(k, n_modes)``: ring wavenumbers (h/Mpc) and full-plane mode counts per ring.

    The counts give the Gaussian-field error of a ring mean: modes come in conjugate pairs,
    so σ_P / P ≈ 1 / sqrt(n_modes / 2) per map.
    """
    _, _, k_mean, n_modes = _ring_table(int(n), n_bins)
    return k_mean * (2.0 * np.pi / box_size), n_modes.copy()


def _rfft(delta: np.ndarray) -> tuple[np.ndarray, int]:
    delta = np.asarray(delta, dtype=np.float64)
    return np.fft.rfft2(delta), _check_square(delta)


def _bin_rings(
    prod: np.ndarray, n: int, box_size: float, n_bins: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Ring means of a half-plane product of FFTs, scaled by L²/N⁴: ``(k, P)``."""
    avg, _, k_mean, _ = _ring_table(n, n_bins)
    p = prod.reshape(*prod.shape[:-2], -1) @ avg * (box_size**2 / float(n) ** 4)
    return k_mean * (2.0 * np.pi / box_size), p


def _fft_pair(delta_a: np.ndarray, delta_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    if np.shape(delta_a) != np.shape(delta_b):
        raise ValueError(f"shape mismatch: {np.shape(delta_a)} vs {np.shape(delta_b)}")
    fa, n = _rfft(delta_a)
    fb, _ = _rfft(delta_b)
    return fa, fb, n


def _abs2(f: np.ndarray) -> np.ndarray:
    return f.real**2 + f.imag**2


def _re_cross(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    return fa.real * fb.real + fa.imag * fb.imag  # Re(a b*)


def power_spectrum(
    delta: np.ndarray, box_size: float, n_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ring-averaged 2-D power spectrum ``P(k) = L² |δ̂_k|² / N⁴`` (docs/design.md §6).

    ``delta``: overdensity maps (..., N, N); ``box_size`` L in Mpc/h; ``n_bins``: keep rings
    1…n_bins (default N/2, up to the Nyquist wavenumber π N / L). Returns ``k`` (n_k,) in
    h/Mpc and ``P`` (..., n_k) in (Mpc/h)², one spectrum per map.
    """
    f, n = _rfft(delta)
    return _bin_rings(_abs2(f), n, box_size, n_bins)


def cross_power(
    delta_a: np.ndarray, delta_b: np.ndarray, box_size: float, n_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-spectrum ``P_ab(k) = L² Re(δ̂_a δ̂_b*) / N⁴``, same rings as `power_spectrum`."""
    fa, fb, n = _fft_pair(delta_a, delta_b)
    return _bin_rings(_re_cross(fa, fb), n, box_size, n_bins)


def _batch_mean(x: np.ndarray, core: int) -> np.ndarray:
    """Mean over every axis but the last ``core`` ones."""
    return x.reshape(-1, *x.shape[x.ndim - core :]).mean(axis=0)


def _ratio_r(p_ab: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """r = P_ab / sqrt(P_a P_b); 1 where both fields have no power, 0 where only one has."""
    denom = np.sqrt(p_a * p_b)
    r = np.divide(p_ab, denom, out=np.zeros_like(p_ab), where=denom > 0)
    return np.where((p_a == 0) & (p_b == 0), 1.0, r)


def correlation_coefficient(
    delta_a: np.ndarray, delta_b: np.ndarray, box_size: float, n_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation coefficient ``r(k) = ⟨P_ab⟩ / sqrt(⟨P_a⟩⟨P_b⟩)``.

    The spectra are averaged over all leading (batch) axes before the ratio — the ratio of
    noisy single-map spectra is biased — so ``r`` is a single (n_k,) curve.
    """
    fa, fb, n = _fft_pair(delta_a, delta_b)
    # Ring binning is linear: average the mode products over the batch first, bin once.
    k, p_ab = _bin_rings(_batch_mean(_re_cross(fa, fb), 2), n, box_size, n_bins)
    _, p_a = _bin_rings(_batch_mean(_abs2(fa), 2), n, box_size, n_bins)
    _, p_b = _bin_rings(_batch_mean(_abs2(fb), 2), n, box_size, n_bins)
    return k, _ratio_r(p_ab, p_a, p_b)


def _pk_err_bins(n: int) -> int:
    # Rings centred at k ≤ k_Nyquist / 2 = (N/4) k_F.
    return max(n // 4, 1)


def pk_error(gen: np.ndarray, true: np.ndarray, box_size: float) -> float:
    """``pk_err`` = mean over k ≤ k_Nyq/2 of |⟨P_gen⟩/⟨P_true⟩ − 1| (docs/design.md §6).

    *Physical* maps (..., N, N); spectra of their overdensities, averaged over the batch.
    Rings where the true power vanishes carry no information and are skipped (NaN if all do).
    """
    gen, true = np.asarray(gen), np.asarray(true)
    n_bins = _pk_err_bins(_check_square(true))
    _, p_gen = power_spectrum(overdensity(gen), box_size, n_bins)
    _, p_true = power_spectrum(overdensity(true), box_size, n_bins)
    p_gen, p_true = _batch_mean(p_gen, 1), _batch_mean(p_true, 1)
    ok = p_true > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(p_gen[ok] / p_true[ok] - 1.0)))


def rk_error(gen: np.ndarray, true: np.ndarray, box_size: float) -> float:
    """``rk_err`` = mean over k ≤ k_Nyq/2 of 1 − r(k), r from batch-averaged spectra of δ."""
    gen, true = np.asarray(gen), np.asarray(true)
    n_bins = _pk_err_bins(_check_square(true))
    _, r = correlation_coefficient(overdensity(gen), overdensity(true), box_size, n_bins)
    return float(np.mean(1.0 - r))


# --------------------------------------------------------------------------------------
# Image-quality metrics on log10(1 + x)
# --------------------------------------------------------------------------------------


def _data_range(ref_log: np.ndarray, data_range: float | None) -> float:
    # Global range of the reference batch: one C1, C2 for every map keeps rows comparable.
    if data_range is not None:
        return float(data_range)
    span = float(ref_log.max() - ref_log.min())
    return span if span > 0 else 1.0


def _log_pair(a, b, data_range: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """log10(1 + x) of both batches and the range R of the reference ``b``'s."""
    la, lb = log_field(a), log_field(b)
    if la.shape != lb.shape:
        raise ValueError(f"shape mismatch: {la.shape} vs {lb.shape}")
    return la, lb, _data_range(lb, data_range)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity of *physical* maps, computed on ``log10(1 + x)``.

    Wang et al. 2004, eq. 13: SSIM = (2μ_aμ_b + C1)(2σ_ab + C2) / ((μ_a² + μ_b² + C1)
    (σ_a² + σ_b² + C2)), local moments under a Gaussian window (σ = 1.5, 11×11),
    C_i = (K_i R)² with K1 = 0.01, K2 = 0.03. ``b`` is the reference: R defaults to the
    range of log10(1 + b) over the whole batch. The SSIM map is averaged away from a
    5-pixel border (where the window leaves the map) and then over the batch.
    """
    la, lb, r = _log_pair(a, b, data_range)
    c1, c2 = (SSIM_K1 * r) ** 2, (SSIM_K2 * r) ** 2
    # Filter the five moment fields in one call; only the two image axes are smoothed.
    stack = np.stack([la, lb, la * la, lb * lb, la * lb])
    sigma = (0.0,) * (stack.ndim - 2) + (SSIM_SIGMA, SSIM_SIGMA)
    mu_a, mu_b, m_aa, m_bb, m_ab = ndimage.gaussian_filter(
        stack, sigma=sigma, truncate=SSIM_TRUNCATE, mode="reflect"
    )
    var_a, var_b, cov = m_aa - mu_a**2, m_bb - mu_b**2, m_ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    smap = num / den
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(smap.shape[-2:]) > 2 * pad:
        smap = smap[..., pad:-pad, pad:-pad]
    return float(smap.mean())


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio 10 log10(R² / MSE) of *physical* maps on ``log10(1 + x)``.

    Per map, then averaged over the batch; R as in `ssim` (range of the reference ``b``).
    Identical maps give +inf.
    """
    la, lb, r = _log_pair(a, b, data_range)
    mse = np.mean((la - lb) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore"):
        return float(np.mean(10.0 * np.log10(r**2 / mse)))


def pdf_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein distance between the pixel distributions of log10(1 + x).

    All pixels of all maps are pooled (*physical* maps of any shape).
    """
    la, lb = log_field(a).ravel(), log_field(b).ravel()
    if la.size == lb.size:
        # Equal-size samples: W1 pairs the order statistics, mean |a_(i) − b_(i)| — the value
        # scipy returns, without its merged argsort (≈ 20× faster on 200 × 128² pixels).
        return float(np.mean(np.abs(np.sort(la) - np.sort(lb))))
    return float(stats.wasserstein_distance(la, lb))


# --------------------------------------------------------------------------------------
# Halo-centric statistics
# --------------------------------------------------------------------------------------


def _centred_coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel-centre offsets from the geometric map centre (between pixels for even sizes).
    return np.arange(h) + 0.5 - h / 2.0, np.arange(w) + 0.5 - w / 2.0


def aperture_mass(
    maps: np.ndarray,
    radius_pix: float | np.ndarray,
    supersample: int = APERTURE_SUPERSAMPLE,
    *,
    centre: tuple[float, float] | np.ndarray | None = None,
) -> np.ndarray:
    """Mass inside a circle of radius ``radius_pix`` (pixels) about each map's ``centre``.

    ``maps``: mass per pixel, (H, W) or (B, H, W); ``radius_pix``: scalar or (B,);
    ``centre``: (y, x) in pixels from the map's corner (pixel [i, j] spans [i, i + 1] ×
    [j, j + 1]), (2,) or (B, 2), by default the map centre (H/2, W/2). Pixels entirely
    inside count fully; pixels cut by the circle count by the fraction of their area inside
    it, from ``supersample`` sub-pixel strips each clipped exactly (error ≲ 1/supersample²
    of a pixel per boundary pixel), so small apertures stay accurate. Mass is taken as
    uniform within a pixel — the map holds nothing finer. Parts of the circle outside the
    map contribute nothing. Returns (B,) (a 0-d array for a single map).
    """
    maps = np.asarray(maps, dtype=np.float64)
    single = maps.ndim == 2
    m = maps[None] if single else maps
    if m.ndim != 3:
        raise ValueError(f"aperture_mass needs (H, W) or (B, H, W) maps; got {maps.shape}")
    b, h, w = m.shape
    radius = np.broadcast_to(np.asarray(radius_pix, dtype=np.float64), (b,))
    # Pixel-centre offsets from each map's centre, (1 or B, H) and (1 or B, W).
    cy, cx = np.array([h / 2.0, w / 2.0]) if centre is None else np.asarray(centre, float).T
    yc = np.arange(h) + 0.5 - np.reshape(cy, (-1, 1))
    xc = np.arange(w) + 0.5 - np.reshape(cx, (-1, 1))
    ay, ax = np.abs(yc)[:, :, None], np.abs(xc)[:, None, :]
    d_far = np.hypot(ay + 0.5, ax + 0.5).reshape(len(yc), -1)  # farthest corner
    d_near = np.hypot(np.maximum(ay - 0.5, 0), np.maximum(ax - 0.5, 0)).reshape(len(yc), -1)
    flat = m.reshape(b, -1)
    inside = d_far <= radius[:, None]
    mass = np.einsum("bp,bp->b", flat, inside.astype(np.float64))
    # Only boundary pixels need sub-pixel sampling: O(perimeter) pixels per map. Each is cut
    # into `supersample` strips along y, and the chord of every strip is clipped to the
    # pixel exactly along x (midpoint rule in y), so the error falls as 1/supersample².
    bi, pi = np.nonzero((d_near < radius[:, None]) & ~inside)
    if bi.size:
        own = bi if len(yc) > 1 else 0  # the row of offsets: per map, or shared
        offs = (np.arange(supersample) + 0.5) / supersample - 0.5
        y = yc[own, pi // w][:, None] + offs[None, :]
        x = xc[own, pi % w][:, None]
        half = np.sqrt(np.maximum(radius[bi, None] ** 2 - y**2, 0.0))
        chord = np.minimum(x + 0.5, half) - np.maximum(x - 0.5, -half)
        frac = np.clip(chord, 0.0, 1.0).mean(axis=1)
        mass += np.bincount(bi, weights=frac * flat[bi, pi], minlength=b)
    return mass[0] if single else mass


def mass_bias_scatter(m_gen: np.ndarray, m_true: np.ndarray) -> tuple[float, float]:
    """Mean (bias) and standard deviation (scatter) of log10(m_gen / m_true), in dex.

    Pairs where either mass is not positive have no defined log ratio and are dropped;
    if none remain the result is (nan, nan).
    """
    m_gen = np.asarray(m_gen, dtype=np.float64).ravel()
    m_true = np.asarray(m_true, dtype=np.float64).ravel()
    ok = (m_gen > 0) & (m_true > 0)
    if not ok.any():
        return float("nan"), float("nan")
    ratio = np.log10(m_gen[ok] / m_true[ok])
    return float(ratio.mean()), float(ratio.std())


@lru_cache(maxsize=32)
def _annulus_table(h: int, w: int, n_bins: int, r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Averaging matrix (pixels × annuli) and mean pixel radius of each non-empty annulus."""
    yc, xc = _centred_coords(h, w)
    rad = np.hypot(yc[:, None], xc[None, :]).ravel()
    idx = np.floor(rad / r_max * n_bins).astype(np.int64)
    keep = idx < n_bins
    count = np.bincount(idx[keep], minlength=n_bins)
    r_sum = np.bincount(idx[keep], weights=rad[keep], minlength=n_bins)
    used = np.flatnonzero(count > 0)
    col = np.full(n_bins, -1)
    col[used] = np.arange(used.size)
    avg = np.zeros((rad.size, used.size))
    pix = np.flatnonzero(keep)
    avg[pix, col[idx[pix]]] = 1.0 / count[idx[pix]]
    r_mean = r_sum[used] / count[used]
    avg.setflags(write=False)
    r_mean.setflags(write=False)
    return avg, r_mean


def radial_profile(
    maps: np.ndarray, n_bins: int, r_max: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal mean in ``n_bins`` equal-width annuli about the map centre, out to ``r_max``.

    ``maps`` (..., H, W); radii in pixels, ``r_max`` defaulting to min(H, W)/2. Pixels are
    assigned by their centre; empty annuli are dropped. Returns ``r`` (n_r,), the mean
    pixel radius of each annulus, and the profile (..., n_r).
    """
    maps = np.asarray(maps, dtype=np.float64)
    h, w = maps.shape[-2:]
    r_max = min(h, w) / 2.0 if r_max is None else float(r_max)
    avg, r_mean = _annulus_table(h, w, int(n_bins), r_max)
    prof = maps.reshape(*maps.shape[:-2], -1) @ avg
    return r_mean.copy(), prof


# --------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------


def rank_calibration(
    samples: np.ndarray, truth: np.ndarray, levels: tuple[float, ...] = (0.5, 0.9)
) -> tuple[dict[float, float], np.ndarray]:
    """Calibration from the rank of the truth among R realisations (a PIT histogram).

    ``samples`` (B, R, ...) and ``truth`` (B, ...). For each pixel the truth's rank among its
    R draws is k = #(draws < truth) (ties spread over #(draws ≤ truth)); for a calibrated
    ensemble every k in 0..R is equally likely, and the probability integral transform lies
    uniformly in [k/(R + 1), (k + 1)/(R + 1)]. The coverage of the central interval of level p
    is the mean fraction of that PIT interval inside [(1 − p)/2, (1 + p)/2]: exactly p in
    expectation for a calibrated ensemble, at any R (the empirical-quantile interval of R
    draws covers only about p (R − 1)/(R + 1)). Returns ({p: coverage}, the histogram of k,
    R + 1 fractions summing to 1).
    """
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if samples.ndim < 2 or samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(f"samples {samples.shape} must be truth {truth.shape} with R at axis 1")
    r = samples.shape[1]
    t = truth[:, None]
    below = (samples < t).sum(axis=1)
    at_most = (samples <= t).sum(axis=1)
    pit_lo, pit_hi = below / (r + 1), (at_most + 1) / (r + 1)
    out = {}
    for p in levels:
        lo, hi = (1.0 - p) / 2.0, (1.0 + p) / 2.0
        inside = np.clip(pit_hi, lo, hi) - np.clip(pit_lo, lo, hi)
        out[float(p)] = float(np.mean(inside / (pit_hi - pit_lo)))
    hist = np.bincount(below.ravel(), minlength=r + 1) / below.size
    return out, hist


# --------------------------------------------------------------------------------------
# Registry of per-channel scalar metrics (STYLE.md rule 9)
# --------------------------------------------------------------------------------------


def _ssim_metric(gen: np.ndarray, true: np.ndarray, box_size: float) -> float:
    return ssim(gen, true)


def _psnr_metric(gen: np.ndarray, true: np.ndarray, box_size: float) -> float:
    return psnr(gen, true)


def _pdf_metric(gen: np.ndarray, true: np.ndarray, box_size: float) -> float:
    return pdf_distance(gen, true)


# name → f(gen, true, box_size) -> float, on one channel's physical maps (B, H, W).
METRICS: dict[str, Callable[[np.ndarray, np.ndarray, float], float]] = {
    "pk_err": pk_error,
    "rk_err": rk_error,
    "ssim": _ssim_metric,
    "psnr": _psnr_metric,
    "pdf_dist": _pdf_metric,
}
