"""Losses against known answers: point masses, Gaussian random fields, and a tiny training run.

With the exact consistency map, the CT/iCT/ECT losses are not zero at a finite gap Δt on a
general distribution: x0 + t z and x0 + (t − Δt) z lie on different PF-ODE trajectories. The
tests check the two exact statements instead: (1) on a point mass every noisy point lies on
one trajectory, so all four losses vanish identically; (2) on a Gaussian random field the
Monte-Carlo loss equals its closed form (tests/gaussian.py), which vanishes as Δt → 0 at the
predicted order (CT: Δt², iCT/ECT with λ = 1/Δt: Δt; CD: the Heun step's local error).
"""

import itertools
import math

import pytest
import torch
from gaussian import GaussianField, PointMass

from halocm.diffusion.losses import (
    cd_loss,
    ct_loss,
    ect_loss,
    edm_loss,
    get_distance,
    ict_loss,
    l2_distance,
    pseudo_huber_distance,
)
from halocm.diffusion.precond import EDMPrecond
from halocm.diffusion.schedules import ect_target_sigma, karras_sigmas
from halocm.nn.unet import UNet

SIGMA_MIN = 0.002


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def field() -> GaussianField:
    return GaussianField.power_law(8)


@pytest.fixture(scope="module")
def x0(field) -> torch.Tensor:
    return field.sample(1024, generator=_gen(11))


# --- distances ---------------------------------------------------------------------------


