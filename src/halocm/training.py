"""One training loop for every objective, and the pieces the `pretrain` and `train` stages
(halocm.stages) assemble it from.

The loop owns what all methods share: batching, the optimiser, gradient clipping, the inference
EMA, periodic validation, atomic checkpoints every K steps, bit-exact `resume`, a NaN/inf guard
and progress. What differs between EDM pretraining, CT, iCT, CD and ECT is the objective.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from halocm.checkpoint import rng_state, save_checkpoint
from halocm.data.augment import dihedral, symmetries_at_step
from halocm.data.dataset import load_split
from halocm.data.normalize import NormStats
from halocm.distributed import Group, is_main_process, rank_seed
from halocm.errors import BadInput
from halocm.io import atomic_paths, write_json
from halocm.models import DataShapes, network_from_checkpoint, update_ema
from halocm.objectives import EDMObjective
from halocm.residual import Residual
from halocm.resume import restore

MetricsFn = Callable[[dict[str, float], int], None]


class TrainingDiverged(BadInput):
    """The loss or gradients became NaN/inf; the last good checkpoint is kept. Bad input:
    the settings (e.g. the learning rate) must change (docs/design.md §2)."""


@dataclass
class TrainSettings:
    """The loop's settings; `inference_ema` is μ of the EMA of the weights used to sample."""

    steps: int
    lr: float
    optimizer: str
    weight_decay: float
    grad_clip: float
    inference_ema: float
    checkpoint_every: int
    val_every: int
    seed: int
    inference_ema_warmup: float = 10.0  # a of the warm-up (1 + k)/(a + k): see ema_warmup

    @classmethod
    def of(cls, loop, optimizer, *, seed: int) -> TrainSettings:
        """From a loop section (`mean`, `pretrain` or `train`: steps, lr, inference_ema and its
        warm-up, checkpoint_every, val_every) and the shared `optimizer` section."""
        return cls(
            steps=loop.steps,
            lr=loop.lr,
            optimizer=optimizer.name,
            weight_decay=optimizer.weight_decay,
            grad_clip=optimizer.grad_clip,
            inference_ema=loop.inference_ema,
            checkpoint_every=loop.checkpoint_every,
            val_every=loop.val_every,
            seed=seed,
            inference_ema_warmup=loop.inference_ema_warmup,
        )


@dataclass
class Batches:
    """Epoch-wise shuffled minibatches whose order depends only on (seed, step): resumable.
    With `augment`, each map of a batch (condition and target together) is moved by one of
    the cutout's 8 symmetries, also drawn from (seed, step) (halocm.data.augment)."""

    target: torch.Tensor
    condition: torch.Tensor
    params: torch.Tensor
    batch_size: int
    seed: int
    augment: bool = False

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
        target, condition = self.target[idx], self.condition[idx]
        if self.augment:
            which = symmetries_at_step(self.seed, step, len(idx)).to(self.target.device)
            target, condition = dihedral(target, which), dihedral(condition, which)
        return target, condition, self.params[idx]


def tensors_from_split(path: str | Path, device: torch.device):
    split = load_split(path)
    return tuple(
        torch.as_tensor(np.asarray(split[key]), dtype=torch.float32, device=device)
        for key in ("target", "condition", "params")
    )


