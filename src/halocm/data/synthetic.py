"""The embedded halo simulator (docs/design.md §3).

One cutout per host halo, in the spirit of baryonification (Schneider & Teyssier 2015):
a gravity-only (DMO) map — projected tapered NFW host + subhalos + a lognormal background —
and its hydro counterpart [dm_hydro, gas, stars] built from the same matter with the baryons
redistributed by physically motivated, feedback-dependent recipes.

Units: masses in Msun/h, lengths in Mpc/h, maps are mass per pixel (Msun/h).

Mass per pixel is integrated by *differencing analytic enclosed masses*, never by sampling
Σ at pixel centres, so cuspy centres (NFW, Hernquist) carry their exact mass:

- the host components, centred on the cutout, are split into thin annuli (h/32 to h/4
  wide) whose masses M2D(<R_{k+1}) − M2D(<R_k) are spread over the pixels in proportion to
  the exact area of annulus ∩ pixel (`annulus_operator`);
- subhalos and satellites, at arbitrary positions, are split into rings of exact mass, each
  ring carried by points on a circle and assigned to the pixel containing each point (NGP).

Either way the map total equals the enclosed mass inside the cutout to rounding, which is what
the mass-bookkeeping tests check. The host sits at the cutout centre (a pixel corner for even
n). Map i draws from its own generators seeded (seed, i, stream): stream 0 the condition (θ,
host, subhalos, background), stream 1 the target's stochastic baryons (stellar-mass scatter,
gas clumping), stream 2 + r those of truth realisation r — so maps do not depend on the batch
size, and realisations share the condition exactly.

Neighbours (`simulator.neighbour_density` > 0): other hosts seen in projection, as in a box.
Map i draws their count (Poisson, mean density × the area over which a host's 2n stamp
reaches the cutout), masses (dN/dM ∝ M^−1.9 on the host range) and pixel-corner offsets from
stream (seed, i, NEIGHBOUR_STREAM); each is painted alone on its stamp (`paint_hosts`, as the
box paints its hosts) under the map's θ and added, cropped, to the condition and the target
before the gas is clumped. Neighbour j of map i draws its own halo and baryons as host
NEIGHBOUR_INDEX + 64 i + j.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import sparse

from halocm.config import Simulator
from halocm.data import fields
from halocm.data.halos import (
    OMEGA_B,
    RHO_CRIT,
    beta_model_projected_mass,
    beta_model_rho0,
    disc_rect_area,
    duffy_concentration,
    gaussian_projected_mass,
    hernquist_projected_mass,
    nfw_density,
    nfw_mu,
    nfw_radius_quantile,
    nfw_rho_s,
    r200_from_m200,
    truncated_nfw_projected_mass,
)

PARAM_NAMES = ("Omega_m", "sigma_8", "A_SN1", "A_AGN1")
CHANNEL_NAMES = ("dm_hydro", "gas", "stars")
# Little h used only to put Moster et al. (2013), calibrated in Msun, into Msun/h (CAMELS h).
H_LITTLE = 0.6711

# --- CAMELS LH-like parameter ranges (docs/design.md §3).
OMEGA_M_RANGE = (0.1, 0.5)
SIGMA_8_RANGE = (0.6, 1.0)
FEEDBACK_RANGE = (0.25, 4.0)  # A_SN1 and A_AGN1, log-uniform

# --- Dark matter.
CONC_SCATTER_DEX = 0.11  # Duffy et al. 2008 lognormal scatter
# Host NFW and bound gas are tapered in 3D by T(r), falling linearly from 1 at R200 to 0 at
# 3 R200 (where halos merge into the background): a staircase of 8 sharp truncations at these
# radii [R200], equal weights, each projected analytically. One sharp cut would leave a
# visible edge, the NFW being still ~20x the mean density at 2 R200.
TAPER_RADII = tuple(1.0 + 2.0 * (i + 0.5) / 8 for i in range(8))
SUB_MASS_MIN = 1e11  # lightest subhalo drawn (about a pixel's worth of background mass)
SUB_MASS_MAX_FRAC = 0.1  # heaviest subhalo, as a fraction of the host
SUB_SLOPE = 1.9  # dN/dm ∝ m^-1.9 (Giocoli et al. 2008)
SUB_AMPLITUDE = 0.015  # N(>m) = A (m/M)^-0.9: ~20 subhalos above 1e11 in a 3e14 host
CONTRACTION = 1.0  # hydro r_s = r_s / (1 + CONTRACTION f*/f_b)

# --- Stars.
STAR_SCATTER_DEX = 0.15
STAR_HALF_MASS = 0.015  # 3D half-mass radius / R200 (Kravtsov 2013); Hernquist r½ = (1+√2)a
STAR_FEEDBACK_SLOPE = 0.3  # f* ∝ A_SN1^-0.3 w_SN(M) A_AGN1^-0.3 w_AGN(M)
STAR_FEEDBACK_PIVOT = 10**12.5  # SN dominate below, AGN above
STAR_TAIL = 100.0  # satellites: rings out to 100a, the outermost ring takes the rest
STAR_MAX_BARYON_FRAC = 0.8  # stars never take more than 80% of a halo's baryons

# --- Gas (Schneider & Teyssier 2015; Schneider et al. 2019).
GAS_MC0 = 10**13.5  # f_bgas = (f_b - f*) / (1 + (Mc/M)^β) ...
GAS_MC_SN, GAS_MC_AGN = 0.3, 0.6  # ... with Mc = Mc0 A_SN1^0.3 A_AGN1^0.6
GAS_BETA = 0.6
GAS_CORE = 0.1  # β-model core r_c / R200 at A=1 ...
GAS_CORE_SN, GAS_CORE_AGN = 0.15, 0.3  # ... growing with feedback
GAS_EJECT = 1.5  # ejected gas: 2D Gaussian of σ = 1.5 R200 (A_SN1 A_AGN1)^0.15
GAS_EJECT_FB = 0.15
GAS_BG_SMOOTH = 0.2  # background gas smoothed by a Gaussian of 0.2 A_AGN1^0.2 Mpc/h
GAS_BG_SMOOTH_AGN = 0.2
CLUMP_SIGMA = 0.3  # clumping: lognormal with σ = 0.3 (A_SN1 A_AGN1)^0.1 ...
CLUMP_SIGMA_FB = 0.1
CLUMP_LENGTH = 0.25  # ... correlated over ~0.25 Mpc/h

# --- Background: P_g(k) = BG_AMPLITUDE σ8² max(k, π/depth)^BG_SLOPE (k in h/Mpc), lognormal.
# A slab of depth d averages away the modes along the line of sight shorter than d, so its
# projected spectrum turns white below k ~ π/d; k^−2.5 all the way down would make the pixel
# variance grow without bound with the field's side. The default cutout field (2 × 6.25 Mpc/h
# = 2d) has no mode below π/d, so only wider fields (the box, context channels) see the turn.
BG_AMPLITUDE = 0.5
BG_SLOPE = -2.5

# --- Hosts in projection: the box's and a cutout's neighbours.
HOST_MASS_SLOPE = 1.9  # dN/dM ∝ M^-1.9: the halo mass function's slope well below M*
HOST_STREAM = 1001  # a host painted alone: its concentration and subhalos
NEIGHBOUR_STREAM = 1002  # map i's neighbours: count, masses, offsets
NEIGHBOUR_INDEX = 2**40  # neighbour j of map i is host NEIGHBOUR_INDEX + 64 i + j, so
MAX_NEIGHBOURS = 64  # a map holds at most 64: config.MAX_MEAN_NEIGHBOURS keeps the mean at 16
TARGET_STREAM = 1  # the target's baryons; truth redraw r uses TARGET_STREAM + 1 + r
HIDDEN_STREAM = 2**20  # + a redraw's baryon stream: its satellites' hidden variables
HIDDEN_CANDIDATES = 64  # proposal draws per satellite, resampled by posterior weight

# --- Numerics.
# Host annuli are R/64 wide, but between h/32 and h/4 (h the pixel): spreading an annulus's
# mass by area errs by ~0.16 (width/R)² of a pixel's mass: < 1e-4 against 2D quadrature
# (more only in the taper's tail beyond 2.5 R200, where the host is < 1e-3 of its peak).
ANNULUS_REL_WIDTH, ANNULUS_MIN_WIDTH, ANNULUS_MAX_WIDTH = 1.0 / 64, 1.0 / 32, 1.0 / 4
SUB_RINGS, SUB_ANGLES = 16, 24  # quadrature points per subhalo / satellite
BATCH_PIXELS = 2**22  # field pixels per batch: bounds memory whatever the resolution
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


# ---------------------------------------------------------------------------------------------
# Tapered host profiles (the TAPER_RADII staircase)
# ---------------------------------------------------------------------------------------------


def tapered_nfw_projected_mass(R, rs, rho_s, r200):
    """Mass inside projected R of ρ_NFW(r) T(r), T the TAPER_RADII staircase: the mean of
    the truncated-NFW masses. T = 1 inside R200, so ρs keeps its M200 meaning."""
    return np.mean(
        [truncated_nfw_projected_mass(R, rs, rho_s, f * r200) for f in TAPER_RADII], axis=0
    )


def tapered_nfw_mass(rs, rho_s, r200):
    """Total mass of the tapered NFW: 4π ρs rs³ ⟨μ(rt_i/rs)⟩."""
    mu = np.mean([nfw_mu(f * r200 / rs) for f in TAPER_RADII], axis=0)
    return 4.0 * np.pi * rho_s * rs**3 * mu


def tapered_beta_projected_mass(R, mass, rc, r200):
    """Mass inside projected R of the β = 2/3 model tapered like the host (TAPER_RADII),
    holding `mass` in total: one ρ0 shared by the truncated pieces."""
    unit = [1.0 / beta_model_rho0(1.0, rc, f * r200) for f in TAPER_RADII]  # piece mass at ρ0 = 1
    rho0 = mass / np.mean(unit, axis=0)
    pieces = [
        beta_model_projected_mass(R, rho0 * u, rc, f * r200)
        for u, f in zip(unit, TAPER_RADII, strict=True)
    ]
    return np.mean(pieces, axis=0)


# ---------------------------------------------------------------------------------------------
# Galaxy and gas recipes
# ---------------------------------------------------------------------------------------------


def moster_stellar_mass(m200):
    """Median stellar mass [Msun/h] of a halo of M200c [Msun/h], Moster et al. 2013 eq. 2 at
    z = 0: m*/M = 2N [(M/M1)^-β + (M/M1)^γ]^-1, M1 = 10^11.59 Msun, N = 0.0351,
    β = 1.376, γ = 0.608 (masses converted from Msun/h with h = H_LITTLE)."""
    m = np.asarray(m200, float) / H_LITTLE
    ratio = m / 10**11.59
    return 2.0 * 0.0351 * m / (ratio**-1.376 + ratio**0.608) * H_LITTLE


def feedback_star_factor(m200, a_sn, a_agn):
    """Feedback normalisation of the stellar mass: A_SN1^(−0.3 w_SN) A_AGN1^(−0.3 w_AGN),
    w_AGN = M/(M + 10^12.5), w_SN = 1 − w_AGN: supernovae quench small halos, AGN large ones;
    exactly 1 at A = 1 and decreasing in both amplitudes."""
    m200 = np.asarray(m200, float)
    w_agn = m200 / (m200 + STAR_FEEDBACK_PIVOT)
    sn = np.asarray(a_sn, float) ** (-STAR_FEEDBACK_SLOPE * (1.0 - w_agn))
    return sn * np.asarray(a_agn, float) ** (-STAR_FEEDBACK_SLOPE * w_agn)


def median_stellar_mass(m200, a_sn, a_agn):
    """A galaxy's stellar mass before its scatter: Moster et al. 2013 × the feedback factor."""
    return moster_stellar_mass(m200) * feedback_star_factor(m200, a_sn, a_agn)


