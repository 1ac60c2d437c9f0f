"""`halocm train`: consistency training by `train.mode` → models/consistency.pt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from halocm.checkpoint import SAMPLING_KEYS, load_checkpoint
from halocm.config import Config
from halocm.diffusion.precond import EDMPrecond
from halocm.distributed import process_group
from halocm.errors import BadInput
from halocm.models import build_network, network_spec
from halocm.runtime import resolve_device, seed_everything
from halocm.stages.common import checkpoint_extra, consistency_path, denoiser_path
from halocm.stages.recipes import consistency_objective, edm_objective
from halocm.stages.residuals import check_same_residual, encode, residual_for
from halocm.training import (
    Batches,
    MetricsFn,
    TrainSettings,
    consistency_validation,
    denoising_warmup,
    finalise,
    fit,
    frozen_network,
    last_path,
    load_training_data,
    val_subset,
    write_config,
)


def train(
    cfg: Config,
    *,
    resume: bool = False,
    log_metrics: MetricsFn | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Consistency training with the objective of `train.mode`, built from that method's
    section. Under `torchrun`, inside the process group (gloo on CPU, NCCL on CUDA)."""
    device = resolve_device(cfg.device)
    with process_group(device):
        return _train(cfg, device, resume=resume, log_metrics=log_metrics, on_step=on_step)


def _train(cfg: Config, device, *, resume, log_metrics, on_step) -> Path:
    seed_everything(cfg.seed)
    stats, train_data, val, shapes = load_training_data(Path(cfg.paths.processed_dir), device)
    residual = residual_for(cfg, stats.channel_names, train_data, device)
    train_data = encode(residual, train_data)
    d, t, opt = cfg.diffusion, cfg.train, cfg.optimizer
    spec = network_spec(
        "consistency",
        cfg.model.model_dump(),
        residual.generator_shapes(shapes),
        sigma_min=d.sigma_min,
        sigma_data=d.sigma_data,
    )
    student = build_network(spec).to(device)
    teacher_file = denoiser_path(cfg)
    teacher = None
    if cfg.pretrain.enabled and teacher_file.is_file():
        ckpt = load_checkpoint(teacher_file, device, need=SAMPLING_KEYS, kind="denoiser")
        check_same_residual(ckpt, residual, teacher_file)
        teacher = frozen_network(ckpt).to(device)
    if t.warm_start and teacher is not None:
        check_same_backbone(ckpt, spec, teacher_file)
        # Same backbone and c_noise: the denoiser's EMA weights are a valid starting point.
        student.net.load_state_dict(teacher.net.state_dict())
    elif t.denoising_warmup > 0:
        p = cfg.pretrain
        denoising_warmup(
            edm_objective(cfg, EDMPrecond(student.net, d.sigma_data)),
            train_data,
            steps=t.denoising_warmup,
            batch_size=p.batch_size,
            seed=cfg.seed + 1,
            optimizer=opt.name,
            lr=p.lr,
            weight_decay=opt.weight_decay,
            grad_clip=opt.grad_clip,
            augment=t.augment,
        )
    objective = consistency_objective(cfg, t.mode, student=student, teacher=teacher)
    check_warm_start(cfg, teacher, teacher_file)
    final = consistency_path(cfg)
    write_config(final, cfg.to_dict())
    fit(
        objective=objective,
        net=student,
        batches=Batches(*train_data, batch_size=t.batch_size, seed=cfg.seed, augment=t.augment),
        settings=TrainSettings.of(t, opt, seed=cfg.seed),
        checkpoint_path=last_path(final),
        checkpoint_extra=checkpoint_extra(cfg, spec, t.mode, stats, shapes, residual),
        resume=resume,
        validate=consistency_validation(
            val_subset(val, t.val_batches * t.batch_size),
            stats,
            residual,
            n_steps=t.val_sampling_steps,
            sigma_max=d.sigma_max,
            intermediate_sigmas=cfg.sample.intermediate_sigmas,
            seed=cfg.seed,
        ),
        log_metrics=log_metrics,
        on_step=on_step,
        desc=f"train[{t.mode}]",
    )
    return finalise(last_path(final), final)


def check_warm_start(cfg: Config, teacher, teacher_file: Path) -> None:
    """`train.warm_start` promises a start from the pretrained denoiser: without one, refuse
    rather than silently train from scratch."""
    if not cfg.train.warm_start or teacher is not None:
        return
    if not cfg.pretrain.enabled:
        raise BadInput(
            "train.warm_start=true needs the pretrained denoiser, but pretrain.enabled=false; "
            "set train.warm_start=false to train from scratch"
        )
    raise BadInput(
        f"train.warm_start=true: {teacher_file} not found; run `halocm pretrain` first, "
        "or set train.warm_start=false to train from scratch"
    )


def check_same_backbone(ckpt: dict, spec: dict, path: Path) -> None:
    """The denoiser must have the student's UNet to be its warm start or teacher."""
    theirs, ours = ckpt["network"]["unet"], spec["unet"]
    differ = [
        f"{k} {theirs.get(k)} (denoiser) vs {ours.get(k)} (this config)"
        for k in dict.fromkeys([*theirs, *ours])
        if theirs.get(k) != ours.get(k)
    ]
    if differ:
        raise BadInput(
            f"{path}: pretrained with another network: {'; '.join(differ)}; rerun `halocm pretrain`"
        )


def run(cfg: Config, log, *, resume: bool = False) -> None:
    log.artifact(train(cfg, resume=resume, log_metrics=log.metrics))
