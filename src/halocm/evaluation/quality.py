"""A quick sample-quality score for validation and tuning: P(k) and r(k) errors on a batch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from halocm.config import Config
from halocm.data.normalize import NormStats, denormalize_target
from halocm.evaluation.metrics import pk_error, rk_error
from halocm.sampling import make_generators, sample_batch


@torch.no_grad()
def sample_quality(
    cfg: Config,
    net: nn.Module,
    x0: torch.Tensor,
    cond: torch.Tensor,
    params: torch.Tensor,
    stats: NormStats,
    *,
    prefix: str = "",
    n_steps: int | None = None,
) -> dict[str, float]:
    """Mean over channels of pk_err and rk_err of `n_steps` samples against the truth.

    The same seeds every call, so successive validations differ only through the weights.
    """
    n_steps = n_steps or cfg.train.n_sampling_steps
    gens = make_generators(cfg.seed, range(len(x0)), 0, x0.device)
    gen = sample_batch(
        net,
        "consistency",
        cond,
        params,
        n_steps=n_steps,
        cfg=cfg,
        generators=gens,
        out_channels=x0.shape[1],
    )
    gen = np.asarray(denormalize_target(gen.float().cpu().numpy(), stats), dtype=np.float64)
    true = np.asarray(denormalize_target(x0.float().cpu().numpy(), stats), dtype=np.float64)
    pk = [pk_error(gen[:, c], true[:, c], stats.box_size) for c in range(gen.shape[1])]
    rk = [rk_error(gen[:, c], true[:, c], stats.box_size) for c in range(gen.shape[1])]
    pk_mean, rk_mean = float(np.mean(pk)), float(np.mean(rk))
    return {
        f"{prefix}pk_err": pk_mean,
        f"{prefix}rk_err": rk_mean,
        f"{prefix}score": pk_mean + rk_mean,
    }
