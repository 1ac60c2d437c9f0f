"""What a person reads from the benchmark: Markdown tables, PNG plots, and DVC plot data.

Figures are bare `matplotlib.figure.Figure`s written to files: no pyplot state, no backend
chosen at import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from halocm.evaluation import metrics
from halocm.io import atomic_path, write_text

HEADLINE = ("pk_err", "rk_err", "ssim", "psnr", "pdf_dist", "mass_bias", "mass_scatter")


def row_label(row: dict) -> str:
    if row["sampler"] in ("baseline", "oracle"):
        return row["sampler"]
    return (
        f"{row['sampler']} {row['steps']}-step"
        if row["sampler"] == "consistency"
        else (f"teacher Heun {row['steps']}")
    )


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
                    "channel": channel,
                    **{k: _number(values.get(k)) for k in HEADLINE},
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
        "mean over k ≤ k_Nyq/2 of |⟨P_gen⟩/⟨P_true⟩ − 1|, `rk_err` the mean of 1 − r(k); "
        "SSIM, PSNR and the pixel-PDF distance are on log10(1+x); mass bias and scatter are "
        "of log10 M(<R200).",
        "",
    ]
    for channel in result["channels"]:
        sub = table[table.channel == channel].drop(columns="channel")
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


def _save(fig: Figure, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def write_plots(
    result: dict,
    test,
    examples: dict[str, np.ndarray],
    *,
    reports_dir: Path,
    metrics_dir: Path,
) -> None:
    """Sample grid, P(k) ratio and r(k) per channel, radial profiles, quality versus NFE,
    speed versus NFE. `test` holds the physical truth (target, condition, box_size,
    channel_names); `examples` the physical maps (N, C, H, W) of each benchmark row."""
    reports_dir, metrics_dir = Path(reports_dir), Path(metrics_dir)
    _sample_grid(reports_dir / "samples.png", test, examples)
    spectra = _spectra_table(test, examples)
    _save_csv(metrics_dir / "pk_ratio.csv", spectra)
    _pk_plot(reports_dir / "pk_ratio.png", spectra, test.channel_names)
    _profile_plot(reports_dir / "profiles.png", test, examples)
    quality = results_table(result)
    _save_csv(
        metrics_dir / "quality_vs_nfe.csv",
        quality[quality.sampler.str.startswith(("consistency", "teacher"))],
    )
    _quality_plot(reports_dir / "quality_vs_nfe.png", quality, test.channel_names)
    _speed_plot(reports_dir / "speed_vs_nfe.png", quality)


def _save_csv(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _sample_grid(path, test, examples: dict[str, np.ndarray], n_maps: int = 3) -> None:
    keys = [
        k
        for k in examples
        if k in ("consistency_1", "consistency_2", "oracle") or k.startswith("teacher")
    ]
    cols = ["truth", *keys]
    channels = test.channel_names
    fig = Figure(figsize=(1.9 * (len(cols) + 1), 1.9 * n_maps * len(channels)))
    axes = fig.subplots(n_maps * len(channels), len(cols) + 1)
    for i in range(n_maps):
        for c, name in enumerate(channels):
            r = i * len(channels) + c
            truth = np.log10(1 + test.target[i, c])
            vmin, vmax = np.percentile(truth, [1, 99.9])
            axes[r, 0].imshow(np.log10(1 + test.condition[i, 0]), cmap="magma")
            axes[r, 0].set_ylabel(f"map {i}\n{name}", fontsize=7)
            for j, col in enumerate(cols, start=1):
                field = truth if col == "truth" else np.log10(1 + examples[col][i, c])
                axes[r, j].imshow(field, cmap="magma", vmin=vmin, vmax=vmax)
                if r == 0:
                    axes[r, j].set_title(col.replace("_", " "), fontsize=8)
            if r == 0:
                axes[r, 0].set_title("DMO condition", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("log10(1 + mass per pixel): truth and samples per channel", fontsize=9)
    _save(fig, path)


def _spectra_table(test, examples: dict[str, np.ndarray]) -> pd.DataFrame:
    records = []
    for key, maps in examples.items():
        for c, name in enumerate(test.channel_names):
            d_gen = metrics.overdensity(maps[:, c])
            d_true = metrics.overdensity(test.target[:, c])
            k, p_gen = metrics.power_spectrum(d_gen, test.box_size)
            _, p_true = metrics.power_spectrum(d_true, test.box_size)
            _, r = metrics.correlation_coefficient(d_gen, d_true, test.box_size)
            ratio = p_gen.reshape(-1, len(k)).mean(0) / p_true.reshape(-1, len(k)).mean(0)
            records += [
                {
                    "sampler": key,
                    "channel": name,
                    "k": float(kk),
                    "pk_ratio": float(q),
                    "r": float(rr),
                }
                for kk, q, rr in zip(k, ratio, r, strict=True)
            ]
    return pd.DataFrame.from_records(records)


def _pk_plot(path, spectra: pd.DataFrame, channels: list[str]) -> None:
    fig = Figure(figsize=(4 * len(channels), 6))
    axes = fig.subplots(2, len(channels), sharex=True, squeeze=False)
    for c, name in enumerate(channels):
        for key, sub in spectra[spectra.channel == name].groupby("sampler", sort=False):
            style = "--" if key in ("baseline", "oracle") else "-"
            axes[0, c].loglog(sub.k, sub.pk_ratio, style, label=key.replace("_", " "))
            axes[1, c].semilogx(sub.k, sub.r, style)
        axes[0, c].axhline(1, color="k", lw=0.6)
        k_half = spectra.k.max() / 2  # rings reach k_Nyq; the errors use k ≤ k_Nyq/2
        for ax in axes[:, c]:
            ax.axvline(k_half, color="0.5", ls=":", lw=0.8)
        axes[0, c].set_title(name)
        axes[0, c].set_ylabel("⟨P_gen⟩ / ⟨P_true⟩")
        axes[1, c].set_ylabel("r(k)")
        axes[1, c].set_xlabel("k [h/Mpc]")
    for ax in axes.flat:
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        "Power-spectrum ratio and cross-correlation with the truth "
        "(dotted: k_Nyq/2, the limit of pk_err and rk_err)",
        fontsize=10,
    )
    _save(fig, path)


def _profile_plot(path, test, examples: dict[str, np.ndarray]) -> None:
    """Per channel, the mean radial profile Σ(R) about the cutout centre (the host halo) of
    the truth and of every row's maps (`metrics.radial_profile`, one-pixel annuli), and its
    ratio to the truth's."""
    channels = test.channel_names
    res = test.target.shape[-1]
    pixel = test.box_size / res  # Mpc/h

    def mean_profile(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, prof = metrics.radial_profile(maps, n_bins=res // 2)
        return r * pixel, prof.mean(axis=0) / pixel**2  # mass per (Mpc/h)²

    fig = Figure(figsize=(4 * len(channels), 6), layout="constrained")
    axes = fig.subplots(2, len(channels), sharex=True, squeeze=False)
    for c, name in enumerate(channels):
        r, truth = mean_profile(test.target[:, c])
        axes[0, c].loglog(r, truth, "k-", lw=2, label="truth")
        for key, maps in examples.items():
            style = "--" if key in ("baseline", "oracle") else "-"
            _, prof = mean_profile(maps[:, c])
            ratio = np.divide(prof, truth, out=np.full_like(prof, np.nan), where=truth > 0)
            axes[0, c].loglog(r, prof, style, label=key.replace("_", " "))
            axes[1, c].semilogx(r, ratio, style)
        axes[1, c].axhline(1, color="k", lw=0.6)
        axes[0, c].set_title(name)
        axes[0, c].set_ylabel("Σ(R) [h Msun / Mpc²]")
        axes[1, c].set_ylabel("Σ / Σ_true")
        axes[1, c].set_xlabel("R [Mpc/h]")
    for ax in axes[1]:
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        # Ratios far from 1 (the baseline's stars) would hide the percent-level ones.
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, 0.0), min(hi, 3.0))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        "Mean radial profile about the host halo (the cutout centre), truth and samples",
        fontsize=10,
    )
    _save(fig, path)


