"""Painting a whole box (docs/design.md §7): the pasting identity, the partition of unity, periodic
wrap, bounded memory, box mode, inputs checked once, the model path and one-line errors
(library and CLI)."""

from __future__ import annotations

import re
import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from sim_params import simulator
from typer.testing import CliRunner

from halocm import painting as P
from halocm.cli import app
from halocm.data import fields
from halocm.data import synthetic as S
from halocm.data.box import simulate_box, write_box
from halocm.data.halos import r200_from_m200
from halocm.evaluation.metrics import aperture_mass
from halocm.painting import io as painting_io

N_CUT, CUT_SIZE = 16, 6.25  # the cutout: 16 pixels over 6.25 Mpc/h
H = CUT_SIZE / N_CUT


def _geometry(n_box: int) -> dict:
    return {"box_size": n_box * H, "cutout_pixels": N_CUT, "cutout_size": CUT_SIZE}


def _truth_sampler(truth: np.ndarray, catalog: pd.DataFrame, seen: list | None = None):
    """A stand-in generator returning the true hydro cutouts (B, 1, C, n, n)."""
    x, y = catalog["x"].to_numpy(float), catalog["y"].to_numpy(float)

    def sample(cond, params, idx):
        if seen is not None:
            seen.append((cond.copy(), idx.copy()))
        iy, ix = P.cutout_origin(x[idx], y[idx], H, N_CUT)
        cuts = [fields.cut(truth, a, b, N_CUT) for a, b in zip(iy, ix, strict=True)]
        return np.stack(cuts)[:, None]

    return sample


@pytest.fixture(scope="module")
def box():
    return simulate_box(simulator(resolution=N_CUT), n_pixels=64, n_halos=14, seed=3)


# --- Geometry -------------------------------------------------------------------------------


def test_taper_window_is_flat_topped_separable_and_vanishes_at_the_edge():
    w = P.taper_window(16, flat=0.5)
    assert w.shape == (16, 16) and (w >= 0).all() and (w <= 1).all()
    np.testing.assert_array_equal(w[4:12, 4:12], 1.0)  # |u| ≤ 0.5: the flat square
    np.testing.assert_allclose(w, w[::-1, ::-1])
    np.testing.assert_allclose(w, np.outer(w[:, 8], w[8]))
    assert w[0, 8] < 0.05 and w[0, 0] < 0.002  # edge pixel centres, u = ±15/16


