"""What a person reads from the benchmark: Markdown tables, PNG figures, and DVC plot data.

Figures are bare `matplotlib.figure.Figure`s written to files: no pyplot state, no backend
chosen at import. Every line carries a label, every axis its quantity and unit, and every
figure uses constrained layout (no overlaps, no empty bands).

The CSVs under metrics/ are long tables (one row per sampler, channel and k or NFE) that the
templates in .dvc/plots/ draw as one panel per channel and one labelled series per sampler
and revision, so `dvc plots diff` shows two experiments side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from halocm.evaluation import metrics
from halocm.io import atomic_path, write_text

HEADLINE = (
    "pk_err",
    "pk_err_sd",
    "rk_err",
    "rk_err_sd",
    "ssim",
    "psnr",
    "pdf_dist",
    "mass_bias",
    "mass_scatter",
    "aperture_bias",
    "aperture_scatter",
)
MASS_UNIT = "M$_\\odot$/h"
# Rows drawn as references rather than as models: dashed, and never joined across NFE.
REFERENCES = ("baseline", "oracle")


def row_label(row: dict) -> str:
    """How a benchmark row is named in tables, figures and DVC plots."""
    sampler = row["sampler"]
    if sampler == "consistency":
        return f"consistency {row['steps']}-step"
    if sampler == "teacher":
        return f"teacher Heun {row['steps']}"
    if sampler == "denoiser":
        return "denoiser 1-step"
    return sampler


def _example_label(key: str) -> str:
    """The label of an `examples` key (`consistency_1`, `teacher_18`, `baseline`, ...)."""
    sampler, _, steps = key.partition("_")
    return row_label({"sampler": sampler, "steps": int(steps) if steps else 0})


def results_table(result: dict) -> pd.DataFrame:
    """One line per (row, channel) with the headline metrics."""
    records = []
    for row in result["results"]:
        for channel, values in row["channels"].items():
            records.append(
                {
                    "sampler": row_label(row),
                    "nfe": row["nfe"],
                    "ms_per_map": row["ms_per_map"],
                    "draws": row.get("n_realizations", 1),
                    "channel": channel,
                    **{k: _number(values.get(k)) for k in HEADLINE if k in values},
                    **{k: v for k, v in values.items() if k.startswith("coverage")},
                }
            )
    return pd.DataFrame.from_records(records)


def _number(value) -> float:
    return np.nan if value is None else float(value)


def write_report(path, result: dict) -> None:
    table = results_table(result)
    lines = [
        "# halocm benchmark",
        "",
        f"Consistency model ({result['mode']}), {result['n_parameters']:,} parameters, "
        f"{result['resolution']}² maps over {result['box_size']} Mpc/h, device "
        f"{result['device']}. Errors are in physical units on the test split: `pk_err` is the "
        "mean over k ≤ k_Nyq/2 of |⟨P_gen⟩/⟨P_true⟩ − 1|, `rk_err` the mean of 1 − r(k), "
        "each the mean over the row's draws (`*_sd`: their standard deviation across draws); "
        "SSIM, PSNR and the pixel-PDF distance are on log10(1+x); `mass_bias` and "
        "`mass_scatter` are the mean and std of log10(M_gen/M_true) of whole maps, "
        "`aperture_*` the same within R200, in dex. `total` is dm_hydro + gas + stars.",
        "",
    ]
    channels = list(dict.fromkeys(table.channel))
    for channel in channels:
        sub = table[table.channel == channel].drop(columns="channel").dropna(axis=1, how="all")
        lines += [f"## {channel}", "", _markdown(sub), ""]
    speed = table.drop_duplicates("sampler")[["sampler", "nfe", "ms_per_map"]]
    lines += ["## Cost", "", _markdown(speed), ""]
    write_text(path, "\n".join(lines))


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "—" if np.isnan(v) else f"{v:.4g}"
    return str(v)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path) -> None:
    """Write a figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def write_plots(
    result: dict,
    test,
    examples: dict[str, np.ndarray],
    *,
    reports_dir: Path,
    metrics_dir: Path,
) -> None:
    """Sample grid, P(k) ratio and r(k) per channel, radial profiles, quality versus NFE,
    speed versus NFE, and the rank (PIT) histograms. `test` holds the physical truth
    (target, condition, box_size, channel_names); `examples` the physical maps (N, C, H, W)
    of each benchmark row. Writes the DVC plot tables metrics/{pk_ratio,quality_vs_nfe}.csv."""
    reports_dir, metrics_dir = Path(reports_dir), Path(metrics_dir)
    spectra = spectra_table(test, examples)
    _save_csv(metrics_dir / "pk_ratio.csv", spectra)
    _save_csv(metrics_dir / "quality_vs_nfe.csv", quality_table(result))
    figures = {
        "samples": sample_figure(test, examples),
        "pk_ratio": spectra_figure(spectra),
        "profiles": profile_figure(test, examples),
        "quality_vs_nfe": quality_figure(result),
        "speed_vs_nfe": speed_figure(result),
        "rank_hist": rank_figure(result),
    }
    for name, fig in figures.items():
        save_figure(fig, reports_dir / f"{name}.png")


