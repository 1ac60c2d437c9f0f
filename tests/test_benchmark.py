"""Scoring a benchmark row: pk_err and rk_err averaged over the row's draws, the other metrics
of draw 0, and how many draws each row gets."""

from __future__ import annotations

import numpy as np
import pytest

from halocm.evaluation import benchmark as B
from halocm.evaluation import metrics

BOX = 25.0
NAMES = ["dm_hydro", "gas", "stars"]


def _test_set(target: np.ndarray) -> B.TestSet:
    n = len(target)
    return B.TestSet(
        condition=target[:, :1],
        target=target,
        cond_norm=None,
        params_norm=None,
        r200_pix=np.full(n, 4.0),
        oracle=None,
        box_size=BOX,
        channel_names=NAMES,
    )


@pytest.fixture
def maps():
    """Truth (N, C, H, W) and two draws that differ from it and from each other."""
    rng = np.random.default_rng(0)
    truth = rng.lognormal(0.0, 0.5, size=(6, 3, 16, 16))
    other = rng.lognormal(0.0, 0.5, size=(6, 3, 16, 16))
    return truth, other


def test_scores_of_identical_draws_are_those_of_one_draw(maps):
    truth, other = maps
    test = _test_set(truth)
    one = B.score_channels(other[:, None], test)
    four = B.score_channels(np.repeat(other[:, None], 4, axis=1), test)
    for name in [*NAMES, "total"]:
        for key in one[name]:
            assert four[name][key] == pytest.approx(one[name][key], abs=1e-12), (name, key)
        assert four[name]["pk_err_sd"] == pytest.approx(0.0, abs=1e-12)
        assert "pk_err_sd" not in one[name] and "coverage_50" not in one[name]


def test_pk_and_rk_err_are_means_over_draws_the_rest_is_draw_zero(maps):
    truth, other = maps
    test = _test_set(truth)
    # Draw 0 is the truth itself (pk_err 0, rk_err 0); draw 1 another field.
    row = B.score_channels(np.stack([truth, other], axis=1), test)
    first = B.score_channels(truth[:, None], test)
    for c, name in enumerate(NAMES):
        pk1 = metrics.pk_error(other[:, c], truth[:, c], BOX)
        rk1 = metrics.rk_error(other[:, c], truth[:, c], BOX)
        assert pk1 > 0.05 and rk1 > 0.05
        assert row[name]["pk_err"] == pytest.approx(pk1 / 2)
        assert row[name]["rk_err"] == pytest.approx(rk1 / 2)
        # The sample sd of two scores {0, s} is s / √2.
        assert row[name]["pk_err_sd"] == pytest.approx(pk1 / np.sqrt(2))
        for key in ("ssim", "psnr", "pdf_dist", "mass_bias", "aperture_scatter"):
            assert row[name][key] == first[name][key], (name, key)
    total_pk1 = metrics.pk_error(other.sum(axis=1), truth.sum(axis=1), BOX)
    assert row["total"]["pk_err"] == pytest.approx(total_pk1 / 2)
    assert len(row["gas"]["rank_hist"]) == 3


def test_fixed_rows_average_every_truth_redraw_without_calibration(maps):
    truth, other = maps
    row = B.fixed_row("oracle", np.stack([other, truth], axis=1), _test_set(truth))
    assert row["n_realizations"] == 2
    gas = row["channels"]["gas"]
    assert gas["pk_err"] == pytest.approx(metrics.pk_error(other[:, 1], truth[:, 1], BOX) / 2)
    assert "coverage_50" not in gas and "rank_hist" not in gas


def test_draws_per_row():
    assert B._draws("consistency", 1, 8, 4) == 8
    assert B._draws("consistency", 2, 8, 4) == 8
    assert B._draws("consistency", 4, 8, 4) == 1
    assert B._draws("teacher", 18, 8, 4) == 4
    assert B._draws("denoiser", 1, 8, 4) == 1
