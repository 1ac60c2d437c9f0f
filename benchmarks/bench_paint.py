"""Painting a whole box (docs/design.md §7): halos per second and full-box P(k), painted vs true.

    python benchmarks/bench_paint.py [--params params.yaml] [--models-dir models]
                                     [--n-pixels 512] [--n-halos 400] [--steps 1 2]
                                     [--teacher-steps N] [--device auto]

Simulates one box-mode box (`halocm.data.box`) with the simulator settings of params.yaml (the
ones the models were trained with), then paints it with the consistency model at each of
--steps and with the EDM teacher (models/denoiser.pt, Heun over evaluate.teacher_levels levels
unless given), plus the no-model baseline (the DMO map times the cosmic fractions everywhere).
For each: seconds, halos per second (whole painting, and the generator alone), NFE per halo,
and per channel the full-box P(k) ratio painted/true and r(k) (`halocm.evaluation.metrics`),
with their pk_err and rk_err summaries (k ≤ k_Nyquist/2). Memory: the traced (NumPy) peak of
one 1-step painting against what all cutouts at once would take, and the process's peak RSS.
A warm-up painting of a few halos precedes the timings. Writes benchmarks/results/paint.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from halocm.api import load_model
from halocm.config import load_config
from halocm.data.box import simulate_box
from halocm.evaluation import metrics
from halocm.io import write_json
from halocm.painting import as_catalog, as_dmo, paint, paint_with_generator

RESULTS = Path(__file__).resolve().parent / "results" / "paint.json"


def spectra(painted: np.ndarray, true: np.ndarray, box_size: float, names) -> dict:
    """Per channel and for the total (their sum: what weak lensing sees): P_painted/P_true
    and r(k) on the full box, pk_err and rk_err (k ≤ k_Nyq/2), the largest |P ratio − 1|
    there (`pk_max_err`) and the box's mass bias in dex."""
    painted = np.concatenate([painted, painted.sum(axis=0, keepdims=True)])
    true = np.concatenate([true, true.sum(axis=0, keepdims=True)])
    out = {}
    for c, name in enumerate([*names, "total"]):
        d_p, d_t = metrics.overdensity(painted[c]), metrics.overdensity(true[c])
        k, p_p = metrics.power_spectrum(d_p, box_size)
        _, p_t = metrics.power_spectrum(d_t, box_size)
        _, r = metrics.correlation_coefficient(d_p, d_t, box_size)
        ratio = np.divide(p_p, p_t, out=np.full_like(p_p, np.nan), where=p_t > 0)
        low = k <= k.max() / 2
        out[name] = {
            "pk_err": _finite(metrics.pk_error(painted[c], true[c], box_size)),
            "rk_err": _finite(metrics.rk_error(painted[c], true[c], box_size)),
            "pk_max_err": _finite(np.nanmax(np.abs(ratio[low] - 1))),
            "mass_bias": _finite(np.log10(painted[c].sum() / true[c].sum())),
            "pk_ratio": [_finite(v) for v in ratio],
            "r": [_finite(v) for v in r],
        }
    return out


def suppression(maps: np.ndarray, dmo: np.ndarray, box_size: float) -> np.ndarray:
    """S(k) = P_total(k)/P_DMO(k): the baryons' effect on the matter power spectrum."""
    _, p_total = metrics.power_spectrum(metrics.overdensity(maps.sum(axis=0)), box_size)
    _, p_dmo = metrics.power_spectrum(metrics.overdensity(dmo), box_size)
    return p_total / p_dmo


def suppression_row(maps, box) -> dict:
    """S(k) of painted maps against the truth's: the curve and the mean |S/S_true − 1| for
    k ≤ k_Nyq/2 (`sk_err`)."""
    s_true = suppression(box.hydro, box.dmo, box.box_size)
    s = suppression(maps, box.dmo, box.box_size)
    half = len(s) // 2
    return {
        "sk": [_finite(v) for v in s],
        "sk_err": _finite(np.mean(np.abs(s[:half] / s_true[:half] - 1))),
    }


