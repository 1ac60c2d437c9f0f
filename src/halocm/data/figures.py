"""Figures of the data: a grid of generated cutouts (DMO condition and hydro targets)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from halocm.io import atomic_path

# Stars are zero away from galaxies: show at most this many decades below each panel's peak.
_DECADES = 5.0


def _log_mass(x: np.ndarray) -> np.ndarray:
    """log10 of the mass per pixel; empty pixels are masked (drawn in the lowest colour)."""
    with np.errstate(divide="ignore"):
        return np.ma.masked_invalid(np.log10(np.where(x > 0, x, np.nan)))


def plot_cutouts(
    condition: np.ndarray,
    target: np.ndarray,
    path: str | Path,
    channel_names: Sequence[str],
    n: int,
    *,
    halo_mass: np.ndarray | None = None,
    box_size: float | None = None,
) -> Path:
    """Grid of `n` cutouts: rows are maps, columns DMO then each target channel, in log10 of
    the mass per pixel [Msun/h]. DMO and dm_hydro share one colour range per row so that the
    1 − Ωb/Ωm drop and the contraction are visible; gas and stars have their own. Titles give
    log10 M200c when `halo_mass` is given. Written atomically; returns `path`."""
    n = min(n, len(condition))
    names = ["DMO", *channel_names]
    extent = None if box_size is None else (0.0, box_size, 0.0, box_size)
    # A bare Figure draws to files without pyplot's global state or a display backend.
    fig = Figure(figsize=(2.3 * len(names), 2.3 * n), layout="constrained")
    axes = fig.subplots(n, len(names), squeeze=False)
    for i in range(n):
        panels = [condition[i, 0], *target[i]]
        dark_top = max(float(np.max(panels[0])), float(np.max(panels[1])))
        for j, (ax, field, name) in enumerate(zip(axes[i], panels, names, strict=True)):
            top = dark_top if j < 2 else float(np.max(field))
            img = ax.imshow(
                _log_mass(field),
                origin="lower",
                cmap="magma" if j < 3 else "cividis",
                vmin=np.log10(max(top, 1.0)) - _DECADES if j == 3 else None,
                vmax=np.log10(max(top, 1.0)),
                extent=extent,
            )
            if j < 2:
                img.set_clim(vmin=np.log10(max(np.min(panels[0]), 1.0)))
            title = name
            if halo_mass is not None and j == 0:
                title = f"{name}  log M={np.log10(halo_mass[i]):.2f}"
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(img, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    fig.suptitle("generated cutouts: log10 mass per pixel [Msun/h]", fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return path
