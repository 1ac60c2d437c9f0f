"""Painting a whole box (docs/design.md §7): the algorithm (`core`) and its checked inputs and
written outputs (`io`). `halocm paint` reads with `read_dmo` and `read_catalog`, paints with
`paint_with_generator` and writes with `save_painting`; a Python caller may hand arrays and
DataFrames to `paint` / `paint_with_generator`, which check them once."""

from halocm.painting.core import (
    PaintResult,
    SampleFn,
    background_fractions,
    blend_weights,
    check_geometry,
    condition_cutout,
    cutout_origin,
    halo_table,
    paint,
    paint_with_generator,
    periodic_aperture_mass,
    taper_window,
)
from halocm.painting.io import (
    Catalog,
    DMOMap,
    PaintError,
    as_catalog,
    as_dmo,
    read_catalog,
    read_dmo,
    save_painting,
    table_path,
)

__all__ = [
    "Catalog",
    "DMOMap",
    "PaintError",
    "PaintResult",
    "SampleFn",
    "as_catalog",
    "as_dmo",
    "background_fractions",
    "blend_weights",
    "check_geometry",
    "condition_cutout",
    "cutout_origin",
    "halo_table",
    "paint",
    "paint_with_generator",
    "periodic_aperture_mass",
    "read_catalog",
    "read_dmo",
    "save_painting",
    "table_path",
    "taper_window",
]
