"""The embedded halo simulator: contracts of its output, exact physics identities, bookkeeping."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from scipy import integrate, special
from sim_params import simulator

from halocm.config import Simulator
from halocm.data import halos as H
from halocm.data import synthetic as S

KEYS = {
    "condition",
    "target",
    "params",
    "param_names",
    "channel_names",
    "box_size",
    "group",
    "halo_mass",
    "r200",
}


def _cfg(**kw) -> Simulator:
    # 3R200 < L/2 below 10^14.4: every host component except the ejected gas fits the cutout.
    # One host per cutout: the bookkeeping below is the host's (neighbours have their tests).
    base = {"resolution": 16, "log_mass_min": 12.5, "log_mass_max": 14.3, "neighbour_density": 0}
    return simulator(**{**base, **kw})


def _painted(cfg: Simulator, n: int, seed: int = 3, **theta):
    """Catalog (θ optionally overridden), condition, dark pieces, noise, target, budgets."""
    cat = S.draw_catalog(cfg, seed, np.arange(n))
    if theta:
        cat = dataclasses.replace(cat, **{k: np.full(n, v, float) for k, v in theta.items()})
    cond, dark = S.paint_condition(cfg, cat)
    noise = S.draw_baryon_noise(cfg, cat, seed, 1)
    return cat, cond, dark, noise, S.paint_target(cfg, cat, dark, noise)


# --- Output contract ------------------------------------------------------------------------


def test_simulate_keys_shapes_dtypes():
    out = S.simulate(_cfg(), 5, seed=0, n_realizations=2)
    assert set(out) == KEYS | {"truth_realizations"}
    assert out["condition"].shape == (5, 1, 16, 16)
    assert out["target"].shape == (5, 3, 16, 16)
    assert out["truth_realizations"].shape == (5, 2, 3, 16, 16)
    assert out["params"].shape == (5, 4)
    for key in ("condition", "target", "truth_realizations", "params", "halo_mass", "r200"):
        assert out[key].dtype == np.float32, key
    assert out["group"].dtype == np.int64 and out["group"].tolist() == list(range(5))
    assert out["box_size"].shape == () and out["box_size"] == np.float32(6.25)
    assert tuple(out["param_names"]) == S.PARAM_NAMES == ("Omega_m", "sigma_8", "A_SN1", "A_AGN1")
    assert tuple(out["channel_names"]) == S.CHANNEL_NAMES == ("dm_hydro", "gas", "stars")
    assert out["param_names"].dtype.kind == "U"  # loadable without pickle
    assert set(S.simulate(_cfg(), 2, seed=0)) == KEYS


def test_parameters_and_masses_in_their_ranges():
    out = S.simulate(_cfg(resolution=8, log_mass_min=13.0, log_mass_max=13.5), 40, seed=1)
    om, s8, a_sn, a_agn = out["params"].T
    assert ((om >= 0.1) & (om <= 0.5)).all() and ((s8 >= 0.6) & (s8 <= 1.0)).all()
    for a in (a_sn, a_agn):
        assert (a >= 0.25).all() and (a <= 4.0).all()
        assert np.median(np.log(a)) == pytest.approx(0.0, abs=0.5)  # log-uniform about 1
    logm = np.log10(out["halo_mass"])
    assert (logm >= 13.0 - 1e-6).all() and (logm <= 13.5 + 1e-6).all()
    np.testing.assert_allclose(out["r200"], H.r200_from_m200(out["halo_mass"]), rtol=1e-6)


def test_context_channels_are_the_block_averaged_background():
    cfg = _cfg(context_channels=True)
    out = S.simulate(cfg, 3, seed=2)
    assert out["condition"].shape == (3, 3, 16, 16)
    cat = S.draw_catalog(cfg, 2, np.arange(3))
    # Mean background mass per (fine) pixel: Ωm ρcrit × depth × h², lognormal around it.
    mean = cat.omega_m * H.RHO_CRIT * cfg.projection_depth * (cfg.box_size / 16) ** 2
    ratio = out["condition"][:, 1:].mean(axis=(2, 3)) / mean[:, None]
    assert ((ratio > 0.3) & (ratio < 3.0)).all()
    # The 4x context holds the 2x one: its central quarter-side block has the same mass.
    c2, c4 = out["condition"][:, 1], out["condition"][:, 2]
    np.testing.assert_allclose(c4[:, 4:12, 4:12].sum((1, 2)), c2.sum((1, 2)) / 4, rtol=1e-4)


def test_non_negative_and_finite():
    out = S.simulate(_cfg(), 6, seed=4, n_realizations=1)
    for key in ("condition", "target", "truth_realizations", "halo_mass", "r200"):
        assert np.isfinite(out[key]).all() and (out[key] >= 0).all(), key
    assert (out["condition"] > 0).all() and (out["target"][:, :2] > 0).all()


# --- Reproducibility --------------------------------------------------------------------------


def test_same_seed_same_maps_whatever_the_batching():
    cfg = _cfg()
    a = S.simulate(cfg, 7, seed=11, n_realizations=1)
    b = S.simulate(cfg, 7, seed=11, n_realizations=1, batch_size=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # Map i depends on (seed, i) only: a shorter run is a prefix.
    c = S.simulate(cfg, 4, seed=11)
    np.testing.assert_array_equal(c["target"], a["target"][:4])
    d = S.simulate(cfg, 4, seed=12)
    assert not np.array_equal(d["condition"], c["condition"])


def test_realizations_share_the_condition_and_differ_in_target():
    cfg = _cfg()
    plain = S.simulate(cfg, 4, seed=5)
    out = S.simulate(cfg, 4, seed=5, n_realizations=3)
    np.testing.assert_array_equal(out["condition"], plain["condition"])
    np.testing.assert_array_equal(out["target"], plain["target"])
    reals = out["truth_realizations"]
    for r in range(3):
        assert not np.array_equal(reals[:, r, 1], out["target"][:, 1])  # gas clumping redrawn
        assert not np.array_equal(reals[:, r, 2], out["target"][:, 2])  # stellar masses redrawn
    assert not np.array_equal(reals[:, 0], reals[:, 1])
    # Only baryonic noise differs: the hydro DM moves by the contraction alone (percent level).
    np.testing.assert_allclose(reals[:, 0, 0].sum((1, 2)), out["target"][:, 0].sum((1, 2)), 1e-5)


def test_redrawing_the_hidden_masses_changes_only_the_redraws_baryons():
    shared = S.simulate(_cfg(redraw_hidden=False), 6, seed=5, n_realizations=2)
    redrawn = S.simulate(_cfg(redraw_hidden=True), 6, seed=5, n_realizations=2)
    for key in ("condition", "target"):
        np.testing.assert_array_equal(redrawn[key], shared[key])
    a, b = shared["truth_realizations"], redrawn["truth_realizations"]
    # The satellites' dark matter is what the map shows (their bound mass): it stays.
    np.testing.assert_array_equal(b[:, :, 0], a[:, :, 0])
    assert not np.array_equal(b[:, :, 2], a[:, :, 2])
    # Every baryon stays in the host: stars a satellite gains, its stripped gas loses.
    np.testing.assert_allclose(b[:, :, 1:].sum((2, 3, 4)), a[:, :, 1:].sum((2, 3, 4)), 1e-5)


def test_hidden_infall_masses_are_redrawn_from_their_posterior_given_the_map():
    """The truth's infall masses are themselves a draw from the posterior given what the map
    shows. So a posterior redraw has the truth's joint law with the visible quantities (here
    log m_infall/m_bound by projected radius and by bound mass), and the truth and a redraw
    are exchangeable: they correlate as two redraws do, not as copies. 2000 maps keep every
    bin above 900 satellites; the resampling from 64 candidates leaves the redraws' spread a
    few percent wide of the posterior's where the posterior is narrowest (high bound mass)."""
    cfg = _cfg()
    cat = S.draw_catalog(cfg, 0, np.arange(2000))
    _, dark = S.paint_condition(cfg, cat)
    first = S.posterior_infall_masses(cat, dark, 0, 2)
    second = S.posterior_infall_masses(cat, dark, 0, 3)
    truth, one, two = (np.log10(m / dark.sub_mass) for m in (cat.sub_m200, first, second))
    assert len(truth) > 7000 and np.mean(first == cat.sub_m200) < 0.02
    radius = np.hypot(dark.sub_x, dark.sub_y) / cat.r200[cat.sub_owner]
    bound = np.log10(dark.sub_mass)
    for visible, edges in ((radius, (0, 0.2, 0.4, 0.7, 1)), (bound, (9, 11, 11.5, 14))):
        for lo, hi in itertools.pairwise(edges):
            pick = (visible >= lo) & (visible < hi)
            se = truth[pick].std() / math.sqrt(pick.sum())
            assert abs(one[pick].mean() - truth[pick].mean()) < 4 * se
            assert one[pick].std() == pytest.approx(truth[pick].std(), rel=0.1)
    r_truth, r_redraws = np.corrcoef(truth, one)[0, 1], np.corrcoef(one, two)[0, 1]
    assert r_truth == pytest.approx(r_redraws, abs=0.03) and r_truth < 0.9