def _finite(v) -> float | None:
    v = float(v)
    return round(v, 5) if np.isfinite(v) else None


def paint_box(gen, dmo, catalog, box_size: float, args, n_steps: int):
    """The box painted with one realisation at `n_steps`."""
    return paint_with_generator(
        gen,
        dmo,
        catalog,
        box_size=box_size,
        n_steps=n_steps,
        n_realizations=1,
        mass_min=args.mass_min,
        batch_size=args.batch_size,
        seed=args.seed,
    )


def run(gen, box, inputs, args, n_steps: int, label: str) -> dict:
    """One timed painting of the whole box (inputs checked already) and its scores."""
    if gen.device.type == "cuda":
        torch.cuda.synchronize()
    res = paint_box(gen, *inputs, box.box_size, args, n_steps)
    row = {
        "model": label,
        "steps": n_steps,
        "nfe_per_halo": gen.nfe(n_steps),
        "n_painted": res.n_painted,
        "seconds": round(res.seconds, 3),
        "sample_seconds": round(res.sample_seconds, 3),
        "halos_per_s": round(res.halos_per_second, 2),
        "halos_per_s_generation": round(res.n_painted / res.sample_seconds, 2),
        "channels": spectra(res.maps, box.hydro, box.box_size, box.channel_names),
        "suppression": suppression_row(res.maps, box),
    }
    ch = row["channels"]
    print(
        f"{label:12s} {n_steps:2d} steps: {row['halos_per_s']:8.1f} halos/s  pk_err "
        + " ".join(f"{k}={v['pk_err']}" for k, v in ch.items()),
        flush=True,
    )
    return row


def paint_background(box, inputs, gen):
    """The box painted by no model: the DMO map times the cosmic fractions everywhere (with
    the geometry of `gen`'s cutouts, which no halo uses)."""
    return paint(
        *inputs,
        None,
        box_size=box.box_size,
        cutout_pixels=gen.shapes.resolution,
        cutout_size=gen.stats.box_size,
        mass_min=np.inf,
        batch_size=1,
        channel_names=box.channel_names,
    )


