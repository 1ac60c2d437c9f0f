"""Training objectives: which loss each method passes to the one training loop.

Pretraining (EDM), CT, iCT, CD and ECT differ only here: each objective is called with a batch
and the step number and returns per-sample losses; it may own a target network (`networks`)
that `after_step` updates.
A consistency method is one class registered under its `train.mode` name: its constructor
takes its config section's knobs, plus whichever of the shared inputs it declares (networks,
diffusion constants, the number of training steps); `build_objective` does the rest.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from halocm.diffusion import losses, schedules
from halocm.models import update_ema

OBJECTIVES: dict[str, type] = {}


def register(mode: str):
    """Class decorator: the objective of `train.mode=mode`."""

    def add(cls: type) -> type:
        if mode in OBJECTIVES:
            raise ValueError(f"objective {mode!r} is registered twice")
        OBJECTIVES[mode] = cls
        return cls

    return add


def build_objective(
    mode: str,
    section: dict,
    *,
    student: nn.Module,
    teacher: nn.Module | None,
    sigma_min: float,
    sigma_max: float,
    rho: float,
    total_steps: int,
):
    """The objective of `mode` from its section's knobs (`search` excluded) and the shared
    inputs; each class receives only the shared inputs it declares as fields."""
    try:
        cls = OBJECTIVES[mode]
    except KeyError:
        raise ValueError(
            f"train.mode={mode!r}: no such objective; registered: {', '.join(OBJECTIVES)}"
        ) from None
    shared = {
        "student": student,
        "teacher": teacher,
        "sigma_min": sigma_min,
        "sigma_max": sigma_max,
        "rho": rho,
        "total_steps": total_steps,
    }
    declared = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**section, **{k: v for k, v in shared.items() if k in declared})


def _frozen_copy(net: nn.Module) -> nn.Module:
    target = copy.deepcopy(net)
    target.requires_grad_(False)
    return target


@dataclass
class EDMObjective:
    """Denoising score matching with the EDM weighting (Karras et al. 2022, Eq. 8)."""

    denoiser: nn.Module
    p_mean: float
    p_std: float
    uniform_fraction: float
    sigma_min: float
    sigma_max: float
    sigma_data: float
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        return self.loss_of(self.denoiser, x0, cond, params)

    def loss_of(self, denoiser, x0, cond, params, generator=None) -> torch.Tensor:
        """The loss of any denoiser (e.g. the inference EMA, for validation)."""
        return losses.edm_loss(
            denoiser,
            x0,
            cond,
            params,
            p_mean=self.p_mean,
            p_std=self.p_std,
            sigma_data=self.sigma_data,
            uniform_fraction=self.uniform_fraction,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            generator=generator,
        )

    def after_step(self, step: int) -> None:
        pass


@dataclass
class MSEObjective:
    """Regression of the conditional mean: ‖μ(c, θ) − y‖², the per-element mean (the
    `regress` stage; residual.py)."""

    mean: nn.Module
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        return self.loss_of(self.mean, x0, cond, params)

    def loss_of(self, mean, x0, cond, params) -> torch.Tensor:
        return losses.l2_distance(mean(cond, params), x0)

    def after_step(self, step: int) -> None:
        pass


@register("ct")
@dataclass
class CTObjective:
    """Consistency training with an EMA target (Song et al. 2023, Alg. 3): student at
    σ_{i+1}, target θ⁻ at σ_i on the N-level Karras grid; θ⁻ ← μ θ⁻ + (1 − μ) θ. With
    `schedule: adaptive`, N(k) and μ(k) follow Song et al. 2023 (Appendix C)."""

    student: nn.Module
    grid_levels: int
    target_ema: float
    loss: str
    schedule: str
    s0: int
    s1: int
    mu0: float
    sigma_min: float
    sigma_max: float
    rho: float
    total_steps: int
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.distance = losses.get_distance(self.loss)
        if "target" not in self.networks:
            self.networks["target"] = _frozen_copy(self.student)

    def n_levels(self, step: int) -> int:
        if self.schedule == "adaptive":
            return schedules.ct_n_steps(step, self.total_steps, self.s0, self.s1)
        return self.grid_levels

    def target_decay(self, step: int) -> float:
        if self.schedule == "adaptive":
            return schedules.ct_ema_decay(step, self.total_steps, self.s0, self.s1, self.mu0)
        return self.target_ema

    def sigmas(self, step: int, device) -> torch.Tensor:
        return schedules.karras_sigmas(
            self.n_levels(step), self.sigma_min, self.sigma_max, self.rho, device=device
        )

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        return losses.ct_loss(
            self.student,
            self.networks["target"],
            x0,
            cond,
            params,
            sigmas=self.sigmas(step, x0.device),
            distance=self.distance,
        )

    def after_step(self, step: int) -> None:
        update_ema(self.networks["target"], self.student, self.target_decay(step))


@register("cd")
@dataclass
class CDObjective:
    """Consistency distillation (Song et al. 2023, Alg. 2): the target point is one PF-ODE
    step (`solver`) of the pretrained denoiser from σ_{i+1} to σ_i; EMA target as in CT."""

    student: nn.Module
    teacher: nn.Module | None
    grid_levels: int
    target_ema: float
    loss: str
    solver: str
    sigma_min: float
    sigma_max: float
    rho: float
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.teacher is None:
            raise ValueError("train.mode=cd needs a pretrained denoiser (run `halocm pretrain`)")
        self.distance = losses.get_distance(self.loss)
        if "target" not in self.networks:
            self.networks["target"] = _frozen_copy(self.student)

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        sigmas = schedules.karras_sigmas(
            self.grid_levels, self.sigma_min, self.sigma_max, self.rho, device=x0.device
        )
        return losses.cd_loss(
            self.student,
            self.networks["target"],
            self.teacher,
            x0,
            cond,
            params,
            sigmas=sigmas,
            distance=self.distance,
            solver=self.solver,
        )

    def after_step(self, step: int) -> None:
        update_ema(self.networks["target"], self.student, self.target_ema)


@register("ict")
@dataclass
class ICTObjective:
    """Improved CT (Song & Dhariwal 2023): stop-grad target, lognormal level sampling, and
    the grid's N doubling from `n_min` to `n_max` over training."""

    student: nn.Module
    p_mean: float
    p_std: float
    n_min: int
    n_max: int
    loss: str
    sigma_min: float
    sigma_max: float
    rho: float
    total_steps: int
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.distance = losses.get_distance(self.loss)

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        n = schedules.ict_n_steps(step, self.total_steps, self.n_min, self.n_max)
        sigmas = schedules.karras_sigmas(
            n, self.sigma_min, self.sigma_max, self.rho, device=x0.device
        )
        return losses.ict_loss(
            self.student,
            x0,
            cond,
            params,
            sigmas=sigmas,
            p_mean=self.p_mean,
            p_std=self.p_std,
            distance=self.distance,
        )

    def after_step(self, step: int) -> None:
        pass


@register("ect")
@dataclass
class ECTObjective:
    """Easy consistency tuning from the denoiser (Geng et al. 2024): the gap t − r between
    the student's and the target's noise levels shrinks by a factor `q` in each of `stages`
    equal parts of training (schedules.ect_target_sigma)."""

    student: nn.Module
    stages: int
    q: float
    p_mean: float
    p_std: float
    loss: str
    sigma_min: float
    total_steps: int
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.distance = losses.get_distance(self.loss)

    def __call__(self, x0, cond, params, step: int) -> torch.Tensor:
        return losses.ect_loss(
            self.student,
            x0,
            cond,
            params,
            stage=schedules.ect_stage(step, self.total_steps, self.stages),
            q=self.q,
            p_mean=self.p_mean,
            p_std=self.p_std,
            sigma_min=self.sigma_min,
            distance=self.distance,
        )

    def after_step(self, step: int) -> None:
        pass
