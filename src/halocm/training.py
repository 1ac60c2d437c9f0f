"""One training loop for every objective, and the `pretrain` and `train` stages.

The loop owns what all methods share: batching, the optimiser, gradient clipping, the inference
EMA, periodic validation, atomic checkpoints every K steps, bit-exact `resume`, a NaN/inf guard
and progress. What differs between EDM pretraining, CT, iCT, CD and ECT is the objective.
"""

from __future__ import annotations

import copy
import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from halocm.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from halocm.config import Config
from halocm.data.dataset import load_split
from halocm.data.normalize import NormStats
from halocm.distributed import Group, is_main_process, process_group, rank_seed
from halocm.io import atomic_path, write_json
from halocm.models import DataShapes, build_network, network_from_checkpoint, update_ema
from halocm.objectives import EDMObjective, consistency_objective
from halocm.runtime import resolve_device, seed_everything

MetricsFn = Callable[[dict[str, float], int], None]


class TrainingDiverged(RuntimeError):
    """The loss or gradients became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    grad_clip: float
    ema_decay: float
    checkpoint_every: int
    val_every: int
    seed: int


@dataclass
class Batches:
    """Epoch-wise shuffled minibatches whose order depends only on (seed, step): resumable."""

    target: torch.Tensor
    condition: torch.Tensor
    params: torch.Tensor
    batch_size: int
    seed: int

    def __len__(self) -> int:
        return self.target.shape[0]

    def at_step(self, step: int):
        per_epoch = max(1, len(self) // self.batch_size)
        epoch, position = divmod(step, per_epoch)
        order = torch.randperm(
            len(self), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        )
        idx = order[position * self.batch_size : (position + 1) * self.batch_size]
        idx = idx.to(self.target.device)
        return self.target[idx], self.condition[idx], self.params[idx]


def tensors_from_split(path: str | Path, device: torch.device):
    split = load_split(path)
    return tuple(
        torch.as_tensor(np.asarray(split[key]), dtype=torch.float32, device=device)
        for key in ("target", "condition", "params")
    )


def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "radam":
        return torch.optim.RAdam(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)


def fit(
    *,
    objective,
    net: nn.Module,
    batches: Batches,
    settings: TrainSettings,
    checkpoint_path: Path,
    checkpoint_extra: dict,
    resume: bool = False,
    validate: Callable[[nn.Module, int], dict[str, float]] | None = None,
    log_metrics: MetricsFn | None = None,
    on_step: Callable[[int], None] | None = None,
    desc: str = "train",
) -> nn.Module:
    """Optimise `net` on `objective` for `settings.steps` steps; returns the inference EMA.

    The checkpoint at `checkpoint_path` holds everything needed to continue bit-for-bit:
    weights, inference EMA, objective networks (e.g. the CT target), optimiser and RNG state.
    Inside a torch.distributed group each rank trains on its shard of every global batch and
    only rank 0 validates, logs and writes checkpoints (halocm.distributed).
    """
    group = Group.current()
    if group.size > 1:
        _data_parallel(objective, net)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = make_optimizer(net.parameters(), settings)
    start = 0
    if resume and checkpoint_path.is_file():
        start = _restore(checkpoint_path, net, ema, objective, optimizer)
        if group.rank:  # the checkpoint holds rank 0's RNG state only
            torch.manual_seed(rank_seed(settings.seed + start, group.rank))
    else:
        torch.manual_seed(rank_seed(settings.seed, group.rank))

    def write_checkpoint(step: int) -> None:
        state = {
            **checkpoint_extra,
            "model": net.state_dict(),
            "ema": ema.state_dict(),
            "networks": {k: m.state_dict() for k, m in objective.networks.items()},
            "optimizer": optimizer.state_dict(),
            "step": step,
            "total_steps": settings.steps,
            "rng": rng_state(),
        }
        save_checkpoint(checkpoint_path, state)

    net.train()
    bar = tqdm(
        range(start, settings.steps),
        desc=desc,
        initial=start,
        total=settings.steps,
        mininterval=2.0,
        dynamic_ncols=True,
        disable=not group.is_main,
    )
    t0, last_good = time.perf_counter(), start
    for step in bar:
        x0, cond, params = group.shard(batches.at_step(step))
        loss = objective.loss(x0, cond, params, step).mean()
        # Every rank sees the global batch's loss, so all stop together on NaN.
        global_loss = group.mean(loss)
        # Guard before the update so the weights (and the last checkpoint) stay finite.
        if not torch.isfinite(global_loss):
            raise TrainingDiverged(
                f"{desc}: loss is {global_loss.item()} at step {step}; last good checkpoint "
                f"{checkpoint_path} (step {last_good}); lower the learning rate and resume"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
        if not torch.isfinite(grad_norm):
            raise TrainingDiverged(
                f"{desc}: gradient norm is {grad_norm.item()} at step {step}; last good "
                f"checkpoint {checkpoint_path} (step {last_good})"
            )
        optimizer.step()
        objective.after_step(step)
        update_ema(ema, net, ema_warmup(settings.ema_decay, step))

        done = step + 1
        metrics = {"loss": global_loss.item(), "grad_norm": grad_norm.item()}
        due = done % settings.val_every == 0 or done == settings.steps
        if validate is not None and due and group.is_main:
            metrics.update(validate(ema, done))
            net.train()
        if log_metrics is not None and group.is_main:
            log_metrics(metrics, done)
        bar.set_postfix(
            refresh=False,
            loss=f"{metrics['loss']:.4f}",
            it_s=f"{(done - start) / (time.perf_counter() - t0):.1f}",
        )
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            if group.is_main:
                write_checkpoint(done)
            last_good = done
        if on_step is not None:
            on_step(done)
    return ema


def ema_warmup(decay: float, step: int) -> float:
    """min(μ, (1 + k)/(10 + k)): without it a short run's EMA keeps a large share of the
    initial weights (0.999^1200 ≈ 30% after 1,200 steps)."""
    return min(decay, (1 + step) / (10 + step))


def _data_parallel(objective, net: nn.Module) -> None:
    """Send the objective's forward passes through DistributedDataParallel.

    DDP broadcasts rank 0's weights and averages gradients over ranks in `backward`. The
    objectives call their network as `student` or `denoiser`; the optimiser, the EMA and the
    checkpoints keep using `net` itself, so the checkpoint format does not change.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    device = next(net.parameters()).device
    ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    names = [n for n in ("student", "denoiser") if getattr(objective, n, None) is net]
    if not names:
        raise TypeError(f"{type(objective).__name__} has no `student` or `denoiser` network")
    for name in names:
        setattr(objective, name, ddp)
    for module in objective.networks.values():  # e.g. the CT target: rank 0's copy everywhere
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def _restore(path: Path, net, ema, objective, optimizer) -> int:
    ckpt = load_checkpoint(path)
    net.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    for name, state in ckpt["networks"].items():
        objective.networks[name].load_state_dict(state)
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["step"])


