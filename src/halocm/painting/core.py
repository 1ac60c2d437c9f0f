"""The painting algorithm (docs/design.md §7): every halo's cutout generated, pasted back smoothly.

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

import numpy as np
import pandas as pd
from tqdm import tqdm

from halocm.data import fields
from halocm.data.halos import OMEGA_B, r200_from_m200
from halocm.evaluation.metrics import aperture_mass
from halocm.painting.io import (
    Catalog,
    DMOMap,
    PaintError,
    as_catalog,
    as_dmo,
    check_box_size,
)

DEFAULT_OMEGA_M = 0.3  # CAMELS fiducial, used when neither the catalogue nor the caller has Ωm
TAPER_FLAT = 0.5  # flat fraction of the cutout half-side
PIXEL_RTOL = 1e-3  # box and model pixel sides must agree to this relative tolerance
CONTEXT_FACTORS = (2, 4)  # context channels: the 2x and 4x neighbourhoods, block-averaged

# (conditions (B, Cc, n, n), params (B, P) or None, catalogue row indices (B,)) →
# physical maps (B, R, C, n, n).
SampleFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------
# Geometry: windows, cutouts, blending
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


def condition_cutout(dmo: np.ndarray, iy: int, ix: int, n: int, channels: int) -> np.ndarray:
    """(channels, n, n): the DMO cutout, then (channels = 3) its 2x and 4x neighbourhoods
    block-averaged to n × n, as the simulator's context channels."""
    maps = [fields.cut(dmo, iy, ix, n)]
    if channels == 3:
        for f in CONTEXT_FACTORS:
            big = fields.cut(dmo, iy - (f - 1) * n // 2, ix - (f - 1) * n // 2, f * n)
            maps.append(fields.block_mean(big, f))
    return np.stack(maps)


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


def check_geometry(
    n_box: int, box_size: float, n: int, cutout_size: float, cond_channels: int
) -> float:
    """The box pixel side L/N must equal the model's cutout pixel side; returns it."""
    h_box, h_model = check_box_size(box_size) / n_box, cutout_size / n
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
    dmo: DMOMap | np.ndarray,
    catalog: Catalog | pd.DataFrame,
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
    """Paint every halo with M200 ≥ mass_min (module docstring). `dmo` and `catalog` are
    checked here unless they already were (`as_dmo`, `as_catalog`). `sample_fn` turns a batch
    of DMO cutouts (and the rows' parameters, or None when param_names is empty) into
    physical maps (B, R, C, n, n); it receives the catalogue row indices so that its
    randomness can be per halo. `fractions` (C,), when given, replaces the cosmic fractions
    of the background (e.g. Σ target / Σ DMO of a training set)."""
    start = time.perf_counter()
    dmo = as_dmo(dmo).values
    n, n_box = cutout_pixels, dmo.shape[0]
    h = check_geometry(n_box, box_size, n, cutout_size, cond_channels)
    catalog = as_catalog(catalog, box_size=box_size, param_names=param_names)
    if not mass_min > 0 or batch_size < 1 or n_realizations < 1:
        raise PaintError(
            f"mass_min = {mass_min:g}, batch_size = {batch_size}, realizations = "
            f"{n_realizations}: must be positive"
        )
    c = len(channel_names)
    if fractions is None:
        if omega_m is None:
            frame = catalog.frame
            omega_m = (
                float(frame["Omega_m"].astype(float).mean())
                if "Omega_m" in frame.columns and len(frame)
                else DEFAULT_OMEGA_M
            )
        fractions = background_fractions(omega_m, star_fraction)
    fractions = np.asarray(fractions, float)
    if fractions.shape != (c,) or not (np.isfinite(fractions).all() and (fractions >= 0).all()):
        raise PaintError(f"background fractions {fractions.tolist()}: need {c} numbers ≥ 0")

    x = catalog.column("x") % box_size
    y = catalog.column("y") % box_size
    m200 = catalog.column("m200")
    chosen = np.flatnonzero(m200 >= mass_min)
    params = catalog.frame[list(param_names)].to_numpy(np.float64) if param_names else None
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
                fields.paste(num, window * maps[j], iy[j], ix[j])
                fields.paste(coverage, window, iy[j], ix[j])
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


def periodic_aperture_mass(
    maps: np.ndarray, x: float, y: float, radius: float, pixel: float
) -> np.ndarray:
    """Mass of periodic maps (C, N, N) inside the circle of `radius` about (x, y) [Mpc/h]:
    `metrics.aperture_mass` on the wrapped window around the circle, (C,). A circle wider
    than the box counts each pixel once (its image nearest the centre)."""
    n_box = maps.shape[-1]
    r, cy, cx = radius / pixel, y / pixel, x / pixel
    half = min(math.ceil(r), n_box // 2)
    size = min(2 * half + 1, n_box)
    iy, ix = math.floor(cy) - half, math.floor(cx) - half
    window = fields.cut(maps, iy, ix, size)
    return aperture_mass(window, r, centre=(cy - iy, cx - ix))


def halo_table(
    catalog: Catalog,
    maps: np.ndarray,
    dmo: np.ndarray,
    painted: np.ndarray,
    pixel: float,
    channel_names,
) -> pd.DataFrame:
    """x, y, m200, r200, painted, and per channel (and the DMO) the mass within the
    projected R200 of the painted maps (C, N, N) (`periodic_aperture_mass`)."""
    stack = np.concatenate([maps, dmo[None].astype(np.float32)])
    x, y, m200 = catalog.column("x"), catalog.column("y"), catalog.column("m200")
    r200 = r200_from_m200(m200)
    masses = np.array(
        [periodic_aperture_mass(stack, x[i], y[i], r200[i], pixel) for i in range(len(x))]
    ).reshape(len(x), len(stack))
    table = pd.DataFrame(
        {"x": x, "y": y, "m200": m200, "r200": r200, "painted": np.asarray(painted, bool)}
    )
    for k, name in enumerate([*channel_names, "dmo"]):
        table[f"mass_r200_{name}"] = masses[:, k]
    return table


def paint_with_generator(
    gen,
    dmo: DMOMap | np.ndarray,
    catalog: Catalog | pd.DataFrame,
    *,
    box_size: float,
    n_steps: int,
    n_realizations: int,
    mass_min: float,
    batch_size: int,
    seed: int,
    progress: bool = False,
    **options,
) -> PaintResult:
    """`paint` with a generator such as `halocm.api.Generator` (duck-typed: `sample`,
    `shapes`, `stats`, `channel_names`). Halo i, realisation r draws its noise from
    (seed, i, r) through `gen.sample(..., indices=i)`, so a box paints the same whatever the
    batch size. `options`: omega_m, star_fraction, fractions, flat."""
    if n_steps < 1:
        raise PaintError(f"steps = {n_steps}: must be ≥ 1")

    def sample(cond: np.ndarray, params: np.ndarray | None, indices: np.ndarray) -> np.ndarray:
        return gen.sample(
            cond,
            params,
            n_steps=n_steps,
            n_realizations=n_realizations,
            seed=seed,
            indices=indices,
        )

    return paint(
        dmo,
        catalog,
        sample,
        box_size=box_size,
        cutout_pixels=gen.shapes.resolution,
        cutout_size=gen.stats.box_size,
        mass_min=mass_min,
        batch_size=batch_size,
        n_realizations=n_realizations,
        param_names=tuple(gen.stats.param_names) if gen.shapes.n_params else (),
        cond_channels=gen.shapes.cond_channels,
        channel_names=tuple(gen.channel_names),
        progress=progress,
        **options,
    )
