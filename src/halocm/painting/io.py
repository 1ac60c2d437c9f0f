"""Painting's inputs and outputs: the DMO map and the halo catalogue, checked once where they
enter (a file or a Python object), and the painted box written out.

`as_dmo` and `as_catalog` turn an array and a table into a `DMOMap` and a `Catalog`, the
checked values that painting takes; given a value they already made, they return it as is,
so whichever way the inputs come (`read_dmo` / `read_catalog`, or a DataFrame handed to
`paint`), each is checked exactly once. Errors are one line naming the input and the first
bad row or pixel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from halocm.io import atomic_paths, write_npz
from halocm.temporaries import remove_stale_files

REQUIRED_COLUMNS = ("x", "y", "m200")


class PaintError(ValueError):
    """Bad painting input: one line that says what and where."""


@dataclasses.dataclass(frozen=True)
class DMOMap:
    """A checked DMO map of a whole box: (N, N), numeric, finite, mass per pixel ≥ 0."""

    values: np.ndarray

    @property
    def n_pixels(self) -> int:
        return self.values.shape[0]


@dataclasses.dataclass(frozen=True)
class Catalog:
    """A halo catalogue checked for one box and one model's parameters: columns x, y
    [Mpc/h] inside [0, box_size], m200 > 0 [Msun/h] and `param_names`, all finite. `frame`
    holds the rows as given (other columns, e.g. Omega_m, kept)."""

    frame: pd.DataFrame
    box_size: float
    param_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frame)

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy(float)


def check_box_size(box_size: float) -> float:
    if not (np.isfinite(box_size) and box_size > 0):
        raise PaintError(f"box size must be a positive number of Mpc/h, got {box_size}")
    return float(box_size)


def as_dmo(dmo: DMOMap | np.ndarray, where: str = "dmo") -> DMOMap:
    """`dmo` checked: square, numeric, finite and non-negative (a DMOMap is returned as is)."""
    if isinstance(dmo, DMOMap):
        return dmo
    dmo = np.asarray(dmo)
    _check_dmo(dmo, where)
    return DMOMap(dmo)


def as_catalog(
    catalog: Catalog | pd.DataFrame,
    *,
    box_size: float,
    param_names=(),
    where: str = "catalog",
) -> Catalog:
    """`catalog` checked for this box and these parameter columns: required columns present
    and finite, m200 > 0, halos inside [0, L]. A Catalog checked for the same box and
    parameters is returned as is; one checked for others is checked again."""
    box_size, param_names = check_box_size(box_size), tuple(param_names)
    if isinstance(catalog, Catalog):
        if (catalog.box_size, catalog.param_names) == (box_size, param_names):
            return catalog
        catalog = catalog.frame
    _check_catalog(catalog, box_size, param_names, where)
    return Catalog(catalog, box_size, param_names)


def _check_dmo(dmo: np.ndarray, where: str) -> None:
    if dmo.ndim != 2 or dmo.shape[0] != dmo.shape[1]:
        raise PaintError(f"{where}: the DMO map must be square (N, N); got shape {dmo.shape}")
    if dmo.dtype.kind not in "iuf":
        raise PaintError(f"{where}: the DMO map must be numeric; got dtype {dmo.dtype}")
    bad = ~np.isfinite(dmo)
    if bad.any():
        raise PaintError(f"{where}: NaN/inf at pixel {np.argwhere(bad)[0].tolist()}")
    if (dmo < 0).any():
        raise PaintError(f"{where}: negative mass at pixel {np.argwhere(dmo < 0)[0].tolist()}")


def _check_catalog(
    catalog: pd.DataFrame, box_size: float, param_names: tuple[str, ...], where: str
) -> None:
    if len(catalog) == 0:
        raise PaintError(f"{where}: no halos (the catalogue has no rows)")
    missing = [c for c in REQUIRED_COLUMNS if c not in catalog.columns]
    if missing:
        raise PaintError(f"{where}: missing columns {missing} (need x, y [Mpc/h], m200 [Msun/h])")
    missing = [p for p in param_names if p not in catalog.columns]
    if missing:
        raise PaintError(
            f"{where}: missing parameter columns {missing}; the model needs "
            f"{list(param_names)} per halo"
        )
    for col in (*REQUIRED_COLUMNS, *param_names):
        values = pd.to_numeric(catalog[col], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise PaintError(
                f"{where}: column '{col}' row {bad[0]}: not a finite number "
                f"({catalog[col].iloc[bad[0]]!r})"
            )
    m = catalog["m200"].to_numpy(float)
    if (m <= 0).any():
        i = int(np.flatnonzero(m <= 0)[0])
        raise PaintError(f"{where}: m200 row {i} must be positive, got {m[i]:g}")
    x, y = catalog["x"].to_numpy(float), catalog["y"].to_numpy(float)
    out = (x < 0) | (x > box_size) | (y < 0) | (y > box_size)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise PaintError(
            f"{where}: halo row {i} at (x, y) = ({x[i]:g}, {y[i]:g}) Mpc/h lies "
            f"outside the box [0, {box_size:g}]"
        )


def read_dmo(path: str | Path) -> DMOMap:
    """The DMO map of a `.npy` file, checked (`as_dmo`)."""
    path = Path(path)
    if not path.is_file():
        raise PaintError(f"{path}: DMO map not found")
    try:
        dmo = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else "empty or truncated"
        raise PaintError(f"{path}: not a readable .npy map ({reason})") from None
    if not isinstance(dmo, np.ndarray):
        raise PaintError(f"{path}: expected one .npy array, got an archive")
    return as_dmo(dmo, str(path))


def read_catalog(path: str | Path, *, box_size: float, param_names=()) -> Catalog:
    """The halo catalogue of a CSV file (header names stripped), checked for the box and the
    model's parameter columns (`as_catalog`)."""
    path = Path(path)
    if not path.is_file():
        raise PaintError(f"{path}: halo catalogue not found")
    try:
        catalog = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PaintError(f"{path}: not a readable CSV ({msg})") from None
    catalog.columns = [str(c).strip() for c in catalog.columns]
    return as_catalog(catalog, box_size=box_size, param_names=param_names, where=str(path))


def table_path(out: str | Path) -> Path:
    """The per-halo CSV beside OUT.npz: OUT_halos.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}_halos.csv")


def save_painting(result, out: str | Path, **meta) -> tuple[Path, Path]:
    """OUT.npz (maps (C, N, N) = realisation 0, realizations (R, C, N, N) when R > 1,
    coverage, channel_names, box_size, halos as a structured array, `meta` scalars) and the
    per-halo CSV, from a `PaintResult`. Published together: both are written first and
    renamed into place only when both are complete; non-finite maps are refused."""
    bad = ~np.isfinite(result.realizations)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise PaintError(f"painted maps hold NaN/inf (first at {where}); nothing written")
    arrays = {
        "maps": result.maps,
        "coverage": result.coverage,
        "channel_names": np.array(result.channel_names),
        "box_size": np.float64(result.box_size),
        "halos": result.halos.to_records(index=False).view(np.ndarray),
        **{k: np.asarray(v) for k, v in meta.items()},
    }
    if len(result.realizations) > 1:
        arrays["realizations"] = result.realizations
    out, csv = Path(out), table_path(out)
    remove_stale_files(out.parent)
    with atomic_paths(out, csv) as (out_tmp, csv_tmp):
        write_npz(out_tmp, arrays)
        csv_tmp.write_text(result.halos.to_csv(index=False))
    return out, csv
