"""Painting a whole box (DESIGN.md §7): every halo's cutout generated, pasted back smoothly.

Given a periodic DMO map of the box (N × N, mass per pixel, rows = y) and a halo catalogue
(x, y in Mpc/h, m200 in Msun/h), each halo with M200 ≥ mass_min gets an n × n cutout of the
model's pixel side, centred on the halo (to the nearest lattice point of cutout centres: a
pixel corner for even n, so ≤ h/2 off per axis), with periodic wrap. The cutouts stream
through the generator in batches; each result is pasted back at once, so memory holds the
box accumulators and one batch, never all cutouts.

Pasting (a partition of unity). Halo h's cutout carries the separable flat-top cosine
(Tukey) window T_h(x) = w(u_x) w(u_y), with u the offset from the cutout centre in units of
its half-side, w = 1 for |u| ≤ flat and cos²(π/2 (|u| − flat)/(1 − flat)) beyond. With
W = Σ_h T_h and α = min(W, 1) the painted map is

    P = α Σ_h (T_h / W) c_h + (1 − α) B,

c_h the generated cutouts and B the background: the weights α T_h / W and 1 − α sum to one
at every pixel, and where cutouts overlap with W ≥ 1 (in particular inside every flat zone,
which holds R200 for any host up to 10^14.5 Msun/h with the default flat = 0.5 of a
6.25 Mpc/h cutout) the halos' weights T_h / W alone sum to one. A generator that returns
the true cutouts therefore reproduces the true box there to rounding. Where W < 1 (a lone
taper) P = Σ_h T_h c_h + (1 − W) B fades smoothly into the background.

Background (outside halos): the DMO map times the cosmic fractions [1 − f_b, f_b (1 − f*),
f_b f*], f_b = Ωb/Ωm (Ωb = 0.049, Ωm from the catalogue's Omega_m column, else an argument,
else 0.3), f* the fraction of field baryons in stars. f* defaults to 0: no stars where no
halo was painted, every field baryon stays gas, and the background conserves the DMO mass
(dm + gas + stars = DMO). Fractions estimated from the training set would need mass
fractions that the checkpoint does not carry (its statistics are of log maps).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from halocm.data.synthetic import OMEGA_B, disc_rect_area, r200_from_m200
from halocm.io import save_npz, write_text

DEFAULT_OMEGA_M = 0.3  # CAMELS fiducial, used when neither the catalogue nor the caller has Ωm
TAPER_FLAT = 0.5  # flat fraction of the cutout half-side
PIXEL_RTOL = 1e-3  # box and model pixel sides must agree to this relative tolerance
REQUIRED_COLUMNS = ("x", "y", "m200")
CONTEXT_FACTORS = (2, 4)  # context channels: the 2x and 4x neighbourhoods, block-averaged

# (conditions (B, Cc, n, n), params (B, P) or None, catalogue row indices (B,)) →
# physical maps (B, R, C, n, n).
SampleFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray], np.ndarray]


class PaintError(ValueError):
    """Bad painting input: one line that says what and where."""


# ---------------------------------------------------------------------------------------------
# Geometry: windows, cutouts, pasting
# ---------------------------------------------------------------------------------------------


def taper_1d(n: int, flat: float = TAPER_FLAT) -> np.ndarray:
    """w(u) at the n pixel centres, u = (j + ½ − n/2)/(n/2): 1 for |u| ≤ flat, then
    cos²(π/2 (|u| − flat)/(1 − flat)) down to 0 at the cutout edge (a Tukey window)."""
    if not 0.0 <= flat < 1.0:
        raise ValueError(f"taper flat fraction must be in [0, 1), got {flat}")
    u = np.abs((np.arange(n) + 0.5 - n / 2.0) / (n / 2.0))
    t = np.clip((u - flat) / (1.0 - flat), 0.0, 1.0)
    return np.cos(0.5 * np.pi * t) ** 2


def taper_window(n: int, flat: float = TAPER_FLAT) -> np.ndarray:
    """Separable window T = w(u_y) w(u_x), (n, n), maximal (= 1) on the flat central square."""
    w = taper_1d(n, flat)
    return w[:, None] * w[None, :]


def cutout_origin(x, y, pixel: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First row and column (unwrapped) of the n × n cutouts centred nearest to (x, y):
    the centre sits at pixel coordinate origin + n/2, so origin = round(pos/h − n/2)."""
    iy = np.rint(np.asarray(y, float) / pixel - n / 2.0).astype(np.int64)
    ix = np.rint(np.asarray(x, float) / pixel - n / 2.0).astype(np.int64)
    return iy, ix


