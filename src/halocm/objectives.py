"""Training objectives: which loss each method passes to the one training loop.

Pretraining (EDM), CT, iCT, CD and ECT differ only here: each objective turns a batch and the
step number into per-sample losses, and may own a target network updated after each step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from halocm.config import Config
from halocm.diffusion import losses, schedules
from halocm.models import update_ema


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
    sigma_data: float
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def loss(self, x0, cond, params, step: int) -> torch.Tensor:
        return losses.edm_loss(
            self.denoiser,
            x0,
            cond,
            params,
            p_mean=self.p_mean,
            p_std=self.p_std,
            sigma_data=self.sigma_data,
        )

    def after_step(self, step: int) -> None:
        pass


@dataclass
class CTObjective:
    """Consistency training with an EMA target (Song et al. 2023, Alg. 3); `teacher` → CD."""

    student: nn.Module
    cfg: Config
    total_steps: int
    teacher: nn.Module | None = None
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "target" not in self.networks:
            self.networks["target"] = _frozen_copy(self.student)

    def n_steps(self, step: int) -> int:
        t = self.cfg.train
        if t.schedule == "adaptive":
            return schedules.ct_n_steps(step, self.total_steps, t.s0, t.s1)
        return t.ct_n_steps

    def target_decay(self, step: int) -> float:
        t = self.cfg.train
        if t.schedule == "adaptive":
            return schedules.ct_ema_decay(step, self.total_steps, t.s0, t.s1, t.mu0)
        return t.ema_decay

    def sigmas(self, step: int, device) -> torch.Tensor:
        d = self.cfg.diffusion
        return schedules.karras_sigmas(
            self.n_steps(step), d.sigma_min, d.sigma_max, d.rho, device=device
        )

    def loss(self, x0, cond, params, step: int) -> torch.Tensor:
        sigmas = self.sigmas(step, x0.device)
        distance = losses.get_distance(self.cfg.train.loss)
        target = self.networks["target"]
        if self.teacher is None:
            return losses.ct_loss(
                self.student, target, x0, cond, params, sigmas=sigmas, distance=distance
            )
        return losses.cd_loss(
            self.student,
            target,
            self.teacher,
            x0,
            cond,
            params,
            sigmas=sigmas,
            distance=distance,
            solver=self.cfg.train.cd_solver,
        )

    def after_step(self, step: int) -> None:
        update_ema(self.networks["target"], self.student, self.target_decay(step))


@dataclass
class ICTObjective:
    """Improved CT (Song & Dhariwal 2023): stop-grad target, pseudo-Huber, N curriculum."""

    student: nn.Module
    cfg: Config
    total_steps: int
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def loss(self, x0, cond, params, step: int) -> torch.Tensor:
        t, d = self.cfg.train, self.cfg.diffusion
        n = schedules.ict_n_steps(step, self.total_steps, t.ict_n_min, t.ict_n_max)
        sigmas = schedules.karras_sigmas(n, d.sigma_min, d.sigma_max, d.rho, device=x0.device)
        return losses.ict_loss(
            self.student,
            x0,
            cond,
            params,
            sigmas=sigmas,
            p_mean=t.ict_p_mean,
            p_std=t.ict_p_std,
            distance=losses.pseudo_huber_distance,
        )

    def after_step(self, step: int) -> None:
        pass


@dataclass
class ECTObjective:
    """Consistency tuning from the denoiser with a shrinking gap (Geng et al. 2024)."""

    student: nn.Module
    cfg: Config
    total_steps: int
    networks: dict[str, nn.Module] = field(default_factory=dict)

    def loss(self, x0, cond, params, step: int) -> torch.Tensor:
        t = self.cfg.train
        ratio = schedules.ect_gap_ratio(step, self.total_steps, t.ect_stages, t.ect_q)
        return losses.ect_loss(
            self.student,
            x0,
            cond,
            params,
            ratio=ratio,
            p_mean=t.ect_p_mean,
            p_std=t.ect_p_std,
            sigma_min=self.cfg.diffusion.sigma_min,
            distance=losses.get_distance(t.loss),
        )

    def after_step(self, step: int) -> None:
        pass


def consistency_objective(cfg: Config, student: nn.Module, teacher: nn.Module | None):
    """The objective for `cfg.train.mode`; CD needs the pretrained denoiser as `teacher`."""
    mode, total = cfg.train.mode, cfg.train.steps
    if mode == "ct":
        return CTObjective(student, cfg, total)
    if mode == "cd":
        if teacher is None:
            raise ValueError("train.mode=cd needs a pretrained denoiser (run `halocm pretrain`)")
        return CTObjective(student, cfg, total, teacher=teacher)
    if mode == "ict":
        return ICTObjective(student, cfg, total)
    return ECTObjective(student, cfg, total)
