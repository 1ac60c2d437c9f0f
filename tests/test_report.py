"""The benchmark's report: Markdown, PNG figures (radial profiles and rank histograms
included) and DVC plot data, drawn without pyplot; figures a talk can show (every line
labelled, every axis named with its unit, no empty band); no plotting module touches
matplotlib's global state at import."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from sim_params import simulator

from halocm.data import synthetic as S
from halocm.evaluation import metrics
from halocm.evaluation.report import (
    profile_figure,
    quality_figure,
    rank_figure,
    sample_figure,
    spectra_figure,
    spectra_table,
    speed_figure,
    suppression_figure,
    write_plots,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = [*S.CHANNEL_NAMES, "total"]


def _pick(maps: np.ndarray, c: int) -> np.ndarray:
    return maps.sum(axis=1) if c == len(S.CHANNEL_NAMES) else maps[:, c]


def _row(sampler, steps, nfe, maps, truth, box_size, rank_hist=None):
    """A benchmark row in the shape of metrics/benchmark.json: every target channel and the
    total, whole-map mass bias, and a rank histogram for rows with several draws."""
    channels = {}
    for c, name in enumerate(NAMES):
        g, t = _pick(maps, c), _pick(truth, c)
        values = {k: float(fn(g, t, box_size)) for k, fn in metrics.METRICS.items()}
        bias, scatter = metrics.mass_bias_scatter(g.sum(axis=(-2, -1)), t.sum(axis=(-2, -1)))
        values.update(mass_bias=float(bias), mass_scatter=float(scatter))
        if rank_hist is not None:
            values["rank_hist"] = list(rank_hist)
        channels[name] = values
    return {"sampler": sampler, "steps": steps, "nfe": nfe, "ms_per_map": 1.5 * nfe,
            "n_maps": len(maps), "n_realizations": 1, "channels": channels}  # fmt: skip


@pytest.fixture(scope="module")
def benchmark():
    """A benchmark-shaped result over simulated maps: truth redraws stand in for samples."""
    out = S.simulate(simulator(resolution=16), 6, seed=2, n_realizations=3)
    truth, box = out["target"].astype(float), float(out["box_size"])
    fractions = truth.sum((0, 2, 3)) / out["condition"][:, 0].sum()
    examples = {
        "consistency_1": out["truth_realizations"][:, 1].astype(float),
        "consistency_2": out["truth_realizations"][:, 2].astype(float),
        "denoiser_1": out["truth_realizations"][:, 0].astype(float),
        "teacher_3": out["truth_realizations"][:, 2].astype(float),
        "baseline": out["condition"][:, :1] * fractions[None, :, None, None],
        "oracle": out["truth_realizations"][:, 0].astype(float),
    }
    hist = [0.4, 0.2, 0.4]  # R = 2 draws: too narrow (∪-shaped)
    keys = [("consistency", 1, 1, hist), ("consistency", 2, 2, hist), ("denoiser", 1, 1, None),
            ("teacher", 3, 5, None)]  # fmt: skip
    rows = [_row(s, k, nfe, examples[f"{s}_{k}"], truth, box, h) for s, k, nfe, h in keys]
    rows += [_row(name, 0, 0, examples[name], truth, box) for name in ("baseline", "oracle")]
    result = {"results": rows, "n_parameters": 1234, "mode": "ct", "device": "cpu",
              "channels": list(S.CHANNEL_NAMES), "box_size": box, "resolution": 16}  # fmt: skip
    test = types.SimpleNamespace(
        target=truth,
        condition=out["condition"].astype(float),
        box_size=box,
        channel_names=list(S.CHANNEL_NAMES),
    )
    return result, test, examples


def test_report_and_plots_are_written(benchmark, tmp_path):
    result, test, examples = benchmark
    write_report(tmp_path / "reports" / "benchmark.md", result)
    write_plots(
        result, test, examples, reports_dir=tmp_path / "reports", metrics_dir=tmp_path / "metrics"
    )
    text = (tmp_path / "reports" / "benchmark.md").read_text()
    assert "## gas" in text and "## total" in text
    assert "consistency 2-step" in text and "teacher Heun 3" in text and "denoiser" in text
    names = ("samples", "pk_ratio", "profiles", "quality_vs_nfe", "speed_vs_nfe", "rank_hist")
    for name in names:
        png = tmp_path / "reports" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000, name
    # DVC's plot data: long tables, one labelled series per sampler and panel per channel.
    spectra = pd.read_csv(tmp_path / "metrics" / "pk_ratio.csv")
    assert set(spectra.channel) == set(NAMES)
    assert set(spectra.sampler) == {
        "consistency 1-step", "consistency 2-step", "denoiser 1-step", "teacher Heun 3",
        "baseline", "oracle",
    }  # fmt: skip
    quality = pd.read_csv(tmp_path / "metrics" / "quality_vs_nfe.csv")
    assert set(quality.sampler) == {"consistency", "denoiser", "teacher Heun"}
    assert set(quality.channel) == set(NAMES) and (quality.nfe > 0).all()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # atomic writes


def _figures(benchmark) -> dict:
    result, test, examples = benchmark
    k = np.geomspace(0.5, 10, 12)
    return {
        "samples": sample_figure(test, examples),
        "pk_ratio": spectra_figure(spectra_table(test, examples)),
        "profiles": profile_figure(test, examples),
        "quality_vs_nfe": quality_figure(result),
        "speed_vs_nfe": speed_figure(result),
        "rank_hist": rank_figure(result),
        "suppression": suppression_figure(k, {"painted, 1 step": 1 - k / 50}, truth=1 - k / 60),
    }


# The unit each figure must name on its axes (ratios and errors are dimensionless).
UNITS = {
    "pk_ratio": ["k [h/Mpc]"],
    "profiles": ["R [Mpc/h]", "(Mpc/h)²"],
    "speed_vs_nfe": ["[ms]"],
    "suppression": ["k [h/Mpc]"],
}


def _is_reference(line) -> bool:
    """An axhline/axvline: drawn across the axes in axes coordinates ([0, 1])."""
    return list(line.get_xdata()) == [0, 1] or list(line.get_ydata()) == [0, 1]


def test_every_line_is_labelled_every_axis_named_and_no_empty_band(benchmark):
    for name, fig in _figures(benchmark).items():
        FigureCanvasAgg(fig).draw()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        legend = {t.get_text() for lg in legends for t in lg.get_texts()}
        plots = [ax for ax in fig.axes if not ax.images and ax.get_label() != "<colorbar>"]
        for ax in plots:
            for artist in [*ax.lines, *ax.patches]:
                label = artist.get_label()
                if label.startswith("_"):
                    assert isinstance(artist, type(ax.lines[0])) and _is_reference(artist), (
                        f"{name}: an unlabelled {type(artist).__name__}"
                    )
                else:
                    assert label in legend, f"{name}: {label!r} is not in a legend"
        labels = [ax.get_xlabel() for ax in plots] + [ax.get_ylabel() for ax in plots]
        for ax in plots:
            if any(t.get_visible() and t.get_text() for t in ax.get_xticklabels()):
                assert ax.get_xlabel(), f"{name}: an x axis with numbers but no name"
        for unit in UNITS.get(name, []):
            assert any(unit in text for text in labels), f"{name}: no axis in {unit}"
        # No empty band: the title sits just above the top row of panels.
        renderer = fig.canvas.get_renderer()
        title = fig._suptitle.get_window_extent(renderer) if fig._suptitle else None
        if title is not None:
            top = max(ax.get_tightbbox(renderer).y1 for ax in fig.axes)
            assert title.y0 - top < 0.06 * fig.bbox.height, f"{name}: gap under the title"


def test_the_truth_profile_is_the_mean_radial_profile(benchmark):
    """What profiles.png draws for the truth: one-pixel annuli, mass per (Mpc/h)²."""
    _, test, _ = benchmark
    r, prof = metrics.radial_profile(test.target[:, 1], n_bins=8)
    assert r.shape == (8,) and prof.shape == (6, 8)
    # The host sits at the centre: the mean gas surface density falls outwards.
    assert (np.diff(prof.mean(0)) < 0).all()


def test_plotting_modules_have_no_import_side_effects():
    code = (
        "import sys, matplotlib\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "import halocm.evaluation.report, halocm.data.figures\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend changed'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
