"""Periodic fields: coloured noise has the variance its filter says, smoothing conserves the
total, and cut/paste wrap around the box."""

from __future__ import annotations

import numpy as np
import pytest

from halocm.data import fields


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((64, 32, 32)).astype(np.float32)


def test_gaussian_filter_colours_white_noise_to_unit_variance(noise):
    g = fields.colour(noise, fields.gaussian_filter(32, 0.2, 0.5)[None])
    # 64 maps, each with ~ (32 · 0.2 / 0.5)² ≈ 160 independent patches: σ(var) ≈ 0.02.
    assert g.var() == pytest.approx(1.0, abs=0.1)
    assert abs(g.mean(axis=(1, 2))).max() < 1e-5  # no k = 0 mode


def test_power_law_filter_variance_is_that_of_the_coloured_noise(noise):
    filt, variance = fields.power_law_filter(32, 0.2, 0.5, -2.5)
    g = fields.colour(noise, filt[None])
    assert g.var() == pytest.approx(variance, rel=0.15)
    # Power at the fundamental over power at 4x it: the k^-2.5 slope, 4^2.5 = 32.
    f = np.abs(np.fft.rfft2(g)) ** 2
    assert f[:, 0, 1].mean() / f[:, 0, 4].mean() == pytest.approx(32.0, rel=0.5)


def test_a_white_turn_below_k_flat_bounds_the_variance_whatever_the_field_side():
    # The simulator's background: a 2n field of a 6.25 Mpc/h cutout has no mode below π/d.
    h, k_flat = 6.25 / 32, np.pi / 6.25
    pure = {m: fields.power_law_filter(m, h, 0.5, -2.5)[1] for m in (64, 512)}
    turned = {m: fields.power_law_filter(m, h, 0.5, -2.5, k_flat)[1] for m in (64, 512)}
    assert turned[64] == pure[64]
    assert pure[512] > 3 * pure[64]  # k^-2.5 in 2D: the variance grows with the side
    assert turned[512] == pytest.approx(turned[64], rel=0.05)
    filt, _ = fields.power_law_filter(512, h, 0.5, -2.5, k_flat)
    k = fields.wavenumbers(512, h)
    assert np.ptp(filt[(k > 0) & (k <= k_flat)]) < 1e-6 * filt.max()  # white below the turn


def test_smoothing_conserves_the_periodic_total(noise):
    field = np.exp(noise[:3]).astype(np.float64)
    smoothed = fields.smooth(field, np.array([0.1, 0.3, 1.0]), 0.2)
    np.testing.assert_allclose(smoothed.sum((1, 2)), field.sum((1, 2)), rtol=1e-6)
    assert smoothed[2].std() < smoothed[0].std() < field[0].std()


def test_block_mean_and_central():
    x = np.arange(2 * 8 * 8, dtype=float).reshape(2, 8, 8)
    np.testing.assert_array_equal(fields.block_mean(x, 4)[1, 0, 1], x[1, :4, 4:].mean())
    np.testing.assert_array_equal(fields.block_mean(x[0], 2), fields.block_mean(x, 2)[0])
    np.testing.assert_array_equal(fields.central(x, 4), x[:, 2:6, 2:6])


def test_cut_and_paste_wrap_around_the_box():
    field = np.arange(36.0).reshape(6, 6)
    window = fields.cut(field, -1, 4, 3)  # rows 5, 0, 1 and columns 4, 5, 0
    np.testing.assert_array_equal(window, field[np.ix_([5, 0, 1], [4, 5, 0])])
    out = np.zeros((2, 6, 6))
    fields.paste(out, np.ones((2, 3, 3)), -1, 4)
    fields.paste(out, np.ones((2, 3, 3)), 5, 10)  # the same window, shifted by the box
    assert out.sum() == 2 * 2 * 9 and out[1, 5, 0] == 2.0 and out[0, 2, 2] == 0.0
