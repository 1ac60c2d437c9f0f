"""Training objectives. Each returns PER-SAMPLE values (B,); the training loop averages.

Student, target and teacher are preconditioned callables D(x, σ, cond, params). Pretraining,
CT, iCT, CD and ECT differ only in which of these losses the one training loop calls.
Randomness (σ, indices, noise) comes from `generator` when given, drawn on the generator's
device and moved to the data's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from halocm.diffusion.samplers import pf_ode_step
from halocm.diffusion.schedules import (
    ect_target_sigma,
    lognormal_index_probs,
    sample_lognormal_sigma,
    sample_training_sigma,
)

Distance = Callable[[Tensor, Tensor], Tensor]

# Song & Dhariwal 2023, Sec. 3.3: c = 0.00054 √d for d = 3·32·32 gives c = 0.03 on CIFAR-10.
PSEUDO_HUBER_SCALE = 0.00054


# --- distances ---------------------------------------------------------------------------


def _difference(a: Tensor, b: Tensor) -> Tensor:
    # At least float32 (bf16 outputs under autocast), never below the inputs' precision.
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return (a.to(dtype) - b.to(dtype)).flatten(1)


def l2_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference over all but the batch dimension (squared ℓ2 per element)."""
    return _difference(a, b).pow(2).mean(dim=1)


def pseudo_huber_distance(a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """d = √(‖a − b‖² + c²) − c, c = 0.00054 √dim by default (Song & Dhariwal 2023, Eq. 7)."""
    dim = a[0].numel()
    c = PSEUDO_HUBER_SCALE * math.sqrt(dim) if c is None else c
    sq = _difference(a, b).pow(2).sum(dim=1)
    # √(s + c²) − c written as s/(√(s + c²) + c): no cancellation when s ≪ c² in float32.
    return sq / ((sq + c * c).sqrt() + c)


DISTANCES: dict[str, Distance] = {"l2": l2_distance, "pseudo_huber": pseudo_huber_distance}


def get_distance(name: str) -> Distance:
    """The distance named by `train.loss` ('l2' or 'pseudo_huber')."""
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; allowed: {sorted(DISTANCES)}") from None


# --- randomness --------------------------------------------------------------------------


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return z.to(x.device)


def _uniform_index(high: int, n: int, generator, device) -> Tensor:
    draw_device = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=draw_device).to(device)


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state, device: torch.device) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def _student_and_target(student, target, x_s, sigma_s, x_t, sigma_t, cond, params):
    """Student (with grad) and stop-gradient target from one RNG state.

    Restoring the global CPU/CUDA RNG state before the target pass makes both networks draw
    the same dropout masks (Song et al. 2023 and Geng et al. 2024 both rely on this).
    """
    state = _rng_state(x_s.device)
    out_student = student(x_s, sigma_s, cond, params)
    _set_rng_state(state, x_s.device)
    with torch.no_grad():
        out_target = target(x_t, sigma_t, cond, params)
    return out_student, out_target.detach()


def _same_noise_pair(student, target, x0, t_hi, t_lo, cond, params, generator):
    """Student at x0 + t_hi z and stop-gradient target at x0 + t_lo z, one z for both."""
    z = _randn_like(x0, generator)
    x_hi, x_lo = x0 + _col(t_hi) * z, x0 + _col(t_lo) * z
    return _student_and_target(student, target, x_hi, t_hi, x_lo, t_lo, cond, params)


def _grid(sigmas, like: Tensor) -> Tensor:
    sigmas = torch.as_tensor(sigmas, device=like.device)
    return sigmas.to(torch.promote_types(like.dtype, torch.float32))


def _col(v: Tensor) -> Tensor:
    return v[:, None, None, None]


# --- objectives --------------------------------------------------------------------------


def edm_loss(
    denoiser,
    x0,
    cond,
    params,
    *,
    p_mean,
    p_std,
    sigma_data,
    uniform_fraction=0.0,
    sigma_min=None,
    sigma_max=None,
    generator=None,
) -> Tensor:
    """λ(σ) ‖D(x0 + σz, σ) − x0‖², ln σ ~ N(P_mean, P_std²), λ = (σ² + σ_d²)/(σ σ_d)².

    Karras et al. 2022, Eq. 2 and Table 1; ‖·‖² is the per-element mean (l2_distance). A
    `uniform_fraction` of the σ are uniform in [ln σ_min, ln σ_max] (sample_training_sigma).
    """
    sigma = sample_training_sigma(
        x0.shape[0],
        p_mean,
        p_std,
        uniform_fraction=uniform_fraction,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        generator=generator,
        device=x0.device,
    )
    sigma = sigma.to(device=x0.device, dtype=torch.promote_types(x0.dtype, torch.float32))
    z = _randn_like(x0, generator)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    denoised = denoiser(x0 + _col(sigma) * z, sigma, cond, params)
    return weight * l2_distance(denoised, x0)