OPTIMIZERS = {"adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}


def make_optimizer(params, *, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay)


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
    channels_last(net, *objective.networks.values())
    if group.size > 1:
        _data_parallel(objective, net)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = make_optimizer(
        net.parameters(),
        name=settings.optimizer,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    start = 0
    if resume and checkpoint_path.is_file():
        start = restore(
            checkpoint_path,
            net=net,
            ema=ema,
            objective=objective,
            optimizer=optimizer,
            extra=checkpoint_extra,
            steps=settings.steps,
            lr=settings.lr,
        )
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
        loss = objective(x0, cond, params, step).mean()
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
        update_ema(
            ema, net, ema_warmup(settings.inference_ema, step, settings.inference_ema_warmup)
        )

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


def channels_last(*nets: nn.Module) -> None:
    """Store the convolution weights as NHWC: the training step runs about a sixth faster on
    CPU (benchmarks/bench_train_step.py); inputs and outputs stay NCHW."""
    for net in nets:
        net.to(memory_format=torch.channels_last)


def ema_warmup(decay: float, step: int, a: float) -> float:
    """min(μ, (1 + k)/(a + k)): without it a short run's EMA keeps a large share of the
    initial weights (0.999^1200 ≈ 30% after 1,200 steps). Until μ caps it, the average spans
    about the last k/(a − 1) steps: a tenth of the run at a = 10, half of it at a = 3."""
    return min(decay, (1 + step) / (a + step))


def _data_parallel(objective, net: nn.Module) -> None:
    """Send the objective's forward passes through DistributedDataParallel.

    DDP broadcasts rank 0's weights and averages gradients over ranks in `backward`. The
    objectives call their network `student`, `denoiser` or `mean`; the optimiser, the EMA and the
    checkpoints keep using `net` itself, so the checkpoint format does not change.
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    device = next(net.parameters()).device
    ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    names = [n for n in ("student", "denoiser", "mean") if getattr(objective, n, None) is net]
    if not names:
        raise TypeError(f"{type(objective).__name__} has no `student`, `denoiser` or `mean`")
    for name in names:
        setattr(objective, name, ddp)
    for module in objective.networks.values():  # e.g. the CT target: rank 0's copy everywhere
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


# ------------------------------------------------------- pieces of the training stages


def load_training_data(processed_dir: Path, device: torch.device):
    """(stats, train tensors, val tensors, shapes) of the prepared splits."""
    stats = NormStats.load(processed_dir / "norm_stats.json")
    train = tensors_from_split(processed_dir / "train.npz", device)
    val = tensors_from_split(processed_dir / "val.npz", device)
    shapes = DataShapes.from_arrays(*train)
    return stats, train, val, shapes


def last_path(final: Path) -> Path:
    """The running checkpoint behind the published `final` one."""
    return final.parent / "checkpoints" / f"{final.stem}-last.pt"


def write_config(final: Path, config: dict) -> None:
    """The resolved config beside the running checkpoint, written before training starts
    (rank 0); `finalise` publishes it beside the output together with the checkpoint."""
    if is_main_process():
        write_json(last_path(final).with_suffix(".config.json"), config)


def finalise(last: Path, final: Path) -> Path:
    """Publish the finished run (rank 0): the last checkpoint becomes the stage output and its
    config `<name>.config.json` beside it, both renamed into place only once both are
    copied, so a failed run never leaves a new config beside an old checkpoint."""
    if is_main_process():
        sources = [last, last.with_suffix(".config.json")]
        targets = [final, final.with_suffix(".config.json")]
        if not sources[1].is_file():  # a loop run without a config (e.g. a test's `fit`)
            sources, targets = sources[:1], targets[:1]
        with atomic_paths(*targets) as tmps:
            for source, tmp in zip(sources, tmps, strict=True):
                shutil.copyfile(source, tmp)
    return final


def frozen_network(ckpt: dict) -> nn.Module:
    """A checkpoint's inference EMA, frozen (e.g. the denoiser: CD teacher and warm start)."""
    return network_from_checkpoint(ckpt, weights="ema").eval().requires_grad_(False)


def denoising_warmup(
    objective: EDMObjective,
    train_data,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    optimizer: str,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    augment: bool = False,
) -> None:
    """`steps` plain EDM steps on the objective's denoiser (e.g. the student's backbone with
    EDM preconditioning) when no pretrained denoiser is given: no EMA, checkpoints or
    validation."""
    denoiser = objective.denoiser
    opt = make_optimizer(denoiser.parameters(), name=optimizer, lr=lr, weight_decay=weight_decay)
    batches = Batches(*train_data, batch_size=batch_size, seed=seed, augment=augment)
    for step in tqdm(range(steps), desc="denoising warm-up"):
        loss = objective(*batches.at_step(step), step).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(denoiser.parameters(), grad_clip)
        opt.step()


def val_subset(val, n: int):
    """The first `n` validation maps (all when fewer)."""
    n = min(len(val[0]), n)
    return tuple(t[:n] for t in val)


def denoiser_validation(val, objective: EDMObjective, *, seed: int):
    """The objective's EDM loss of the inference EMA on `val`, with the same noise at every
    validation."""
    x0, cond, params = val

    @torch.no_grad()
    def validate(ema: nn.Module, step: int) -> dict[str, float]:
        ema.eval()
        # A fixed generator: every validation sees the same noise, so values are comparable.
        gen = torch.Generator(device=x0.device).manual_seed(seed)
        return {"val_loss": objective.loss_of(ema, x0, cond, params, generator=gen).mean().item()}

    return validate


def mean_validation(val, objective):
    """The MSE of the inference EMA's conditional mean on `val`."""
    x0, cond, params = val

    @torch.no_grad()
    def validate(ema: nn.Module, step: int) -> dict[str, float]:
        ema.eval()
        return {"val_loss": objective.loss_of(ema, x0, cond, params).mean().item()}

    return validate


def consistency_validation(
    val,
    stats: NormStats,
    residual: Residual,
    *,
    n_steps: int,
    sigma_max: float,
    intermediate_sigmas: tuple[float, ...],
    seed: int,
):
    """Sample quality, not loss: the CT loss says little about how good samples are. `val`
    holds the normalised maps; the model samples residuals, decoded around their mean."""
    x0, cond, params = val
    mu = residual.predict(cond, params)
    net_cond = residual.generator_condition(cond, mu)

    @torch.no_grad()
    def validate(ema: nn.Module, step: int) -> dict[str, float]:
        from halocm.evaluation.quality import sample_quality

        ema.eval()
        return sample_quality(
            ema,
            x0,
            net_cond,
            params,
            stats,
            n_steps=n_steps,
            sigma_max=sigma_max,
            intermediate_sigmas=intermediate_sigmas,
            seed=seed,
            decode=lambda r: residual.decode(r, mu),
            prefix="val_",
        )

    return validate
