"""`halocm prepare`: the configured source → normalised, halo-grouped splits (docs/design.md §4)."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config
from halocm.data.prepare import prepare as prepare_splits
from halocm.data.sources import DataError, RawData, load_source
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
    check_trainable(raw, unet_levels=len(cfg.model.channel_mult))
    return prepare_splits(
        raw,
        Path(cfg.paths.processed_dir),
        split_fractions=d.split_fractions,
        softening=d.softening,
        seed=cfg.seed,
    )


def check_trainable(raw: RawData, *, unet_levels: int) -> None:
    """Refuse here, not hours later, data that validate but cannot train: maps whose side
    the UNet cannot halve `unet_levels - 1` times, and channels that are zero everywhere
    (nothing to learn; their normalisation would divide by zero)."""
    side, factor = raw.condition.shape[-1], 2 ** (unet_levels - 1)
    if side % factor:
        raise DataError(
            f"{raw.origin}: key 'condition': maps of {side}x{side} pixels; the UNet "
            f"(model.channel_mult, {unet_levels} levels) needs a side divisible by {factor}"
        )
    for key, names in (("condition", raw.condition_names), ("target", raw.channel_names)):
        maps = getattr(raw, key)
        for c, name in enumerate(names):
            if not maps[:, c].any():
                raise DataError(
                    f"{raw.origin}: key {key!r} channel {c} ({name}): zero in every map"
                )


def run(cfg: Config, log) -> None:
    prepare(cfg)
    log.artifact(norm_stats_path(cfg))