def ct_loss(student, target, x0, cond, params, *, sigmas, distance, generator=None) -> Tensor:
    """d(f_θ(x0 + t_{n+1} z, t_{n+1}), f_θ⁻(x0 + t_n z, t_n)), n ~ U{1..N−1}, the same z.

    Consistency training (Song et al. 2023, Alg. 3) with λ ≡ 1 on an ascending grid.
    """
    t = _grid(sigmas, x0)
    n = _uniform_index(len(t) - 1, x0.shape[0], generator, x0.device)
    t_lo, t_hi = t[n], t[n + 1]
    out, ref = _same_noise_pair(student, target, x0, t_hi, t_lo, cond, params, generator)
    return distance(out, ref)


def ict_loss(
    student, x0, cond, params, *, sigmas, p_mean, p_std, distance, generator=None
) -> Tensor:
    """λ(t_n) d(f_θ(x0 + t_{n+1} z, t_{n+1}), stopgrad f_θ(x0 + t_n z, t_n)).

    Improved CT (Song & Dhariwal 2023): the target is the student itself without gradient,
    λ = 1/(t_{n+1} − t_n), n drawn from the discretised lognormal (lognormal_index_probs).
    """
    t = _grid(sigmas, x0)
    probs = lognormal_index_probs(t.cpu(), p_mean, p_std)
    if generator is not None:
        probs = probs.to(generator.device)
    n = torch.multinomial(probs, x0.shape[0], replacement=True, generator=generator)
    n = n.to(x0.device)
    t_lo, t_hi = t[n], t[n + 1]
    out, ref = _same_noise_pair(student, student, x0, t_hi, t_lo, cond, params, generator)
    return distance(out, ref) / (t_hi - t_lo)


SOLVERS = ("heun", "euler")


def cd_loss(
    student, target, teacher, x0, cond, params, *, sigmas, distance, solver="heun", generator=None
) -> Tensor:
    """d(f_θ(x_{n+1}, t_{n+1}), f_θ⁻(x̂_n, t_n)), x̂_n one teacher PF-ODE step from x_{n+1}.

    Consistency distillation (Song et al. 2023, Alg. 2) with λ ≡ 1; x_{n+1} = x0 + t_{n+1} z.
    """
    if solver not in SOLVERS:
        allowed = ", ".join(repr(s) for s in sorted(SOLVERS))
        raise ValueError(f"unknown solver {solver!r}; allowed: {allowed}")
    t = _grid(sigmas, x0)
    n = _uniform_index(len(t) - 1, x0.shape[0], generator, x0.device)
    t_lo, t_hi = t[n], t[n + 1]
    x_hi = x0 + _col(t_hi) * _randn_like(x0, generator)
    with torch.no_grad():
        x_lo = pf_ode_step(teacher, x_hi, t_hi, t_lo, cond, params, heun=solver == "heun")
    out, ref = _student_and_target(student, target, x_hi, t_hi, x_lo, t_lo, cond, params)
    return distance(out, ref)


def ect_loss(
    student, x0, cond, params, *, stage, q, p_mean, p_std, sigma_min, distance, generator=None
) -> Tensor:
    """d(f_θ(x0 + t z, t), stopgrad f_θ(x0 + r z, r)) / (t − r) (Geng et al. 2024, Eq. 9).

    t ~ lognormal(P_mean, P_std) floored at 2σ_min; r = ect_target_sigma(t, stage, q), floored
    at σ_min: ECT's r = 0 (target: the clean data) is r = σ_min here, where the boundary
    condition f(x, σ_min) = x makes the target the data plus σ_min z.
    """
    t = sample_lognormal_sigma(x0.shape[0], p_mean, p_std, generator=generator, device=x0.device)
    t = t.to(device=x0.device, dtype=torch.promote_types(x0.dtype, torch.float32))
    t = t.clamp(min=2 * sigma_min)
    r = ect_target_sigma(t, stage, q).clamp(min=sigma_min)
    out, ref = _same_noise_pair(student, student, x0, t, r, cond, params, generator)
    return distance(out, ref) / (t - r)
