"""Halo-grouped splits (no leakage) and the loader of prepared split files."""

from __future__ import annotations

import numpy as np
import pytest

from halocm.data.dataset import load_split, split_by_group
from halocm.data.sources import DataError


def _check_partition(group, splits):
    idx = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(idx), np.arange(len(group)))  # each map once
    owner = {}
    for name, index in splits.items():
        assert len(index) > 0, name
        for g in np.unique(group[index]):
            assert owner.setdefault(int(g), name) == name, f"group {g} straddles splits"


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_groups_never_straddle_and_fractions_hold(seed):
    group = np.repeat(np.arange(200), 5)  # e.g. 5 tiles per simulation
    splits = split_by_group(group, (0.8, 0.1, 0.1), seed)
    _check_partition(group, splits)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [800, 100, 100]


def test_unequal_groups_fractions_approximately_respected():
    rng = np.random.default_rng(3)
    group = rng.permutation(np.repeat(np.arange(300), rng.integers(1, 6, 300)))
    splits = split_by_group(group, (0.7, 0.2, 0.1), seed=5)
    _check_partition(group, splits)
    frac = np.array([len(splits[k]) for k in ("train", "val", "test")]) / len(group)
    np.testing.assert_allclose(frac, [0.7, 0.2, 0.1], atol=0.01)


def test_split_is_deterministic_for_a_seed():
    group = np.arange(50) // 2
    a = split_by_group(group, (0.6, 0.2, 0.2), seed=11)
    b = split_by_group(group, (0.6, 0.2, 0.2), seed=11)
    c = split_by_group(group, (0.6, 0.2, 0.2), seed=12)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_three_groups_fill_three_splits():
    group = np.array([5, 5, 5, 5, 9, 2, 2])
    splits = split_by_group(group, (0.98, 0.01, 0.01), seed=0)
    _check_partition(group, splits)


@pytest.mark.parametrize(("n_groups", "empty"), [(1, "val"), (2, "test")])
def test_too_few_groups_names_the_empty_split(n_groups, empty):
    group = np.repeat(np.arange(n_groups), 4)
    with pytest.raises(DataError, match=rf"d\.npz: key 'group': split '{empty}' would be empty"):
        split_by_group(group, (0.8, 0.1, 0.1), seed=0, origin="d.npz")


def test_load_split_returns_every_array(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "condition": rng.normal(size=(6, 1, 8, 8)).astype(np.float32),
        "target": rng.normal(size=(6, 3, 8, 8)).astype(np.float32),
        "params": rng.normal(size=(6, 2)).astype(np.float32),
        "group": np.arange(6),
        "halo_mass": rng.uniform(1e12, 1e14, 6),  # physical extras travel with the split
    }
    np.savez(tmp_path / "train.npz", **arrays)
    split = load_split(tmp_path / "train.npz")
    assert set(split) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(split[key], value)
        assert split[key].dtype == value.dtype, key


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match=r"test\.npz: file not found"):
        load_split(tmp_path / "test.npz")
    np.savez(tmp_path / "x.npz", condition=np.zeros((1, 1, 8, 8)))
    with pytest.raises(DataError, match=r"x\.npz: key 'target' missing"):
        load_split(tmp_path / "x.npz")
