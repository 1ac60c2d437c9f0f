"""The residual the training stages fit (halocm.residual): around the `regress` stage's mean
network when `mean.enabled`, else the identity."""

from __future__ import annotations

import torch

from halocm.checkpoint import SAMPLING_KEYS, load_checkpoint
from halocm.config import Config
from halocm.data.normalize import check_channel_keys
from halocm.residual import Residual, fit_residual
from halocm.stages.common import mean_path


def residual_for(cfg: Config, channel_names: list[str], train: tuple, device) -> Residual:
    """The residual the generators model: around the `regress` stage's mean network when
    `mean.enabled`, fitted on the training tensors (y, cond, params); else the identity."""
    if not cfg.mean.enabled:
        return Residual.identity()
    path = mean_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: mean.enabled is true but there is no mean network (run `halocm regress`)"
        )
    mean = load_checkpoint(path, device, need=SAMPLING_KEYS, kind="mean")
    tail = tail_scales(cfg.mean.tail, channel_names)
    return fit_residual(mean, *train, tail, conditions=cfg.mean.condition_generators)


def tail_scales(tail: dict[str, float], channel_names: list[str]) -> torch.Tensor | None:
    """`mean.tail` as one scale per target channel (0: none), or None when it is empty."""
    if not tail:
        return None
    check_channel_keys("mean.tail", tail, channel_names)
    return torch.tensor([float(tail.get(name, 0.0)) for name in channel_names])


def encode(residual: Residual, data: tuple) -> tuple:
    """(y, cond, params) → (r, the generators' condition, params)."""
    y, cond, params = data
    mu = residual.predict(cond, params)
    return residual.encode(y, mu), residual.generator_condition(cond, mu), params


def check_same_residual(ckpt: dict, residual: Residual, path) -> None:
    """A warm start or teacher must model the same residual as the student about to train."""
    ours = residual.state()
    theirs = ckpt.get("residual")
    same = (ours is None and theirs is None) or (
        ours is not None
        and theirs is not None
        and ours["scale"] == theirs["scale"]
        and ours["tail"] == theirs.get("tail")
        and ours["conditions"] == theirs.get("conditions", False)
    )
    if not same:
        raise ValueError(
            f"{path}: pretrained with another mean network (or mean.enabled or "
            "mean.condition_generators differs); rerun `halocm pretrain`"
        )