def gas_mc(a_sn, a_agn):
    """Mass scale of gas expulsion, Mc = 10^13.5 A_SN1^0.3 A_AGN1^0.6 [Msun/h]."""
    return GAS_MC0 * np.asarray(a_sn, float) ** GAS_MC_SN * np.asarray(a_agn, float) ** GAS_MC_AGN


def bound_gas_fraction(m200, f_star, omega_m, a_sn, a_agn):
    """Bound-gas fraction f_bgas = (Ωb/Ωm − f*) / (1 + (Mc/M)^β) (Schneider et al. 2019)."""
    f_b = OMEGA_B / np.asarray(omega_m, float)
    return (f_b - f_star) / (1.0 + (gas_mc(a_sn, a_agn) / np.asarray(m200, float)) ** GAS_BETA)


def gas_core_radius(r200, a_sn, a_agn):
    """β-model core: 0.1 R200 A_SN1^0.15 A_AGN1^0.3 (feedback heats and puffs up the core)."""
    return GAS_CORE * r200 * np.asarray(a_sn, float) ** GAS_CORE_SN * a_agn**GAS_CORE_AGN


def ejection_radius(r200, a_sn, a_agn):
    """σ of the ejected gas: 1.5 R200 (A_SN1 A_AGN1)^0.15 (a few R200, further with stronger
    winds)."""
    return GAS_EJECT * r200 * (np.asarray(a_sn, float) * np.asarray(a_agn, float)) ** GAS_EJECT_FB


