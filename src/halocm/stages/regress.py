"""`halocm regress`: the conditional-mean network → models/mean.pt (residual.py)."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config
from halocm.distributed import process_group
from halocm.models import SKIP_WIDTHS, build_network, network_spec
from halocm.objectives import MSEObjective
from halocm.runtime import resolve_device, seed_everything
from halocm.stages.common import checkpoint_extra, mean_path
from halocm.training import (
    Batches,
    MetricsFn,
    TrainSettings,
    finalise,
    fit,
    last_path,
    load_training_data,
    mean_validation,
    val_subset,
    write_config,
)


def regress(cfg: Config, *, resume: bool = False, log_metrics: MetricsFn | None = None) -> Path:
    """MSE regression of E[target | condition, params] with `mean.*` and `optimizer.*`; the
    UNet of `model` with `mean.base_channels` and `mean.channel_mult`. Under `torchrun`,
    inside the process group."""
    device = resolve_device(cfg.device)
    with process_group(device):
        return _regress(cfg, device, resume=resume, log_metrics=log_metrics)


def _regress(cfg: Config, device, *, resume: bool, log_metrics: MetricsFn | None) -> Path:
    seed_everything(cfg.seed)
    stats, train, val, shapes = load_training_data(Path(cfg.paths.processed_dir), device)
    d, m = cfg.diffusion, cfg.mean
    model = {
        **cfg.model.model_dump(),
        "base_channels": m.base_channels,
        "channel_mult": m.channel_mult,
    }
    spec = network_spec(
        "mean",
        model,
        shapes,
        sigma_min=d.sigma_min,
        sigma_data=d.sigma_data,
        stats=stats.to_dict() if m.cosmic_skip else None,
    )
    net = build_network(spec).to(device)
    net.fit_affine(*train, widths=SKIP_WIDTHS if m.smooth_skip else (0.0,))
    objective = MSEObjective(net)
    final = mean_path(cfg)
    write_config(final, cfg.to_dict())
    fit(
        objective=objective,
        net=net,
        batches=Batches(*train, batch_size=m.batch_size, seed=cfg.seed, augment=m.augment),
        settings=TrainSettings.of(m, cfg.optimizer, seed=cfg.seed),
        checkpoint_path=last_path(final),
        checkpoint_extra=checkpoint_extra(cfg, spec, "mse", stats, shapes),
        resume=resume,
        validate=mean_validation(val_subset(val, m.val_batches * m.batch_size), objective),
        log_metrics=log_metrics,
        desc="regress",
    )
    return finalise(last_path(final), final)


def run(cfg: Config, log, *, resume: bool = False) -> None:
    log.artifact(regress(cfg, resume=resume, log_metrics=log.metrics))
