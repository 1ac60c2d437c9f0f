"""Per-channel normalisation of maps and parameters, with its exact inverse.

Maps (docs/design.md §4): y = (log10(1 + x/x0_c) − mean_c) / std_c, channel c on axis −3,
statistics of the training split only; inverse x = x0_c (10^(y·std_c + mean_c) − 1). The softening
scale x0_c is 1 (in the data's mass unit) for the condition and for target channels not
softened; a softened target channel's x0_c is the pixel value below which a given fraction of
its training mass lies, so that the pixels that hold almost none of its mass (nearly every pixel
of a stellar map) sit near 0 and weigh little in a loss. Parameters: plain z-score
p' = (p − mean_j) / std_j. The functions accept NumPy arrays and torch tensors alike and keep
their dtype (and device); log1p/expm1 keep the round trip exact for near-empty pixels too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from halocm.data.sources import RawData
from halocm.io import write_json

_LN10 = math.log(10.0)
# A channel (or parameter) constant over the training set has std 0; use 1 instead so that it
# maps to a constant 0 and the inverse stays exact.
_MIN_STD = 1e-12
_FORMAT = "log10(1+x/x0) z-score v2"


@dataclass
class NormStats:
    """Normalisation statistics; plain floats and strings so that they serialise to JSON and
    sit inside a checkpoint loadable with `weights_only=True`."""

    condition_mean: list[float]
    condition_std: list[float]
    target_mean: list[float]
    target_std: list[float]
    target_softening: list[float]  # x0_c: 1.0 where the channel is not softened
    params_mean: list[float]
    params_std: list[float]
    channel_names: list[str]
    condition_names: list[str]
    param_names: list[str]
    box_size: float

    def to_dict(self) -> dict:
        return {"format": _FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        fields = cls.__dataclass_fields__
        missing = [k for k in fields if k not in d]
        if missing:
            raise ValueError(f"normalisation statistics: missing keys {missing}")
        stats = cls(**{k: d[k] for k in fields})
        stats._check()
        return stats

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (temp file, then rename)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable normalisation statistics ({err})") from None
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    def _check(self) -> None:
        if len(self.target_softening) != len(self.target_mean) or any(
            x0 <= 0 for x0 in self.target_softening
        ):
            raise ValueError(
                "normalisation statistics: target_softening needs one positive scale per channel"
            )
        pairs = (
            ("condition", self.condition_mean, self.condition_std, self.condition_names),
            ("target", self.target_mean, self.target_std, self.channel_names),
            ("params", self.params_mean, self.params_std, self.param_names),
        )
        for what, mean, std, names in pairs:
            if not len(mean) == len(std) == len(names):
                raise ValueError(
                    f"normalisation statistics: {what} has {len(mean)} means, {len(std)} stds "
                    f"and {len(names)} names"
                )
            if any(s <= 0 for s in std):
                raise ValueError(f"normalisation statistics: {what} std must be positive")

    @property
    def n_condition_channels(self) -> int:
        return len(self.condition_mean)

    @property
    def n_target_channels(self) -> int:
        return len(self.target_mean)

    @property
    def n_params(self) -> int:
        return len(self.params_mean)


# ---------------------------------------------------------------------------------- fitting


def fit_stats(raw_train: RawData, softening: dict[str, float] | None = None) -> NormStats:
    """Statistics of the (training) maps, computed in float64. `softening` maps a target
    channel's name to the fraction of its mass that lies in pixels fainter than its x0."""
    x0 = softening_scales(raw_train, softening or {})
    c_mean, c_std = _log_channel_stats(raw_train.condition, [1.0] * raw_train.condition.shape[1])
    t_mean, t_std = _log_channel_stats(raw_train.target, x0)
    p = np.asarray(raw_train.params, dtype=np.float64)
    p_mean, p_std = p.mean(axis=0), p.std(axis=0)
    return NormStats(
        condition_mean=c_mean,
        condition_std=c_std,
        target_mean=t_mean,
        target_std=t_std,
        target_softening=x0,
        params_mean=[float(v) for v in p_mean],
        params_std=_safe_std(p_std),
        channel_names=list(raw_train.channel_names),
        condition_names=list(raw_train.condition_names),
        param_names=list(raw_train.param_names),
        box_size=float(raw_train.box_size),
    )


def check_channel_keys(key: str, per_channel: dict, channel_names) -> None:
    """A config mapping keyed by target channel (`key`) names only channels the data have."""
    unknown = sorted(set(per_channel) - set(channel_names))
    if unknown:
        raise ValueError(
            f"{key}: no target channel named {unknown}; the channels are {list(channel_names)}"
        )


