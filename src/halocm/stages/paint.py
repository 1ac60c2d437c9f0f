"""`halocm paint`: paint baryons into a whole DMO box from its catalogue (docs/design.md §7)."""

from __future__ import annotations

from pathlib import Path

from halocm.api import load_model
from halocm.config import Config
from halocm.painting import PaintError, paint_with_generator, read_catalog, read_dmo, save_painting


def paint(
    cfg: Config,
    *,
    model: Path,
    dmo: Path,
    halos: Path,
    box_size: float,
    out: Path,
    sampling_steps: int | None = None,
    realizations: int | None = None,
    mass_min: float | None = None,
    batch_size: int | None = None,
) -> str:
    """Paint with `model`, sampling as `sample` says; None arguments take `paint.*`. Writes
    OUT.npz and OUT_halos.csv; returns a one-line summary."""
    p = cfg.paint
    steps = p.sampling_steps if sampling_steps is None else sampling_steps
    realizations = p.realizations if realizations is None else realizations
    mass_min = p.mass_min if mass_min is None else mass_min
    batch_size = p.batch_size if batch_size is None else batch_size
    if not (mass_min > 0):
        raise PaintError(f"--mass-min {mass_min:g}: must be positive (Msun/h)")
    gen = load_model(model, device=cfg.device, sample=cfg.sample)
    dmo_map = read_dmo(dmo)
    # Checked once, for this box and the model's parameter columns.
    names = tuple(gen.stats.param_names) if gen.shapes.n_params else ()
    catalog = read_catalog(halos, box_size=box_size, param_names=names)
    result = paint_with_generator(
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
    return (
        f"painted {result.n_painted}/{len(catalog)} halos (M200 ≥ {mass_min:.3g}) into a "
        f"{dmo_map.n_pixels}² box, {steps} step(s), {realizations} realisation(s): "
        f"{result.halos_per_second:.1f} halos/s → {npz}, {csv}"
    )