def _save_csv(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def sample_figure(test, examples: dict[str, np.ndarray], n_maps: int = 3) -> Figure:
    """Per map and channel, the DMO condition, the truth and each row's sample, on the
    truth's colour scale of log10(1 + mass per pixel)."""
    keys = [
        k
        for k in examples
        if k in ("consistency_1", "consistency_2", "denoiser_1", "oracle")
        or k.startswith("teacher")
    ]
    cols = ["truth", *keys]
    channels = test.channel_names
    n_maps = min(n_maps, len(test.target))
    n_rows = n_maps * len(channels)
    fig = _figure(1.6 * (len(cols) + 1) + 0.8, 1.6 * n_rows + 0.6)
    axes = fig.subplots(n_rows, len(cols) + 1, squeeze=False)
    for i in range(n_maps):
        for c, name in enumerate(channels):
            r = i * len(channels) + c
            truth = np.log10(1 + test.target[i, c])
            vmin, vmax = np.percentile(truth, [1, 99.9])
            axes[r, 0].imshow(np.log10(1 + test.condition[i, 0]), cmap="magma")
            axes[r, 0].set_ylabel(f"map {i}\n{name}", fontsize=8)
            for j, col in enumerate(cols, start=1):
                field = truth if col == "truth" else np.log10(1 + examples[col][i, c])
                image = axes[r, j].imshow(field, cmap="magma", vmin=vmin, vmax=vmax)
            fig.colorbar(image, ax=axes[r, -1], fraction=0.08, pad=0.03).ax.tick_params(labelsize=6)
    axes[0, 0].set_title("DMO condition", fontsize=8)
    for j, col in enumerate(cols, start=1):
        axes[0, j].set_title("truth" if col == "truth" else _example_label(col), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    side = test.box_size
    fig.suptitle(
        f"log10(1 + mass per pixel [{MASS_UNIT}]), cutouts {side:g} Mpc/h across: "
        "truth and samples on the truth's colour scale",
        fontsize=9,
    )
    return fig


def _channels_with_total(test, examples: dict[str, np.ndarray]):
    """(names, truth maps per name, generated maps per example and name): the target
    channels and their sum, the total matter."""
    names = [*test.channel_names, "total"]
    truth = {n: test.target[:, c] for c, n in enumerate(test.channel_names)}
    truth["total"] = test.target.sum(axis=1)
    gen = {
        key: {
            **{n: maps[:, c] for c, n in enumerate(test.channel_names)},
            "total": maps.sum(axis=1),
        }
        for key, maps in examples.items()
    }
    return names, truth, gen


def spectra_table(test, examples: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table (sampler, channel, k [h/Mpc], pk_ratio = ⟨P_gen⟩/⟨P_true⟩, r) per example
    row and channel, the total included."""
    names, truth, gen = _channels_with_total(test, examples)
    records = []
    for key in examples:
        for name in names:
            d_gen = metrics.overdensity(gen[key][name])
            d_true = metrics.overdensity(truth[name])
            k, p_gen = metrics.power_spectrum(d_gen, test.box_size)
            _, p_true = metrics.power_spectrum(d_true, test.box_size)
            _, r = metrics.correlation_coefficient(d_gen, d_true, test.box_size)
            ratio = p_gen.reshape(-1, len(k)).mean(0) / p_true.reshape(-1, len(k)).mean(0)
            records += [
                {
                    "sampler": _example_label(key),
                    "channel": name,
                    "k": float(kk),
                    "pk_ratio": float(q),
                    "r": float(rr),
                }
                for kk, q, rr in zip(k, ratio, r, strict=True)
            ]
    return pd.DataFrame.from_records(records)


def quality_table(result: dict) -> pd.DataFrame:
    """Long table for `dvc plots`: per network row (consistency, denoiser, teacher) and
    channel, its NFE, pk_err and rk_err; `sampler` is the family, so the consistency steps
    form one series over NFE."""
    records = []
    for row in result["results"]:
        if row["nfe"] <= 0:  # baseline and oracle: no network, no point on an NFE axis
            continue
        family = "teacher Heun" if row["sampler"] == "teacher" else row["sampler"]
        for channel, values in row["channels"].items():
            records.append(
                {
                    "sampler": family,
                    "steps": row["steps"],
                    "nfe": row["nfe"],
                    "channel": channel,
                    "pk_err": _number(values.get("pk_err")),
                    "rk_err": _number(values.get("rk_err")),
                }
            )
    return pd.DataFrame.from_records(records)


def _style(label: str) -> dict:
    return {"ls": "--", "lw": 1.2} if label in REFERENCES else {"ls": "-", "lw": 1.5}


def _log_k_axis(ax) -> None:
    """A log k axis labelled with plain numbers."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _nfe_axis(ax, nfes) -> None:
    """A log NFE axis with a tick at each NFE drawn, labelled with plain numbers."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(nfes)))
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _y_scale(ax) -> None:
    """Log y where the drawn values span more than a decade and are positive, else linear
    with plain numbers (no offset)."""
    values = np.concatenate([np.ravel(line.get_ydata()) for line in ax.lines] or [[1.0]])
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        ax.ticklabel_format(axis="y", useOffset=False)


def spectra_figure(spectra: pd.DataFrame) -> Figure:
    channels = list(dict.fromkeys(spectra.channel))
    fig = _figure(3.2 * len(channels) + 1.8, 5.4)
    axes = fig.subplots(2, len(channels), sharex=True, squeeze=False)
    k_half = spectra.k.max() / 2  # rings reach k_Nyq; the errors use k ≤ k_Nyq/2
    for c, name in enumerate(channels):
        for label, sub in spectra[spectra.channel == name].groupby("sampler", sort=False):
            axes[0, c].plot(sub.k, sub.pk_ratio, label=label, **_style(label))
            axes[1, c].plot(sub.k, sub.r, label=label, **_style(label))
        _y_scale(axes[0, c])
        axes[0, c].axhline(1, color="k", lw=0.6)
        axes[1, c].axhline(1, color="k", lw=0.6)
        for ax in axes[:, c]:
            _log_k_axis(ax)
            ax.axvline(k_half, color="0.5", ls=":", lw=0.8, label="k$_{Nyq}$/2")
        axes[0, c].set_title(name)
        axes[1, c].set_xlabel("k [h/Mpc]")
    axes[0, 0].set_ylabel("⟨P$_{gen}$⟩ / ⟨P$_{true}$⟩")
    axes[1, 0].set_ylabel("r(k) = P$_×$ / √(P$_{gen}$ P$_{true}$)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle(
        "Power-spectrum ratio and cross-correlation with the truth, per channel "
        "(errors use k ≤ k$_{Nyq}$/2)",
        fontsize=10,
    )
    return fig


def profile_figure(test, examples: dict[str, np.ndarray]) -> Figure:
    """Per channel, the mean radial profile Σ(R) about the cutout centre (the host halo) of
    the truth and of every row's maps (`metrics.radial_profile`, one-pixel annuli), and its
    ratio to the truth's."""
    channels = test.channel_names
    res = test.target.shape[-1]
    pixel = test.box_size / res  # Mpc/h

    def mean_profile(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, prof = metrics.radial_profile(maps, n_bins=res // 2)
        return r * pixel, prof.mean(axis=0) / pixel**2  # mass per (Mpc/h)²

    fig = _figure(3.2 * len(channels) + 1.8, 5.4)
    axes = fig.subplots(2, len(channels), sharex=True, squeeze=False)
    for c, name in enumerate(channels):
        r, truth = mean_profile(test.target[:, c])
        axes[0, c].loglog(r, truth, "k-", lw=2, label="truth")
        for key, maps in examples.items():
            label = _example_label(key)
            _, prof = mean_profile(maps[:, c])
            ratio = np.divide(prof, truth, out=np.full_like(prof, np.nan), where=truth > 0)
            axes[0, c].loglog(r, prof, label=label, **_style(label))
            axes[1, c].semilogx(r, ratio, label=label, **_style(label))
        axes[1, c].axhline(1, color="k", lw=0.6)
        axes[0, c].set_title(name)
        axes[1, c].set_xlabel("R [Mpc/h]")
    axes[0, 0].set_ylabel(f"Σ(R) [{MASS_UNIT} / (Mpc/h)²]")
    axes[1, 0].set_ylabel("Σ / Σ$_{true}$")
    for ax in axes[1]:
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        # Ratios far from 1 (the baseline's stars) would hide the percent-level ones.
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, 0.0), min(hi, 3.0))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Mean radial profile about the host halo (the cutout centre)", fontsize=10)
    return fig


def quality_figure(result: dict) -> Figure:
    """Per channel (columns) pk_err and rk_err (rows) against network evaluations: the
    consistency model as a line over its steps, the teacher and the denoiser as points, the
    baseline and the oracle (no network) as labelled horizontal lines."""
    rows = result["results"]
    channels = list(rows[0]["channels"])
    fig = _figure(3.0 * len(channels) + 2.0, 5.2)
    axes = fig.subplots(2, len(channels), sharex=True, squeeze=False)
    styles = {
        "consistency": {"marker": "o", "ls": "-", "color": "C0"},
        "teacher": {"marker": "s", "ls": "none", "color": "C3", "ms": 7},
        "denoiser": {"marker": "^", "ls": "none", "color": "C2", "ms": 7},
        "baseline": {"ls": ":", "color": "0.4"},
        "oracle": {"ls": "-.", "color": "k"},
    }
    for c, name in enumerate(channels):
        for r, metric in enumerate(("pk_err", "rk_err")):
            ax = axes[r, c]
            for sampler, style in styles.items():
                picked = [
                    (row["nfe"], row["channels"][name].get(metric))
                    for row in rows
                    if row["sampler"] == sampler
                ]
                picked = sorted((n, v) for n, v in picked if v is not None and v > 0)
                if not picked:
                    continue
                label = "teacher Heun" if sampler == "teacher" else sampler
                if sampler in REFERENCES:
                    ax.axhline(picked[0][1], label=label, lw=1.2, **style)
                else:
                    ax.plot(*zip(*picked, strict=True), label=label, **style)
            _nfe_axis(ax, [row["nfe"] for row in rows if row["nfe"] > 0])
            _y_scale(ax)
        axes[0, c].set_title(name)
        axes[1, c].set_xlabel("network evaluations per map (NFE)")
    axes[0, 0].set_ylabel("pk_err = mean |P$_{gen}$/P$_{true}$ − 1|")
    axes[1, 0].set_ylabel("rk_err = mean (1 − r)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Quality versus cost per channel (lower is better)", fontsize=10)
    return fig


def speed_figure(result: dict) -> Figure:
    rows = [r for r in result["results"] if r["nfe"] > 0 and r["ms_per_map"] > 0]
    fig = _figure(5.0, 3.6)
    ax = fig.subplots()
    for i, row in enumerate(rows):
        ax.loglog(row["nfe"], row["ms_per_map"], "o", color=f"C{i % 10}", label=row_label(row))
    ax.set_xlabel("network evaluations per map (NFE)")
    ax.set_ylabel("time per map [ms]")
    _nfe_axis(ax, [row["nfe"] for row in rows])
    ax.legend(fontsize=7)
    ax.set_title(f"Sampling cost ({result['device']})", fontsize=9)
    return fig


def rank_figure(result: dict) -> Figure:
    """Per channel, the histogram of the truth's rank among each row's R draws, as a PIT
    histogram on [0, 1] (bin i of R + 1 covers [i, i + 1)/(R + 1)) in units of the uniform
    density: flat at 1 when calibrated, ∪-shaped when the draws are too narrow, ∩-shaped when
    too wide. Rows without `rank_hist` (R = 1) are left out."""
    rows = [r for r in result["results"] if any("rank_hist" in m for m in r["channels"].values())]
    channels = list(result["results"][0]["channels"])
    fig = _figure(3.0 * len(channels) + 2.0, 3.2)
    axes = fig.subplots(1, len(channels), sharey=True, squeeze=False)[0]
    for c, name in enumerate(channels):
        ax = axes[c]
        ax.axhline(1, color="k", lw=0.8, ls="--", label="calibrated (uniform)")
        for i, row in enumerate(rows):
            hist = row["channels"][name].get("rank_hist")
            if not hist:
                continue
            n_bins = len(hist)
            edges = np.arange(n_bins + 1) / n_bins
            density = np.asarray(hist, dtype=float) * n_bins
            label = f"{row_label(row)} (R = {n_bins - 1})"
            ax.stairs(density, edges, baseline=None, color=f"C{i % 10}", lw=1.5, label=label)
        ax.set_title(name)
        ax.set_xlabel("PIT: rank of the truth / (R + 1)")
        ax.set_xlim(0, 1)
    axes[0].set_ylabel("density (1 = calibrated)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Calibration: rank of the truth among R draws, per pixel", fontsize=10)
    return fig


def suppression_figure(
    k: np.ndarray,
    curves: dict[str, np.ndarray],
    *,
    truth: np.ndarray | None = None,
    title: str = "Baryonic suppression of the total-matter power spectrum",
) -> Figure:
    """S(k) = P_total / P_DMO of painted boxes: one labelled line per entry of `curves`
    (label → S at `k` [h/Mpc]), the truth's in black, 1 (no baryonic effect) dotted."""
    fig = _figure(5.6, 3.8)
    ax = fig.subplots()
    ax.axhline(1, color="0.5", ls=":", lw=0.8)
    if truth is not None:
        ax.plot(k, truth, "k-", lw=2, label="truth")
    for label, s in curves.items():
        ax.plot(k, s, lw=1.5, label=label)
    _log_k_axis(ax)
    ax.set_xlabel("k [h/Mpc]")
    ax.set_ylabel("S(k) = P$_{total}$ / P$_{DMO}$")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig
