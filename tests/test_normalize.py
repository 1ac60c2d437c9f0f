"""log10(1+x/x0) z-score normalisation: the softening scale, exact inverse, dtype/device kept,
statistics persisted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from halocm.data.normalize import (
    NormStats,
    denormalize_condition,
    denormalize_params,
    denormalize_target,
    fit_stats,
    generated_target,
    normalize_condition,
    normalize_params,
    normalize_target,
)
from halocm.data.sources import RawData


def _raw(n=10, side=8, seed=0) -> RawData:
    rng = np.random.default_rng(seed)
    target = rng.lognormal(18, 2, (n, 3, side, side))
    target[:, 2, :4] = 0.0  # empty pixels (no stars) must survive the round trip
    return RawData(
        condition=rng.lognormal(20, 1, (n, 2, side, side)),
        target=target,
        params=rng.uniform([0.1, 0.6], [0.5, 1.0], (n, 2)),
        param_names=["Omega_m", "sigma_8"],
        channel_names=["dm_hydro", "gas", "stars"],
        group=np.arange(n),
        box_size=6.25,
        origin="test",
        condition_names=["dmo", "context_1"],
    )


def test_fit_stats_standardises_the_training_maps():
    raw = _raw()
    stats = fit_stats(raw)
    y = normalize_target(raw.target, stats)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-10)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1.0, rtol=1e-10)
    c = normalize_condition(raw.condition, stats)
    np.testing.assert_allclose(c.mean(axis=(0, 2, 3)), 0.0, atol=1e-10)
    q = normalize_params(raw.params, stats)
    np.testing.assert_allclose(q.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(q.std(axis=0), 1.0, rtol=1e-10)
    # The documented formula, written out for one channel.
    expected = (np.log10(1 + raw.target[:, 1]) - stats.target_mean[1]) / stats.target_std[1]
    np.testing.assert_allclose(y[:, 1], expected, rtol=1e-12, atol=1e-12)


def test_softening_scale_is_the_mass_weighted_quantile():
    raw = _raw(n=1, side=10)
    ramp = np.random.default_rng(1).permutation(np.arange(1.0, 101.0)).reshape(10, 10)
    raw.target[0, 2] = ramp
    stats = fit_stats(raw, {"stars": 0.1})
    # Pixels 1..31 hold 496/5050 < 10% of the mass, pixels 1..32 hold 528/5050 > 10%.
    assert stats.target_softening == [1.0, 1.0, 32.0]
    y = normalize_target(raw.target, stats)
    expected = (np.log10(1 + ramp / 32.0) - stats.target_mean[2]) / stats.target_std[2]
    np.testing.assert_allclose(y[0, 2], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y[:, 2].std(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(denormalize_target(y, stats), raw.target, rtol=1e-12)


def test_a_generated_map_below_the_transforms_zero_is_zero_mass():
    stats = fit_stats(_raw(), {"stars": 0.1})
    x = np.full((2, 3, 1, 2), 5e7)
    x[:, 2, 0, 0] = 0.0
    y = normalize_target(x, stats)
    # A generator's noise around an empty pixel: half below the transform's zero.
    y[0, 2, 0, 0] -= 0.01
    y[1, 2, 0, 0] += 0.01
    assert denormalize_target(y, stats)[0, 2, 0, 0] < 0.0
    got = generated_target(y, stats)
    assert got[0, 2, 0, 0] == 0.0 and got[1, 2, 0, 0] > 0.0
    np.testing.assert_allclose(got[:, :2], x[:, :2], rtol=1e-12)
    np.testing.assert_allclose(got[:, 2, 0, 1], x[:, 2, 0, 1], rtol=1e-12)
    torch.testing.assert_close(generated_target(torch.as_tensor(y), stats), torch.as_tensor(got))


def test_softening_of_an_unknown_channel_is_refused():
    with pytest.raises(ValueError, match=r"no target channel named \['star'\]"):
        fit_stats(_raw(), {"star": 0.01})


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 2e-5)], ids=["f64", "f32"]
)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_round_trip_is_exact(dtype, rtol, backend):
    raw = _raw()
    stats = fit_stats(raw)
    x, cond, p = (a.astype(dtype) for a in (raw.target, raw.condition, raw.params))
    if backend == "torch":
        x, cond, p = (torch.from_numpy(a) for a in (x, cond, p))
    y = normalize_target(x, stats)
    assert y.dtype == x.dtype and type(y) is type(x)
    back = denormalize_target(y, stats)
    back_c = denormalize_condition(normalize_condition(cond, stats), stats)
    back_p = denormalize_params(normalize_params(p, stats), stats)
    for got, want in ((back, x), (back_c, cond), (back_p, p)):
        got, want = np.asarray(got), np.asarray(want)
        assert got.dtype == want.dtype
        scale = np.abs(want).max()  # zeros come back to within float error of the scale
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-6 * scale)
    # Zero mass stays (essentially) zero: expm1/log1p, not 10**y - 1 on large numbers.
    assert np.abs(np.asarray(back)[:, 2, :4]).max() < 1e-3


def test_inverse_of_normalised_values_too():
    stats = fit_stats(_raw())
    y = np.random.default_rng(1).normal(size=(4, 3, 8, 8))
    np.testing.assert_allclose(normalize_target(denormalize_target(y, stats), stats), y, atol=1e-9)


def test_batched_leading_axes_and_torch_device():
    stats = fit_stats(_raw())
    x = torch.rand(2, 5, 3, 8, 8, dtype=torch.float64) * 1e12  # (..., C, H, W)
    y = normalize_target(x, stats)
    assert y.shape == x.shape and y.device == x.device
    torch.testing.assert_close(denormalize_target(y, stats), x, rtol=1e-10, atol=1e-3)


def test_channel_count_is_checked():
    stats = fit_stats(_raw())
    with pytest.raises(ValueError, match=r"target: expected 3 channels on axis -3"):
        normalize_target(np.ones((2, 2, 8, 8)), stats)
    with pytest.raises(ValueError, match=r"params: expected 2 columns"):
        normalize_params(np.ones((2, 3)), stats)


def test_constant_channel_and_no_params():
    raw = _raw()
    raw.target[:, 2] = 0.0
    raw.params = np.zeros((raw.n_maps, 0))
    raw.param_names = []
    stats = fit_stats(raw)
    assert stats.target_std[2] == 1.0 and stats.target_mean[2] == 0.0
    y = normalize_target(raw.target, stats)
    assert np.isfinite(y).all() and np.all(y[:, 2] == 0.0)
    assert normalize_params(raw.params, stats).shape == (raw.n_maps, 0)


def test_json_round_trip(tmp_path):
    stats = fit_stats(_raw())
    d = stats.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON containers
    path = stats.save(tmp_path / "sub" / "norm_stats.json")
    assert NormStats.load(path) == stats
    assert NormStats.from_dict(d) == stats
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: unreadable"):
        NormStats.load(bad)
    d = fit_stats(_raw()).to_dict()
    d.pop("target_std")
    with pytest.raises(ValueError, match="missing keys"):
        NormStats.from_dict(d)
    d = fit_stats(_raw()).to_dict()
    d["target_std"] = [1.0]
    with pytest.raises(ValueError, match="target has 3 means, 1 stds"):
        NormStats.from_dict(d)