def test_internal_pieces_reproduce_simulate():
    cfg = _cfg()
    _, cond, _, _, target = _painted(cfg, 3, seed=3)
    out = S.simulate(cfg, 3, seed=3)
    np.testing.assert_array_equal(out["condition"], cond)
    np.testing.assert_array_equal(out["target"], target)


# --- Mass bookkeeping -------------------------------------------------------------------------


def test_hydro_dark_matter_is_the_dark_fraction_of_dmo():
    """Σ dm_hydro = (1 − Ωb/Ωm) Σ DMO: the contraction only moves host mass inwards and the
    tapered host (≤ 3 R200) fits the cutout, so the only difference is float32 rounding."""
    out = S.simulate(_cfg(), 12, seed=6)
    f_b = H.OMEGA_B / out["params"][:, 0].astype(float)
    dmo = out["condition"][:, 0].astype(float).sum((1, 2))
    dm = out["target"][:, 0].astype(float).sum((1, 2))
    np.testing.assert_allclose(dm, (1 - f_b) * dmo, rtol=1e-5)


def test_baryons_are_the_baryon_fraction_minus_ejected_gas():
    """In the largest aperture (the cutout), gas + stars = (Ωb/Ωm) DMO − ejected gas beyond it.

    Exactly, up to (a) the background gas being the *smoothed* background, whose Gaussian
    kernel (≤ 0.26 Mpc/h) moves mass across the cutout edge, and (b) satellite/central stellar
    tails beyond the edge (< 1e-3 of the stars, < 1e-4 of the baryons). Accounting for (a)
    with the simulator's own smoothed background the identity holds to 1e-4; without it,
    to 1% — (a) is a ~0.3% effect (edge flux of a field smoothed over 0.2/6.25 of its side)."""
    cfg = _cfg()
    cat, cond, dark, noise, target = _painted(cfg, 12)
    bar = S.host_baryons(cat, dark, noise)
    f_b = cat.f_b
    half = cfg.box_size / 2
    sigma_ej = S.ejection_radius(cat.r200, cat.a_sn, cat.a_agn)
    ejected_out = bar["gas_ejected"] * (1 - special.erf(half / (math.sqrt(2) * sigma_ej)) ** 2)
    assert (ejected_out >= 0).all() and ejected_out.max() > 1e10  # massive hosts lose some
    dmo = cond[:, 0].astype(float).sum((1, 2))
    baryons = target[:, 1:].astype(float).sum((1, 2, 3))
    bg_exact = f_b * dark.background.sum((1, 2)) - dark.background_gas.astype(float).sum((1, 2))
    np.testing.assert_allclose(baryons, f_b * dmo - ejected_out - bg_exact, rtol=1e-4)
    np.testing.assert_allclose(baryons, f_b * dmo - ejected_out, rtol=1e-2)
    # Stars: the map holds the central plus all satellites (less tails off the cutout).
    stars = target[:, 2].astype(float).sum((1, 2))
    sats = np.bincount(cat.sub_owner, weights=bar["star_sub"], minlength=12)
    np.testing.assert_allclose(stars, bar["star_central"] + sats, rtol=2e-3)