def softening_scales(raw_train: RawData, softening: dict[str, float]) -> list[float]:
    """x0 per target channel: 1.0, or for a channel named in `softening` the pixel value below
    which that fraction of the channel's training mass lies (a mass-weighted quantile)."""
    check_channel_keys("data.softening", softening, raw_train.channel_names)
    scales = []
    for c, name in enumerate(raw_train.channel_names):
        fraction = softening.get(name, 0.0)
        if fraction <= 0.0:
            scales.append(1.0)
            continue
        pixels = np.sort(np.asarray(raw_train.target[:, c], dtype=np.float64).ravel())
        mass_below = np.cumsum(pixels) / pixels.sum()
        scales.append(float(pixels[np.searchsorted(mass_below, fraction)]))
    return scales


def _log_channel_stats(x: np.ndarray, x0: list[float]) -> tuple[list[float], list[float]]:
    # One channel at a time keeps the float64 copy small.
    means, stds = [], []
    for c in range(x.shape[1]):
        logs = np.log1p(np.asarray(x[:, c], dtype=np.float64) / x0[c]) / _LN10
        means.append(float(logs.mean()))
        stds.append(float(logs.std()))
    return means, _safe_std(np.asarray(stds))


def _safe_std(std: np.ndarray) -> list[float]:
    return [float(s) if s > _MIN_STD else 1.0 for s in np.atleast_1d(std)]


# ------------------------------------------------------------------------- maps, both ways


def normalize_condition(x, stats: NormStats):
    """Physical condition maps (..., Cc, H, W) → normalised log space."""
    ones = [1.0] * stats.n_condition_channels
    return _forward(x, stats.condition_mean, stats.condition_std, ones, "condition")


def denormalize_condition(y, stats: NormStats):
    ones = [1.0] * stats.n_condition_channels
    return _inverse(y, stats.condition_mean, stats.condition_std, ones, "condition")


def normalize_target(x, stats: NormStats):
    """Physical target maps (..., Ct, H, W) → normalised log space."""
    return _forward(x, stats.target_mean, stats.target_std, stats.target_softening, "target")


def denormalize_target(y, stats: NormStats):
    """Exact inverse of `normalize_target`: x = x0 (10^(y·std + mean) − 1)."""
    return _inverse(y, stats.target_mean, stats.target_std, stats.target_softening, "target")


def generated_target(y, stats: NormStats):
    """A generated map in physical units: `denormalize_target` floored at zero mass. A
    softened channel's empty pixels sit at the transform's zero, and a generator's noise there
    would otherwise come back as negative masses (38% of the stellar pixels at softening 0.01)."""
    x = denormalize_target(y, stats)
    if isinstance(x, torch.Tensor):
        return torch.clamp_min(x, 0.0)
    return np.maximum(x, 0.0)


def _forward(x, mean: list[float], std: list[float], x0: list[float], what: str):
    m, s, x0 = _channel_consts(x, (mean, std, x0), what)
    if isinstance(x, torch.Tensor):
        return (torch.log1p(x / x0) / _LN10 - m) / s
    return (np.log1p(x / x0) / _LN10 - m) / s


def _inverse(y, mean: list[float], std: list[float], x0: list[float], what: str):
    m, s, x0 = _channel_consts(y, (mean, std, x0), what)
    if isinstance(y, torch.Tensor):
        return x0 * torch.expm1((y * s + m) * _LN10)
    return x0 * np.expm1((y * s + m) * _LN10)


def _channel_consts(x, columns: tuple[list[float], ...], what: str):
    """Each per-channel list shaped (C, 1, 1), in x's float dtype (and device), to broadcast
    on −3."""
    n = len(columns[0])
    if x.ndim < 3 or x.shape[-3] != n:
        raise ValueError(f"{what}: expected {n} channels on axis -3, got shape {tuple(x.shape)}")
    return tuple(_consts(x, values, (-1, 1, 1)) for values in columns)


def _consts(x, values: list[float], shape: tuple[int, ...]):
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.tensor(values, dtype=dtype, device=x.device).reshape(shape)
    dtype = x.dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float64
    return np.asarray(values, dtype=dtype).reshape(shape)


# ------------------------------------------------------------------------------- parameters


def normalize_params(p, stats: NormStats):
    """(..., P) parameters → z-scores."""
    m, s = _param_consts(p, stats)
    return (p - m) / s


def denormalize_params(q, stats: NormStats):
    m, s = _param_consts(q, stats)
    return q * s + m


def _param_consts(p, stats: NormStats):
    if p.shape[-1] != stats.n_params:
        raise ValueError(f"params: expected {stats.n_params} columns, got shape {tuple(p.shape)}")
    return _consts(p, stats.params_mean, (-1,)), _consts(p, stats.params_std, (-1,))