def _wrap(start: int, size: int, n_box: int) -> np.ndarray:
    return (start + np.arange(size)) % n_box


def cut(field: np.ndarray, iy: int, ix: int, size: int) -> np.ndarray:
    """field[..., iy : iy + size, ix : ix + size] with periodic wrap (a copy)."""
    n_box = field.shape[-1]
    return field[..., _wrap(iy, size, n_box)[:, None], _wrap(ix, size, n_box)[None, :]]


def condition_cutout(dmo: np.ndarray, iy: int, ix: int, n: int, channels: int) -> np.ndarray:
    """(channels, n, n): the DMO cutout, then (channels = 3) its 2x and 4x neighbourhoods
    block-averaged to n × n, as the simulator's context channels."""
    maps = [cut(dmo, iy, ix, n)]
    if channels == 3:
        for f in CONTEXT_FACTORS:
            big = cut(dmo, iy - (f - 1) * n // 2, ix - (f - 1) * n // 2, f * n)
            maps.append(big.reshape(n, f, n, f).mean(axis=(1, 3)))
    return np.stack(maps)


def paste(out: np.ndarray, stamp: np.ndarray, iy: int, ix: int) -> None:
    """out[..., wrapped window] += stamp (the stamp's side must not exceed the box's)."""
    n_box, s = out.shape[-1], stamp.shape[-1]
    out[..., _wrap(iy, s, n_box)[:, None], _wrap(ix, s, n_box)[None, :]] += stamp


def blend_weights(coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(halo_scale, background_weight) from W = Σ_h T_h: halo h's weight at a pixel is
    T_h · halo_scale = T_h α / W and the background's is 1 − α, α = min(W, 1); they sum to 1."""
    alpha = np.minimum(coverage, 1.0)
    scale = np.divide(alpha, coverage, out=np.zeros_like(coverage), where=coverage > 0)
    return scale, 1.0 - alpha


def background_fractions(omega_m: float, star_fraction: float = 0.0) -> np.ndarray:
    """[1 − f_b, f_b (1 − f*), f_b f*], f_b = Ωb/Ωm: the hydro channels of a field pixel as
    fractions of its DMO mass (they sum to one)."""
    if not 0.0 < omega_m <= 1.0 or omega_m <= OMEGA_B:
        raise PaintError(f"Omega_m = {omega_m}: must exceed Omega_b = {OMEGA_B} and be ≤ 1")
    if not 0.0 <= star_fraction <= 1.0:
        raise PaintError(f"star_fraction = {star_fraction}: must be in [0, 1]")
    f_b = OMEGA_B / omega_m
    return np.array([1.0 - f_b, f_b * (1.0 - star_fraction), f_b * star_fraction])


def aperture_masses(
    maps: np.ndarray, x: float, y: float, radius: float, pixel: float
) -> np.ndarray:
    """Mass of maps (C, N, N) inside the circle of `radius` about (x, y), periodic: each
    pixel counts by the exact fraction of its area inside the circle (`disc_rect_area`), so
    a circle smaller than a pixel still gets its share. (C,). A circle wider than the box
    counts each pixel once (its image nearest the centre)."""
    n_box = maps.shape[-1]

    def axis(c):
        lo, hi = math.floor((c - radius) / pixel), math.floor((c + radius) / pixel)
        if hi - lo + 1 > n_box:  # a circle wider than the box: each pixel's nearest image
            lo = math.floor(c / pixel) - n_box // 2
            hi = lo + n_box - 1
        idx = np.arange(lo, hi + 1)
        return idx % n_box, idx * pixel - c  # wrapped index, left edge relative to c

    rows, y0 = axis(y)
    cols, x0 = axis(x)
    area = disc_rect_area(
        radius, x0[None, :], x0[None, :] + pixel, y0[:, None], y0[:, None] + pixel
    )
    return np.einsum("cij,ij->c", maps[:, rows[:, None], cols[None, :]], area / pixel**2)


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def check_dmo(dmo: np.ndarray, where: str = "dmo") -> np.ndarray:
    dmo = np.asarray(dmo)
    if dmo.ndim != 2 or dmo.shape[0] != dmo.shape[1]:
        raise PaintError(f"{where}: the DMO map must be square (N, N); got shape {dmo.shape}")
    if dmo.dtype.kind not in "iuf":
        raise PaintError(f"{where}: the DMO map must be numeric; got dtype {dmo.dtype}")
    bad = ~np.isfinite(dmo)
    if bad.any():
        raise PaintError(f"{where}: NaN/inf at pixel {np.argwhere(bad)[0].tolist()}")
    if (dmo < 0).any():
        raise PaintError(f"{where}: negative mass at pixel {np.argwhere(dmo < 0)[0].tolist()}")
    return dmo


def check_catalog(
    catalog: pd.DataFrame, box_size: float, param_names=(), where: str = "catalog"
) -> None:
    """Required columns present and finite, m200 > 0, halos inside [0, L], and the model's
    parameter columns present."""
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


def check_geometry(
    n_box: int, box_size: float, n: int, cutout_size: float, cond_channels: int
) -> float:
    """The box pixel side L/N must equal the model's cutout pixel side; returns it."""
    if not (np.isfinite(box_size) and box_size > 0):
        raise PaintError(f"box size must be a positive number of Mpc/h, got {box_size}")
    h_box, h_model = box_size / n_box, cutout_size / n
    if abs(h_box / h_model - 1.0) > PIXEL_RTOL:
        raise PaintError(
            f"box pixel {box_size:g}/{n_box} = {h_box:.5g} Mpc/h differs from the model's "
            f"{cutout_size:g}/{n} = {h_model:.5g} Mpc/h: wrong --box-size or map resolution"
        )
    if cond_channels not in (1, 3):
        raise PaintError(
            f"the model takes {cond_channels} condition channels; painting "
            "supports 1 (DMO) or 3 (DMO + 2x/4x context)"
        )
    need = n * (CONTEXT_FACTORS[-1] if cond_channels == 3 else 1)
    if n_box < need:
        raise PaintError(
            f"box of {n_box} pixels is smaller than the {need}-pixel neighbourhood "
            "that one cutout needs"
        )
    return h_box


def read_dmo(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise PaintError(f"{path}: DMO map not found")
    try:
        dmo = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PaintError(f"{path}: not a readable .npy map ({err})") from None
    if not isinstance(dmo, np.ndarray):
        raise PaintError(f"{path}: expected one .npy array, got an archive")
    return check_dmo(dmo, str(path))


def read_catalog(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise PaintError(f"{path}: halo catalogue not found")
    try:
        catalog = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PaintError(f"{path}: not a readable CSV ({msg})") from None
    catalog.columns = [str(c).strip() for c in catalog.columns]
    return catalog


# ---------------------------------------------------------------------------------------------
# Painting
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PaintResult:
    """Painted maps (R, C, N, N), the window coverage W (N, N), the per-halo table and
    timings (seconds in all, and inside the generator)."""

    realizations: np.ndarray
    coverage: np.ndarray
    halos: pd.DataFrame
    channel_names: tuple[str, ...]
    box_size: float
    n_painted: int
    seconds: float
    sample_seconds: float

    @property
    def maps(self) -> np.ndarray:
        """Realisation 0, (C, N, N)."""
        return self.realizations[0]

    @property
    def halos_per_second(self) -> float:
        return self.n_painted / self.seconds if self.seconds > 0 else float("nan")


def paint(
    dmo: np.ndarray,
    catalog: pd.DataFrame,
    sample_fn: SampleFn,
    *,
    box_size: float,
    cutout_pixels: int,
    cutout_size: float,
    mass_min: float,
    batch_size: int,
    n_realizations: int = 1,
    param_names: tuple[str, ...] | list[str] = (),
    cond_channels: int = 1,
    channel_names: tuple[str, ...] = ("dm_hydro", "gas", "stars"),
    omega_m: float | None = None,
    star_fraction: float = 0.0,
    fractions: np.ndarray | None = None,
    flat: float = TAPER_FLAT,
    progress: bool = False,
) -> PaintResult:
    """Paint every halo with M200 ≥ mass_min (module docstring). `sample_fn` turns a batch
    of DMO cutouts (and the rows' parameters, or None when param_names is empty) into
    physical maps (B, R, C, n, n); it receives the catalogue row indices so that its
    randomness can be per halo. `fractions` (C,), when given, replaces the cosmic fractions
    of the background (e.g. Σ target / Σ DMO of a training set)."""
    start = time.perf_counter()
    dmo = check_dmo(dmo)
    n, n_box = cutout_pixels, dmo.shape[0]
    h = check_geometry(n_box, box_size, n, cutout_size, cond_channels)
    check_catalog(catalog, box_size, tuple(param_names))
    if not mass_min > 0 or batch_size < 1 or n_realizations < 1:
        raise PaintError(
            f"mass_min = {mass_min:g}, batch_size = {batch_size}, realizations = "
            f"{n_realizations}: must be positive"
        )
    c = len(channel_names)
    if fractions is None:
        if omega_m is None:
            omega_m = (
                float(catalog["Omega_m"].astype(float).mean())
                if "Omega_m" in catalog.columns and len(catalog)
                else DEFAULT_OMEGA_M
            )
        fractions = background_fractions(omega_m, star_fraction)
    fractions = np.asarray(fractions, float)
    if fractions.shape != (c,) or not (np.isfinite(fractions).all() and (fractions >= 0).all()):
        raise PaintError(f"background fractions {fractions.tolist()}: need {c} numbers ≥ 0")

    x = catalog["x"].to_numpy(float) % box_size
    y = catalog["y"].to_numpy(float) % box_size
    m200 = catalog["m200"].to_numpy(float)
    chosen = np.flatnonzero(m200 >= mass_min)
    params = catalog[list(param_names)].to_numpy(np.float64) if param_names else None
    window = taper_window(n, flat)
    num = np.zeros((n_realizations, c, n_box, n_box))
    coverage = np.zeros((n_box, n_box))
    sample_seconds = 0.0
    with tqdm(total=len(chosen), unit="halo", desc="paint", disable=not progress) as bar:
        for lo in range(0, len(chosen), batch_size):
            idx = chosen[lo : lo + batch_size]
            iy, ix = cutout_origin(x[idx], y[idx], h, n)
            cond = np.stack(
                [condition_cutout(dmo, a, b, n, cond_channels) for a, b in zip(iy, ix, strict=True)]
            ).astype(np.float32)
            t0 = time.perf_counter()
            maps = sample_fn(cond, None if params is None else params[idx], idx)
            sample_seconds += time.perf_counter() - t0
            _check_samples(maps, (len(idx), n_realizations, c, n, n))
            # Paste this batch at once; nothing of it is kept.
            for j in range(len(idx)):
                paste(num, window * maps[j], iy[j], ix[j])
                paste(coverage, window, iy[j], ix[j])
            bar.update(len(idx))

    scale, bg_weight = blend_weights(coverage)
    num *= scale
    num += bg_weight * (fractions[:, None, None] * dmo)
    painted = num.astype(np.float32)
    del num
    table = halo_table(catalog, painted[0], dmo, m200 >= mass_min, h, channel_names)
    return PaintResult(
        realizations=painted,
        coverage=coverage.astype(np.float32),
        halos=table,
        channel_names=tuple(channel_names),
        box_size=float(box_size),
        n_painted=len(chosen),
        seconds=time.perf_counter() - start,
        sample_seconds=sample_seconds,
    )


def _check_samples(maps: np.ndarray, shape: tuple[int, ...]) -> None:
    if not isinstance(maps, np.ndarray) or maps.shape != shape:
        got = getattr(maps, "shape", type(maps).__name__)
        raise PaintError(f"generator returned {got}, expected {shape} (B, R, C, n, n)")
    if not np.isfinite(maps).all():
        raise PaintError("generator returned NaN/inf maps")


def halo_table(
    catalog: pd.DataFrame,
    maps: np.ndarray,
    dmo: np.ndarray,
    painted: np.ndarray,
    pixel: float,
    channel_names,
) -> pd.DataFrame:
    """x, y, m200, r200, painted, and per channel (and the DMO) the mass within the
    projected R200 of the painted maps (C, N, N) (`aperture_masses`)."""
    stack = np.concatenate([maps, dmo[None].astype(np.float32)])
    r200 = r200_from_m200(catalog["m200"].to_numpy(float))
    x, y = catalog["x"].to_numpy(float), catalog["y"].to_numpy(float)
    masses = np.array(
        [aperture_masses(stack, x[i], y[i], r200[i], pixel) for i in range(len(catalog))]
    ).reshape(len(catalog), len(stack))
    table = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "m200": catalog["m200"].to_numpy(float),
            "r200": r200,
            "painted": np.asarray(painted, bool),
        }
    )
    for k, name in enumerate([*channel_names, "dmo"]):
        table[f"mass_r200_{name}"] = masses[:, k]
    return table


def model_sampler(gen, *, n_steps: int, n_realizations: int, seed: int) -> SampleFn:
    """A SampleFn from a `halocm.api.Generator`: halo i, realisation r draws its noise from
    (seed, i, r), so a box paints the same whatever the batch size."""
    import torch

    from halocm.data.normalize import denormalize_target, normalize_condition, normalize_params

    def sample(cond: np.ndarray, params: np.ndarray | None, indices: np.ndarray) -> np.ndarray:
        gen.check_inputs(cond, params)
        x = torch.as_tensor(
            normalize_condition(cond.astype(np.float64), gen.stats), dtype=torch.float32
        )
        p = (
            torch.as_tensor(normalize_params(params, gen.stats), dtype=torch.float32)
            if gen.shapes.n_params
            else torch.zeros(len(cond), 0)
        )
        out = np.empty(
            (len(cond), n_realizations, gen.shapes.target_channels, *cond.shape[-2:]), np.float32
        )
        for r in range(n_realizations):
            y = gen.sample_normalized(
                x, p, n_steps=n_steps, seed=seed, indices=indices, realization=r
            )
            out[:, r] = denormalize_target(y.cpu().numpy(), gen.stats)
        return out

    return sample


def paint_with_model(
    gen,
    dmo: np.ndarray,
    catalog: pd.DataFrame,
    *,
    box_size: float,
    n_steps: int = 1,
    n_realizations: int = 1,
    mass_min: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
    **options,
) -> PaintResult:
    """`paint` with a loaded Generator; mass_min and batch_size default to its config's
    `paint` section. `options`: omega_m, star_fraction, fractions, flat."""
    cfg = gen.config.paint
    if n_steps < 1:
        raise PaintError(f"steps = {n_steps}: must be ≥ 1")
    return paint(
        dmo,
        catalog,
        model_sampler(gen, n_steps=n_steps, n_realizations=n_realizations, seed=seed),
        box_size=box_size,
        cutout_pixels=gen.shapes.resolution,
        cutout_size=gen.stats.box_size,
        mass_min=cfg.mass_min if mass_min is None else mass_min,
        batch_size=cfg.batch_size if batch_size is None else batch_size,
        n_realizations=n_realizations,
        param_names=tuple(gen.stats.param_names) if gen.shapes.n_params else (),
        cond_channels=gen.shapes.cond_channels,
        channel_names=tuple(gen.channel_names),
        progress=progress,
        **options,
    )


# ---------------------------------------------------------------------------------------------
# Output and the command line
# ---------------------------------------------------------------------------------------------


def table_path(out: str | Path) -> Path:
    """The per-halo CSV beside OUT.npz: OUT_halos.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}_halos.csv")


def save_painting(result: PaintResult, out: str | Path, **meta) -> tuple[Path, Path]:
    """OUT.npz (maps (C, N, N) = realisation 0, realizations (R, C, N, N) when R > 1,
    coverage, channel_names, box_size, halos as a structured array, `meta` scalars) and the
    per-halo CSV, each written atomically."""
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
    csv = write_text(table_path(out), result.halos.to_csv(index=False))
    return save_npz(out, **arrays), csv


def paint_cli(
    cfg,
    *,
    model,
    dmo,
    halos,
    box_size,
    out,
    steps=None,
    realizations=None,
    mass_min=None,
    batch_size=None,
) -> str:
    """`halocm paint`: read and check the inputs, load the model, paint, write OUT.npz and
    OUT_halos.csv; returns a one-line summary. None arguments fall back to cfg.paint."""
    from halocm.api import load_model

    p = cfg.paint
    steps = p.steps if steps is None else steps
    realizations = p.realizations if realizations is None else realizations
    mass_min = p.mass_min if mass_min is None else mass_min
    batch_size = p.batch_size if batch_size is None else batch_size
    if not (mass_min > 0):
        raise PaintError(f"--mass-min {mass_min:g}: must be positive (Msun/h)")
    # Inputs first: a bad file is reported before the model is loaded.
    dmo_map = read_dmo(dmo)
    catalog = read_catalog(halos)
    check_catalog(catalog, box_size, where=str(halos))
    gen = load_model(model, device=cfg.device)
    names = tuple(gen.stats.param_names) if gen.shapes.n_params else ()
    check_geometry(
        dmo_map.shape[0],
        box_size,
        gen.shapes.resolution,
        gen.stats.box_size,
        gen.shapes.cond_channels,
    )
    check_catalog(catalog, box_size, names, where=str(halos))
    result = paint_with_model(
        gen,
        dmo_map,
        catalog,
        box_size=box_size,
        n_steps=steps,
        n_realizations=realizations,
        mass_min=mass_min,
        batch_size=batch_size,
        seed=cfg.seed,
        progress=True,
    )
    npz, csv = save_painting(result, out, steps=steps, mass_min=mass_min, nfe=gen.nfe(steps))
    n_box = dmo_map.shape[0]
    return (
        f"painted {result.n_painted}/{len(catalog)} halos (M200 ≥ {mass_min:.3g}) into a "
        f"{n_box}² box, {steps} step(s), {realizations} realisation(s): "
        f"{result.halos_per_second:.1f} halos/s → {npz}, {csv}"
    )


__all__ = [
    "PaintError",
    "PaintResult",
    "SampleFn",
    "aperture_masses",
    "background_fractions",
    "blend_weights",
    "check_catalog",
    "check_dmo",
    "check_geometry",
    "condition_cutout",
    "cut",
    "cutout_origin",
    "model_sampler",
    "paint",
    "paint_cli",
    "paint_with_model",
    "read_catalog",
    "read_dmo",
    "save_painting",
    "table_path",
    "taper_window",
]