def test_host_budget_closes_exactly():
    """dm (1 − f_b) + stars f* + bound gas + ejected gas = the host's DMO mass, per host."""
    cfg = _cfg()
    cat, _, dark, noise, _ = _painted(cfg, 20)
    bar = S.host_baryons(cat, dark, noise)
    stripped = np.bincount(
        cat.sub_owner,
        weights=cat.f_b[cat.sub_owner] * dark.sub_mass - bar["star_sub"],
        minlength=20,
    )
    total = (
        (1 - cat.f_b) * dark.host_mass
        + bar["star_central"]
        + bar["gas_bound"]
        - stripped
        + bar["gas_ejected"]
    )
    np.testing.assert_allclose(total, dark.host_mass, rtol=1e-12)
    assert (bar["gas_ejected"] > 0).all() and (bar["gas_bound"] > 0).all()


def test_subhalos_are_part_of_m200_not_on_top_of_it():
    # The smooth host holds M200 minus its bound subhalos (at least half of M200), at the
    # concentration and R200 of the whole halo: its NFW mass within R200 is exactly that.
    cfg = _cfg()
    cat, _, dark, _, _ = _painted(cfg, 20)
    in_subs = np.bincount(cat.sub_owner, weights=dark.sub_mass, minlength=20)
    assert (in_subs > 0).any()
    smooth = np.maximum(cat.m200 - in_subs, 0.5 * cat.m200)
    # 4π ρs rs³ μ(c) is the mass within R200; the taper adds the same factor for any ρs.
    full = S.tapered_nfw_mass(dark.host_rs, H.nfw_rho_s(cat.m200, cat.c200), cat.r200)
    np.testing.assert_allclose(dark.host_mass, full * smooth / cat.m200, rtol=1e-12)


