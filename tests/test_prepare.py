"""The prepare stage end to end on tiny files in tmp_path (halocm.stages.prepare)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_config

from halocm.data.dataset import load_split
from halocm.data.normalize import NormStats, denormalize_target
from halocm.data.sources import DataError, camels_map_path, camels_params_path
from halocm.stages.prepare import prepare

SPLITS = ("train", "val", "test")


def _source(n=40, side=8, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "condition": rng.lognormal(20, 1, (n, 1, side, side)),
        "target": rng.lognormal(18, 1, (n, 3, side, side)),
        "params": rng.uniform(0.1, 1.0, (n, 4)),
        "group": np.arange(n) // 2,
        "halo_mass": rng.uniform(1e12, 1e14, n),
        "r200": rng.uniform(0.1, 1.0, n),
        "truth_realizations": rng.lognormal(18, 1, (n, 2, 3, side, side)),
        "box_size": np.array(6.25),
    }


def _cfg(tmp_path, src, processed="processed", **data):
    return tiny_config(
        {
            "seed": 3,
            "paths": {"raw_dir": str(tmp_path / "raw"), "processed_dir": str(tmp_path / processed)},
            "data": {"source": "npz", "path": str(src), **data},
        }
    )


def test_prepare_writes_normalised_grouped_splits(tmp_path):
    src = tmp_path / "ext.npz"
    arrays = _source()
    np.savez(src, **arrays)
    out = prepare(_cfg(tmp_path, src))
    assert out == tmp_path / "processed"
    assert sorted(p.name for p in out.iterdir()) == [
        "norm_stats.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    stats = NormStats.load(out / "norm_stats.json")
    seen = []
    for name in SPLITS:
        split = load_split(out / f"{name}.npz")
        idx = split["index"]
        seen.append(idx)
        for key in ("condition", "target", "params"):
            assert split[key].dtype == np.float32
        assert split["params"].shape == (len(idx), 4)
        # Extras stay physical; targets invert back to the source.
        np.testing.assert_array_equal(split["halo_mass"], arrays["halo_mass"][idx])
        np.testing.assert_array_equal(
            split["truth_realizations"], arrays["truth_realizations"][idx]
        )
        back = denormalize_target(split["target"].astype(np.float64), stats)
        np.testing.assert_allclose(back, arrays["target"][idx], rtol=1e-5)
        assert len(split["target"]) == len(split["condition"]) == len(idx)
    # Every map exactly once; no group in two splits; 80/10/10 of 20 pairs.
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(40))
    groups = [set(arrays["group"][i]) for i in seen]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert [len(i) for i in seen] == [32, 4, 4]
    # The training split is standardised (its own statistics).
    train = load_split(out / "train.npz")
    np.testing.assert_allclose(train["target"].mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(train["params"].std(axis=0), 1.0, rtol=1e-5)
    assert json.loads((out / "norm_stats.json").read_text())["box_size"] == 6.25
    assert not list(out.glob(".*.tmp"))


def test_statistics_come_from_the_training_split_only(tmp_path):
    arrays = _source()
    np.savez(tmp_path / "a.npz", **arrays)
    out_a = prepare(_cfg(tmp_path, tmp_path / "a.npz", processed="pa"))
    held_out = np.concatenate([load_split(out_a / f"{s}.npz")["index"] for s in ("val", "test")])

    # Change every val/test map and parameter wildly; train is untouched.
    for key in ("condition", "target", "params"):
        arrays[key] = arrays[key].copy()
        arrays[key][held_out] *= 1000.0
    np.savez(tmp_path / "b.npz", **arrays)
    out_b = prepare(_cfg(tmp_path, tmp_path / "b.npz", processed="pb"))

    assert NormStats.load(out_a / "norm_stats.json") == NormStats.load(out_b / "norm_stats.json")
    train_a, train_b = load_split(out_a / "train.npz"), load_split(out_b / "train.npz")
    np.testing.assert_array_equal(train_a["target"], train_b["target"])
    val_a, val_b = load_split(out_a / "val.npz"), load_split(out_b / "val.npz")
    assert not np.allclose(val_a["target"], val_b["target"])


def test_invalid_input_stops_prepare_and_writes_nothing(tmp_path):
    arrays = _source()
    arrays["target"][17, 1, 3, 3] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=r"bad\.npz: key 'target' index 17: NaN"):
        prepare(_cfg(tmp_path, tmp_path / "bad.npz"))
    assert not (tmp_path / "processed").exists()


def test_too_few_groups_stops_prepare(tmp_path):
    arrays = _source(n=6)
    arrays["group"] = np.array([0, 0, 0, 1, 1, 1])
    np.savez(tmp_path / "two.npz", **arrays)
    with pytest.raises(DataError, match=r"two\.npz: key 'group': split 'test' would be empty"):
        prepare(_cfg(tmp_path, tmp_path / "two.npz"))


def test_prepare_from_synthetic_raw_dir(tmp_path):
    (tmp_path / "raw").mkdir()
    np.savez(tmp_path / "raw" / "synthetic.npz", **_source(n=20))
    cfg = tiny_config(
        {
            "paths": {
                "raw_dir": str(tmp_path / "raw"),
                "processed_dir": str(tmp_path / "processed"),
            },
            "data": {"source": "synthetic"},
        }
    )
    out = prepare(cfg)
    n = sum(len(load_split(out / f"{s}.npz")["index"]) for s in SPLITS)
    assert n == 20


def test_prepare_from_camels_cmd(tmp_path):
    suite, set_name, n_sims, side = "SIMBA", "LH", 3, 16
    rng = np.random.default_rng(0)
    for name, s in (("Mtot", f"Nbody_{suite}"), ("Mcdm", suite), ("Mgas", suite), ("Mstar", suite)):
        maps = rng.lognormal(22, 1, (15 * n_sims, side, side)).astype(np.float32)
        np.save(camels_map_path(tmp_path, name, s, set_name), maps)
    np.savetxt(camels_params_path(tmp_path, suite, set_name), rng.uniform(0.1, 4, (n_sims, 6)))
    cfg = _cfg(tmp_path, tmp_path, source="camels_cmd", camels_suite=suite, crop=8)
    out = prepare(cfg)
    sizes = [len(load_split(out / f"{s}.npz")["group"]) for s in SPLITS]
    assert sizes == [60, 60, 60]  # one simulation (15 maps x 4 tiles) per split
    stats = NormStats.load(out / "norm_stats.json")
    assert stats.box_size == pytest.approx(25.0 * 8 / 16)
    assert stats.param_names[:2] == ["Omega_m", "sigma_8"]
