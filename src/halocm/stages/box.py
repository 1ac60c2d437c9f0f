"""`halocm box`: a whole periodic DMO box, its halo catalogue and its true hydro maps from the
simulator's box mode (docs/design.md §3, §7): the inputs of `halocm paint` and the truth to
score the painting against."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config
from halocm.data.box import simulate_box, write_box


def box(cfg: Config, *, out: Path, pixels: int, halos: int, seed: int | None = None) -> str:
    """Simulate `halos` hosts in a box of `pixels`² pixels of the cutout simulator's pixel
    side (`simulator.box_size / simulator.resolution`), θ drawn from `seed` (default the
    config's); write dmo.npy, halos.csv and truth.npz into `out`. Returns what was written
    and the `halocm paint` command that paints it."""
    b = simulate_box(
        cfg.simulator, n_pixels=pixels, n_halos=halos, seed=cfg.seed if seed is None else seed
    )
    paths = write_box(b, out)
    painted = Path(out) / "painted.npz"
    return (
        f"wrote {paths['dmo']} ({pixels}² pixels over {b.box_size:g} Mpc/h), "
        f"{paths['halos']} ({halos} halos), {paths['truth']}\n"
        f"paint it: halocm paint --model models/consistency.pt --dmo {paths['dmo']} "
        f"--halos {paths['halos']} --box-size {b.box_size:g} --out {painted}"
    )
