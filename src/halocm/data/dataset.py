"""Halo-grouped splits and the loader of prepared split files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from halocm.data.sources import DataError

SPLITS = ("train", "val", "test")
SPLIT_KEYS = ("condition", "target", "params", "group")


def split_by_group(
    group: np.ndarray,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    *,
    origin: str | None = None,
) -> dict[str, np.ndarray]:
    """Indices of the train, val and test maps; every group lands in exactly one split.

    The distinct groups are shuffled with `seed`; the two cut points are the group boundaries
    whose cumulative map counts come closest to the fractions, constrained so that every
    split keeps at least one group. Each index array is sorted.
    """
    group = np.asarray(group)
    prefix = f"{origin}: key 'group': " if origin else ""
    labels, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    n_groups = len(labels)
    if n_groups < len(SPLITS):
        empty = SPLITS[max(n_groups, 1)]
        raise DataError(
            f"{prefix}split {empty!r} would be empty: {n_groups} distinct group(s) cannot fill "
            f"the {len(SPLITS)} splits train/val/test (need at least {len(SPLITS)})"
        )
    order = np.random.default_rng(seed).permutation(n_groups)
    # cum[j] = number of maps in the first j shuffled groups.
    cum = np.concatenate([[0], np.cumsum(counts[order])])
    goal = np.cumsum(fractions)[:2] * len(group)
    cut1 = _closest(cum, goal[0], lo=1, hi=n_groups - 2)
    cut2 = _closest(cum, goal[1], lo=cut1 + 1, hi=n_groups - 1)

    split_of_group = np.empty(n_groups, dtype=np.int64)
    split_of_group[order[:cut1]] = 0
    split_of_group[order[cut1:cut2]] = 1
    split_of_group[order[cut2:]] = 2
    split_of_map = split_of_group[inverse.reshape(-1)]
    return {name: np.flatnonzero(split_of_map == k) for k, name in enumerate(SPLITS)}


def _closest(cum: np.ndarray, goal: float, lo: int, hi: int) -> int:
    """The cut j in [lo, hi] whose cumulative count cum[j] is nearest `goal`."""
    candidates = np.arange(lo, hi + 1)
    return int(candidates[np.argmin(np.abs(cum[candidates] - goal))])


def load_split(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of a prepared split file, loaded into memory."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (run `halocm prepare` first)")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    for key in SPLIT_KEYS:
        if key not in arrays:
            raise DataError(f"{path}: key {key!r} missing from the prepared split")
    return arrays