def hernquist_scale(r200):
    """Hernquist a from the 3D half-mass radius r½ = 0.015 R200 = (1+√2) a."""
    return STAR_HALF_MASS * np.asarray(r200, float) / (1.0 + math.sqrt(2.0))


def mean_subhalo_count(m200):
    """Poisson mean of subhalos with SUB_MASS_MIN < m < 0.1 M: A [(m_min/M)^-0.9 − 0.1^-0.9]."""
    x = SUB_MASS_MIN / np.asarray(m200, float)
    e = SUB_SLOPE - 1.0
    return np.maximum(SUB_AMPLITUDE * (x**-e - SUB_MASS_MAX_FRAC**-e), 0.0)


# ---------------------------------------------------------------------------------------------
# Pixel integration
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def annulus_edges(n: int, box: float) -> np.ndarray:
    """Annulus edges from 0 to past the cutout corner, widths clip(R/64, h/32, h/4)."""
    h = box / n
    edges = [0.0]
    while edges[-1] < box / math.sqrt(2.0):
        r = edges[-1]
        edges.append(
            r + h * min(max(r / h * ANNULUS_REL_WIDTH, ANNULUS_MIN_WIDTH), ANNULUS_MAX_WIDTH)
        )
    return np.array(edges)


@functools.lru_cache(maxsize=8)
def annulus_operator(n: int, box: float) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Sparse W (n², K) and annulus edges R_k (K+1,), for profiles centred on the cutout.

    W[p, k] is the exact fraction of annulus [R_k, R_{k+1}) that lies in pixel p, so pixel
    masses = W @ ΔM with ΔM_k = M2D(<R_{k+1}) − M2D(<R_k) (`annulus_edges`). Only Σ's
    variation across one thin annulus is approximated; the cusp (all the mass inside the first
    annulus, h/32 wide) is exact."""
    h = box / n
    edges = annulus_edges(n, box)
    n_ann = len(edges) - 1
    e = (np.arange(n + 1) - n / 2.0) * h
    iy, ix = np.divmod(np.arange(n * n), n)  # pixel p = iy * n + ix (row = y)
    x0, x1, y0, y1 = e[ix], e[ix + 1], e[iy], e[iy + 1]
    dx = np.maximum.reduce([np.zeros_like(x0), x0, -x1])
    dy = np.maximum.reduce([np.zeros_like(y0), y0, -y1])
    r_min = np.hypot(dx, dy)
    r_max = np.hypot(np.maximum(np.abs(x0), np.abs(x1)), np.maximum(np.abs(y0), np.abs(y1)))
    # Annulus k = [R_k, R_k+1) meets pixel p iff R_k+1 > r_min(p) and R_k < r_max(p).
    k_lo = np.searchsorted(edges, r_min, side="right") - 1
    k_hi = np.minimum(np.searchsorted(edges, r_max, side="left"), n_ann) - 1
    count = k_hi - k_lo + 1
    p = np.repeat(np.arange(n * n), count)
    k = np.repeat(k_lo - np.cumsum(count) + count, count) + np.arange(count.sum())
    rect = (x0[p], x1[p], y0[p], y1[p])
    area = disc_rect_area(edges[k + 1], *rect) - disc_rect_area(edges[k], *rect)
    frac = area / (np.pi * (edges[k + 1] ** 2 - edges[k] ** 2))
    keep = frac > 0
    w = sparse.csr_matrix((frac[keep], (p[keep], k[keep])), shape=(n * n, n_ann))
    return w, edges


def paint_centred(enclosed: np.ndarray, n: int, box: float) -> np.ndarray:
    """Pixel masses (B, n, n) of profiles centred on the cutout, from their enclosed projected
    masses at the annulus edges `enclosed` (B, K+1) of `annulus_operator(n, box)`."""
    w, _ = annulus_operator(n, box)
    dm = np.diff(enclosed, axis=1)
    return np.ascontiguousarray((w @ dm.T).T).reshape(-1, n, n)


def paint_rings(
    n_maps: int,
    n: int,
    box: float,
    owner: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rotation: np.ndarray,
    radii: np.ndarray,
    masses: np.ndarray,
) -> np.ndarray:
    """Pixel masses (n_maps, n, n) of objects at (x, y) (offsets from the cutout centre).

    Object j of map owner[j] is split into rings with point radius radii[j, i] and exact mass
    masses[j, i] (differences of its enclosed mass); each ring's mass is shared by SUB_ANGLES
    points on the circle, rotated by a golden-angle step per ring, and each point's mass goes to
    the pixel that contains it (NGP). Mass off the cutout is dropped, as it should be."""
    out = np.zeros(n_maps * n * n)
    if owner.size:
        h = box / n
        ring = np.arange(radii.shape[1])[:, None] * _GOLDEN_ANGLE
        phi = ring + 2.0 * np.pi * np.arange(SUB_ANGLES)[None, :] / SUB_ANGLES
        phi = phi[None] + rotation[:, None, None]
        px = x[:, None, None] + radii[:, :, None] * np.cos(phi)
        py = y[:, None, None] + radii[:, :, None] * np.sin(phi)
        ix = np.floor(px / h + n / 2.0).astype(np.int64)
        iy = np.floor(py / h + n / 2.0).astype(np.int64)
        ok = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
        flat = (owner[:, None, None] * n + iy) * n + ix
        weight = np.broadcast_to(masses[:, :, None] / SUB_ANGLES, flat.shape)
        out += np.bincount(flat[ok], weights=weight[ok], minlength=out.size)
    return out.reshape(n_maps, n, n)


def _ring_quadrature(edges: np.ndarray, enclosed: np.ndarray, total: np.ndarray):
    """Point radii (area-weighted mid-ring) and ring masses; the outermost ring also takes
    whatever lies beyond the last edge so that each object's mass is exact."""
    radii = np.sqrt(0.5 * (edges[:, 1:] ** 2 + edges[:, :-1] ** 2))
    masses = np.diff(enclosed, axis=1)
    masses[:, -1] += total - enclosed[:, -1]
    return radii, masses


