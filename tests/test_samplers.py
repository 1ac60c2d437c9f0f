"""Samplers against the Gaussian known answer (docs/design.md §5), NFE counts, per-map seeds."""

import itertools
import math

import pytest
import torch
from gaussian import GaussianField, apply_multiplier, ring_average, ring_power

from halocm.diffusion.precond import ConsistencyPrecond
from halocm.diffusion.samplers import (
    consistency_sample,
    edm_heun_sample,
    per_sample_randn,
    pf_ode_step,
)
from halocm.diffusion.schedules import edm_sampling_sigmas
from halocm.nn.unet import UNet

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
N_SAMPLES = 2048


def _gens(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def field() -> GaussianField:
    return GaussianField.power_law(8)


@pytest.fixture(scope="module")
def latents() -> torch.Tensor:
    return torch.randn(N_SAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _assert_power_within_statistical_error(x: torch.Tensor, power: torch.Tensor, bias=0.0):
    """Ring-averaged P(k) of the samples within 5 standard errors (+ a stated bias) of `power`."""
    _, measured, stderr = ring_power(x)
    expected = ring_average(power)
    assert bool(((measured - expected).abs() <= 5 * stderr + bias * expected).all()), (
        measured / expected
    )


# --- per-sample seeding ----------------------------------------------------------------------


def test_per_sample_randn_rows_come_from_their_own_generators():
    a = per_sample_randn((4, 2, 3, 3), _gens([1, 2, 3, 4]), device="cpu")
    b = per_sample_randn((2, 2, 3, 3), _gens([1, 2]), device="cpu")
    assert a.shape == (4, 2, 3, 3) and a.dtype == torch.float32
    assert torch.equal(a[:2], b)
    assert torch.equal(a[2], torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(3)))
    d = per_sample_randn((1, 5), _gens([1]), device="cpu", dtype=torch.float64)
    assert d.dtype == torch.float64
    with pytest.raises(ValueError, match="generators"):
        per_sample_randn((3, 5), _gens([1, 2]), device="cpu")


def _random_consistency_model() -> ConsistencyPrecond:
    torch.manual_seed(0)
    net = UNet(
        in_channels=1, cond_channels=1, out_channels=1, n_params=2, resolution=8,
        base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,), embedding_dim=16,
    )  # fmt: skip
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    return ConsistencyPrecond(net, SIGMA_MIN, 0.5).eval()


def test_consistency_sample_is_invariant_to_batch_size():
    f = _random_consistency_model()
    cond, params = torch.randn(4, 1, 8, 8), torch.randn(4, 2)
    steps = [SIGMA_MAX, 0.8, 0.1]

    def run(n):
        seeds = range(10, 10 + n)
        z = per_sample_randn((n, 1, 8, 8), _gens(seeds), device="cpu")
        return consistency_sample(f, z, steps, cond=cond[:n], params=params[:n],
                                  generators=_gens([s + 100 for s in seeds]))  # fmt: skip

    torch.testing.assert_close(run(4)[:2], run(2), rtol=1e-5, atol=1e-6)


# --- consistency sampling with the exact map -------------------------------------------------


class Recording:
    """Wraps f, recording every (input, σ) it is called with."""

    def __init__(self, f):
        self.f, self.sigma_min, self.calls = f, f.sigma_min, []

    def __call__(self, x, sigma, cond, params):
        self.calls.append((x.clone(), sigma.clone()))
        return self.f(x, sigma, cond, params)


def test_multistep_follows_algorithm_1(field):
    f = Recording(field.consistency())
    z = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    steps = [SIGMA_MAX, 0.8, 0.1]
    out = consistency_sample(f, z, steps, cond=None, params=None, generators=_gens([5, 6, 7]))
    assert len(f.calls) == len(steps)  # NFE = number of levels
    for (_, sigma), s in zip(f.calls, steps, strict=True):
        assert sigma.tolist() == pytest.approx([s] * 3, rel=1e-7)
    torch.testing.assert_close(f.calls[0][0], SIGMA_MAX * z)
    # Re-noising: x ← x + √(τ² − σ_min²) z' with z' from the per-sample generators.
    gens = _gens([5, 6, 7])
    x = f.f(SIGMA_MAX * z, SIGMA_MAX)
    for tau in steps[1:]:
        noise = per_sample_randn(x.shape, gens, device="cpu")
        x_in = x + math.sqrt(tau**2 - SIGMA_MIN**2) * noise
        x = f.f(x_in, tau)
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize(
    "steps", [[SIGMA_MAX], [SIGMA_MAX, 0.8], [SIGMA_MAX, 2.5, 0.1, 0.006]], ids=len
)
def test_consistency_sampler_reproduces_power_spectrum(field, latents, steps):
    """The exact map turns N(0, σ_max²) into power (P + σ_min²) σ_max²/(P + σ_max²) in one
    step and P + σ_min² after re-noising; both within 2e-4 of P, far below statistical error."""
    torch.manual_seed(1)
    x = consistency_sample(field.consistency(), latents, steps, cond=None, params=None)
    _assert_power_within_statistical_error(x, field.power)


# --- the EDM teacher samplers with the exact denoiser ---------------------------------------


class Counting:
    def __init__(self, d):
        self.d, self.calls = d, 0

    def __call__(self, x, sigma, cond, params):
        self.calls += 1
        return self.d(x, sigma, cond, params)


