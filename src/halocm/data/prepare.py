"""Raw data → normalised, halo-grouped train/val/test files (the `prepare` stage's work)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from halocm.data.dataset import SPLITS, split_by_group
from halocm.data.normalize import (
    NormStats,
    fit_stats,
    normalize_condition,
    normalize_params,
    normalize_target,
)
from halocm.data.sources import RawData, validate
from halocm.io import atomic_paths, json_text, write_npz

log = logging.getLogger(__name__)

NORM_STATS_FILE = "norm_stats.json"


def prepare(
    raw: RawData,
    out: Path,
    *,
    split_fractions: tuple[float, float, float],
    softening: dict[str, float],
    seed: int,
) -> Path:
    """Validate `raw`, split it by group (seeded by `seed`), fit the normalisation (with the
    target channels' `softening`, normalize.py) on the training split only and write
    `{train,val,test}.npz` and `norm_stats.json` into `out`, all four together. Returns `out`.

    A split file holds `condition`, `target` (normalised, float32), `params` (z-scored,
    float32, (N, P)), `group`, `index` (row in the source) and, when the source has them, the
    physical `halo_mass`, `r200` and `truth_realizations`.
    """
    validate(raw)
    splits = split_by_group(raw.group, split_fractions, seed, origin=raw.origin)
    stats = fit_stats(raw.subset(splits["train"]), softening)

    # Published together: a failure (a full disk) leaves the previous splits and statistics.
    out = Path(out)
    files = [out / f"{name}.npz" for name in SPLITS] + [out / NORM_STATS_FILE]
    with atomic_paths(*files) as tmps:
        for name, tmp in zip(SPLITS, tmps, strict=False):
            write_npz(tmp, _split_arrays(raw, splits[name], stats))
        tmps[-1].write_text(json_text(stats.to_dict()))
    sizes = ", ".join(f"{name} {len(splits[name])}" for name in SPLITS)
    log.info("prepared %s maps from %s: %s → %s", raw.n_maps, raw.origin, sizes, out)
    return out


def _split_arrays(raw: RawData, index: np.ndarray, stats: NormStats) -> dict[str, np.ndarray]:
    part = raw.subset(index)
    arrays = {
        "condition": normalize_condition(part.condition, stats).astype(np.float32),
        "target": normalize_target(part.target, stats).astype(np.float32),
        "params": normalize_params(part.params, stats).astype(np.float32),
        "group": part.group,
        "index": index.astype(np.int64),
    }
    return arrays | part.extras
