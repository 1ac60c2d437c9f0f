"""Box mode of the halo simulator (docs/design.md §3, §7): a whole periodic box to paint and score.

One projected slab of side L = N h (h the cutout simulator's pixel side) holds many host halos
under one cosmology and feedback θ:

- DMO map: a periodic lognormal background with the cutout simulator's spectrum
  P_g(k) = 0.5 σ8² k^−2.5, plus every host (tapered NFW + subhalos) painted by
  `synthetic.paint_condition` on a stamp around it and added with periodic wrap;
- hydro maps [dm_hydro, gas, stars]: (1 − f_b) of the background + each host's
  `synthetic.paint_target` hydro DM; the smoothed background gas + each host's bound and
  ejected gas, all of it clumped by one box-wide lognormal field (the same σ and correlation
  length as the cutouts' clumping); the hosts' centrals and satellites for the stars;
- catalogue: x, y [Mpc/h], m200 [Msun/h] and the θ columns (the same on every row).

Host masses follow dN/dM ∝ M^−α (α = 1.9 by default, the low-mass slope of the halo mass
function) on [10^log_mass_min, 10^log_mass_max]; positions are uniform on the lattice of
pixel corners. The lattice is deliberate: the cutout simulator centres every host on a pixel
corner (even n), so a cutout cut around a lattice halo is centred exactly as in training and
the painting error measures the model, not a sub-pixel offset.

Each host is painted on a stamp `stamp_factor` × the cutout side (default 2: the DM taper
ends at 3 R200 ≤ 3.3 Mpc/h); what falls off the stamp (the far tail of the ejected gas) is
dropped, as it is off a training cutout. Randomness: the box (θ, positions, masses,
background, clumping) draws from (seed, 0, BOX_STREAM); host i's concentration and subhalos
from (seed, i, synthetic.HOST_STREAM) and its stellar scatter from synthetic's stream
(seed, i, 1), so host i is the same whatever the batch size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from halocm.config import Simulator
from halocm.data import fields
from halocm.data import synthetic as S
from halocm.data.halos import OMEGA_B
from halocm.io import atomic_path, save_npz, write_text

BOX_STREAM = 1000


@dataclasses.dataclass(frozen=True)
class Box:
    """A simulated box: DMO map (N, N), true hydro maps (3, N, N) in Msun/h per pixel (rows
    are y), its host catalogue and θ."""

    dmo: np.ndarray
    hydro: np.ndarray
    catalog: pd.DataFrame
    box_size: float
    params: dict[str, float]
    channel_names: tuple[str, ...] = S.CHANNEL_NAMES


def simulate_box(
    cfg: Simulator,
    *,
    n_pixels: int,
    n_halos: int,
    seed: int,
    params: dict[str, float] | None = None,
    log_mass_min: float | None = None,
    log_mass_max: float | None = None,
    mass_slope: float = S.HOST_MASS_SLOPE,
    stamp_factor: int = 2,
    batch_size: int = 64,
) -> Box:
    """A periodic box of n_pixels² pixels of the cutout simulator's side h = box_size /
    resolution, with n_halos hosts (module docstring). θ is drawn unless `params` gives it;
    the mass range defaults to the cutout simulator's."""
    n = cfg.resolution
    if n_pixels < n:
        raise ValueError(f"box of {n_pixels} pixels is smaller than one cutout ({n})")
    h = cfg.box_size / n
    rng = np.random.default_rng([seed, 0, BOX_STREAM])
    values = S.draw_theta(rng) if params is None else [params[k] for k in S.PARAM_NAMES]
    theta = {k: float(v) for k, v in zip(S.PARAM_NAMES, values, strict=True)}
    m_lo = 10 ** (cfg.log_mass_min if log_mass_min is None else log_mass_min)
    m_hi = 10 ** (cfg.log_mass_max if log_mass_max is None else log_mass_max)
    m200 = S.power_law_masses(rng, n_halos, m_lo, m_hi, mass_slope)
    corner = rng.integers(0, n_pixels, size=(n_halos, 2))  # (ix, iy) pixel corners
    bg_noise = rng.standard_normal((n_pixels, n_pixels), dtype=np.float32)
    clump_noise = rng.standard_normal((n_pixels, n_pixels), dtype=np.float32)

    # Stamps are even-sided so that the host sits on a pixel corner, as in the cutouts.
    stamp = min(stamp_factor * n, n_pixels - n_pixels % 2)
    stamp_cfg = S.stamp_config(cfg, stamp)
    theta_rows = np.array([[theta[k] for k in S.PARAM_NAMES]])
    maps = np.zeros((4, n_pixels, n_pixels))  # [dmo, dm_hydro, gas, stars]
    for lo in range(0, n_halos, batch_size):
        idx = np.arange(lo, min(lo + batch_size, n_halos))
        hosts = S.host_catalog(seed, idx, m200[idx], theta_rows.repeat(len(idx), 0), stamp)
        dmo, (hydro,) = S.paint_hosts(stamp_cfg, hosts, seed)
        stamps = np.concatenate([dmo[:, None], hydro], axis=1)
        for j, i in enumerate(idx):
            ix, iy = corner[i]
            fields.paste(maps, stamps[j], iy - stamp // 2, ix - stamp // 2)

    # One periodic background for the whole box: the cutout simulator's, on a batch of one.
    one = {k: np.array([theta[k]]) for k in S.PARAM_NAMES}
    field, field_gas = S.background(
        bg_noise[None],
        one["Omega_m"],
        one["sigma_8"],
        one["A_AGN1"],
        pixel=h,
        depth=cfg.projection_depth,
    )
    field, field_gas = field[0].astype(np.float64), field_gas[0].astype(np.float64)
    f_b = OMEGA_B / theta["Omega_m"]
    maps[0] += field
    maps[1] += (1.0 - f_b) * field
    # All the box's gas is clumped by one field (the cutouts' σ and correlation length).
    sigma = S.clump_sigma(theta["A_SN1"], theta["A_AGN1"])
    maps[2] = S.clump_gas((maps[2] + field_gas)[None], clump_noise[None], sigma, h)[0]
    catalog = pd.DataFrame({"x": corner[:, 0] * h, "y": corner[:, 1] * h, "m200": m200})
    for name in S.PARAM_NAMES:
        catalog[name] = theta[name]
    return Box(
        dmo=maps[0].astype(np.float32),
        hydro=maps[1:].astype(np.float32),
        catalog=catalog,
        box_size=n_pixels * h,
        params=theta,
    )


def write_box(box: Box, directory: str | Path) -> dict[str, Path]:
    """dmo.npy, halos.csv and truth.npz (hydro, channel_names, box_size) in `directory`,
    each written atomically: the inputs of `halocm paint` and the truth to score it."""
    directory = Path(directory)
    with atomic_path(directory / "dmo.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, box.dmo)
    paths = {
        "dmo": directory / "dmo.npy",
        "halos": write_text(directory / "halos.csv", box.catalog.to_csv(index=False)),
        "truth": save_npz(
            directory / "truth.npz",
            hydro=box.hydro,
            channel_names=np.array(box.channel_names),
            box_size=np.float64(box.box_size),
        ),
    }
    return paths