def test_blend_weights_sum_to_one_at_every_pixel():
    coverage = np.array([0.0, 1e-3, 0.4, 0.999, 1.0, 1.7, 3.2])
    scale, bg = P.blend_weights(coverage)
    # Σ_h T_h · scale = W · scale is the halos' total weight.
    np.testing.assert_allclose(coverage * scale + bg, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(bg[coverage >= 1], 0.0)  # overlaps: halos alone sum to 1
    np.testing.assert_allclose((coverage * scale)[coverage >= 1], 1.0, atol=1e-15)


def test_a_constant_field_is_reproduced_everywhere():
    """A partition of unity reproduces constants: cutouts equal to the background give back
    the background in overlaps, lone tapers and the empty field alike."""
    n_box, dmo_value = 48, 3e10
    frac = P.background_fractions(0.3)
    cat = pd.DataFrame(
        {"x": [1.0, 2.5, 9.0, 18.6, 18.6], "y": [1.0, 1.5, 9.0, 0.1, 9.4], "m200": 1e14}
    )

    def sample(cond, params, idx):
        return np.broadcast_to(
            (frac * dmo_value)[None, None, :, None, None], (len(idx), 1, 3, N_CUT, N_CUT)
        ).astype(np.float32)

    res = P.paint(
        np.full((n_box, n_box), dmo_value),
        cat,
        sample,
        **_geometry(n_box),
        mass_min=1e13,
        batch_size=2,
        omega_m=0.3,
    )
    assert res.coverage.max() > 1.5 and ((res.coverage > 0) & (res.coverage < 1)).any()
    assert (res.coverage == 0).any()
    np.testing.assert_allclose(
        res.maps, np.broadcast_to((frac * dmo_value)[:, None, None], res.maps.shape), rtol=1e-6
    )


def test_context_channels_are_the_block_averaged_neighbourhoods():
    rng = np.random.default_rng(4)
    dmo = rng.lognormal(20.0, 1.0, (64, 64))
    iy, ix = -3, 50  # wraps on both axes
    got = P.condition_cutout(dmo, iy, ix, N_CUT, 3)
    # With a 4n = 64 box, the 4x neighbourhood is the whole box rolled to start at its corner.
    whole = np.roll(dmo, (-(iy - 24), -(ix - 24)), axis=(0, 1))
    np.testing.assert_array_equal(got[0], whole[24:40, 24:40])
    np.testing.assert_allclose(got[1], whole[16:48, 16:48].reshape(16, 2, 16, 2).mean((1, 3)))
    np.testing.assert_allclose(got[2], whole.reshape(16, 4, 16, 4).mean((1, 3)))


# --- Pasting identity, periodic wrap ------------------------------------------------------


def test_pasting_true_cutouts_reproduces_the_true_box_inside_halos(box):
    mass_min = np.sort(box.catalog["m200"])[4]  # the four lightest stay unpainted
    res = P.paint(
        box.dmo,
        box.catalog,
        _truth_sampler(box.hydro, box.catalog),
        **_geometry(64),
        mass_min=mass_min,
        batch_size=3,
        param_names=S.PARAM_NAMES,
    )
    painted = box.catalog["m200"].to_numpy() >= mass_min
    assert res.n_painted == painted.sum() == 10
    np.testing.assert_array_equal(res.halos["painted"], painted)
    # Every pixel within R200 of a painted halo lies in some flat zone (W ≥ 1) ...
    yy, xx = (np.mgrid[:64, :64] + 0.5) * H
    inside = np.zeros((64, 64), bool)
    for row in box.catalog[painted].itertuples():
        dx = (xx - row.x + 32 * H) % (64 * H) - 32 * H
        dy = (yy - row.y + 32 * H) % (64 * H) - 32 * H
        inside |= np.hypot(dx, dy) <= r200_from_m200(row.m200)
    assert (res.coverage[inside] >= 1).all()
    # ... and there, as everywhere with W ≥ 1, the painting is the truth to rounding.
    full = res.coverage >= 1
    np.testing.assert_allclose(res.maps[:, full], box.hydro[:, full], rtol=1e-6)
    # Away from every cutout: the DMO map times the cosmic fractions of the box's Ωm.
    empty = res.coverage == 0
    frac = P.background_fractions(box.params["Omega_m"])
    np.testing.assert_allclose(res.maps[:, empty], frac[:, None] * box.dmo[empty], rtol=1e-6)
    # The table's R200 masses of painted halos are the truth's: the aperture mass about the
    # centre of the truth rolled to put the halo (on a pixel corner) there.
    for i in np.flatnonzero(painted):
        row = res.halos.iloc[i]
        iy, ix = round(row.y / H), round(row.x / H)
        rolled = np.roll(box.hydro, (32 - iy, 32 - ix), axis=(1, 2))
        true = aperture_mass(rolled, row.r200 / H)
        got = row[["mass_r200_dm_hydro", "mass_r200_gas", "mass_r200_stars"]].to_numpy(float)
        np.testing.assert_allclose(got, true, rtol=1e-6)


def test_a_halo_at_the_box_edge_gets_the_wrapped_cutout():
    n_box = 40
    rng = np.random.default_rng(0)
    dmo = rng.lognormal(20.0, 1.0, (n_box, n_box))
    truth = rng.lognormal(18.0, 1.0, (3, n_box, n_box)).astype(np.float32)
    cat = pd.DataFrame({"x": [0.1], "y": [n_box * H - 0.1], "m200": [1e14]})  # near a corner
    seen = []
    res = P.paint(
        dmo, cat, _truth_sampler(truth, cat, seen), **_geometry(n_box), mass_min=1e13, batch_size=4
    )
    # The halo is nearest the box corner (0, 0): its cutout is the map rolled by n/2.
    rolled = np.roll(dmo, (N_CUT // 2, N_CUT // 2), axis=(0, 1))
    np.testing.assert_array_equal(seen[0][0][0, 0], rolled[:N_CUT, :N_CUT].astype(np.float32))
    # The flat zone straddles all four box edges and is the truth there.
    for iy, ix in [(0, 0), (0, n_box - 1), (n_box - 1, 0), (n_box - 1, n_box - 1), (2, 37)]:
        assert res.coverage[iy, ix] == 1.0
        np.testing.assert_allclose(res.maps[:, iy, ix], truth[:, iy, ix], rtol=1e-6)
    assert res.coverage[n_box // 2, n_box // 2] == 0.0  # the far side of the box is untouched


def test_memory_is_bounded_with_many_halos():
    n_box, n_halos, batch = 64, 2000, 32
    rng = np.random.default_rng(1)
    cat = pd.DataFrame(
        {
            "x": rng.uniform(0, n_box * H, n_halos),
            "y": rng.uniform(0, n_box * H, n_halos),
            "m200": 1e14,
        }
    )
    dmo = np.full((n_box, n_box), 1e10)
    batches = []

    def sample(cond, params, idx):
        batches.append(len(idx))
        return np.ones((len(idx), 1, 3, N_CUT, N_CUT), np.float32)

    tracemalloc.start()
    try:
        P.paint(dmo, cat, sample, **_geometry(n_box), mass_min=1e13, batch_size=batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    all_cutouts = n_halos * (1 + 3) * N_CUT**2 * 4  # float32 conditions + maps, 8 MB
    assert sum(batches) == n_halos and max(batches) == batch
    assert peak < 0.15 * all_cutouts, f"peak {peak / 2**20:.2f} MiB"


# --- Box mode -------------------------------------------------------------------------------


def test_box_mode_contract(box, tmp_path):
    cat = box.catalog
    assert box.dmo.shape == (64, 64) and box.hydro.shape == (3, 64, 64)
    assert box.dmo.dtype == box.hydro.dtype == np.float32
    assert np.isfinite(box.hydro).all() and (box.hydro >= 0).all() and (box.dmo > 0).all()
    assert list(cat.columns) == ["x", "y", "m200", *S.PARAM_NAMES] and len(cat) == 14
    assert ((cat[["x", "y"]] >= 0) & (cat[["x", "y"]] < box.box_size)).all().all()
    np.testing.assert_allclose(cat[["x", "y"]] / H, np.rint(cat[["x", "y"]] / H), atol=1e-9)
    assert cat["m200"].between(10**12.5, 10**14.5).all()
    assert (cat[list(S.PARAM_NAMES)].nunique() == 1).all()
    # Baryons are moved, not made: only the far tail of the ejected gas leaves the stamps.
    np.testing.assert_allclose(box.hydro.sum(), box.dmo.sum(), rtol=2e-3)
    again = simulate_box(simulator(resolution=N_CUT), n_pixels=64, n_halos=14, seed=3, batch_size=4)
    np.testing.assert_array_equal(again.hydro, box.hydro)
    paths = write_box(box, tmp_path)
    np.testing.assert_array_equal(np.load(paths["dmo"]), box.dmo)
    pd.testing.assert_frame_equal(pd.read_csv(paths["halos"]), cat, check_exact=False)


def _paint_box(box, dmo, catalog):
    return P.paint(
        dmo,
        catalog,
        _truth_sampler(box.hydro, box.catalog),
        **_geometry(64),
        mass_min=1e13,
        batch_size=4,
        param_names=S.PARAM_NAMES,
    )


# --- Bad input: one clear line ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d, c: (d, c.drop(columns="m200")), r"missing columns \['m200'\]"),
        (lambda d, c: (d, c.drop(columns="A_SN1")), r"missing parameter columns \['A_SN1'\]"),
        (lambda d, c: (d, c.assign(x=c["x"] + 30.0)), "halo row 0 at .* outside the box"),
        (lambda d, c: (d, c.assign(m200=-c["m200"])), "m200 row 0 must be positive"),
        (lambda d, c: (d[:, :48], c), r"must be square \(N, N\); got shape \(64, 48\)"),
        (lambda d, c: (np.where(np.eye(64) > 0, np.nan, d), c), r"NaN/inf at pixel \[0, 0\]"),
        (
            lambda d, c: (d[:32, :32], c),
            "box pixel 25/32 = 0.78125 Mpc/h differs from the model's 6.25/16 = 0.390",
        ),
    ],
)
def test_bad_inputs_are_one_line(box, mutate, message):
    with pytest.raises(P.PaintError, match=message) as err:
        _paint_box(box, *mutate(box.dmo, box.catalog))
    assert "\n" not in str(err.value)


def test_periodic_aperture_mass_wraps_and_counts_each_pixel_once():
    rng = np.random.default_rng(6)
    maps = rng.lognormal(0.0, 1.0, (2, 40, 40))
    # A circle across the corner of the box is the centred one on the box rolled to it.
    x, y, radius = 0.3 * H, 39.6 * H, 5.2 * H
    rolled = np.roll(maps, (20 - 40, 20), axis=(1, 2))  # (y, x) = (40, 0) → the map centre
    got = P.periodic_aperture_mass(maps, x, y, radius, H)
    want = aperture_mass(rolled, radius / H, centre=(20 - 0.4, 20 + 0.3))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # A circle wider than the box holds every pixel once (its image nearest the centre).
    np.testing.assert_allclose(
        P.periodic_aperture_mass(maps, x, y, 100 * H, H), maps.sum((1, 2)), rtol=1e-12
    )


# --- Inputs are checked once, where they enter -------------------------------------------------


@pytest.fixture
def checks(monkeypatch):
    """Counts of the DMO and catalogue checks run."""
    counts = {"dmo": 0, "catalog": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(painting_io, "_check_dmo", counting("dmo", painting_io._check_dmo))
    monkeypatch.setattr(
        painting_io, "_check_catalog", counting("catalog", painting_io._check_catalog)
    )
    return counts


def test_files_are_checked_once_when_read(box, tmp_path, checks):
    paths = write_box(box, tmp_path)
    dmo = P.read_dmo(paths["dmo"])
    catalog = P.read_catalog(paths["halos"], box_size=box.box_size, param_names=S.PARAM_NAMES)
    assert checks == {"dmo": 1, "catalog": 1} and len(catalog) == len(box.catalog)
    from_files = _paint_box(box, dmo, catalog)
    assert checks == {"dmo": 1, "catalog": 1}  # painting takes the checked values as they are
    # A catalogue checked for other parameter columns is checked again, for these.
    other = P.read_catalog(paths["halos"], box_size=box.box_size)
    _paint_box(box, dmo, other)
    assert checks == {"dmo": 1, "catalog": 3}
    # The same maps as from the arrays in memory.
    from_memory = _paint_box(box, box.dmo, box.catalog)
    np.testing.assert_array_equal(from_files.realizations, from_memory.realizations)


def test_python_objects_are_checked_once_when_painted(box, checks):
    _paint_box(box, box.dmo, box.catalog)
    assert checks == {"dmo": 1, "catalog": 1}


def test_read_errors_name_the_file(box, tmp_path):
    paths = write_box(box, tmp_path)
    with pytest.raises(P.PaintError, match=r"halos\.csv: missing parameter columns \['A'\]"):
        P.read_catalog(paths["halos"], box_size=box.box_size, param_names=("A",))
    with pytest.raises(P.PaintError, match=r"halos\.csv: halo row \d+ at .* outside the box"):
        P.read_catalog(paths["halos"], box_size=box.box_size / 2)
    np.save(paths["dmo"], -np.ones((4, 4)))
    with pytest.raises(P.PaintError, match=r"dmo\.npy: negative mass at pixel \[0, 0\]"):
        P.read_dmo(paths["dmo"])


# --- The model path and the command line (conftest's tiny project) ---------------------------


def _tiny_inputs(directory, n_box=48):
    """A 48² lognormal DMO map (the tiny project's condition scale) and four halos."""
    rng = np.random.default_rng(2)
    np.save(directory / "dmo.npy", rng.lognormal(20.0, 0.5, (n_box, n_box)))
    cat = pd.DataFrame(
        {
            "x": [0.2, 9.0, 9.5, 17.0],
            "y": [18.6, 9.0, 8.0, 3.0],
            "m200": [2e13, 5e13, 5e12, 1e14],
            "Omega_m": 0.5,
            "sigma_8": 0.5,
        }
    )
    cat.to_csv(directory / "halos.csv", index=False)
    return directory / "dmo.npy", directory / "halos.csv"


@pytest.fixture(scope="module")
def tiny_model(prepared, tmp_path_factory):
    """A consistency model two steps into training (the tiny denoiser's samples overflow)."""
    from halocm.config import load_config
    from halocm.stages.train import train

    models = tmp_path_factory.mktemp("paint") / "models"
    shutil.copytree(prepared / "models", models)
    cfg = load_config(prepared / "params.yaml", ["train.steps=2", f"paths.models_dir={models}"])
    return train(cfg)


def test_painting_with_a_generator_is_the_same_whatever_the_batch_size(tiny_model, tmp_path):
    from halocm.api import load_model

    gen = load_model(tiny_model, device="cpu")
    dmo, halos = _tiny_inputs(tmp_path)
    dmo, cat = np.load(dmo), pd.read_csv(halos)
    kw = {"box_size": 48 * H, "n_steps": 2, "mass_min": 1e13, "seed": 5, "n_realizations": 2}
    one = P.paint_with_generator(gen, dmo, cat, batch_size=1, **kw)
    three = P.paint_with_generator(gen, dmo, cat, batch_size=3, **kw)
    assert one.realizations.shape == (2, 3, 48, 48) and np.isfinite(one.realizations).all()
    # Same noise per halo; float32 kernels may differ by batch shape (≈1e-6 relative).
    np.testing.assert_allclose(one.realizations, three.realizations, rtol=2e-5)
    assert one.n_painted == 3 and one.halos["painted"].tolist() == [True, True, False, True]


runner = CliRunner()


def _paint(project, model, dmo, halos, out, box_size=48 * H, *extra):
    args = ["paint", "--params", project / "params.yaml", "--model", model, "--dmo", dmo]
    args += ["--halos", halos, "--box-size", box_size, "--out", out, "--set", "device=cpu"]
    return runner.invoke(app, [str(a) for a in [*args, *extra]])


def test_paint_from_the_command_line(prepared, tiny_model, tmp_path):
    dmo, halos = _tiny_inputs(tmp_path)
    out = tmp_path / "painted.npz"
    extra = ["--steps", 2, "--mass-min", 1e13, "--batch-size", 2]
    result = _paint(prepared, tiny_model, dmo, halos, out, 48 * H, *extra)
    assert result.exit_code == 0, result.output
    assert "painted 3/4 halos" in result.output
    with np.load(out, allow_pickle=False) as z:
        assert z["maps"].shape == (3, 48, 48) and z["coverage"].shape == (48, 48)
        assert z["channel_names"].tolist() == ["dm_hydro", "gas", "stars"]
        assert z["halos"]["painted"].tolist() == [True, True, False, True]
    table = pd.read_csv(tmp_path / "painted_halos.csv")
    assert {"x", "y", "m200", "painted", "mass_r200_gas"} <= set(table.columns)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("columns", r"halos.csv: missing columns \['m200'\]"),
        ("outside", r"halos.csv: halo row 1 at \(x, y\) = \(90, 9\) Mpc/h lies outside the box"),
        ("square", r"dmo.npy: the DMO map must be square \(N, N\); got shape \(48, 40\)"),
        ("box_size", "box pixel 30/48 = 0.625 Mpc/h differs from the model's 6.25/16"),
    ],
)
def test_bad_paint_inputs_are_one_line_from_the_command_line(prepared, tmp_path, case, message):
    dmo, halos = _tiny_inputs(tmp_path)
    box_size = 30.0 if case == "box_size" else 48 * H
    if case == "columns":
        pd.read_csv(halos).drop(columns="m200").to_csv(halos, index=False)
    if case == "outside":
        pd.read_csv(halos).assign(x=[0.2, 90.0, 9.5, 17.0]).to_csv(halos, index=False)
    if case == "square":
        np.save(dmo, np.load(dmo)[:, :40])
    out = tmp_path / "painted.npz"
    result = _paint(prepared, prepared / "models/denoiser.pt", dmo, halos, out, box_size)
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("halocm paint: error: "), result.output
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()
