"""`halocm prepare`: the configured source → normalised, halo-grouped splits (DESIGN.md §4)."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config
from halocm.data.prepare import prepare as prepare_splits
from halocm.data.sources import load_source
from halocm.stages.common import norm_stats_path, source_path


def prepare(cfg: Config) -> Path:
    """Read `data.source`, split by group (seeded by `seed`), normalise; → processed_dir."""
    d = cfg.data
    raw = load_source(
        d.source,
        source_path(cfg),
        camels_suite=d.camels_suite,
        camels_set=d.camels_set,
        crop=d.crop,
    )
    return prepare_splits(
        raw, Path(cfg.paths.processed_dir), split_fractions=d.split_fractions, seed=cfg.seed
    )


def run(cfg: Config, log) -> None:
    prepare(cfg)
    log.artifact(norm_stats_path(cfg))
