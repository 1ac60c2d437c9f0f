"""Known-answer tests for halocm.evaluation.metrics (issue 4, docs/design.md §6)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import erf

from halocm.evaluation import metrics as M

L = 6.25  # Mpc/h, the default cutout side


# --------------------------------------------------------------------------------------
# Helpers written independently of the module under test
# --------------------------------------------------------------------------------------


def full_plane_modes(n: int, box: float) -> tuple[np.ndarray, np.ndarray]:
    """|k| (h/Mpc) and ring index round(|m|) for every mode of the full n×n FFT plane."""
    m = np.fft.fftfreq(n, d=1.0 / n)
    mag = np.hypot(m[:, None], m[None, :])
    return mag * 2 * np.pi / box, np.rint(mag).astype(int)


def ring_expectation(n: int, box: float, pk, rings: np.ndarray):
    """Per ring: mean |k|, mode count, mean P(|k|) and sqrt(Σ P²) over its modes."""
    kmag, ring = full_plane_modes(n, box)
    out = []
    for i in rings:
        sel = ring == i
        p = pk(kmag[sel])
        out.append((kmag[sel].mean(), sel.sum(), p.mean(), np.sqrt((p**2).sum())))
    return [np.array(col) for col in zip(*out, strict=True)]


def gaussian_field(rng, m: int, n: int, box: float, pk) -> np.ndarray:
    """m Gaussian random fields with E|δ̂_k|² = P(k) N⁴ / L² (the module's normalisation)."""
    white = np.fft.rfft2(rng.standard_normal((m, n, n)))  # E|ŵ|² = N² per mode
    my = np.fft.fftfreq(n, d=1.0 / n)
    mx = np.arange(n // 2 + 1)
    kmag = np.hypot(my[:, None], mx[None, :]) * 2 * np.pi / box
    amp = np.zeros_like(kmag)
    amp[kmag > 0] = np.sqrt(pk(kmag[kmag > 0]) * n**2 / box**2)
    return np.fft.irfft2(white * amp, s=(n, n))


def power_law(a: float, slope: float, k0: float = 1.0):
    return lambda k: a * (k / k0) ** slope


def wls_line(x, y, sig):
    """Weighted least-squares line y = c + s x; returns (s, σ_s, c)."""
    w = 1.0 / sig**2
    a = np.vstack([np.ones_like(x), x]).T
    cov = np.linalg.inv(a.T @ (a * w[:, None]))
    coef = cov @ (a.T @ (w * y))
    return coef[1], np.sqrt(cov[1, 1]), coef[0]


# --------------------------------------------------------------------------------------
# Overdensity
# --------------------------------------------------------------------------------------


def test_overdensity_per_map_and_zero_safe():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 3, size=(3, 8, 8))
    x[1] = 0.0
    d = M.overdensity(x)
    assert np.all(np.isfinite(d))
    np.testing.assert_allclose(d[1], 0.0)
    np.testing.assert_allclose(d.mean(axis=(-2, -1)), 0.0, atol=1e-14)
    np.testing.assert_allclose(d[0], x[0] / x[0].mean() - 1)


# --------------------------------------------------------------------------------------
# Power spectra
# --------------------------------------------------------------------------------------


def test_rings_mean_k_and_mode_counts_match_full_plane():
    n = 16
    k, n_modes = M.ring_modes(n, L)
    k_exp, count_exp, _, _ = ring_expectation(n, L, np.ones_like, np.arange(1, n // 2 + 1))
    np.testing.assert_allclose(k, k_exp, rtol=1e-12)
    np.testing.assert_array_equal(n_modes, count_exp)
    # Ring 1 holds (±1, 0), (0, ±1) and the four diagonals at √2.
    assert n_modes[0] == 8
    np.testing.assert_allclose(k[0], (1 + np.sqrt(2)) / 2 * 2 * np.pi / L)


@pytest.mark.parametrize("n", [15, 16])
def test_parseval_over_all_rings(n):
    # Σ_modes P(k) / L² = var(δ) once every ring up to the corner is kept (k = 0 excluded).
    delta = np.random.default_rng(1).standard_normal((n, n))
    n_bins = n  # beyond the corner √2 n/2: all modes kept
    _, p = M.power_spectrum(delta, L, n_bins=n_bins)
    _, n_modes = M.ring_modes(n, L, n_bins=n_bins)
    assert n_modes.sum() == n * n - 1
    np.testing.assert_allclose((n_modes * p).sum() / L**2, delta.var(), rtol=1e-12)


def test_power_spectrum_recovers_power_law_amplitude_and_slope():
    n, m, amp, slope = 32, 200, 0.05, -2.0
    pk = power_law(amp, slope)
    delta = gaussian_field(np.random.default_rng(2), m, n, L, pk)
    k, p = M.power_spectrum(delta, L)
    assert p.shape == (m, n // 2)
    k_exp, n_modes, p_exp, rss = ring_expectation(n, L, pk, np.arange(1, n // 2 + 1))
    np.testing.assert_allclose(k, k_exp, rtol=1e-12)
    p_mean = p.mean(axis=0)
    # Gaussian field: Var(ring mean) = 2 Σ_modes P² / n_modes² per map.
    sigma = np.sqrt(2.0) * rss / n_modes / np.sqrt(m)
    assert np.all(np.abs(p_mean - p_exp) < 5 * sigma)
    # Amplitude: weighted mean of P̂ / E[P̂] over rings is 1.
    w = (p_exp / sigma) ** 2
    a_hat = np.sum(w * p_mean / p_exp) / w.sum()
    assert abs(a_hat - 1) < 5 / np.sqrt(w.sum())
    # Slope: a line in log-log from ring 3 on, where the ring average of k^-2 is close to
    # the power law at the ring's mean k (bias ≈ slope(slope−1)/24 / i² < 0.04).
    sel = slice(2, None)
    s_hat, s_err, _ = wls_line(np.log(k[sel]), np.log(p_mean[sel]), (sigma / p_mean)[sel])
    assert abs(s_hat - slope) < 5 * s_err + 0.03


def test_white_noise_is_flat_at_variance_times_pixel_area():
    n, m, var = 32, 100, 0.49
    delta = np.sqrt(var) * np.random.default_rng(3).standard_normal((m, n, n))
    _, p = M.power_spectrum(delta, L)
    _, n_modes = M.ring_modes(n, L)
    expected = var * (L / n) ** 2
    sigma = expected * np.sqrt(2.0 / (n_modes * m))
    assert np.all(np.abs(p.mean(axis=0) - expected) < 5 * sigma)


def test_power_spectrum_batch_shapes_and_square_check():
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 16))
    k, p = M.power_spectrum(x, L)
    assert p.shape == (2, 3, k.size)
    _, p11 = M.power_spectrum(x[1, 1], L)
    np.testing.assert_allclose(p[1, 1], p11, rtol=1e-12)
    with pytest.raises(ValueError, match="square"):
        M.power_spectrum(np.zeros((8, 10)), L)


def test_cross_power_of_a_field_with_itself_is_its_power():
    x = np.random.default_rng(5).standard_normal((4, 16, 16))
    _, p = M.power_spectrum(x, L)
    _, pxx = M.cross_power(x, x, L)
    np.testing.assert_allclose(pxx, p, rtol=1e-12)
    _, r = M.correlation_coefficient(x, x, L)
    np.testing.assert_allclose(r, 1.0, rtol=1e-12)
    _, r_neg = M.correlation_coefficient(x, -3 * x, L)
    np.testing.assert_allclose(r_neg, -1.0, rtol=1e-12)


def test_correlation_of_independent_and_partly_correlated_fields():
    n, m = 32, 50
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, m, n, n))
    _, n_modes = M.ring_modes(n, L)
    tol = 5 / np.sqrt(n_modes * m)  # σ_r ≈ 1 / sqrt(modes × maps) for independent fields
    _, r = M.correlation_coefficient(a, b, L)
    assert np.all(np.abs(r) < tol)
    # b' = a + b with equal white spectra: r = 1/√2 at every k.
    _, r_half = M.correlation_coefficient(a, a + b, L)
    assert np.all(np.abs(r_half - 1 / np.sqrt(2)) < tol)


# --------------------------------------------------------------------------------------
# pk_err, rk_err
# --------------------------------------------------------------------------------------


def zero_mean_field(seed: int, m: int = 6, n: int = 32) -> np.ndarray:
    d = 0.2 * np.random.default_rng(seed).standard_normal((m, n, n))
    return d - d.mean(axis=(-2, -1), keepdims=True)


def test_pk_and_rk_error_vanish_for_identical_and_rescaled_maps():
    true = 5.0 * (1.0 + zero_mean_field(7))
    assert M.pk_error(true, true, L) == pytest.approx(0.0, abs=1e-12)
    assert M.rk_error(true, true, L) == pytest.approx(0.0, abs=1e-12)
    # The overdensity forgets the mean density.
    assert M.pk_error(3.0 * true, true, L) == pytest.approx(0.0, abs=1e-12)


def test_pk_error_of_doubled_contrast_is_three():
    d = zero_mean_field(8)
    true, gen = 1.0 + d, 7.0 * (1.0 + 2.0 * d)
    assert M.pk_error(gen, true, L) == pytest.approx(3.0, rel=1e-12)
    assert M.rk_error(gen, true, L) == pytest.approx(0.0, abs=1e-12)


def test_errors_only_look_at_k_below_half_nyquist():
    n = 32
    true = 1.0 + zero_mean_field(9, n=n)
    x = np.arange(n)[None, :]
    high = 0.3 * np.cos(2 * np.pi * 12 * x / n)  # ring 12 > N/4 = 8: ignored
    low = 0.3 * np.cos(2 * np.pi * 4 * x / n)  # ring 4: counted
    assert M.pk_error(true + high, true, L) == pytest.approx(0.0, abs=1e-12)
    assert M.rk_error(true + high, true, L) == pytest.approx(0.0, abs=1e-12)
    assert M.pk_error(true + low, true, L) > 0.1


def test_rk_error_of_independent_maps_is_about_one():
    a, b = 1.0 + zero_mean_field(10, m=20), 1.0 + zero_mean_field(11, m=20)
    assert M.rk_error(a, b, L) == pytest.approx(1.0, abs=0.1)


# --------------------------------------------------------------------------------------
# SSIM, PSNR, pixel PDF
# --------------------------------------------------------------------------------------


def lognormal_maps(seed: int, m: int = 4, n: int = 32) -> np.ndarray:
    return 10 ** np.random.default_rng(seed).normal(1.0, 0.5, size=(m, n, n))


def test_ssim_identity_symmetry_and_decrease_with_noise():
    x = lognormal_maps(12)
    assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(13)
    lx = np.log10(1 + x)
    values = []
    for noise in (0.05, 0.2, 0.8):
        y = 10 ** (lx + noise * rng.standard_normal(x.shape)) - 1
        values.append(M.ssim(y, x, data_range=2.0))
        assert M.ssim(y, x, data_range=2.0) == pytest.approx(M.ssim(x, y, data_range=2.0))
    assert 1 > values[0] > values[1] > values[2]


def test_ssim_of_constant_maps_is_the_luminance_term():
    # No variance: SSIM = (2 μa μb + C1) / (μa² + μb² + C1) (Wang et al. 2004, eq. 13).
    ma, mb, r = 1.0, 2.0, 3.0
    a = np.full((2, 16, 16), 10**ma - 1)
    b = np.full((2, 16, 16), 10**mb - 1)
    c1 = (0.01 * r) ** 2
    expected = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
    assert M.ssim(a, b, data_range=r) == pytest.approx(expected, rel=1e-9)


def test_psnr_of_a_known_mse():
    lb = np.random.default_rng(14).uniform(0, 2, size=(3, 16, 16))
    checker = np.where((np.indices((16, 16)).sum(0) % 2) == 0, 1.0, -1.0)
    c, r = 0.1, 2.5
    a, b = 10 ** (lb + c * checker) - 1, 10**lb - 1  # MSE of the logs = c² exactly
    assert M.psnr(a, b, data_range=r) == pytest.approx(20 * np.log10(r / c), rel=1e-9)
    assert M.psnr(b, b) == np.inf


def test_pdf_distance_of_a_shift_is_the_shift():
    lb = np.random.default_rng(15).normal(1, 0.3, size=(4, 16, 16))
    b, a = 10**lb - 1, 10 ** (lb + 0.17) - 1
    assert M.pdf_distance(a, b) == pytest.approx(0.17, rel=1e-9)
    assert M.pdf_distance(b, b) == 0.0


def test_pdf_distance_agrees_with_scipy():
    rng = np.random.default_rng(21)
    a = rng.lognormal(1.0, 0.5, size=(3, 8, 8))
    b = rng.lognormal(1.2, 0.4, size=(2, 8, 8))
    c = rng.lognormal(1.2, 0.4, size=(3, 8, 8))

    def lg(x):
        return np.log10(1 + x).ravel()

    for x, y in ((a, c), (a, b)):  # equal sizes (sorted pairing) and unequal (scipy)
        ref = stats.wasserstein_distance(lg(x), lg(y))
        assert M.pdf_distance(x, y) == pytest.approx(ref, rel=1e-12)


# --------------------------------------------------------------------------------------
# Aperture mass, mass bias, radial profile
# --------------------------------------------------------------------------------------


def exact_aperture(maps, radius, centres=None):
    """Reference: each pixel's overlap with the disc by adaptive quadrature of its chords;
    discs about `centres` (y, x) per map, by default the map centre."""
    _, h, w = maps.shape
    if centres is None:
        centres = [(h / 2, w / 2)] * len(maps)
    out = []
    for img, rad, (cy, cx) in zip(maps, radius, centres, strict=True):
        total = 0.0
        for i in range(h):
            for j in range(w):
                y0, x0 = i - cy, j - cx

                def chord(y, x0=x0, rad=rad):
                    c = np.sqrt(max(rad**2 - y**2, 0.0))
                    return max(min(x0 + 1, c) - max(x0, -c), 0.0)

                lo, hi = max(y0, -rad), min(y0 + 1, rad)
                if hi > lo:
                    total += img[i, j] * integrate.quad(chord, lo, hi, epsabs=1e-10)[0]
        out.append(total)
    return np.array(out)


def test_aperture_mass_matches_exact_pixel_overlaps():
    maps = np.random.default_rng(16).uniform(0, 1, size=(3, 12, 13))
    radius = np.array([0.3, 3.7, 20.0])  # tiny, typical, larger than the map
    got = M.aperture_mass(maps, radius)
    np.testing.assert_allclose(got, exact_aperture(maps, radius), rtol=2e-3)
    np.testing.assert_allclose(got[2], maps[2].sum(), rtol=1e-12)


def test_aperture_mass_off_centre_matches_exact_pixel_overlaps():
    maps = np.random.default_rng(18).uniform(0, 1, size=(4, 12, 13))
    radius = np.array([0.3, 3.7, 4.5, 2.0])
    # Inside, across the left edge (part of the disc off the map), near a corner, on a corner.
    centres = np.array([(2.25, 9.75), (6.0, 0.375), (10.875, 11.25), (4.0, 7.0)])
    got = M.aperture_mass(maps, radius, centre=centres)
    # The strips' midpoint rule errs by ~ √R h^1.5 pixel areas (h = 1/supersample), as for
    # the uniform map below, times the densest pixel.
    tol = 2 * np.sqrt(radius) * M.APERTURE_SUPERSAMPLE**-1.5 * maps.max()
    assert (np.abs(got - exact_aperture(maps, radius, centres)) < tol).all()
    # One centre for the batch is that centre for every map.
    shared = M.aperture_mass(maps, radius, centre=centres[1])
    np.testing.assert_array_equal(
        shared, M.aperture_mass(maps, radius, centre=np.repeat(centres[1:2], 4, axis=0))
    )


def test_aperture_mass_default_centre_is_the_map_centre():
    maps = np.random.default_rng(19).uniform(0, 1, size=(3, 12, 13))
    radius = np.array([0.8, 3.7, 5.1])
    np.testing.assert_array_equal(
        M.aperture_mass(maps, radius), M.aperture_mass(maps, radius, centre=(6.0, 6.5))
    )
    # Moving map and centre together changes nothing: a map padded by (3, 5) zero pixels.
    padded = np.zeros((3, 20, 25))
    padded[:, 3:15, 5:18] = maps
    np.testing.assert_allclose(
        M.aperture_mass(padded, radius, centre=(9.0, 11.5)),
        M.aperture_mass(maps, radius),
        rtol=1e-12,
    )


@pytest.mark.parametrize("radius", [0.7, 1.3, 2.5, 7.9, 15.2])
@pytest.mark.parametrize("n", [32, 33])
def test_aperture_mass_of_uniform_map_is_density_times_area(radius, n):
    rho = 2.5
    mass = M.aperture_mass(np.full((n, n), rho), radius)
    assert mass.shape == ()
    # Midpoint rule over strips of width h = 1/s: error ~ sqrt(R) h^1.5 from the disc's ends.
    tol = 2 * np.sqrt(radius) * M.APERTURE_SUPERSAMPLE**-1.5
    assert abs(mass / rho - np.pi * radius**2) < tol


def test_aperture_mass_of_gaussian_blob():
    # Exact pixel-integrated masses of a circular Gaussian (M, width s) at the map centre:
    # M(<R) = M (1 − exp(−R² / 2s²)). Treating mass as uniform within the cut pixels costs
    # ~1 % at R ~ s for s = 4 pixels (the map holds nothing finer); far out it is exact.
    n, total, s = 64, 1e13, 4.0
    edges = np.arange(n + 1) - n / 2
    px = np.diff(0.5 * (1 + erf(edges / (np.sqrt(2) * s))))
    blob = total * px[:, None] * px[None, :]
    radii = np.array([1.5, 4.0, 8.0, 14.0])
    got = M.aperture_mass(np.broadcast_to(blob, (4, n, n)), radii)
    expected = total * (1 - np.exp(-(radii**2) / (2 * s**2)))
    assert np.all(np.abs(got / expected - 1) < [0.02, 0.01, 0.005, 0.001])


def test_mass_bias_and_scatter_in_dex():
    rng = np.random.default_rng(17)
    m_true = 10 ** rng.uniform(12, 14, size=500)
    dex = rng.normal(0.1, 0.2, size=500)
    bias, scatter = M.mass_bias_scatter(m_true * 10**dex, m_true)
    assert bias == pytest.approx(dex.mean(), rel=1e-9)
    assert scatter == pytest.approx(dex.std(), rel=1e-9)
    # Pairs without a defined log ratio are dropped, with no warning.
    with np.errstate(all="raise"):
        b0, s0 = M.mass_bias_scatter(np.array([0.0, 10.0, 20.0]), np.array([1.0, 0.0, 10.0]))
    assert (b0, s0) == (pytest.approx(np.log10(2.0)), 0.0)
    assert np.isnan(M.mass_bias_scatter(np.zeros(3), np.ones(3))[0])


def test_radial_profile_of_radial_functions():
    n = 32
    y, x = np.indices((n, n)) + 0.5 - n / 2
    rad = np.hypot(y, x)
    maps = np.stack([2.0 + 0.5 * rad, -rad, np.exp(-(rad**2) / 50)])
    r, prof = M.radial_profile(maps, n_bins=16)
    assert prof.shape == (3, r.size)
    # Linear functions: the annulus mean is the function at the mean radius, exactly.
    np.testing.assert_allclose(prof[0], 2.0 + 0.5 * r, rtol=1e-12)
    np.testing.assert_allclose(prof[1], -r, rtol=1e-12)
    np.testing.assert_allclose(prof[2], np.exp(-(r**2) / 50), atol=0.01)
    assert r.max() < n / 2
    # Annuli finer than the pixel grid near the centre are empty and dropped.
    r_fine, prof_fine = M.radial_profile(maps[0], n_bins=64, r_max=8)
    assert 0 < r_fine.size < 64 and np.all(np.isfinite(prof_fine))
    assert np.all(np.diff(r_fine) > 0)


# --------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------


def test_rank_calibration_is_unbiased_at_eight_realisations():
    # Truth and R = 8 draws from the same distribution: a perfectly calibrated ensemble.
    b, r, n = 64, 8, 32
    rng = np.random.default_rng(18)
    mu = rng.normal(0, 3, size=(b, n, n))
    sd = rng.uniform(0.5, 2.0, size=(b, n, n))
    truth = mu + sd * rng.standard_normal((b, n, n))
    samples = mu[:, None] + sd[:, None] * rng.standard_normal((b, r, n, n))
    cov, hist = M.rank_calibration(samples, truth, levels=(0.5, 0.9))
    assert set(cov) == {0.5, 0.9}
    for p, c in cov.items():
        assert abs(c - p) < 4 * np.sqrt(p * (1 - p) / truth.size)
    # The rank of the truth is uniform on 0..R: a flat PIT histogram.
    assert hist.shape == (r + 1,) and hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(hist, 1 / (r + 1), atol=0.01)
    # The interval between empirical quantiles of 8 draws covers only about p (R − 1)/(R + 1).
    lo, hi = np.quantile(samples, [0.25, 0.75], axis=1)
    naive = np.mean((truth >= lo) & (truth <= hi))
    assert naive == pytest.approx(0.5 * (r - 1) / (r + 1), abs=0.02)


def test_rank_calibration_sees_overconfidence_and_handles_ties():
    b, r, n = 32, 8, 16
    rng = np.random.default_rng(19)
    truth = rng.standard_normal((b, n, n))
    narrow = 0.5 * rng.standard_normal((b, r, n, n))  # half the truth's spread
    cov, hist = M.rank_calibration(narrow, truth, levels=(0.9,))
    assert cov[0.9] < 0.8  # calibrated: 0.90 ± 0.003 at this size
    assert hist[0] > 2 / (r + 1) and hist[-1] > 2 / (r + 1)  # a U-shaped histogram
    # Draws all equal to the truth: the rank is anywhere in 0..R, coverage exactly p.
    same = np.repeat(truth[:, None], r, axis=1)
    assert M.rank_calibration(same, truth, levels=(0.5,))[0][0.5] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.rank_calibration(narrow, truth[:, :4])


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def test_metric_registry_identities():
    x = lognormal_maps(19)
    assert set(M.METRICS) == {"pk_err", "rk_err", "ssim", "psnr", "pdf_dist"}
    values = {name: fn(x, x, L) for name, fn in M.METRICS.items()}
    assert all(isinstance(v, float) for v in values.values())
    assert values["pk_err"] == pytest.approx(0.0, abs=1e-12)
    assert values["rk_err"] == pytest.approx(0.0, abs=1e-12)
    assert values["ssim"] == pytest.approx(1.0)
    assert values["pdf_dist"] == 0.0
    assert values["psnr"] == np.inf
    y = lognormal_maps(20)
    assert M.METRICS["ssim"](y, x, L) < 0.5 and M.METRICS["pk_err"](y, x, L) < 1.0
