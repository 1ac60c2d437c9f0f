"""Halo profiles and constants shared by the simulator, box mode and painting.

Units: masses in Msun/h, lengths in Mpc/h. Projected (2D) profiles are analytic line-of-sight
integrals of the 3D ones, with enclosed masses for pixel integration by differencing.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

OMEGA_B = 0.049
# Critical density in (Msun/h) / (Mpc/h)^3: 2.775e11 h^2 Msun Mpc^-3 with h absorbed.
RHO_CRIT = 2.775e11
_NEAR_ONE = 1e-4  # x within this of 1: interpolate across the removable singularity


# ---------------------------------------------------------------------------------------------
# Halo basics
# ---------------------------------------------------------------------------------------------


def r200_from_m200(m200):
    """R200c [Mpc/h] from M200c [Msun/h]: M = (4π/3) 200 ρcrit R³."""
    return np.cbrt(3.0 * np.asarray(m200, float) / (4.0 * np.pi * 200.0 * RHO_CRIT))


def duffy_concentration(m200, z: float = 0.0):
    """Median c200c of Duffy et al. 2008 (full sample, 200c): 5.71 (M/2e12)^-0.084 (1+z)^-0.47."""
    return 5.71 * (np.asarray(m200, float) / 2e12) ** -0.084 * (1.0 + z) ** -0.47


def nfw_mu(x):
    """Dimensionless NFW enclosed mass μ(x) = ln(1+x) − x/(1+x); M(<r) = 4π ρs rs³ μ(r/rs)."""
    x = np.asarray(x, float)
    return np.log1p(x) - x / (1.0 + x)


def nfw_rho_s(m200, c200):
    """Characteristic density ρs so that M(<R200) = M200 (Navarro, Frenk & White 1997)."""
    rs = r200_from_m200(m200) / c200
    return np.asarray(m200, float) / (4.0 * np.pi * rs**3 * nfw_mu(c200))


def nfw_density(r, rs, rho_s):
    """3D NFW ρ(r) = ρs / [(r/rs)(1 + r/rs)²]."""
    x = np.asarray(r, float) / rs
    return rho_s / (x * (1.0 + x) ** 2)


def _near_one(fn, x):
    """fn(x) with x ≈ 1 replaced by linear interpolation between fn(1 ± ε).

    The projected NFW/Hernquist formulas have removable 0/0 singularities at x = 1; across
    |x − 1| < ε = 1e-4 they are smooth: interpolation and cancellation errors are both ~1e-8."""
    x = np.asarray(x, float)
    near = np.abs(x - 1.0) < _NEAR_ONE
    if not near.any():
        return fn(x)
    lo = fn(np.where(near, 1.0 - _NEAR_ONE, x))
    hi = fn(np.where(near, 1.0 + _NEAR_ONE, x))
    t = (x - (1.0 - _NEAR_ONE)) / (2.0 * _NEAR_ONE)
    return np.where(near, lo + t * (hi - lo), lo)


def _nfw_f(x):
    """F(x) = arccosh(1/x)/√(1−x²) (x<1), arccos(1/x)/√(x²−1) (x>1); Wright & Brainerd 2000."""
    x = np.asarray(x, float)
    xl = np.clip(x, 1e-300, 1.0 - 1e-15)
    xh = np.maximum(x, 1.0 + 1e-15)
    below = np.arccosh(1.0 / xl) / np.sqrt(1.0 - xl * xl)
    above = np.arccos(1.0 / xh) / np.sqrt(xh * xh - 1.0)
    return np.where(x < 1.0, below, np.where(x > 1.0, above, 1.0))


def nfw_projected_density(R, rs, rho_s):
    """Σ(R) of the untruncated NFW, Wright & Brainerd 2000 eq. 11:
    Σ = 2 ρs rs (1 − F(x)) / (x² − 1), x = R/rs (→ 2ρs rs/3 at x = 1)."""
    x = np.asarray(R, float) / rs
    return 2.0 * rho_s * rs * _near_one(lambda u: (1.0 - _nfw_f(u)) / (u * u - 1.0), x)


def nfw_projected_mass(R, rs, rho_s):
    """Mass inside projected radius R, untruncated NFW: 4π ρs rs³ [ln(x/2) + F(x)]
    (Bartelmann 1996; diverges logarithmically as R → ∞)."""
    x = np.asarray(R, float) / rs
    xs = np.maximum(x, 1e-300)
    m = np.log(xs / 2.0) + _near_one(_nfw_f, xs)
    return np.where(x > 0, 4.0 * np.pi * rho_s * rs**3 * m, 0.0)


def _tnfw_terms(x, c):
    """Shared pieces of the NFW truncated at r = c rs (Takada & Jain 2003, eqs. 27–28)."""
    s = np.sqrt(np.maximum(c * c - x * x, 0.0))
    a = (x * x + c) / (x * (1.0 + c))
    return s, a


def truncated_nfw_projected_density(R, rs, rho_s, rt):
    """Σ(R) of the NFW sharply truncated in 3D at rt (Takada & Jain 2003, eq. 27),
    Σ = 2 ρs rs f(x; c), c = rt/rs, zero beyond rt; it goes to zero continuously at rt."""
    x = np.maximum(np.asarray(R, float) / rs, 1e-300)
    c = np.asarray(rt, float) / rs

    def f(u):
        s, a = _tnfw_terms(u, c)
        one = 1.0 - u * u
        inner = np.arccosh(np.maximum(a, 1.0)) / np.abs(one) ** 1.5
        outer = -np.arccos(np.clip(a, -1.0, 1.0)) / np.abs(one) ** 1.5
        return -s / (one * (1.0 + c)) + np.where(u < 1.0, inner, outer)

    with np.errstate(divide="ignore", invalid="ignore"):
        sig = 2.0 * rho_s * rs * _near_one(f, x)
    return np.where(x < c, sig, 0.0)


def truncated_nfw_projected_mass(R, rs, rho_s, rt):
    """Mass inside projected R of the NFW truncated at rt (the projection of the truncated
    sphere along the whole line of sight): 4π ρs rs³ h(x; c) with (Takada & Jain 2003)
    h = (√(c²−x²) − c)/(1+c) + ln[x(1+c)/(c+√(c²−x²))] + arccosh(a)/√(1−x²)  (x < 1;
    arccos(a)/√(x²−1) for x > 1), a = (x²+c)/(x(1+c)); h = μ(c) for x ≥ c."""
    x = np.asarray(R, float) / rs
    c = np.asarray(rt, float) / rs
    xs = np.clip(x, 1e-300, c)

    def h(u):
        s, a = _tnfw_terms(u, c)
        one = 1.0 - u * u
        inner = np.arccosh(np.maximum(a, 1.0)) / np.sqrt(np.abs(one))
        outer = np.arccos(np.clip(a, -1.0, 1.0)) / np.sqrt(np.abs(one))
        return (s - c) / (1.0 + c) + np.log(u * (1.0 + c) / (c + s)) + np.where(u < 1, inner, outer)

    with np.errstate(divide="ignore", invalid="ignore"):
        m = _near_one(h, xs)
    m = np.where(x >= c, nfw_mu(c), m)
    return np.where(x > 0, 4.0 * np.pi * rho_s * rs**3 * m, 0.0)


def nfw_radius_quantile(q, c):
    """3D radius in units of rs holding fraction q of the NFW mass inside c rs: solves
    μ(x) = q μ(c) exactly, x = −1/W0(−exp(−1 − q μ(c))) − 1 (Lambert W)."""
    y = np.asarray(q, float) * nfw_mu(c)
    # At y = 0 the argument sits on the branch point −1/e, where rounding can step past it.
    w = special.lambertw(np.maximum(-np.exp(-1.0 - y), -math.exp(-1.0)), 0).real
    return np.where(y > 0, -1.0 / np.minimum(w, -1e-300) - 1.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Baryon profiles
# ---------------------------------------------------------------------------------------------


def hernquist_projected(R, mass, a):
    """Projected Hernquist Σ(R), Hernquist 1990 eq. 33:
    Σ = M / (2π a² (1−s²)²) [(2+s²) X(s) − 3], s = R/a, X = the NFW F(s)."""
    s = np.maximum(np.asarray(R, float) / a, 1e-300)

    def f(u):
        return ((2.0 + u * u) * _nfw_f(u) - 3.0) / (1.0 - u * u) ** 2

    return mass / (2.0 * np.pi * a * a) * _near_one(f, s)


def hernquist_projected_mass(R, mass, a):
    """Mass inside projected R, Hernquist 1990 eq. 37: M s² (X(s) − 1)/(1 − s²).
    The projected half-mass radius is 1.8153 a; the 3D one (1+√2) a."""
    s = np.asarray(R, float) / a
    ss = np.maximum(s, 1e-300)
    m = _near_one(lambda u: u * u * (_nfw_f(u) - 1.0) / (1.0 - u * u), ss)
    return np.where(s > 0, mass * m, 0.0)


def beta_model_rho0(mass, rc, rt):
    """Central density of the β = 2/3 model ρ0/(1 + r²/rc²) holding `mass` inside rt."""
    return mass / (4.0 * np.pi * rc * rc * (rt - rc * np.arctan(rt / rc)))


def beta_model_projected_density(R, mass, rc, rt):
    """Σ(R) of the β = 2/3 model (Cavaliere & Fusco-Femiano 1976) truncated in 3D at rt:
    Σ = 2ρ0 rc² / √(rc²+R²) · arctan(√(rt²−R²) / √(rc²+R²))."""
    R = np.asarray(R, float)
    u = np.sqrt(rc * rc + R * R)
    z = np.sqrt(np.maximum(rt * rt - R * R, 0.0))
    return 2.0 * beta_model_rho0(mass, rc, rt) * rc * rc / u * np.arctan(z / u)


def beta_model_projected_mass(R, mass, rc, rt):
    """Mass inside projected R of the truncated β = 2/3 model: with u = √(rc²+R²) and
    s² = rt² + rc², M2D = 4πρ0 rc² [G(u) − G(rc)], G(u) = u arccos(u/s) − √(s²−u²)."""
    R = np.minimum(np.asarray(R, float), rt)
    s = np.sqrt(rt * rt + rc * rc)

    def g(u):
        return u * np.arccos(np.minimum(u / s, 1.0)) - np.sqrt(np.maximum(s * s - u * u, 0.0))

    rho0 = beta_model_rho0(mass, rc, rt)
    return 4.0 * np.pi * rho0 * rc * rc * (g(np.sqrt(rc * rc + R * R)) - g(rc))


def gaussian_projected_mass(R, mass, sigma):
    """Mass inside projected R of a 3D Gaussian cloud (the ejected gas of Schneider &
    Teyssier 2015): its projection is a 2D Gaussian, M2D = M (1 − exp(−R²/2σ²))."""
    R = np.asarray(R, float)
    return mass * -np.expm1(-(R * R) / (2.0 * sigma * sigma))


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


def _quadrant_area(x, y, R):
    """Area of {0 ≤ u ≤ x, 0 ≤ v ≤ y, u² + v² ≤ R²} for x, y ≥ 0 (closed form)."""
    R = np.maximum(R, 0.0)
    xc, yc = np.minimum(x, R), np.minimum(y, R)
    inside = xc * xc + yc * yc <= R * R
    ustar = np.sqrt(np.maximum(R * R - yc * yc, 0.0))
    # ∫ √(R²−u²) du antiderivative; R = 0 only where the area is 0 anyway.
    with np.errstate(divide="ignore", invalid="ignore"):

        def prim(u):
            return 0.5 * (u * np.sqrt(np.maximum(R * R - u * u, 0.0)) + R * R * np.arcsin(u / R))

        arc = yc * ustar + prim(xc) - prim(ustar)
    return np.where(inside, xc * yc, np.where(R > 0, arc, 0.0))


def disc_rect_area(R, x0, x1, y0, y1):
    """Exact area of the disc of radius R at the origin inside [x0, x1] × [y0, y1]
    (inclusion–exclusion of signed quadrant areas)."""

    def signed(x, y):
        return np.sign(x) * np.sign(y) * _quadrant_area(np.abs(x), np.abs(y), R)

    return signed(x1, y1) - signed(x0, y1) - signed(x1, y0) + signed(x0, y0)