def _euler_sample(denoiser, latents, sigmas, *, cond, params):
    x = latents * float(sigmas[0])
    for t_cur, t_next in itertools.pairwise(sigmas.tolist()):
        x = pf_ode_step(denoiser, x, t_cur, t_next, cond, params, heun=False)
    return x


@pytest.mark.parametrize("heun", [True, False])
def test_pf_ode_samplers_match_their_closed_form(field, latents, heun):
    # Every step is a per-mode multiplier for a Gaussian field: the output is exact.
    sigmas = edm_sampling_sigmas(18, SIGMA_MIN, SIGMA_MAX, 7.0)
    denoiser = Counting(field.denoiser())
    sampler = edm_heun_sample if heun else _euler_sample
    x = sampler(denoiser, latents[:64], sigmas, cond=None, params=None)
    assert denoiser.calls == (35 if heun else 18)  # 2n − 1 and n for n = 18
    expected = apply_multiplier(latents[:64], field.heun_multiplier(sigmas.double(), heun=heun))
    torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-5)


def test_heun_discretisation_bound_on_the_gaussian_field(field):
    """Stated bound: on this spectrum (P_k from 0.08 to 0.72) 18 Heun steps overshoot the power
    of every mode by 0-14% (the PF-ODE x ∝ √(P + t²) bends where t ≈ √P, between grid points
    a factor ~1.8 apart); the error is second order, 64 steps leave < 1%."""
    rel18 = field.heun_multiplier(edm_sampling_sigmas(18, SIGMA_MIN, SIGMA_MAX, 7.0).double())
    rel18 = rel18**2 / field.power - 1
    rel64 = field.heun_multiplier(edm_sampling_sigmas(64, SIGMA_MIN, SIGMA_MAX, 7.0).double())
    rel64 = rel64**2 / field.power - 1
    assert rel18.min() > 0 and rel18.max() < 0.14
    assert rel64.min() > 0 and rel64.max() < 0.01


def test_heun_reproduces_power_spectrum(field, latents):
    sigmas = edm_sampling_sigmas(64, SIGMA_MIN, SIGMA_MAX, 7.0)
    x = edm_heun_sample(field.denoiser(), latents, sigmas, cond=None, params=None)
    _assert_power_within_statistical_error(x, field.power, bias=0.01)


@pytest.mark.parametrize("heun", [True, False])
def test_pf_ode_step_takes_one_level_or_a_level_per_sample(field, latents, heun):
    """A (B,) tensor of levels steps each sample as the float level does for the batch (to
    float32 rounding: the tensor form differences float32 levels), and hits the closed form."""
    x = latents[:6] * 2.0
    t_cur, t_next = [2.0, 2.0, 0.7, 0.7, 0.05, 0.05], [1.1, 1.1, 0.3, 0.3, 0.02, 0.02]
    per_sample = pf_ode_step(
        field.denoiser(), x, torch.tensor(t_cur), torch.tensor(t_next), None, None, heun=heun
    )
    for k in range(6):
        one = pf_ode_step(field.denoiser(), x[k : k + 1], t_cur[k], t_next[k], None, None,
                          heun=heun)  # fmt: skip
        torch.testing.assert_close(per_sample[k : k + 1], one, rtol=1e-5, atol=1e-6)
        ratio = field.step_ratio(t_cur[k], t_next[k], "heun" if heun else "euler")
        torch.testing.assert_close(one, apply_multiplier(x[k : k + 1], ratio.float()),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip


# --- the stochastic teacher sampler (churn) -------------------------------------------------


def test_churn_keeps_the_exact_denoisers_power_spectrum(field, latents):
    # Fresh noise raises x to the level t̂ that the step starts from: with the exact denoiser
    # each intermediate x is a draw of the noised field, so the output's power is the field's.
    sigmas = edm_sampling_sigmas(64, SIGMA_MIN, SIGMA_MAX, 7.0)
    x = edm_heun_sample(field.denoiser(), latents, sigmas, cond=None, params=None, churn=20.0,
                        generators=_gens(range(N_SAMPLES)))  # fmt: skip
    _assert_power_within_statistical_error(x, field.power, bias=0.01)


def test_churn_costs_no_call_and_draws_each_sample_from_its_own_generator(field, latents):
    sigmas = edm_sampling_sigmas(18, SIGMA_MIN, SIGMA_MAX, 7.0)
    denoiser = Counting(field.denoiser())
    kwargs = {"cond": None, "params": None, "churn": 2.0}
    whole = edm_heun_sample(denoiser, latents[:6], sigmas, generators=_gens(range(6)), **kwargs)
    assert denoiser.calls == 35
    part = edm_heun_sample(denoiser, latents[4:6], sigmas, generators=_gens([4, 5]), **kwargs)
    torch.testing.assert_close(whole[4:6], part)
    plain = edm_heun_sample(denoiser, latents[:6], sigmas, cond=None, params=None)
    assert not torch.allclose(whole, plain, atol=1e-3)
    # No level inside the range: the deterministic sampler, bit for bit.
    none = edm_heun_sample(denoiser, latents[:6], sigmas, generators=_gens(range(6)),
                           churn_range=(100.0, 200.0), **kwargs)  # fmt: skip
    assert torch.equal(none, plain)
