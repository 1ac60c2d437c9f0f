"""A quick sample-quality score for validation and tuning: P(k) and r(k) errors on a batch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from halocm.data.normalize import NormStats, denormalize_target, generated_target
from halocm.evaluation.metrics import pk_error, rk_error
from halocm.sampling import consistency_batch, make_generators


@torch.no_grad()
def sample_quality(
    net: nn.Module,
    x0: torch.Tensor,
    cond: torch.Tensor,
    params: torch.Tensor,
    stats: NormStats,
    *,
    n_steps: int,
    sigma_max: float,
    intermediate_sigmas: tuple[float, ...],
    seed: int,
    decode=None,
    prefix: str = "",
) -> dict[str, float]:
    """Mean over channels of pk_err and rk_err of `n_steps` consistency samples against the
    truth. The same seeds every call, so successive validations differ only through the weights.
    `decode` maps the net's samples to normalised maps (the residual's; None: they are).
    """
    gens = make_generators(seed, range(len(x0)), 0, x0.device)
    gen = consistency_batch(
        net,
        cond,
        params,
        n_steps=n_steps,
        generators=gens,
        out_channels=x0.shape[1],
        sigma_max=sigma_max,
        intermediate_sigmas=intermediate_sigmas,
    )
    if decode is not None:
        gen = decode(gen)
    gen = np.asarray(generated_target(gen.float().cpu().numpy(), stats), dtype=np.float64)
    true = np.asarray(denormalize_target(x0.float().cpu().numpy(), stats), dtype=np.float64)
    pk = [pk_error(gen[:, c], true[:, c], stats.box_size) for c in range(gen.shape[1])]
    rk = [rk_error(gen[:, c], true[:, c], stats.box_size) for c in range(gen.shape[1])]
    pk_mean, rk_mean = float(np.mean(pk)), float(np.mean(rk))
    return {
        f"{prefix}pk_err": pk_mean,
        f"{prefix}rk_err": rk_mean,
        f"{prefix}score": pk_mean + rk_mean,
    }
