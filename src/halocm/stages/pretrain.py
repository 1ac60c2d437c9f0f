"""`halocm pretrain`: EDM denoising pretraining → models/denoiser.pt (teacher, warm start)."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config
from halocm.distributed import process_group
from halocm.models import build_network, network_spec
from halocm.runtime import resolve_device, seed_everything
from halocm.stages.common import checkpoint_extra, denoiser_path
from halocm.stages.recipes import edm_objective
from halocm.stages.residuals import encode, residual_for
from halocm.training import (
    Batches,
    MetricsFn,
    TrainSettings,
    denoiser_validation,
    finalise,
    fit,
    last_path,
    load_training_data,
    val_subset,
    write_config,
)


def pretrain(cfg: Config, *, resume: bool = False, log_metrics: MetricsFn | None = None) -> Path:
    """EDM denoising pretraining (Karras et al. 2022) with `pretrain.*` and `optimizer.*`.
    Under `torchrun`, inside the process group (gloo on CPU, NCCL on CUDA)."""
    device = resolve_device(cfg.device)
    with process_group(device):
        return _pretrain(cfg, device, resume=resume, log_metrics=log_metrics)


def _pretrain(cfg: Config, device, *, resume: bool, log_metrics: MetricsFn | None) -> Path:
    seed_everything(cfg.seed)
    stats, train, val, shapes = load_training_data(Path(cfg.paths.processed_dir), device)
    residual = residual_for(cfg, stats.channel_names, train, device)
    train, val = encode(residual, train), encode(residual, val)
    d, p, opt = cfg.diffusion, cfg.pretrain, cfg.optimizer
    spec = network_spec(
        "denoiser",
        cfg.model.model_dump(),
        residual.generator_shapes(shapes),
        sigma_min=d.sigma_min,
        sigma_data=d.sigma_data,
    )
    denoiser = build_network(spec).to(device)
    objective = edm_objective(cfg, denoiser)
    final = denoiser_path(cfg)
    write_config(final, cfg.to_dict())
    fit(
        objective=objective,
        net=denoiser,
        batches=Batches(*train, batch_size=p.batch_size, seed=cfg.seed, augment=p.augment),
        settings=TrainSettings.of(p, opt, seed=cfg.seed),
        checkpoint_path=last_path(final),
        checkpoint_extra=checkpoint_extra(cfg, spec, "edm", stats, shapes, residual),
        resume=resume,
        validate=denoiser_validation(
            val_subset(val, p.val_batches * p.batch_size), objective, seed=cfg.seed
        ),
        log_metrics=log_metrics,
        desc="pretrain",
    )
    return finalise(last_path(final), final)


def run(cfg: Config, log, *, resume: bool = False) -> None:
    log.artifact(pretrain(cfg, resume=resume, log_metrics=log.metrics))