def test_distances_known_values():
    a, b = torch.zeros(2, 1, 2, 2), torch.tensor([1.0, 2.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2)
    torch.testing.assert_close(l2_distance(a, b), torch.tensor([1.0, 4.0]))
    # ‖a − b‖² = 4 and 16; c = 0.00054 √4.
    c = 0.00054 * 2
    expected = torch.tensor([math.sqrt(4 + c * c) - c, math.sqrt(16 + c * c) - c])
    torch.testing.assert_close(pseudo_huber_distance(a, b), expected)
    torch.testing.assert_close(
        pseudo_huber_distance(a, b, c=1.0), torch.tensor([5**0.5, 17**0.5]) - 1
    )
    assert get_distance("pseudo_huber") is pseudo_huber_distance
    with pytest.raises(ValueError, match="allowed"):
        get_distance("l1")


def test_pseudo_huber_is_quadratic_near_zero():
    a = torch.zeros(1, 3, 8, 8)
    b = a + 1e-6
    c = 0.00054 * math.sqrt(3 * 64)
    sq = 3 * 64 * b[0, 0, 0, 0].item() ** 2  # ‖a − b‖² ≈ 2e-10 ≪ c² ≈ 5.6e-5
    # Written without cancellation, float32 keeps full precision even at ‖a − b‖² ≪ c².
    assert pseudo_huber_distance(a, b).item() == pytest.approx(sq / (2 * c), rel=1e-5)


# --- exact vanishing on a point mass --------------------------------------------------------


def test_all_consistency_losses_vanish_on_a_point_mass():
    # float64, so that "vanish" can be tested far below float32 rounding of x0 + t z.
    mass = PointMass(torch.randn(2, 8, 8, generator=_gen(0), dtype=torch.float64))
    x0, f, teacher = mass.sample(32), mass.consistency(), mass.denoiser()
    grid = karras_sigmas(18, SIGMA_MIN, 80.0, 7.0)
    fine = karras_sigmas(1281, SIGMA_MIN, 80.0, 7.0)
    for distance in (l2_distance, pseudo_huber_distance):
        losses = [
            ct_loss(f, f, x0, None, None, sigmas=grid, distance=distance, generator=_gen(1)),
            ict_loss(f, x0, None, None, sigmas=fine, p_mean=-1.1, p_std=2.0, distance=distance,
                     generator=_gen(2)),
            cd_loss(f, f, teacher, x0, None, None, sigmas=grid, distance=distance,
                    solver="heun", generator=_gen(3)),
            cd_loss(f, f, teacher, x0, None, None, sigmas=grid, distance=distance,
                    solver="euler", generator=_gen(4)),
            ect_loss(f, x0, None, None, stage=5, q=2.0, p_mean=-1.1, p_std=2.0,
                     sigma_min=SIGMA_MIN, distance=distance, generator=_gen(5)),
            ect_loss(f, x0, None, None, stage=0, q=2.0, p_mean=-1.1, p_std=2.0,
                     sigma_min=SIGMA_MIN, distance=distance, generator=_gen(6)),
        ]  # fmt: skip
        for loss in losses:
            assert loss.shape == (32,)
            assert loss.abs().max().item() < 1e-20


# --- Gaussian random field: Monte Carlo against the closed form -----------------------------


def test_ct_loss_of_exact_map_matches_closed_form_and_vanishes_as_dt_squared(field, x0):
    f, t_lo = field.consistency(), 0.5
    measured, expected = [], []
    for dt in (0.2, 0.1, 0.05):
        grid = torch.tensor([t_lo, t_lo + dt])  # Two levels: n is always the first interval.
        loss = ct_loss(f, f, x0, None, None, sigmas=grid, distance=l2_distance, generator=_gen(7))
        measured.append(loss.mean().item())
        expected.append(field.pair_loss(t_lo + dt, t_lo))
    assert measured == pytest.approx(expected, rel=0.08)
    # Halving Δt divides the loss by about 4.
    assert [a / b for a, b in itertools.pairwise(measured)] == pytest.approx([4.0, 4.0], rel=0.2)


@pytest.mark.parametrize("t_lo,t_hi", [(0.1, 0.12), (0.5, 0.55), (3.0, 3.3)])
def test_ict_loss_of_exact_map_matches_closed_form(field, x0, t_lo, t_hi):
    f = field.consistency()
    grid = torch.tensor([t_lo, t_hi])
    loss = ict_loss(f, x0, None, None, sigmas=grid, p_mean=-1.1, p_std=2.0,
                    distance=l2_distance, generator=_gen(8))  # fmt: skip
    expected = field.pair_loss(t_hi, t_lo) / (t_hi - t_lo)
    assert loss.mean().item() == pytest.approx(expected, rel=0.08)


def test_ect_loss_of_exact_map_matches_closed_form_and_shrinks_by_stage(field, x0):
    f, t = field.consistency(), math.exp(1.0)
    measured, expected = [], []
    for stage in (4, 5, 6):
        # p_std → 0 pins t = exp(p_mean), so the closed form applies sample by sample.
        loss = ect_loss(f, x0, None, None, stage=stage, q=2.0, p_mean=1.0, p_std=1e-9,
                        sigma_min=SIGMA_MIN, distance=l2_distance, generator=_gen(9))  # fmt: skip
        r = ect_target_sigma(torch.tensor(t, dtype=torch.float64), stage, 2.0).item()
        measured.append(loss.mean().item())
        expected.append(field.pair_loss(t, r) / (t - r))
    assert measured == pytest.approx(expected, rel=0.08)
    # Each stage halves the gap: the loss, ∝ Δt² / Δt once Δt ≪ t, halves too.
    assert [a / b for a, b in itertools.pairwise(measured)] == pytest.approx([2.0, 2.0], rel=0.2)


@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_cd_loss_with_exact_teacher_matches_the_solver_error(field, x0, solver):
    f, teacher = field.consistency(), field.denoiser()
    grid = torch.tensor([0.2, 0.5])  # A wide step, so the solver error is measurable.
    loss = cd_loss(f, f, teacher, x0, None, None, sigmas=grid, distance=l2_distance,
                   solver=solver, generator=_gen(10))  # fmt: skip
    assert loss.mean().item() == pytest.approx(field.cd_loss(0.5, 0.2, solver), rel=0.08)


def test_cd_loss_with_exact_teacher_is_near_zero_on_the_ct_grid(field, x0):
    """Bound: on the 18-level Karras grid the Heun step's amplitude error is at most 2.7% per
    mode and interval (Euler 6.1%), so the expected CD loss averaged over intervals is
    1.1e-5 (Euler 8.5e-5), i.e. 4e-5 of the field variance 0.25; the CT loss of the same
    exact map on the same grid is 4.8e-3."""
    f, teacher = field.consistency(), field.denoiser()
    grid = karras_sigmas(18, SIGMA_MIN, 80.0, 7.0)
    t = grid.double().tolist()
    bound_heun = sum(field.cd_loss(t[i + 1], t[i], "heun") for i in range(17)) / 17
    bound_euler = sum(field.cd_loss(t[i + 1], t[i], "euler") for i in range(17)) / 17
    assert bound_heun < 1.2e-5 < 8e-5 < bound_euler
    heun = cd_loss(f, f, teacher, x0, None, None, sigmas=grid, distance=l2_distance,
                   solver="heun", generator=_gen(12)).mean().item()  # fmt: skip
    euler = cd_loss(f, f, teacher, x0, None, None, sigmas=grid, distance=l2_distance,
                    solver="euler", generator=_gen(12)).mean().item()  # fmt: skip
    assert heun < 2 * bound_heun and euler > heun * 3
    ct = ct_loss(f, f, x0, None, None, sigmas=grid, distance=l2_distance, generator=_gen(12))
    assert heun < ct.mean().item() / 100


def test_edm_loss_closed_forms(field, x0):
    # p_std → 0 pins σ; the exact denoiser reaches the MMSE, the untrained net (D = c_skip x)
    # has loss 1 exactly in expectation when the data variance is σ_d² (Karras et al. 2022).
    sigma = math.exp(-0.7)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    exact = edm_loss(field.denoiser(), x0, None, None, p_mean=-0.7, p_std=1e-9, sigma_data=0.5,
                     generator=_gen(13))  # fmt: skip
    assert exact.shape == (1024,)
    assert exact.mean().item() == pytest.approx(weight * field.edm_mmse(sigma), rel=0.08)
    untrained = EDMPrecond(_tiny_unet(), 0.5)
    with torch.no_grad():
        loss = edm_loss(untrained, x0, None, None, p_mean=-0.7, p_std=1e-9, sigma_data=0.5,
                        generator=_gen(13))  # fmt: skip
    assert loss.mean().item() == pytest.approx(1.0, rel=0.08)


# --- mechanics: stop-gradient, dropout masks, seeding --------------------------------------


class DropoutProbe:
    """A 'network' whose output is a dropout mask: equal outputs mean equal masks."""

    sigma_min = SIGMA_MIN

    def __init__(self):
        self.grad_modes = []

    def __call__(self, x, sigma, cond, params):
        self.grad_modes.append(torch.is_grad_enabled())
        return torch.nn.functional.dropout(torch.ones_like(x), p=0.5, training=True)


def test_student_and_target_share_dropout_masks_and_target_has_no_grad():
    x0 = torch.zeros(8, 1, 8, 8)
    grid = karras_sigmas(10, SIGMA_MIN, 80.0, 7.0)
    student, target = DropoutProbe(), DropoutProbe()
    torch.manual_seed(0)
    losses = [
        ct_loss(student, target, x0, None, None, sigmas=grid, distance=l2_distance),
        ict_loss(student, x0, None, None, sigmas=grid, p_mean=-1.1, p_std=2.0,
                 distance=l2_distance),
        cd_loss(student, target, lambda x, s, c, p: x, x0, None, None, sigmas=grid,
                distance=l2_distance),
        ect_loss(student, x0, None, None, stage=1, q=2.0, p_mean=3.0, p_std=1e-9,
                 sigma_min=SIGMA_MIN, distance=l2_distance),
    ]  # fmt: skip
    for loss in losses:
        assert torch.count_nonzero(loss) == 0
    assert student.grad_modes == [True, True, False, True, True, False]
    assert target.grad_modes == [False, False]
    # The probe itself draws fresh masks each call: the equality above is the RNG fork's doing.
    assert not torch.equal(student(x0, 1.0, None, None), student(x0, 1.0, None, None))


def test_gradients_reach_the_student_only():
    student = EDMPrecond(_tiny_unet(), 0.5)
    torch.nn.init.normal_(student.net.conv_out.weight, std=0.1)
    target = EDMPrecond(_tiny_unet(), 0.5)
    x0 = torch.randn(4, 1, 8, 8)
    grid = karras_sigmas(10, SIGMA_MIN, 80.0, 7.0)
    ct_loss(student, target, x0, None, None, sigmas=grid, distance=l2_distance).mean().backward()
    assert student.net.conv_out.weight.grad is not None
    assert all(p.grad is None for p in target.parameters())


def test_losses_are_reproducible_from_the_generator(field):
    x0 = field.sample(6, generator=_gen(0))
    f = field.consistency()
    grid = karras_sigmas(18, SIGMA_MIN, 80.0, 7.0)
    a = ict_loss(f, x0, None, None, sigmas=grid, p_mean=-1.1, p_std=2.0, distance=l2_distance,
                 generator=_gen(5))  # fmt: skip
    b = ict_loss(f, x0, None, None, sigmas=grid, p_mean=-1.1, p_std=2.0, distance=l2_distance,
                 generator=_gen(5))  # fmt: skip
    assert torch.equal(a, b)


# --- a tiny real training run --------------------------------------------------------------


def _tiny_unet() -> UNet:
    torch.manual_seed(0)
    return UNet(
        in_channels=1, cond_channels=0, out_channels=1, n_params=0, resolution=8,
        base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,), dropout=0.0,
        embedding_dim=16,
    )  # fmt: skip


def test_edm_loss_decreases_with_adam():
    """50 Adam steps on 8×8 Gaussian fields: the loss falls from ≈ 1 toward the MMSE."""
    field = GaussianField.power_law(8, k0=0.25)  # Correlated enough that denoising pays.
    denoiser = EDMPrecond(_tiny_unet(), 0.5)
    x_eval = field.sample(256, generator=_gen(9))

    def evaluate(d) -> float:
        with torch.no_grad():
            loss = edm_loss(d, x_eval, None, None, p_mean=-1.2, p_std=1.2, sigma_data=0.5,
                            generator=_gen(5))  # fmt: skip
        return loss.mean().item()

    before = evaluate(denoiser)
    opt = torch.optim.Adam(denoiser.parameters(), lr=1e-2)
    gen = _gen(1)
    for _ in range(50):
        x = field.sample(32, generator=gen)
        loss = edm_loss(denoiser, x, None, None, p_mean=-1.2, p_std=1.2, sigma_data=0.5,
                        generator=gen).mean()  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate(denoiser)
    assert evaluate(field.denoiser()) < after < 0.9 * before