# --- Galaxy physics ---------------------------------------------------------------------------


def test_moster_relation_values():
    # At M = M1 the ratio is N (masses in Msun there, Msun/h here).
    m1 = 10**11.59 * S.H_LITTLE
    assert S.moster_stellar_mass(m1) / m1 == pytest.approx(0.0351, rel=1e-12)
    m = np.geomspace(1e11, 1e15, 50)
    ratio = S.moster_stellar_mass(m) / m
    peak = m1 * (1.376 / 0.608) ** (1 / (1.376 + 0.608))  # d(ratio)/dM = 0
    assert m[np.argmax(ratio)] == pytest.approx(peak, rel=0.1)
    assert (np.diff(S.moster_stellar_mass(m)) > 0).all()


def test_central_stellar_mass_follows_moster_at_unit_feedback():
    """Median of log10(m*/Moster) is 0 and its spread 0.15 dex at A_SN1 = A_AGN1 = 1.
    With 400 hosts, the median's standard error is 1.25 × 0.15/√400 ≈ 0.01 dex."""
    cfg = _cfg(resolution=8)
    cat, _, dark, noise, _ = _painted(cfg, 400, a_sn=1.0, a_agn=1.0)
    m_star = S.host_baryons(cat, dark, noise)["star_central"]
    resid = np.log10(m_star / S.moster_stellar_mass(cat.m200))
    assert np.median(resid) == pytest.approx(0.0, abs=0.03)
    assert np.std(resid) == pytest.approx(S.STAR_SCATTER_DEX, abs=0.015)


def _aperture(maps: np.ndarray, radius: np.ndarray, box: float) -> np.ndarray:
    n = maps.shape[-1]
    g = (np.arange(n) + 0.5) * box / n - box / 2
    r = np.hypot(*np.meshgrid(g, g))
    return (maps * (r[None] < radius[:, None, None])).sum((1, 2))


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ({"a_sn": 0.25, "a_agn": 1.0}, {"a_sn": 4.0, "a_agn": 1.0}),
        ({"a_sn": 1.0, "a_agn": 0.25}, {"a_sn": 1.0, "a_agn": 4.0}),
    ],
)
def test_more_feedback_means_less_bound_gas_and_fewer_stars(low, high):
    """Same hosts, subhalos, background and noise; only A_SN1 or A_AGN1 changes."""
    cfg = _cfg(resolution=32)
    fixed = {"omega_m": 0.3, "sigma_8": 0.8}
    lo = _painted(cfg, 8, **fixed, **low)
    hi = _painted(cfg, 8, **fixed, **high)
    b_lo, b_hi = (S.host_baryons(c, d, nz) for c, _, d, nz, _ in (lo, hi))
    assert (b_hi["star_central"] < b_lo["star_central"]).all()
    # Satellites too (some sit at the cap of 80% of their bound baryons in both runs).
    assert (b_hi["star_sub"] <= b_lo["star_sub"]).all()
    assert b_hi["star_sub"].sum() < b_lo["star_sub"].sum()
    r200 = lo[0].r200
    bound = [
        S.tapered_beta_projected_mass(
            r200, b["gas_bound"], S.gas_core_radius(r200, c.a_sn, c.a_agn), r200
        )
        for c, b in ((lo[0], b_lo), (hi[0], b_hi))
    ]
    assert (bound[1] < bound[0]).all()
    # And on the maps: less gas inside R200, fewer stars in total. (The ejected gas, which
    # grows with feedback, still projects partly inside R200: with little bound gas, as in
    # 10^12.5 hosts, the aperture total need not fall, so the maps are checked above 10^13.)
    gas = [_aperture(t[:, 1].astype(float), r200, cfg.box_size) for *_, t in (lo, hi)]
    big = lo[0].m200 > 1e13
    assert big.sum() >= 3 and (gas[1][big] < gas[0][big]).all()
    assert gas[1].sum() < gas[0].sum()
    assert (hi[4][:, 2].sum((1, 2)) < lo[4][:, 2].sum((1, 2))).all()


