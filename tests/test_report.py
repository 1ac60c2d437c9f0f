"""The benchmark's report: Markdown, PNG plots (radial profiles included) and DVC plot data,
drawn without pyplot; and no plotting module touches matplotlib's global state at import."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
from sim_params import simulator

from halocm.data import synthetic as S
from halocm.evaluation import metrics
from halocm.evaluation.report import write_plots, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _row(sampler, steps, nfe, maps, truth, box_size):
    channels = {
        name: {k: float(fn(maps[:, c], truth[:, c], box_size)) for k, fn in metrics.METRICS.items()}
        for c, name in enumerate(S.CHANNEL_NAMES)
    }
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
        "teacher_3": out["truth_realizations"][:, 2].astype(float),
        "baseline": out["condition"][:, :1] * fractions[None, :, None, None],
        "oracle": out["truth_realizations"][:, 0].astype(float),
    }
    keys = [("consistency", 1, 1), ("consistency", 2, 2), ("teacher", 3, 5)]
    rows = [_row(s, k, nfe, examples[f"{s}_{k}"], truth, box) for s, k, nfe in keys]
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
    assert "## gas" in text and "consistency 2-step" in text and "teacher Heun 3" in text
    for name in ("samples", "pk_ratio", "profiles", "quality_vs_nfe", "speed_vs_nfe"):
        png = tmp_path / "reports" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000, name
    spectra = pd.read_csv(tmp_path / "metrics" / "pk_ratio.csv")
    assert set(spectra.sampler) == set(examples)
    quality = pd.read_csv(tmp_path / "metrics" / "quality_vs_nfe.csv")
    assert set(quality.sampler) == {"consistency 1-step", "consistency 2-step", "teacher Heun 3"}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # atomic writes


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
