"""Noise schedules: grids, curricula and samplers of σ at known values."""

import itertools
import math

import pytest
import torch

from halocm.diffusion.schedules import (
    consistency_step_sigmas,
    ct_ema_decay,
    ct_n_steps,
    ect_stage,
    ect_target_sigma,
    edm_sampling_sigmas,
    ict_n_steps,
    karras_sigmas,
    lognormal_index_probs,
    sample_lognormal_sigma,
)

INTERMEDIATE = (2.5, 0.8, 0.3, 0.1, 0.04, 0.015, 0.006)


@pytest.mark.parametrize("n", [2, 18, 1281])
def test_karras_sigmas_endpoints_and_order(n):
    t = karras_sigmas(n, 0.002, 80.0, 7.0)
    assert t.shape == (n,) and t.dtype == torch.float32
    # Exact endpoints: the boundary condition needs t_1 == σ_min in the working precision.
    assert t[0].item() == torch.tensor(0.002).item() and t[-1].item() == 80.0
    assert bool((t[1:] > t[:-1]).all())


def test_karras_sigmas_formula():
    t = karras_sigmas(18, 0.002, 80.0, 7.0, dtype=torch.float64)
    i = 6
    expected = (0.002 ** (1 / 7) + i / 17 * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    assert t[i].item() == pytest.approx(expected, rel=1e-12)


def test_edm_sampling_sigmas_descend_to_zero():
    s = edm_sampling_sigmas(18, 0.002, 80.0, 7.0)
    assert s.shape == (19,)
    assert s[0].item() == 80.0 and s[-2].item() == torch.tensor(0.002).item() and s[-1] == 0
    assert bool((s[1:] < s[:-1]).all())
    torch.testing.assert_close(s[:-1].flip(0), karras_sigmas(18, 0.002, 80.0, 7.0))


def test_ct_n_steps_known_values():
    # N(0) = s0, N(K) = s1 + 1; midway ⌈√(½(151² − 4) + 4) − 1⌉ + 1 = ⌈105.78⌉ + 1 = 107.
    assert ct_n_steps(0, 1000, 2, 150) == 2
    assert ct_n_steps(500, 1000, 2, 150) == 107
    assert ct_n_steps(1000, 1000, 2, 150) == 151
    values = [ct_n_steps(k, 1000, 2, 150) for k in range(0, 1001, 50)]
    assert values == sorted(values)


def test_ct_ema_decay_known_values():
    assert ct_ema_decay(0, 1000, 2, 150, 0.9) == pytest.approx(0.9, rel=1e-12)
    assert ct_ema_decay(1000, 1000, 2, 150, 0.9) == pytest.approx(0.9 ** (2 / 151), rel=1e-12)
    assert ct_ema_decay(500, 1000, 2, 150, 0.9) == pytest.approx(math.exp(2 * math.log(0.9) / 107))


def test_ict_curriculum_doubles():
    # K' = ⌊8000/(log2 128 + 1)⌋ = 1000: N = 11, 21, 41, ... capped at 1281.
    assert [ict_n_steps(k, 8000) for k in (0, 999, 1000, 2000, 6999, 7000, 8000)] == [
        11, 11, 21, 41, 641, 1281, 1281,
    ]  # fmt: skip
    assert ict_n_steps(3, 5) == 81  # K' clamps to 1 for tiny runs: 10·2³ + 1.


def test_lognormal_index_probs_sum_to_one_and_follow_the_lognormal():
    t = karras_sigmas(41, 0.002, 80.0, 7.0)
    probs = lognormal_index_probs(t, -1.1, 2.0)
    assert probs.shape == (40,)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12) and bool((probs >= 0).all())
    # Against sampling: the fraction of lognormal draws landing in each interval.
    draws = sample_lognormal_sigma(200_000, -1.1, 2.0, generator=torch.Generator().manual_seed(0))
    draws = draws[(draws >= t[0]) & (draws <= t[-1])]
    counts = torch.bucketize(draws, t[1:-1]).bincount(minlength=40).double()
    torch.testing.assert_close(counts / counts.sum(), probs, atol=4e-3, rtol=0)


def test_sample_lognormal_sigma_moments_and_seeding():
    g = torch.Generator().manual_seed(3)
    s = sample_lognormal_sigma(50_000, -1.2, 1.2, generator=g)
    assert s.shape == (50_000,) and bool((s > 0).all())
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.03)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.03)
    a = sample_lognormal_sigma(5, 0.0, 1.0, generator=torch.Generator().manual_seed(7))
    b = sample_lognormal_sigma(5, 0.0, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_ect_stages_split_training_evenly():
    stages = [ect_stage(k, 800, 8) for k in (0, 99, 100, 250, 700, 799, 800)]
    assert stages == [0, 0, 1, 2, 7, 7, 7]


def test_ect_target_sigma_is_the_papers_mapping():
    # r = t (1 − n(t)/q^(a+1)), n(t) = 1 + 8 sigmoid(−t), clamped at 0 (Geng et al. 2024).
    t = torch.tensor([0.01, 0.5, 2.0, 10.0, 80.0], dtype=torch.float64)
    for stage in (0, 1, 3):
        n = 1 + 8 / (1 + torch.exp(t))
        expected = (t * (1 - n / 2.0 ** (stage + 1))).clamp(min=0)
        assert torch.allclose(ect_target_sigma(t, stage, 2.0), expected, rtol=1e-12, atol=0)
    # Stage 0 denoises at small t (r = 0) and halves large t; the gap shrinks by q per stage.
    r0 = ect_target_sigma(t, 0, 2.0)
    assert r0[0] == 0 and r0[1] == 0
    assert r0[-1] == pytest.approx(40.0, rel=1e-6)
    gaps = [(t - ect_target_sigma(t, a, 2.0))[-2:] for a in range(4, 7)]
    for wide, narrow in itertools.pairwise(gaps):
        assert torch.allclose(wide / narrow, torch.full_like(wide, 2.0), rtol=1e-9)
    assert (ect_target_sigma(t, 5, 2.0) < t).all()


def test_consistency_step_sigmas():
    assert consistency_step_sigmas(1, 80.0, INTERMEDIATE) == [80.0]
    assert consistency_step_sigmas(2, 80.0, INTERMEDIATE) == [80.0, 2.5]
    assert consistency_step_sigmas(4, 80.0, INTERMEDIATE) == [80.0, 2.5, 0.1, 0.006]
    assert consistency_step_sigmas(8, 80.0, INTERMEDIATE) == [80.0, *INTERMEDIATE]
    for n in range(2, 9):  # Always strictly decreasing.
        s = consistency_step_sigmas(n, 80.0, INTERMEDIATE)
        assert len(s) == n and all(b < a for a, b in itertools.pairwise(s))
    with pytest.raises(ValueError, match="intermediate"):
        consistency_step_sigmas(9, 80.0, INTERMEDIATE)