def test_subhalo_count_grows_with_host_mass():
    mean = S.mean_subhalo_count(np.array([1e12, 2e12, 1e13, 1e14, 1e15]))
    assert mean[0] == 0 and (np.diff(mean) > 0).all()  # none below 10 x the lightest subhalo
    cat = S.draw_catalog(_cfg(resolution=8, log_mass_min=14.0, log_mass_max=14.5), 0, np.arange(20))
    assert cat.sub_owner.size == pytest.approx(S.mean_subhalo_count(cat.m200).sum(), rel=0.35)
    assert (cat.sub_m200 >= S.SUB_MASS_MIN).all()
    assert (cat.sub_m200 <= S.SUB_MASS_MAX_FRAC * cat.m200[cat.sub_owner]).all()


def test_tapered_profiles_keep_their_meaning():
    c = 6.0
    r200 = H.r200_from_m200(1e13)
    rs = r200 / c
    rho_s = H.nfw_rho_s(1e13, c)
    # Inside R200 the taper is 1: the 3D mass inside R200 is M200, the total a bit more.
    total = S.tapered_nfw_mass(rs, rho_s, r200)
    assert 1e13 < total < 1e13 * H.nfw_mu(3 * c) / H.nfw_mu(c)
    assert S.tapered_nfw_projected_mass(3.01 * r200, rs, rho_s, r200) == pytest.approx(total)
    assert S.tapered_beta_projected_mass(3.01 * r200, 1e12, 0.05, r200) == pytest.approx(1e12)


# --- Pixel integration ------------------------------------------------------------------------


def test_annulus_operator_is_exact_for_uniform_surface_density():
    n, box = 12, 3.0
    w, edges = S.annulus_operator(n, box)
    pix = S.paint_centred(math.pi * edges[None] ** 2, n, box)[0]  # Σ = 1
    np.testing.assert_allclose(pix, (box / n) ** 2, rtol=1e-10)
    inside = edges[1:] <= box / 2
    np.testing.assert_allclose(np.asarray(w.sum(axis=0)).ravel()[inside], 1.0, rtol=1e-10)


@pytest.mark.parametrize(("i", "j"), [(8, 8), (9, 8), (9, 9), (10, 8), (12, 11)])
def test_centred_pixels_match_2d_quadrature(i, j):
    """Pixel masses of a cuspy NFW (centre on a pixel corner) vs dblquad, to 1e-4."""
    n, box = 16, 3.2
    h = box / n
    rs, rho_s, rt = 0.15, 1e15, 1.5
    _, edges = S.annulus_operator(n, box)
    pix = S.paint_centred(H.truncated_nfw_projected_mass(edges[None], rs, rho_s, rt), n, box)[0]
    x0, y0 = (j - n / 2) * h, (i - n / 2) * h
    exact = integrate.dblquad(
        lambda y, x: H.truncated_nfw_projected_density(math.hypot(x, y), rs, rho_s, rt),
        x0,
        x0 + h,
        y0,
        y0 + h,
        epsrel=1e-9,
    )[0]
    assert pix[i, j] == pytest.approx(exact, rel=1e-4)


def test_rings_conserve_mass_inside_and_drop_it_outside():
    n, box = 16, 4.0
    owner = np.array([0, 0, 1])
    x = np.array([0.3, -1.0, 5.0])  # the third object is off the cutout
    y = np.array([0.1, 0.7, 0.0])
    radii = np.tile(np.linspace(0.01, 0.3, 5), (3, 1))
    masses = np.ones((3, 5))
    maps = S.paint_rings(2, n, box, owner, x, y, np.zeros(3), radii, masses)
    assert maps[0].sum() == pytest.approx(10.0) and maps[1].sum() == 0.0
    # A ring wholly inside one pixel lands in that pixel.
    one = S.paint_rings(
        1,
        n,
        box,
        np.array([0]),
        np.array([0.125]),
        np.array([0.125]),
        np.zeros(1),
        np.array([[0.01]]),
        np.array([[2.0]]),
    )
    assert one[0, 8, 8] == pytest.approx(2.0)