# ---------------------------------------------------------------------------------------------
# Draws: the condition stream and the baryon streams
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HaloCatalog:
    """Everything the condition depends on, for a batch of maps (drawn from stream 0).

    Per map (B,): global index, θ, host M200c, concentration; subhalos as flat arrays with
    `sub_owner` the map (0..B-1) each belongs to; `bg_noise` the white noise of the
    background field (B, m, m), m = 2n (or 4n with context channels)."""

    index: np.ndarray
    omega_m: np.ndarray
    sigma_8: np.ndarray
    a_sn: np.ndarray
    a_agn: np.ndarray
    m200: np.ndarray
    c200: np.ndarray
    sub_owner: np.ndarray
    sub_m200: np.ndarray
    sub_c200: np.ndarray
    sub_q: np.ndarray  # NFW mass quantile of the 3D radius in the host
    sub_mu: np.ndarray  # cosine of the line-of-sight angle
    sub_phi: np.ndarray  # position angle in the sky plane
    bg_noise: np.ndarray

    @property
    def f_b(self) -> np.ndarray:
        return OMEGA_B / self.omega_m

    @property
    def r200(self) -> np.ndarray:
        return r200_from_m200(self.m200)

    @property
    def params(self) -> np.ndarray:
        return np.stack([self.omega_m, self.sigma_8, self.a_sn, self.a_agn], axis=1)


@dataclasses.dataclass(frozen=True)
class BaryonNoise:
    """The stochastic baryonic parts of a batch (one stream per map and realisation)."""

    star_central: np.ndarray  # (B,) N(0,1): central stellar-mass scatter
    star_sub: np.ndarray  # (S,) N(0,1): satellites' scatter
    clump: np.ndarray  # (B, n, n) white noise of the gas clumping field


def _stream(seed: int, index: int, stream: int) -> np.random.Generator:
    """Map `index`'s own generator: the same maps whatever the batch size or map count."""
    return np.random.default_rng([seed, index, stream])


