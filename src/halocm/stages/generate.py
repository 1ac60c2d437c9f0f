"""`halocm generate`: the embedded halo simulator's maps (docs/design.md §3) → raw_dir."""

from __future__ import annotations

from pathlib import Path

from halocm.config import Config
from halocm.data.figures import plot_cutouts
from halocm.data.synthetic import CHANNEL_NAMES, simulate
from halocm.io import save_npz
from halocm.stages.common import synthetic_path


def generate(cfg: Config) -> Path:
    """Simulate `simulator.n_maps` cutouts with `seed`; write raw_dir/synthetic.npz
    (atomically) and, when `simulator.n_figure_maps` > 0, reports_dir/generated_cutouts.png."""
    sim = cfg.simulator
    arrays = simulate(sim, sim.n_maps, cfg.seed, sim.n_truth_realizations)
    path = save_npz(synthetic_path(cfg), **arrays)
    if sim.n_figure_maps > 0:
        plot_cutouts(
            arrays["condition"],
            arrays["target"],
            figure_path(cfg),
            CHANNEL_NAMES,
            sim.n_figure_maps,
            halo_mass=arrays["halo_mass"],
            box_size=sim.box_size,
        )
    return path


def figure_path(cfg: Config) -> Path:
    return Path(cfg.paths.reports_dir) / "generated_cutouts.png"


def run(cfg: Config, log) -> None:
    generate(cfg)
    log.artifact(figure_path(cfg))