# --- The figure -----------------------------------------------------------------------------


def test_plot_cutouts(tmp_path):
    from halocm.data.figures import plot_cutouts

    out = S.simulate(_cfg(), 3, seed=0)
    path = plot_cutouts(
        out["condition"],
        out["target"],
        tmp_path / "c.png",
        S.CHANNEL_NAMES,
        5,
        halo_mass=out["halo_mass"],
    )
    assert path.stat().st_size > 1000


# --- Neighbours -------------------------------------------------------------------------------


def test_neighbours_are_a_poisson_count_of_host_masses_within_the_stamps_reach():
    cfg = _cfg(neighbour_density=0.01)
    n = cfg.resolution
    draws = [S.draw_neighbours(cfg, 2, i) for i in range(400)]
    reach = n // 2 + n
    expected = 0.01 * ((2 * reach - 1) * cfg.box_size / n) ** 2  # 3.4 per map
    counts = np.array([len(m) for m, _ in draws])
    assert counts.mean() == pytest.approx(expected, abs=5 * math.sqrt(expected / 400))
    masses = np.concatenate([m for m, _ in draws])
    offsets = np.concatenate([o for _, o in draws])
    assert (masses >= 10**cfg.log_mass_min).all() and (masses <= 10**cfg.log_mass_max).all()
    assert np.abs(offsets).max() == reach - 1


def test_neighbours_add_other_hosts_to_the_condition_and_every_truth_draw():
    alone = S.simulate(_cfg(), 6, seed=4, n_realizations=1)
    cfg = _cfg(neighbour_density=0.02)
    near = S.simulate(cfg, 6, seed=4, n_realizations=1)
    assert near.keys() == alone.keys()
    # The map's own host, subhalos and background are the same draws; neighbours add to them.
    cat = S.draw_catalog(cfg, 4, np.arange(6))
    dmo, hydro = S.paint_neighbours(cfg, cat, 4, [1, 2])
    assert (dmo.sum((1, 2)) > 0).sum() >= 4
    added = near["condition"][:, 0].astype(float) - alone["condition"][:, 0]
    np.testing.assert_allclose(added, dmo, rtol=1e-4, atol=1e-4 * dmo.max())
    # Their hydro maps, with their own stellar draws per truth realisation, land in the target
    # (gas only in total: the map's clumping is applied after they are added).
    for maps, extra in ((near["target"], hydro[0]), (near["truth_realizations"][:, 0], hydro[1])):
        before = alone["target"] if maps is near["target"] else alone["truth_realizations"][:, 0]
        for c in (0, 2):
            np.testing.assert_allclose(
                maps[:, c].astype(float) - before[:, c],
                extra[:, c],
                rtol=1e-4,
                atol=1e-4 * extra[:, c].max(),
            )
        gas = maps[:, 1].astype(float).sum((1, 2)) - before[:, 1].sum((1, 2))
        # The clumping renormalises each map in float32: to 1e-6 of the map's gas.
        atol = 1e-5 * before[:, 1].sum((1, 2)).max()
        np.testing.assert_allclose(gas, extra[:, 1].sum((1, 2)), rtol=0, atol=atol)
    assert not np.array_equal(hydro[0][:, 2], hydro[1][:, 2])  # stellar masses redrawn
    # Map i's neighbours are its own: the same whatever the batching.
    batched = S.simulate(cfg, 6, seed=4, n_realizations=1, batch_size=4)
    for key in near:
        np.testing.assert_array_equal(near[key], batched[key], err_msg=key)


def test_a_box_host_and_a_neighbour_are_painted_by_the_same_code():
    cfg = _cfg()
    stamp = S.stamp_config(cfg, 2 * cfg.resolution)
    theta = np.array([[0.3, 0.8, 1.0, 1.0]])
    hosts = S.host_catalog(7, np.array([5]), np.array([1e13]), theta, 2 * cfg.resolution)
    dmo, (hydro,) = S.paint_hosts(stamp, hosts, 7)
    maps = np.concatenate([dmo[:, None], hydro], axis=1)
    f_b = H.OMEGA_B / 0.3
    # A host alone: no background, and its hydro matter is its DMO mass (the ejected gas's far
    # tail beyond the stamp aside).
    total = maps[0, 1:].sum()
    assert maps[0, 0].sum() == pytest.approx(total, rel=0.02)
    assert maps[0, 1].sum() == pytest.approx((1 - f_b) * maps[0, 0].sum(), rel=1e-4)
