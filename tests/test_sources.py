"""Data contracts of the readers: external .npz and CAMELS CMD (docs/design.md §4)."""

from __future__ import annotations

import numpy as np
import pytest

from halocm.data.sources import (
    CAMELS_PARAM_NAMES,
    DataError,
    camels_map_path,
    camels_params_path,
    load_source,
    read_camels_cmd,
    read_npz,
    validate,
)


def _arrays(n=6, side=8, n_params=2, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "condition": rng.lognormal(20, 1, (n, 1, side, side)),
        "target": rng.lognormal(18, 1, (n, 3, side, side)),
        "params": rng.uniform(0, 1, (n, n_params)),
        "group": np.arange(n) // 2,
        "halo_mass": rng.uniform(1e12, 1e14, n),
        "r200": rng.uniform(0.1, 1.0, n),
        "truth_realizations": rng.lognormal(18, 1, (n, 2, 3, side, side)),
    }


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_read_npz_keeps_arrays_and_extras(tmp_path):
    a = _arrays()
    raw = read_npz(_write(tmp_path / "d.npz", **a, box_size=3.0, param_names=["om", "s8"]))
    np.testing.assert_array_equal(raw.condition, a["condition"])
    np.testing.assert_array_equal(raw.target, a["target"])
    np.testing.assert_array_equal(raw.group, a["group"])
    assert raw.param_names == ["om", "s8"]
    assert raw.channel_names == ["dm_hydro", "gas", "stars"]
    assert raw.condition_names == ["dmo"]
    assert raw.box_size == 3.0
    assert set(raw.extras) == {"halo_mass", "r200", "truth_realizations"}
    assert raw.origin == str(tmp_path / "d.npz")


def test_read_npz_defaults_for_optional_keys(tmp_path):
    a = _arrays(n=4)
    raw = read_npz(_write(tmp_path / "d.npz", condition=a["condition"], target=a["target"]))
    assert raw.params.shape == (4, 0) and raw.param_names == []
    np.testing.assert_array_equal(raw.group, np.arange(4))  # one group per map
    assert raw.box_size == 6.25
    assert raw.extras == {}


def _bad(a, key, index, value):
    a[key] = a[key].copy()
    a[key][index] = value
    return a