def traced_peak(gen, box, inputs, args) -> float:
    """MiB: NumPy's peak during one 1-step painting (torch's own allocator is not traced)."""
    tracemalloc.start()
    try:
        paint_box(gen, *inputs, box.box_size, args, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def plot_suppression(result: dict, path: Path) -> None:
    """S(k) of each painted box and of the truth, and the total matter's P ratio."""
    from matplotlib.figure import Figure

    k = np.array(result["k"])
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_s, ax_p = fig.subplots(1, 2, sharex=True)
    ax_s.semilogx(k, result["suppression_true"], "k-", lw=2, label="truth")
    rows = [*result["runs"], {"model": "background only", "steps": 0, **result["background_only"]}]
    for row in rows:
        label = f"{row['model']} {row['steps']}-step" if row["steps"] else row["model"]
        ax_s.semilogx(k, row["suppression"]["sk"], label=label)
        ax_p.semilogx(k, row["channels"]["total"]["pk_ratio"], label=label)
    for ax in (ax_s, ax_p):
        ax.axvline(k.max() / 2, color="0.5", ls=":", lw=0.8)
        ax.set_xlabel("k [h/Mpc]")
    ax_p.axhspan(0.97, 1.03, color="0.9", label="±3%")
    ax_s.set_ylabel("S(k) = P_total / P_DMO")
    ax_p.set_ylabel("P_total painted / P_total true")
    ax_s.legend(fontsize=7)
    ax_s.set_title("Baryonic suppression of the painted box", fontsize=9)
    ax_p.set_title("Total matter: painted vs true (dotted: k_Nyq/2)", fontsize=9)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--n-pixels", type=int, default=512)
    parser.add_argument("--n-halos", type=int, default=400)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--teacher-steps", type=int, default=None)
    parser.add_argument("--mass-min", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    paths = {k: args.models_dir / f"{k}.pt" for k in ("consistency", "denoiser")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        sys.exit(f"bench_paint: missing {missing}: run the pipeline (dvc repro) first")
    cfg = load_config(args.params)
    student = load_model(paths["consistency"], device=args.device, sample=cfg.sample)
    teacher = load_model(paths["denoiser"], device=args.device, sample=cfg.sample)
    args.mass_min = cfg.paint.mass_min if args.mass_min is None else args.mass_min
    args.batch_size = cfg.paint.batch_size if args.batch_size is None else args.batch_size
    teacher_steps = args.teacher_steps or cfg.evaluate.teacher_levels

    t0 = time.perf_counter()
    box = simulate_box(cfg.simulator, n_pixels=args.n_pixels, n_halos=args.n_halos, seed=args.seed)
    box_seconds = time.perf_counter() - t0
    n_painted = int((box.catalog["m200"] >= args.mass_min).sum())
    print(
        f"box: {args.n_pixels}² px, L = {box.box_size:g} Mpc/h, {args.n_halos} halos, "
        f"{n_painted} ≥ {args.mass_min:.3g} ({box_seconds:.1f} s)",
        flush=True,
    )

    # The inputs are checked once, here; every painting below takes them as they are.
    names = student.stats.param_names if student.shapes.n_params else ()
    inputs = (as_dmo(box.dmo), as_catalog(box.catalog, box_size=box.box_size, param_names=names))

    # Warm-up on a few painted halos: kernels, allocator, cached operators.
    few = box.catalog[box.catalog["m200"] >= args.mass_min].iloc[:16]
    for gen, steps in ((student, max(args.steps)), (teacher, teacher_steps)):
        paint_box(gen, inputs[0], few, box.box_size, args, steps)

    rows = [run(student, box, inputs, args, s, "consistency") for s in args.steps]
    rows.append(run(teacher, box, inputs, args, teacher_steps, "teacher"))
    teacher_rate = rows[-1]["halos_per_s"]
    baseline = paint_background(box, inputs, student)
    k, _ = metrics.power_spectrum(metrics.overdensity(box.dmo), box.box_size)
    n = student.shapes.resolution
    result = {
        "benchmark": "paint",
        "box": {
            "n_pixels": args.n_pixels,
            "box_size": box.box_size,
            "n_halos": args.n_halos,
            "n_painted": n_painted,
            "mass_min": args.mass_min,
            "params": box.params,
            "seed": args.seed,
            "simulate_seconds": round(box_seconds, 2),
        },
        "cutout": {"pixels": n, "size": student.stats.box_size},
        "batch_size": args.batch_size,
        "k": [round(float(v), 5) for v in k],
        "runs": rows,
        "speedup_vs_teacher": {
            str(r["steps"]): round(r["halos_per_s"] / teacher_rate, 2)
            for r in rows
            if r["model"] == "consistency"
        },
        "background_only": {
            "channels": spectra(baseline.maps, box.hydro, box.box_size, box.channel_names),
            "suppression": suppression_row(baseline.maps, box),
        },
        "suppression_true": [_finite(v) for v in suppression(box.hydro, box.dmo, box.box_size)],
        "memory": {
            "paint_traced_peak_mb": round(traced_peak(student, box, inputs, args), 2),
            "all_cutouts_mb": round(
                n_painted * (student.shapes.cond_channels + 3) * n * n * 4 / 2**20, 2
            ),
            "box_maps_mb": round(4 * args.n_pixels**2 * 8 / 2**20, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "machine": {
            "device": str(student.device),
            "gpu": torch.cuda.get_device_name() if student.device.type == "cuda" else None,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }
    write_json(args.out, result)
    plot_suppression(result, args.out.with_suffix(".png"))
    print(
        f"speed-up over the teacher: {result['speedup_vs_teacher']}; memory "
        f"{result['memory']} → {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