def _quality_plot(path, table: pd.DataFrame, channels: list[str]) -> None:
    fig = Figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    cm = table[table.sampler.str.startswith("consistency")]
    for name in channels:
        sub = cm[cm.channel == name].sort_values("nfe")
        for ax, key in zip(axes, ("pk_err", "rk_err"), strict=True):
            line = ax.plot(sub.nfe, sub[key], "o-", label=f"{name} (consistency)")[0]
            for ref, marker in (("teacher", "s"), ("baseline", "x"), ("oracle", "*")):
                r = table[(table.sampler.str.startswith(ref)) & (table.channel == name)]
                if len(r):
                    ax.axhline(r[key].iloc[0], color=line.get_color(), ls=":", lw=0.8)
                    if ref == "teacher":
                        ax.plot(r.nfe, r[key], marker, color=line.get_color())
    for ax, key in zip(axes, ("pk_err", "rk_err"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("network evaluations per map")
        ax.set_ylabel(key)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Quality versus NFE (squares: teacher; dotted: teacher, baseline, oracle)", fontsize=9
    )
    _save(fig, path)


def _speed_plot(path, table: pd.DataFrame) -> None:
    rows = table[table.nfe > 0].drop_duplicates("sampler")
    fig = Figure(figsize=(4.5, 3.5))
    ax = fig.subplots()
    ax.loglog(rows.nfe, rows.ms_per_map, "o")
    for _, r in rows.iterrows():
        ax.annotate(r.sampler, (r.nfe, r.ms_per_map), fontsize=7)
    ax.set_xlabel("network evaluations per map")
    ax.set_ylabel("ms per map")
    ax.set_title("Sampling cost", fontsize=9)
    _save(fig, path)