# ---------------------------------------------------------------- stages


def _settings(cfg: Config, *, steps: int, batch_size: int, lr: float, ema_decay: float):
    t = cfg.train
    return TrainSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        optimizer=t.optimizer,
        weight_decay=t.weight_decay,
        grad_clip=t.grad_clip,
        ema_decay=ema_decay,
        checkpoint_every=t.checkpoint_every,
        val_every=t.val_every,
        seed=cfg.seed,
    )


def _load_training_data(cfg: Config, device: torch.device):
    processed = cfg.paths.processed_dir
    stats = NormStats.load(processed / "norm_stats.json")
    train = tensors_from_split(processed / "train.npz", device)
    val = tensors_from_split(processed / "val.npz", device)
    shapes = DataShapes.from_arrays(*train)
    return stats, train, val, shapes


def _checkpoint_extra(cfg: Config, kind: str, stats: NormStats, shapes: DataShapes) -> dict:
    return {
        "kind": kind,
        "mode": "edm" if kind == "denoiser" else cfg.train.mode,
        "config": cfg.to_dict(),
        "norm_stats": stats.to_dict(),
        "shapes": shapes.to_dict(),
    }


def denoiser_path(cfg: Config) -> Path:
    return cfg.paths.models_dir / "denoiser.pt"


def consistency_path(cfg: Config) -> Path:
    return cfg.paths.models_dir / "consistency.pt"


def _last_path(final: Path) -> Path:
    return final.parent / "checkpoints" / f"{final.stem}-last.pt"


def _finalise(last: Path, final: Path) -> Path:
    """Publish the finished run: the last checkpoint becomes the stage output (rank 0).
    The resolved config was written beside it before training started."""
    if is_main_process():
        with atomic_path(final) as tmp:
            shutil.copyfile(last, tmp)
    return final


def _write_config(final: Path, cfg: Config) -> None:
    if is_main_process():
        write_json(final.with_suffix(".config.json"), cfg.to_dict())


def _distributed(stage):
    """Under `torchrun`, run the stage inside the process group (gloo on CPU, NCCL on CUDA,
    one GPU per process); otherwise call it as is."""

    @functools.wraps(stage)
    def run(cfg: Config, **kwargs):
        with process_group(resolve_device(cfg.device)):
            return stage(cfg, **kwargs)

    return run


@_distributed
def pretrain(cfg: Config, *, resume: bool = False, log_metrics: MetricsFn | None = None) -> Path:
    """EDM denoising pretraining → models/denoiser.pt (the CD teacher and CT warm start)."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    stats, train, val, shapes = _load_training_data(cfg, device)
    denoiser = build_network(cfg, shapes, "denoiser").to(device)
    p = cfg.pretrain
    objective = EDMObjective(denoiser, p.p_mean, p.p_std, cfg.diffusion.sigma_data)
    final = denoiser_path(cfg)
    _write_config(final, cfg)
    fit(
        objective=objective,
        net=denoiser,
        batches=Batches(*train, batch_size=p.batch_size, seed=cfg.seed),
        settings=_settings(
            cfg, steps=p.steps, batch_size=p.batch_size, lr=p.lr, ema_decay=p.ema_decay
        ),
        checkpoint_path=_last_path(final),
        checkpoint_extra=_checkpoint_extra(cfg, "denoiser", stats, shapes),
        resume=resume,
        validate=_denoiser_validation(cfg, val),
        log_metrics=log_metrics,
        desc="pretrain",
    )
    return _finalise(_last_path(final), final)


@_distributed
def train(
    cfg: Config,
    *,
    resume: bool = False,
    log_metrics: MetricsFn | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Consistency training (`train.mode`: ct, ict, cd, ect) → models/consistency.pt."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    stats, train_data, val, shapes = _load_training_data(cfg, device)
    student = build_network(cfg, shapes, "consistency").to(device)
    teacher = _load_teacher(cfg, device)
    if cfg.train.warm_start and teacher is not None:
        # Same backbone and c_noise: the denoiser's EMA weights are a valid starting point.
        student.net.load_state_dict(teacher.net.state_dict())
    elif cfg.train.denoising_warmup > 0:
        _denoising_warmup(cfg, student, train_data)
    objective = consistency_objective(cfg, student, teacher)
    final = consistency_path(cfg)
    _write_config(final, cfg)
    fit(
        objective=objective,
        net=student,
        batches=Batches(*train_data, batch_size=cfg.train.batch_size, seed=cfg.seed),
        settings=_settings(
            cfg,
            steps=cfg.train.steps,
            batch_size=cfg.train.batch_size,
            lr=cfg.train.lr,
            ema_decay=cfg.train.inference_ema_decay,
        ),
        checkpoint_path=_last_path(final),
        checkpoint_extra=_checkpoint_extra(cfg, "consistency", stats, shapes),
        resume=resume,
        validate=_consistency_validation(cfg, val, stats),
        log_metrics=log_metrics,
        on_step=on_step,
        desc=f"train[{cfg.train.mode}]",
    )
    return _finalise(_last_path(final), final)


def _load_teacher(cfg: Config, device: torch.device) -> nn.Module | None:
    path = denoiser_path(cfg)
    if not cfg.pretrain.enabled or not path.is_file():
        return None
    teacher = network_from_checkpoint(load_checkpoint(path, device), weights="ema").to(device)
    return teacher.eval().requires_grad_(False)


def _denoising_warmup(cfg: Config, student: nn.Module, train_data) -> None:
    """EDM steps on the student's own backbone when no pretrained denoiser is given."""
    from halocm.diffusion.precond import EDMPrecond

    denoiser = EDMPrecond(student.net, sigma_data=cfg.diffusion.sigma_data)
    p = cfg.pretrain
    objective = EDMObjective(denoiser, p.p_mean, p.p_std, cfg.diffusion.sigma_data)
    optimizer = torch.optim.RAdam(denoiser.parameters(), lr=p.lr)
    batches = Batches(*train_data, batch_size=p.batch_size, seed=cfg.seed + 1)
    for step in tqdm(range(cfg.train.denoising_warmup), desc="denoising warm-up"):
        loss = objective.loss(*batches.at_step(step), step).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(denoiser.parameters(), cfg.train.grad_clip)
        optimizer.step()


def _val_subset(cfg: Config, val):
    n = min(len(val[0]), cfg.train.val_batches * cfg.train.batch_size)
    return tuple(t[:n] for t in val)


def _denoiser_validation(cfg: Config, val):
    x0, cond, params = _val_subset(cfg, val)
    p = cfg.pretrain

    @torch.no_grad()
    def validate(ema: nn.Module, step: int) -> dict[str, float]:
        from halocm.diffusion.losses import edm_loss

        ema.eval()
        # A fixed generator: every validation sees the same noise, so values are comparable.
        gen = torch.Generator(device=x0.device).manual_seed(cfg.seed)
        loss = edm_loss(
            ema,
            x0,
            cond,
            params,
            p_mean=p.p_mean,
            p_std=p.p_std,
            sigma_data=cfg.diffusion.sigma_data,
            generator=gen,
        )
        return {"val_loss": loss.mean().item()}

    return validate


def _consistency_validation(cfg: Config, val, stats: NormStats):
    """Sample quality, not loss: the CT loss says little about how good samples are."""
    x0, cond, params = _val_subset(cfg, val)

    @torch.no_grad()
    def validate(ema: nn.Module, step: int) -> dict[str, float]:
        from halocm.evaluation.quality import sample_quality

        ema.eval()
        return sample_quality(cfg, ema, x0, cond, params, stats, prefix="val_")

    return validate
