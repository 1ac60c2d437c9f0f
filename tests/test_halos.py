"""Halo profiles: closed forms against numerical line-of-sight and area integrals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from halocm.data import halos as H

# --- Halo basics ------------------------------------------------------------------------------


def test_r200_from_m200():
    r = H.r200_from_m200(1e14)
    assert 4 / 3 * math.pi * 200 * H.RHO_CRIT * r**3 == pytest.approx(1e14, rel=1e-12)
    assert r == pytest.approx(0.7553, abs=1e-3)  # Mpc/h


def test_duffy_concentration():
    assert H.duffy_concentration(2e12) == pytest.approx(5.71)
    assert H.duffy_concentration(2e14) == pytest.approx(5.71 * 100**-0.084)
    assert H.duffy_concentration(2e12, z=1.0) == pytest.approx(5.71 * 2**-0.47)


def test_nfw_radius_quantile_inverts_the_enclosed_mass():
    q = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    c = np.full(5, 7.0)
    x = H.nfw_radius_quantile(q, c)
    np.testing.assert_allclose(H.nfw_mu(x), q * H.nfw_mu(c), atol=1e-12)


RS, RHO_S = 0.2, 3e15


def _los(rho3d, R, zmax=np.inf):
    """Σ(R) = 2 ∫_0^zmax ρ(√(R² + z²)) dz, numerically."""
    return (
        2 * integrate.quad(lambda z: rho3d(math.hypot(R, z)), 0, zmax, epsrel=1e-11, limit=200)[0]
    )


@pytest.mark.parametrize("x", [0.05, 0.3, 0.8, 0.999, 1.0, 1.2, 3.0, 10.0])
def test_projected_nfw_matches_line_of_sight_integration(x):
    """Wright & Brainerd 2000 against quad of the 3D NFW, on both sides of r_s."""
    R = x * RS
    numeric = _los(lambda r: H.nfw_density(r, RS, RHO_S), R)
    assert H.nfw_projected_density(R, RS, RHO_S) == pytest.approx(numeric, rel=1e-4)


@pytest.mark.parametrize("x", [0.1, 0.7, 1.0, 1.5, 4.0, 7.9])
def test_truncated_nfw_matches_line_of_sight_integration(x):
    rt = 8 * RS
    R = x * RS
    numeric = _los(lambda r: H.nfw_density(r, RS, RHO_S), R, math.sqrt(rt**2 - R**2))
    assert H.truncated_nfw_projected_density(R, RS, RHO_S, rt) == pytest.approx(numeric, 1e-4)
    mass = integrate.quad(
        lambda u: 2 * math.pi * u * H.truncated_nfw_projected_density(u, RS, RHO_S, rt),
        0,
        R,
        epsrel=1e-10,
        limit=200,
        points=[RS] if R > RS else None,
    )[0]
    assert H.truncated_nfw_projected_mass(R, RS, RHO_S, rt) == pytest.approx(mass, rel=1e-6)
    assert H.truncated_nfw_projected_density(rt * 1.01, RS, RHO_S, rt) == 0.0
    total = 4 * math.pi * RHO_S * RS**3 * H.nfw_mu(8.0)
    assert H.truncated_nfw_projected_mass(rt * 2, RS, RHO_S, rt) == pytest.approx(total, 1e-12)


@pytest.mark.parametrize("x", [0.1, 1.0, 2.5])
def test_untruncated_projected_nfw_mass(x):
    R = x * RS
    mass = integrate.quad(
        lambda u: 2 * math.pi * u * H.nfw_projected_density(u, RS, RHO_S), 0, R, epsrel=1e-10
    )[0]
    assert H.nfw_projected_mass(R, RS, RHO_S) == pytest.approx(mass, rel=1e-6)


@pytest.mark.parametrize("s", [0.05, 0.5, 1.0, 2.0, 20.0])
def test_projected_hernquist(s):
    a, mass = 0.01, 1e11

    def rho(r):  # Hernquist 1990 eq. 2
        return mass * a / (2 * math.pi * r * (r + a) ** 3)

    assert H.hernquist_projected(s * a, mass, a) == pytest.approx(_los(rho, s * a), rel=1e-4)
    enclosed = integrate.quad(
        lambda u: 2 * math.pi * u * H.hernquist_projected(u, mass, a), 0, s * a, epsrel=1e-10
    )[0]
    assert H.hernquist_projected_mass(s * a, mass, a) == pytest.approx(enclosed, rel=1e-6)
    # The projected half-mass radius is 1.8153 a.
    assert H.hernquist_projected_mass(1.8153 * a, mass, a) == pytest.approx(mass / 2, rel=1e-4)


@pytest.mark.parametrize("x", [0.0, 0.3, 1.0, 2.9])
def test_projected_beta_model(x):
    rc, rt, mass = 0.1, 0.3, 1e13
    rho0 = mass / integrate.quad(lambda r: 4 * math.pi * r**2 / (1 + (r / rc) ** 2), 0, rt)[0]
    R = x * rc
    numeric = _los(lambda r: rho0 / (1 + (r / rc) ** 2), R, math.sqrt(rt**2 - R**2))
    assert H.beta_model_projected_density(R, mass, rc, rt) == pytest.approx(numeric, rel=1e-6)
    enclosed = integrate.quad(
        lambda u: 2 * math.pi * u * H.beta_model_projected_density(u, mass, rc, rt), 0, R
    )[0]
    assert H.beta_model_projected_mass(R, mass, rc, rt) == pytest.approx(enclosed, abs=1e-6 * mass)
    assert H.beta_model_projected_mass(rt, mass, rc, rt) == pytest.approx(mass, rel=1e-12)


def test_disc_rect_area_is_exact():
    R = 0.37
    # Pixels tiling the plane hold the whole disc, one pixel cut into four the same.
    e = np.linspace(-0.5, 0.5, 11)
    x0, y0 = np.meshgrid(e[:-1], e[:-1])
    total = H.disc_rect_area(R, x0, x0 + 0.1, y0, y0 + 0.1).sum()
    assert total == pytest.approx(math.pi * R * R, rel=1e-12)
    rect = (0.05, 0.3, -0.2, 0.33)

    def chord(x):  # length of the disc's chord at x inside [y0, y1]
        half = math.sqrt(max(R * R - x * x, 0.0))
        return max(min(rect[3], half) - max(rect[2], -half), 0.0)

    exact = integrate.quad(chord, rect[0], rect[1], epsabs=1e-13, limit=200)[0]
    assert H.disc_rect_area(R, *rect) == pytest.approx(exact, rel=1e-6)
    assert H.disc_rect_area(R, 0.5, 0.6, 0.0, 0.1) == 0.0
