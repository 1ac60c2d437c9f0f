"""The training objectives as params.yaml configures them: for the stages that train and for
the benchmarks that time a training step."""

from __future__ import annotations

from torch import nn

from halocm.config import Config
from halocm.objectives import EDMObjective, build_objective


def edm_objective(cfg: Config, denoiser: nn.Module) -> EDMObjective:
    """The EDM loss of `pretrain.*` on a preconditioned denoiser: pretraining, and the
    student's denoising warm-up."""
    d, p = cfg.diffusion, cfg.pretrain
    return EDMObjective(
        denoiser,
        p_mean=p.p_mean,
        p_std=p.p_std,
        uniform_fraction=p.uniform_fraction,
        sigma_min=d.sigma_min,
        sigma_max=d.sigma_max,
        sigma_data=d.sigma_data,
    )


def consistency_objective(cfg: Config, mode: str, *, student: nn.Module, teacher: nn.Module | None):
    """The objective of consistency method `mode`, from its section of params.yaml."""
    d = cfg.diffusion
    return build_objective(
        mode,
        getattr(cfg, mode).fields(),
        student=student,
        teacher=teacher,
        sigma_min=d.sigma_min,
        sigma_max=d.sigma_max,
        rho=d.rho,
        total_steps=cfg.train.steps,
    )
