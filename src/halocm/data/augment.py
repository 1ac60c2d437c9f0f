"""The symmetries of a halo cutout, used to augment training maps (docs/design.md §4).

A cutout is centred on its host at the corner of the four central pixels, and the simulator's
physics has no preferred direction in the sky plane. The 8 symmetries of the square pixel
grid (quarter turns, each with or without a mirror flip) therefore map the grid onto itself
with the host fixed, and turn a pair (condition, target) into another pair of the same law.
"""

from __future__ import annotations

import numpy as np
import torch

N_SYMMETRIES = 8


def dihedral(maps: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """maps (B, C, H, W) with map i moved by symmetry which[i] ∈ [0, 8): a mirror flip of
    the columns when which ≥ 4, then (which mod 4) quarter turns."""
    out = torch.empty_like(maps)
    for s in range(N_SYMMETRIES):
        chosen = which == s
        if chosen.any():
            m = maps[chosen]
            if s >= 4:
                m = m.flip(-1)
            out[chosen] = torch.rot90(m, s % 4, dims=(-2, -1))
    return out


def symmetries_at_step(seed: int, step: int, n: int) -> torch.Tensor:
    """The symmetry of each of the n maps of a step's batch: a function of (seed, step) only,
    so a resumed run draws the same ones."""
    state = np.random.SeedSequence([seed, step]).generate_state(1)[0]
    return torch.randint(N_SYMMETRIES, (n,), generator=torch.Generator().manual_seed(int(state)))