def _field_size(cfg: Simulator) -> int:
    """Background field side in pixels: twice the cutout (no periodic wrap inside the cutout),
    four times with context channels (the 4x context is the whole field)."""
    return (4 if cfg.context_channels else 2) * cfg.resolution


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_theta(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """θ in PARAM_NAMES order, CAMELS LH-like: Ωm, σ8 uniform, A_SN1, A_AGN1 log-uniform."""
    return (
        rng.uniform(*OMEGA_M_RANGE),
        rng.uniform(*SIGMA_8_RANGE),
        _log_uniform(rng, *FEEDBACK_RANGE),
        _log_uniform(rng, *FEEDBACK_RANGE),
    )


def scattered_concentration(m200, eps):
    """c200 of Duffy et al. 2008 moved by eps (unit normal) times CONC_SCATTER_DEX dex."""
    return duffy_concentration(m200) * 10 ** (CONC_SCATTER_DEX * eps)


def draw_concentration(rng: np.random.Generator, m200):
    """c200 of Duffy et al. 2008 with CONC_SCATTER_DEX lognormal scatter, one draw per mass."""
    return scattered_concentration(m200, rng.standard_normal(np.shape(m200) or None))


def power_law_masses(
    rng: np.random.Generator, n: int, m_min: float, m_max: float, slope: float
) -> np.ndarray:
    """n masses from dN/dM ∝ M^−slope on [m_min, m_max] by inverse CDF (slope ≠ 1):
    M = [m_min^−e − u (m_min^−e − m_max^−e)]^(−1/e), e = slope − 1."""
    e = slope - 1.0
    lo, hi = m_min**-e, m_max**-e
    return (lo - rng.uniform(size=n) * (lo - hi)) ** (-1.0 / e)


def draw_subhalos(rng: np.random.Generator, m200: float) -> tuple[np.ndarray, ...]:
    """Subhalos of a host: a Poisson count of mean `mean_subhalo_count`, masses from
    dN/dm ∝ m^-1.9 on [SUB_MASS_MIN, 0.1 M], scattered Duffy concentrations, the NFW mass
    quantile of the 3D radius, the line-of-sight cosine (isotropic) and the position angle.
    Returns (m200, c200, q, mu, phi), each (S,)."""
    n_sub = rng.poisson(mean_subhalo_count(m200))
    m_sub = power_law_masses(rng, n_sub, SUB_MASS_MIN, SUB_MASS_MAX_FRAC * m200, SUB_SLOPE)
    c_sub = draw_concentration(rng, m_sub)
    geo = rng.uniform(size=(3, n_sub))
    return m_sub, c_sub, geo[0], 2.0 * geo[1] - 1.0, 2.0 * np.pi * geo[2]


def assemble_catalog(index, theta, m200, c200, subs, bg_noise: np.ndarray) -> HaloCatalog:
    """A HaloCatalog from per-host θ (B, 4), M200c and c200 (B,), one `draw_subhalos` tuple
    per host and the background noise (B, m, m)."""
    flat = [np.concatenate([s[j] for s in subs]) for j in range(5)]
    owner = np.repeat(np.arange(len(index)), [len(s[0]) for s in subs])
    return HaloCatalog(
        np.asarray(index),
        *np.asarray(theta, dtype=float).T,
        np.asarray(m200, dtype=float),
        np.asarray(c200, dtype=float),
        owner,
        *flat,
        bg_noise,
    )


def draw_catalog(cfg: Simulator, seed: int, index: np.ndarray) -> HaloCatalog:
    """Draw θ, host, subhalos and background noise for maps `index` (condition stream 0)."""
    m = _field_size(cfg)
    theta, m200, c200, subs, noise = [], [], [], [], []
    for i in index:
        rng = _stream(seed, int(i), 0)
        theta.append(draw_theta(rng))
        m200.append(10 ** rng.uniform(cfg.log_mass_min, cfg.log_mass_max))
        c200.append(draw_concentration(rng, m200[-1]))
        subs.append(draw_subhalos(rng, m200[-1]))
        noise.append(rng.standard_normal((m, m), dtype=np.float32))
    return assemble_catalog(index, theta, m200, c200, subs, np.stack(noise))


def draw_baryon_noise(cfg: Simulator, cat: HaloCatalog, seed: int, stream: int) -> BaryonNoise:
    """Stellar-mass scatter and clumping noise; stream 1 is the target, 2 + r realisation r."""
    n = cfg.resolution
    n_sub = np.bincount(cat.sub_owner, minlength=len(cat.index))
    central, sub, clump = [], [], []
    for j, i in enumerate(cat.index):
        rng = _stream(seed, int(i), stream)
        central.append(rng.standard_normal())
        sub.append(rng.standard_normal(n_sub[j]))
        clump.append(rng.standard_normal((n, n), dtype=np.float32))
    return BaryonNoise(np.array(central), np.concatenate(sub), np.stack(clump))


# ---------------------------------------------------------------------------------------------
# Painting
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DarkMatter:
    """The condition's pieces that the hydro maps reuse: per-host (B,) and per-subhalo (S,)
    numbers, and (B, n, n) maps in Msun/h per pixel."""

    host_rs: np.ndarray  # (B,) host scale radius
    host_mass: np.ndarray  # (B,) host smooth mass, all of it (tapered profile)
    sub_mass: np.ndarray  # (S,) bound subhalo mass
    sub_x: np.ndarray  # (S,) position relative to the cutout centre
    sub_y: np.ndarray
    subs: np.ndarray  # subhalo DMO map
    background: np.ndarray  # background DMO map
    background_gas: np.ndarray  # (Ωb/Ωm) × smoothed background


def host_enclosed_mass(r3d, m200, c200):
    """The host's NFW mass inside 3D radius r3d (≥ 1 Msun/h: a tidal radius stays finite)."""
    rs = r200_from_m200(m200) / c200
    return np.maximum(m200 * nfw_mu(r3d / rs) / nfw_mu(c200), 1.0)


def tidal_truncation(m200, c200, r3d, m_host_in) -> tuple[np.ndarray, np.ndarray]:
    """(tidal radius, bound mass) of a subhalo of infall M200c and c200 at 3D radius r3d,
    where the host holds m_host_in: the Jacobi radius r_J = r (m / 3 M_host(<r))^(1/3), kept
    within [0.1, 1] R200_sub, and the subhalo's NFW mass inside it."""
    r200 = r200_from_m200(m200)
    rt = np.clip(r3d * np.cbrt(m200 / (3.0 * m_host_in)), 0.1 * r200, r200)
    return rt, m200 * nfw_mu(rt / (r200 / c200)) / nfw_mu(c200)


def _subhalos(cat: HaloCatalog) -> dict[str, np.ndarray]:
    """Bound masses, tidal radii and projected positions of the subhalos."""
    o = cat.sub_owner
    r3d = cat.r200[o] / cat.c200[o] * nfw_radius_quantile(cat.sub_q, cat.c200[o])
    m_in = host_enclosed_mass(r3d, cat.m200[o], cat.c200[o])
    rt, bound = tidal_truncation(cat.sub_m200, cat.sub_c200, r3d, m_in)
    r200 = r200_from_m200(cat.sub_m200)
    proj = r3d * np.sqrt(1.0 - cat.sub_mu**2)
    return {
        "rs": r200 / cat.sub_c200,
        "rt": rt,
        "mass": bound,
        "r200": r200,
        "x": proj * np.cos(cat.sub_phi),
        "y": proj * np.sin(cat.sub_phi),
    }


def posterior_infall_masses(
    cat: HaloCatalog, dark: DarkMatter, seed: int, stream: int
) -> np.ndarray:
    """The satellites' infall M200c (S,) drawn again given what the DMO map shows of them: bound
    mass, projected position and host (docs/design.md §3, "Truth redraws").

    The map hides the line-of-sight distance z and the concentration scatter ε, which set how
    much of the infall mass tides have cut. Each satellite draws HIDDEN_CANDIDATES pairs from
    the proposal z ~ U[0, √(R200² − R²)], ε ~ N(0, 1), solves for the infall mass m that gives
    its bound mass, and keeps one pair with probability ∝ ρ_host(r) m^−1.9 (dm / dm_b): the
    prior of r (subhalos trace the host's NFW mass) and of m (the subhalo mass function) over
    the proposal, times the Jacobian to the bound mass held fixed. A satellite whose candidates
    all fall outside the subhalo mass range keeps its own m."""
    o = cat.sub_owner
    n_sub = np.bincount(o, minlength=len(cat.index))
    u, eps, pick = [], [], []
    for j, i in enumerate(cat.index):
        rng = _stream(seed, int(i), HIDDEN_STREAM + stream)
        u.append(rng.uniform(size=(n_sub[j], HIDDEN_CANDIDATES)))
        eps.append(rng.standard_normal((n_sub[j], HIDDEN_CANDIDATES)))
        pick.append(rng.uniform(size=n_sub[j]))
    u, eps, pick = np.concatenate(u), np.concatenate(eps), np.concatenate(pick)
    m_host, c_host, r200_host = (a[o][:, None] for a in (cat.m200, cat.c200, cat.r200))
    proj = np.hypot(dark.sub_x, dark.sub_y)[:, None]
    r3d = np.hypot(proj, u * np.sqrt(np.maximum(r200_host**2 - proj**2, 0.0)))
    m_in = host_enclosed_mass(r3d, m_host, c_host)
    bound = dark.sub_mass[:, None]

    def bound_mass(m):
        return tidal_truncation(m, scattered_concentration(m, eps), r3d, m_in)[1]

    # The bound fraction depends on m only through c ∝ m^−0.084: the fixed point converges
    # by a factor of about 0.08 per step.
    m = np.broadcast_to(bound, r3d.shape)
    for _ in range(8):
        m = m * bound / bound_mass(m)
    dlnb_dlnm = np.log(bound_mass(1.001 * m) / bound_mass(m)) / math.log(1.001)
    weight = nfw_density(r3d, r200_host / c_host, 1.0) * m ** (1.0 - SUB_SLOPE) / dlnb_dlnm
    weight *= (m >= SUB_MASS_MIN) & (m <= SUB_MASS_MAX_FRAC * m_host)
    cdf = np.cumsum(weight, axis=1)
    chosen = (cdf < pick[:, None] * cdf[:, -1:]).sum(axis=1)
    redrawn = m[np.arange(len(m)), np.minimum(chosen, HIDDEN_CANDIDATES - 1)]
    return np.where(cdf[:, -1] > 0, redrawn, cat.sub_m200)


def baryon_catalog(
    cfg: Simulator, cat: HaloCatalog, dark: DarkMatter, seed: int, stream: int
) -> HaloCatalog:
    """The catalogue that baryon stream `stream` paints: the truth's for the target; for a
    truth redraw with `cfg.redraw_hidden`, its satellites' infall masses drawn again given
    the DMO map, so that a redraw knows no more than the map shows."""
    if stream == TARGET_STREAM or not cfg.redraw_hidden:
        return cat
    return dataclasses.replace(cat, sub_m200=posterior_infall_masses(cat, dark, seed, stream))


def background(noise, omega_m, sigma_8, a_agn, *, pixel: float, depth: float):
    """Lognormal background (B, m, m), mass per pixel, from white noise (B, m, m) and θ (B,),
    and its gas: (Ωb/Ωm) × the background smoothed by GAS_BG_SMOOTH A_AGN1^0.2 Mpc/h."""
    m = noise.shape[-1]
    amp, var0 = fields.power_law_filter(m, pixel, BG_AMPLITUDE, BG_SLOPE, math.pi / depth)
    sig8 = sigma_8.astype(np.float32)[:, None, None]
    g = fields.colour(noise, amp[None] * sig8)
    # ρ = ρ̄ exp(g − σ_g²/2) keeps the mean at Ωm ρcrit × depth; σ_g² ∝ σ8².
    mean = (omega_m * RHO_CRIT * depth * pixel * pixel).astype(np.float32)
    field = mean[:, None, None] * np.exp(g - 0.5 * var0 * sig8**2)
    smooth = GAS_BG_SMOOTH * a_agn**GAS_BG_SMOOTH_AGN
    f_b = (OMEGA_B / omega_m).astype(np.float32)[:, None, None]
    return field, f_b * fields.smooth(field, smooth, pixel)


def paint_condition(cfg: Simulator, cat: HaloCatalog) -> tuple[np.ndarray, DarkMatter]:
    """DMO maps (B, Cc, n, n): host truncated NFW + subhalos + background (+ context)."""
    n, box = cfg.resolution, cfg.box_size
    b = len(cat.index)
    _, edges = annulus_operator(n, box)
    sub = _subhalos(cat)
    # Subhalos within R200 are part of M200: the smooth host holds the rest (at least half).
    in_subs = np.bincount(cat.sub_owner, weights=sub["mass"], minlength=b)
    r200 = cat.r200
    rs = r200 / cat.c200
    # ρs scales with the smooth mass at fixed r_s = R200/c (nfw_rho_s of a smaller mass would
    # shrink R200 with it and give the same ρs: the subhalos would come on top of M200).
    smooth = np.maximum(cat.m200 - in_subs, 0.5 * cat.m200)
    rho_s = nfw_rho_s(cat.m200, cat.c200) * smooth / cat.m200
    host = paint_centred(
        tapered_nfw_projected_mass(edges[None], rs[:, None], rho_s[:, None], r200[:, None]), n, box
    )
    q = np.linspace(0.0, 1.0, SUB_RINGS + 1) ** 1.5
    ring_edges = sub["rt"][:, None] * q[None]
    rho_sub = nfw_rho_s(cat.sub_m200, cat.sub_c200)[:, None]
    enclosed = truncated_nfw_projected_mass(
        ring_edges, sub["rs"][:, None], rho_sub, sub["rt"][:, None]
    )
    radii, masses = _ring_quadrature(ring_edges, enclosed, sub["mass"])
    subs = paint_rings(b, n, box, cat.sub_owner, sub["x"], sub["y"], cat.sub_phi, radii, masses)
    field, field_gas = background(
        cat.bg_noise,
        cat.omega_m,
        cat.sigma_8,
        cat.a_agn,
        pixel=box / n,
        depth=cfg.projection_depth,
    )
    bg = fields.central(field, n)
    channels = [host + subs + bg]
    if cfg.context_channels:
        context = fields.central(field, 2 * n)
        channels += [fields.block_mean(context, 2), fields.block_mean(field, 4)]
    dark = DarkMatter(
        host_rs=rs,
        host_mass=tapered_nfw_mass(rs, rho_s, r200),
        sub_mass=sub["mass"],
        sub_x=sub["x"],
        sub_y=sub["y"],
        subs=subs,
        background=bg,
        background_gas=fields.central(field_gas, n),
    )
    return np.stack(channels, axis=1).astype(np.float32), dark


def host_baryons(cat: HaloCatalog, dark: DarkMatter, noise: BaryonNoise) -> dict[str, np.ndarray]:
    """Stellar and gas budgets of hosts and satellites (all masses in Msun/h).

    Fractions are of the host's smooth DMO mass M_t inside its truncation radius, so that
    hydro DM (1 − f_b) + stars f* + bound gas + ejected gas = M_t exactly."""
    f_b = cat.f_b
    o = cat.sub_owner
    # Central: Moster et al. 2013 × feedback × 0.15 dex scatter.
    m_star = median_stellar_mass(cat.m200, cat.a_sn, cat.a_agn) * 10 ** (
        STAR_SCATTER_DEX * noise.star_central
    )
    f_star = np.minimum(m_star / dark.host_mass, STAR_MAX_BARYON_FRAC * f_b)
    # Satellites: the same relation at the infall mass, capped by the bound baryons; the rest
    # of their gas is stripped into the host's hot halo.
    sat = median_stellar_mass(cat.sub_m200, cat.a_sn[o], cat.a_agn[o]) * 10 ** (
        STAR_SCATTER_DEX * noise.star_sub
    )
    sat = np.minimum(sat, STAR_MAX_BARYON_FRAC * f_b[o] * dark.sub_mass)
    stripped = np.bincount(o, weights=f_b[o] * dark.sub_mass - sat, minlength=len(cat.index))
    f_bgas = bound_gas_fraction(cat.m200, f_star, cat.omega_m, cat.a_sn, cat.a_agn)
    return {
        "star_central": f_star * dark.host_mass,
        "star_sub": sat,
        "gas_bound": f_bgas * dark.host_mass + stripped,
        "gas_ejected": (f_b - f_star - f_bgas) * dark.host_mass,
        "f_star": f_star,
    }


def clump_sigma(a_sn, a_agn):
    """σ of the gas clumping, 0.3 (A_SN1 A_AGN1)^0.1: turbulence stirred by feedback."""
    return CLUMP_SIGMA * (a_sn * a_agn) ** CLUMP_SIGMA_FB


def clump_gas(gas: np.ndarray, noise: np.ndarray, sigma, pixel: float) -> np.ndarray:
    """Gas maps (B, n, n) times the lognormal clumping exp(σ g − σ²/2), g the unit Gaussian
    field correlated over ~CLUMP_LENGTH coloured from white noise (B, n, n); σ broadcasts
    against the maps. Clumping moves gas around; it must not create or destroy it, so each
    map is renormalised to its total."""
    n = gas.shape[-1]
    g = fields.colour(noise, fields.gaussian_filter(n, pixel, CLUMP_LENGTH)[None])
    clumped = gas * np.exp(sigma * g - 0.5 * sigma**2)
    return clumped * (gas.sum(axis=(-2, -1)) / clumped.sum(axis=(-2, -1)))[..., None, None]


def paint_target(
    cfg: Simulator,
    cat: HaloCatalog,
    dark: DarkMatter,
    noise: BaryonNoise,
    neighbours: np.ndarray | None = None,
) -> np.ndarray:
    """Hydro maps (B, 3, n, n) [dm_hydro, gas, stars] for one draw of the baryonic noise;
    `neighbours` (B, 3, n, n), other hosts' unclumped maps, are added before the clumping."""
    n, box = cfg.resolution, cfg.box_size
    b = len(cat.index)
    _, edges = annulus_operator(n, box)
    bar = host_baryons(cat, dark, noise)
    f_b = cat.f_b
    r200 = cat.r200
    R = edges[None]
    # Hydro DM: (1 − f_b) of the host, its scale radius contracted by the central stars,
    # renormalised so that the total mass is unchanged (contraction only moves mass in).
    rs_c = dark.host_rs / (1.0 + CONTRACTION * bar["f_star"] / f_b)
    rho_c = (1.0 - f_b) * dark.host_mass / tapered_nfw_mass(rs_c, 1.0, r200)
    dm = paint_centred(
        tapered_nfw_projected_mass(R, rs_c[:, None], rho_c[:, None], r200[:, None]), n, box
    )
    dm += (1.0 - f_b)[:, None, None] * (dark.subs + dark.background)
    # Gas: bound β-model + ejected Gaussian + smoothed background, then clumping.
    rc = gas_core_radius(r200, cat.a_sn, cat.a_agn)
    gas_enc = tapered_beta_projected_mass(
        R, bar["gas_bound"][:, None], rc[:, None], r200[:, None]
    ) + gaussian_projected_mass(
        R, bar["gas_ejected"][:, None], ejection_radius(r200, cat.a_sn, cat.a_agn)[:, None]
    )
    gas = paint_centred(gas_enc, n, box) + dark.background_gas
    if neighbours is not None:
        dm = dm + neighbours[:, 0]
        gas = gas + neighbours[:, 1]
    sigma = clump_sigma(cat.a_sn, cat.a_agn).astype(np.float32)[:, None, None]
    gas = clump_gas(gas, noise.clump, sigma, box / n)
    # Stars: central Hernquist (exact annuli) + satellites (rings).
    a = hernquist_scale(r200)
    stars = paint_centred(
        hernquist_projected_mass(R, bar["star_central"][:, None], a[:, None]), n, box
    )
    a_sub = hernquist_scale(r200_from_m200(cat.sub_m200))[:, None]
    ring_edges = a_sub * np.concatenate([[0.0], np.geomspace(0.05, STAR_TAIL, SUB_RINGS)])[None]
    enclosed = hernquist_projected_mass(ring_edges, bar["star_sub"][:, None], a_sub)
    radii, masses = _ring_quadrature(ring_edges, enclosed, bar["star_sub"])
    stars += paint_rings(
        b, n, box, cat.sub_owner, dark.sub_x, dark.sub_y, cat.sub_phi, radii, masses
    )
    if neighbours is not None:
        stars = stars + neighbours[:, 2]
    return np.stack([dm, gas, stars], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Hosts painted alone (the box's hosts, a cutout's neighbours)
# ---------------------------------------------------------------------------------------------


def host_catalog(seed: int, index: np.ndarray, m200: np.ndarray, theta: np.ndarray, stamp: int):
    """A HaloCatalog for hosts `index` of masses m200 under θ (B, 4), each drawing its
    concentration and subhalos from (seed, index, HOST_STREAM); no background noise."""
    c200, subs = [], []
    for i, m in zip(index, m200, strict=True):
        rng = _stream(seed, int(i), HOST_STREAM)
        c200.append(float(draw_concentration(rng, float(m))))
        subs.append(draw_subhalos(rng, float(m)))
    noise = np.zeros((len(index), stamp, stamp), np.float32)
    return assemble_catalog(index, theta, m200, c200, subs, noise)


def stamp_config(cfg: Simulator, stamp: int) -> Simulator:
    """The simulator on a stamp of `stamp` pixels of the same side, for one host alone: no
    context, no neighbours."""
    h = cfg.box_size / cfg.resolution
    update = {"resolution": stamp, "box_size": stamp * h, "context_channels": False}
    return cfg.model_copy(update={**update, "neighbour_density": 0.0})


def paint_hosts(
    stamp_cfg: Simulator, cat: HaloCatalog, seed: int, streams: tuple[int, ...] = (TARGET_STREAM,)
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The hosts alone on their stamps: DMO (B, s, s) and, per baryon stream in `streams`
    (their stellar scatter), [dm_hydro, gas, stars] (B, 3, s, s) with the gas unclumped."""
    cond, dark = paint_condition(stamp_cfg, cat)
    # The zero-noise background is uniform; take it off (box and cutout add their own once).
    dmo = cond[:, 0] - dark.background
    zero = np.zeros_like(dark.background)
    dark = dataclasses.replace(dark, background=zero, background_gas=zero)
    hydro = []
    for stream in streams:
        noise = draw_baryon_noise(stamp_cfg, cat, seed, stream)
        # Zero clumping noise makes the clumping a constant that the renormalisation undoes:
        # the map the stamp lands in clumps all its gas with one field instead.
        noise = dataclasses.replace(noise, clump=np.zeros_like(noise.clump))
        painted = baryon_catalog(stamp_cfg, cat, dark, seed, stream)
        hydro.append(paint_target(stamp_cfg, painted, dark, noise))
    return dmo, hydro


def add_cropped(canvas: np.ndarray, stamp: np.ndarray, dy: int, dx: int) -> None:
    """canvas (C, n, n) += stamp (C, s, s) centred dy, dx pixels from the canvas centre (both
    on pixel corners), what falls outside dropped (no wrap)."""
    n, s = canvas.shape[-1], stamp.shape[-1]
    y0, x0 = n // 2 + dy - s // 2, n // 2 + dx - s // 2
    ys = slice(max(y0, 0), max(min(y0 + s, n), 0))
    xs = slice(max(x0, 0), max(min(x0 + s, n), 0))
    if ys.start < ys.stop and xs.start < xs.stop:
        canvas[:, ys, xs] += stamp[:, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def draw_neighbours(cfg: Simulator, seed: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Map i's neighbours: masses (k,) and (dy, dx) offsets (k, 2) in pixels from the cutout
    centre, over the square where a 2n stamp reaches the cutout (module docstring)."""
    reach = cfg.neighbour_reach
    rng = _stream(seed, i, NEIGHBOUR_STREAM)
    k = int(rng.poisson(cfg.mean_neighbours))
    if k > MAX_NEIGHBOURS:  # P < 1e-17 at the largest mean the config allows
        raise ValueError(f"map {i}: {k} neighbours, more than {MAX_NEIGHBOURS}")
    m200 = power_law_masses(rng, k, 10**cfg.log_mass_min, 10**cfg.log_mass_max, HOST_MASS_SLOPE)
    return m200, rng.integers(-reach + 1, reach, size=(k, 2))


def paint_neighbours(
    cfg: Simulator, cat: HaloCatalog, seed: int, streams: list[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The neighbours of the batch's maps: their DMO (B, n, n) and, per baryon stream in
    `streams`, their unclumped hydro maps (B, 3, n, n)."""
    n, b = cfg.resolution, len(cat.index)
    owner, index, m200, offsets = [], [], [], []
    for j, i in enumerate(cat.index):
        masses, offs = draw_neighbours(cfg, seed, int(i))
        owner += [j] * len(masses)
        index += [NEIGHBOUR_INDEX + MAX_NEIGHBOURS * int(i) + k for k in range(len(masses))]
        m200.append(masses)
        offsets.append(offs)
    dmo = np.zeros((b, 1, n, n))
    hydro = [np.zeros((b, 3, n, n)) for _ in streams]
    if not owner:
        return dmo[:, 0], hydro
    stamp_cfg = stamp_config(cfg, 2 * n)
    near = host_catalog(seed, np.array(index), np.concatenate(m200), cat.params[owner], 2 * n)
    offsets = np.concatenate(offsets)
    stamp_dmo, stamp_hydro = paint_hosts(stamp_cfg, near, seed, tuple(streams))
    for k, j in enumerate(owner):
        add_cropped(dmo[j], stamp_dmo[k, None], *offsets[k])
        for r in range(len(streams)):
            add_cropped(hydro[r][j], stamp_hydro[r][k], *offsets[k])
    return dmo[:, 0], hydro


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _batch_size(cfg: Simulator) -> int:
    return max(1, min(256, BATCH_PIXELS // _field_size(cfg) ** 2))


def simulate(
    cfg: Simulator,
    n_maps: int,
    seed: int,
    n_realizations: int = 0,
    *,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Simulate `n_maps` cutouts (one host halo each); see the module docstring.

    Returns condition (N, Cc, n, n), target (N, 3, n, n), params (N, 4), param_names,
    channel_names, box_size, group (N,) int64, halo_mass (N,), r200 (N,) and, when
    n_realizations > 0, truth_realizations (N, R, 3, n, n): the target redrawn with the
    condition fixed. Map i depends only on (seed, i), never on the batch size."""
    n = cfg.resolution
    n_cond = 3 if cfg.context_channels else 1
    bs = batch_size or _batch_size(cfg)
    out = {
        "condition": np.empty((n_maps, n_cond, n, n), np.float32),
        "target": np.empty((n_maps, 3, n, n), np.float32),
        "params": np.empty((n_maps, 4), np.float32),
        "halo_mass": np.empty(n_maps, np.float32),
        "r200": np.empty(n_maps, np.float32),
    }
    if n_realizations > 0:
        out["truth_realizations"] = np.empty((n_maps, n_realizations, 3, n, n), np.float32)
    for start in range(0, n_maps, bs):
        sl = slice(start, min(start + bs, n_maps))
        cat = draw_catalog(cfg, seed, np.arange(sl.start, sl.stop))
        cond, dark = paint_condition(cfg, cat)
        streams = [TARGET_STREAM, *(TARGET_STREAM + 1 + r for r in range(n_realizations))]
        near = [None] * len(streams)
        if cfg.neighbour_density > 0:
            near_dmo, near = paint_neighbours(cfg, cat, seed, streams)
            cond[:, 0] += near_dmo
        out["condition"][sl] = cond
        for r, stream in enumerate(streams):
            noise = draw_baryon_noise(cfg, cat, seed, stream)
            maps = paint_target(
                cfg, baryon_catalog(cfg, cat, dark, seed, stream), dark, noise, near[r]
            )
            if r == 0:
                out["target"][sl] = maps
            else:
                out["truth_realizations"][sl, r - 1] = maps
        out["params"][sl] = cat.params
        out["halo_mass"][sl] = cat.m200
        out["r200"][sl] = cat.r200
    out["param_names"] = np.array(PARAM_NAMES)
    out["channel_names"] = np.array(CHANNEL_NAMES)
    out["box_size"] = np.float32(cfg.box_size)
    out["group"] = np.arange(n_maps, dtype=np.int64)
    return out