@pytest.mark.parametrize(
    ("key", "index", "value", "words"),
    [
        ("target", (3, 1, 2, 2), np.nan, "NaN"),
        ("condition", (4, 0, 0, 5), np.inf, "inf"),
        ("target", (2, 2, 0, 0), -1.0, "negative mass"),
        ("condition", (5, 0, 7, 7), -3.0, "negative mass"),
        ("params", (1, 0), np.nan, "NaN"),
        ("halo_mass", (2,), -1.0, "negative mass"),
        ("truth_realizations", (4, 1, 0, 0, 0), np.inf, "inf"),
    ],
)
def test_bad_values_name_file_key_and_first_index(tmp_path, key, index, value, words):
    a = _arrays()
    a = _bad(a, key, index, value)
    if index[0] + 1 < len(a[key]):  # a later bad row must not hide the first
        a = _bad(a, key, (index[0] + 1, *index[1:]), value)
    path = _write(tmp_path / "bad.npz", **a)
    with pytest.raises(DataError) as err:
        read_npz(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{key}'" in msg and f"index {index[0]}" in msg
    assert words in msg
    assert "\n" not in msg


def test_negative_params_are_allowed(tmp_path):
    a = _arrays()
    a["params"] = a["params"] - 5.0
    assert read_npz(_write(tmp_path / "d.npz", **a)).params.min() < 0


def test_wrong_rank(tmp_path):
    a = _arrays()
    a["condition"] = a["condition"][:, 0]
    path = _write(tmp_path / "d.npz", **a)
    with pytest.raises(DataError, match=r"d\.npz: key 'condition': wrong rank.*4-D"):
        read_npz(path)


@pytest.mark.parametrize("key", ["target", "params", "group", "halo_mass", "truth_realizations"])
def test_mismatched_n(tmp_path, key):
    a = _arrays(n=6)
    a[key] = a[key][:4]
    path = _write(tmp_path / "d.npz", **a)
    with pytest.raises(DataError) as err:
        read_npz(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{key}' index 4" in msg and "mismatched N" in msg


def test_map_shape_mismatch(tmp_path):
    a = _arrays(side=8)
    a["target"] = a["target"][..., :4, :4]
    with pytest.raises(DataError, match=r"d\.npz: key 'target' index 0: map shape 4x4 .* 8x8"):
        read_npz(_write(tmp_path / "d.npz", **a))


def test_non_square_maps_are_rejected(tmp_path):
    a = _arrays(side=8)
    a["condition"] = a["condition"][..., :6]
    a["target"] = a["target"][..., :6]
    a.pop("truth_realizations")
    with pytest.raises(DataError, match=r"key 'condition' index 0: maps must be square, got 8x6"):
        read_npz(_write(tmp_path / "d.npz", **a))


@pytest.mark.parametrize("key", ["condition", "target"])
def test_missing_required_key(tmp_path, key):
    a = _arrays()
    a.pop(key)
    with pytest.raises(DataError, match=rf"d\.npz: key '{key}' missing"):
        read_npz(_write(tmp_path / "d.npz", **a))


def test_missing_or_corrupt_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npz: file not found"):
        read_npz(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz"):
        read_npz(tmp_path / "junk.npz")
    a = _arrays()
    a["params"] = np.array([{"omega_m": 0.3}] * 6, dtype=object)
    with pytest.raises(DataError, match=r"obj\.npz: key 'params': holds Python objects"):
        read_npz(_write(tmp_path / "obj.npz", **a))


def test_names_of_wrong_length_and_bad_group(tmp_path):
    a = _arrays()
    with pytest.raises(DataError, match=r"key 'channel_names': 2 names for 3 target channels"):
        read_npz(_write(tmp_path / "a.npz", **a, channel_names=["gas", "stars"]))
    a["group"] = a["group"] + 0.5
    with pytest.raises(DataError, match=r"b\.npz: key 'group': expected integers"):
        read_npz(_write(tmp_path / "b.npz", **a))


def test_validate_on_raw_data(tmp_path):
    raw = read_npz(_write(tmp_path / "d.npz", **_arrays()))
    raw.target[5, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"key 'target' index 5: NaN"):
        validate(raw)


# ------------------------------------------------------------------------------ CAMELS CMD

SUITE, SET = "IllustrisTNG", "LH"


def _write_camels(directory, n_sims=2, side=64, seed=0):
    """Tiny files in the exact CAMELS CMD layout: 15 maps per simulation."""
    rng = np.random.default_rng(seed)
    n = 15 * n_sims
    fields = {
        ("Mtot", f"Nbody_{SUITE}"): rng.lognormal(24, 1, (n, side, side)).astype(np.float32),
        ("Mcdm", SUITE): rng.lognormal(24, 1, (n, side, side)).astype(np.float32),
        ("Mgas", SUITE): rng.lognormal(23, 1, (n, side, side)).astype(np.float32),
        ("Mstar", SUITE): rng.lognormal(20, 2, (n, side, side)).astype(np.float32),
    }
    for (name, suite), maps in fields.items():
        np.save(camels_map_path(directory, name, suite, SET), maps)
    params = rng.uniform(0.1, 4.0, (n_sims, 6))
    np.savetxt(camels_params_path(directory, SUITE, SET), params)
    return fields, params


def test_camels_layout_tiles_groups_units(tmp_path):
    fields, params = _write_camels(tmp_path, n_sims=2, side=64)
    raw = read_camels_cmd(tmp_path, SUITE, SET, crop=32)
    n_tiles = 2 * 15 * 4
    assert raw.condition.shape == (n_tiles, 1, 32, 32)
    assert raw.target.shape == (n_tiles, 3, 32, 32)
    assert raw.params.shape == (n_tiles, 6)
    assert raw.param_names == list(CAMELS_PARAM_NAMES)
    assert raw.box_size == pytest.approx(25.0 * 32 / 64)
    # Simulation s owns maps 15s..15s+14 and all their tiles.
    np.testing.assert_array_equal(raw.group, np.repeat([0, 1], 15 * 4))
    np.testing.assert_allclose(raw.params[60], params[1], rtol=1e-12)

    pixel_area = (25.0 / 64) ** 2
    mtot = fields[("Mtot", f"Nbody_{SUITE}")]
    # Tile 3 of map 17 is its bottom-right quarter; values are Σ × pixel area.
    np.testing.assert_allclose(
        raw.condition[17 * 4 + 3, 0], mtot[17, 32:, 32:] * pixel_area, rtol=1e-6
    )
    mgas = fields[("Mgas", SUITE)]
    np.testing.assert_allclose(raw.target[5 * 4 + 1, 1], mgas[5, :32, 32:] * pixel_area, rtol=1e-6)
    # Mass is conserved by tiling: total over tiles = Σ-sum × pixel area.
    np.testing.assert_allclose(raw.target[:, 2].sum(), mstar_total(fields) * pixel_area, rtol=1e-5)


def mstar_total(fields):
    return fields[("Mstar", SUITE)].astype(np.float64).sum()


def test_camels_crop_remainder_is_dropped(tmp_path):
    _write_camels(tmp_path, n_sims=1, side=64)
    raw = read_camels_cmd(tmp_path, SUITE, SET, crop=24)  # 64 // 24 = 2 tiles per side
    assert raw.condition.shape == (15 * 4, 1, 24, 24)
    assert raw.box_size == pytest.approx(25.0 * 24 / 64)


def test_camels_missing_file_is_named(tmp_path):
    _write_camels(tmp_path, n_sims=1, side=16)
    missing = camels_map_path(tmp_path, "Mgas", SUITE, SET)
    missing.unlink()
    with pytest.raises(DataError) as err:
        read_camels_cmd(tmp_path, SUITE, SET, crop=8)
    assert str(err.value) == f"{missing}: file not found"
    with pytest.raises(DataError, match="directory not found"):
        read_camels_cmd(tmp_path / "absent", SUITE, SET, crop=8)


def test_camels_params_rows_must_match_maps(tmp_path):
    _write_camels(tmp_path, n_sims=2, side=16)
    np.savetxt(camels_params_path(tmp_path, SUITE, SET), np.ones((3, 6)))
    with pytest.raises(DataError, match=r"Maps_Mtot_Nbody_IllustrisTNG_LH.*index 30.*mismatched N"):
        read_camels_cmd(tmp_path, SUITE, SET, crop=8)


def test_camels_nan_reports_tile_index(tmp_path):
    fields, _ = _write_camels(tmp_path, n_sims=1, side=16)
    mcdm = fields[("Mcdm", SUITE)]
    mcdm[2, 9, 1] = np.nan  # map 2, bottom-left quarter → tile 2*4 + 2
    np.save(camels_map_path(tmp_path, "Mcdm", SUITE, SET), mcdm)
    with pytest.raises(DataError, match=r"key 'target' index 10: NaN"):
        read_camels_cmd(tmp_path, SUITE, SET, crop=8)


# -------------------------------------------------------------------------------- dispatch


CAMELS = {"camels_suite": SUITE, "camels_set": SET, "crop": 8}


def test_load_source_dispatch(tmp_path):
    _write(tmp_path / "synthetic.npz", **_arrays(n=5))
    assert load_source("synthetic", tmp_path / "synthetic.npz", **CAMELS).n_maps == 5

    _write(tmp_path / "ext.npz", **_arrays(n=7))
    assert load_source("npz", tmp_path / "ext.npz", **CAMELS).n_maps == 7

    _write_camels(tmp_path, n_sims=1, side=16)
    assert load_source("camels_cmd", tmp_path, **CAMELS).n_maps == 15 * 4
    with pytest.raises(DataError, match=r"data.source='hdf5': allowed: 'synthetic', 'npz'"):
        load_source("hdf5", tmp_path, **CAMELS)


def test_load_source_synthetic_missing(tmp_path):
    with pytest.raises(DataError, match=r"synthetic\.npz: file not found \(run `halocm generate`"):
        load_source("synthetic", tmp_path / "synthetic.npz", **CAMELS)
