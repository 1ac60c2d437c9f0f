"""`halocm evaluate`: samplers × steps against the test split (DESIGN.md §6).

Rows: the consistency model at each of `evaluate.steps`, the EDM teacher (Heun), the trivial
baseline (condition × mean channel fraction) and, when the data carry truth realisations, the
oracle (an independent redraw of the same condition). Every row is scored by the same metric
functions in physical units; the JSON is what DVC, MLflow and the registry gate read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from halocm.api import Generator, load_model
from halocm.config import Config
from halocm.data.dataset import load_split
from halocm.data.normalize import NormStats, denormalize_condition, denormalize_target
from halocm.evaluation import metrics
from halocm.evaluation.report import write_plots, write_report
from halocm.io import write_json
from halocm.training import consistency_path, denoiser_path


@dataclass
class TestSet:
    condition: np.ndarray  # physical, (N, Cc, H, W)
    target: np.ndarray  # physical, (N, C, H, W)
    cond_norm: torch.Tensor
    params_norm: torch.Tensor
    r200_pix: np.ndarray | None
    oracle: np.ndarray | None  # a second truth realisation, physical (N, C, H, W)
    box_size: float
    channel_names: list[str]


def load_test_set(cfg: Config, stats: NormStats) -> TestSet:
    split = load_split(cfg.paths.processed_dir / "test.npz")
    n = min(cfg.evaluate.n_maps, len(split["target"]))
    target = np.asarray(denormalize_target(split["target"][:n].astype(np.float64), stats))
    condition = np.asarray(denormalize_condition(split["condition"][:n].astype(np.float64), stats))
    res = target.shape[-1]
    r200 = split.get("r200")
    truth = split.get("truth_realizations")
    return TestSet(
        condition=condition,
        target=target,
        cond_norm=torch.as_tensor(split["condition"][:n], dtype=torch.float32),
        params_norm=torch.as_tensor(split["params"][:n], dtype=torch.float32),
        r200_pix=None if r200 is None else np.asarray(r200[:n]) / stats.box_size * res,
        oracle=None if truth is None or truth.shape[1] == 0 else np.asarray(truth[:n, 0]),
        box_size=stats.box_size,
        channel_names=list(stats.channel_names),
    )


def mean_channel_fractions(cfg: Config, stats: NormStats) -> np.ndarray:
    """Σ target_c / Σ DMO over the training split: the trivial baseline's multipliers."""
    train = load_split(cfg.paths.processed_dir / "train.npz")
    target = np.asarray(denormalize_target(train["target"].astype(np.float64), stats))
    dmo = np.asarray(denormalize_condition(train["condition"][:, :1].astype(np.float64), stats))
    return target.sum(axis=(0, 2, 3)) / dmo.sum()


def score_channels(gen: np.ndarray, test: TestSet, samples: np.ndarray | None = None) -> dict:
    """Every metric per channel; `samples` (N, R, C, H, W) adds calibration coverage."""
    out = {}
    for c, name in enumerate(test.channel_names):
        g, t = gen[:, c], test.target[:, c]
        row = {key: _finite(fn(g, t, test.box_size)) for key, fn in metrics.METRICS.items()}
        if test.r200_pix is not None:
            bias, scatter = metrics.mass_bias_scatter(
                metrics.aperture_mass(g, test.r200_pix), metrics.aperture_mass(t, test.r200_pix)
            )
            row.update(mass_bias=float(bias), mass_scatter=float(scatter))
        if samples is not None and samples.shape[1] > 1:
            cov = metrics.coverage(np.log10(1 + samples[:, :, c]), np.log10(1 + t))
            row.update({f"coverage_{round(100 * lvl)}": float(v) for lvl, v in cov.items()})
        out[name] = row
    return out


def _finite(value: float) -> float | None:
    """JSON has no inf/NaN (e.g. PSNR of identical maps): such values are written as null."""
    value = float(value)
    return value if np.isfinite(value) else None


def time_sampler(
    gen: Generator, test: TestSet, n_steps: int, repeats: int, timing_batch: int
) -> float:
    """Milliseconds per map: median over repeats of one batch, after a warm-up call."""
    b = min(len(test.target), gen.config.sample.batch_size, timing_batch)
    cond, params = test.cond_norm[:b], test.params_norm[:b]

    def once() -> float:
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen.sample_normalized(cond, params, n_steps=n_steps, seed=0, indices=range(b))
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()  # warm-up: allocator, kernels, caches
    return 1000.0 * float(np.median([once() for _ in range(repeats)])) / b


def draw(gen: Generator, test: TestSet, n_steps: int, n_realizations: int, seed: int):
    """Physical samples (N, R, C, H, W) for the normalised test inputs, in batches."""
    n, b = len(test.target), gen.config.sample.batch_size
    out = np.empty((n, n_realizations, *test.target.shape[1:]), dtype=np.float64)
    for r in range(n_realizations):
        for lo in range(0, n, b):
            idx = range(lo, min(lo + b, n))
            y = gen.sample_normalized(
                test.cond_norm[lo : idx.stop],
                test.params_norm[lo : idx.stop],
                n_steps=n_steps,
                seed=seed,
                indices=idx,
                realization=r,
            )
            out[lo : idx.stop, r] = denormalize_target(y.cpu().double().numpy(), gen.stats)
    return out


def evaluate(cfg: Config) -> Path:
    """Run the benchmark; write metrics/benchmark.json, reports/benchmark.md and plots."""
    ev = cfg.evaluate
    student = load_model(consistency_path(cfg), device=cfg.device)
    stats = student.stats
    test = load_test_set(cfg, stats)
    rows, examples = [], {}
    jobs = [("consistency", s) for s in ev.steps]
    teacher = (
        load_model(denoiser_path(cfg), device=cfg.device) if denoiser_path(cfg).is_file() else None
    )
    if teacher is not None:
        jobs.append(("teacher", ev.teacher_steps))

    for sampler, steps in tqdm(jobs, desc="evaluate"):
        gen = student if sampler == "consistency" else teacher
        # Calibration needs several realisations: affordable for the few-step student only.
        n_real = ev.n_realizations if sampler == "consistency" and steps <= 2 else 1
        samples = draw(gen, test, steps, n_real, seed=cfg.seed)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "nfe": gen.nfe(steps),
                "ms_per_map": time_sampler(gen, test, steps, ev.timing_repeats, ev.timing_batch),
                "n_maps": len(test.target),
                "n_realizations": n_real,
                "channels": score_channels(samples[:, 0], test, samples),
            }
        )
        examples[f"{sampler}_{steps}"] = samples[:, 0]

    fractions = mean_channel_fractions(cfg, stats)
    baseline = test.condition[:, :1] * fractions[None, :, None, None]
    rows.append(_fixed_row("baseline", baseline, test))
    examples["baseline"] = baseline
    if test.oracle is not None:
        rows.append(_fixed_row("oracle", test.oracle, test))
        examples["oracle"] = test.oracle

    result = {
        "results": rows,
        "n_parameters": student.n_parameters,
        "mode": student.mode,
        "device": str(student.device),
        "channels": test.channel_names,
        "box_size": test.box_size,
        "resolution": int(test.target.shape[-1]),
        "baseline_fractions": fractions.tolist(),
    }
    out = write_json(cfg.paths.metrics_dir / "benchmark.json", result)
    write_json(cfg.paths.metrics_dir / "headline.json", headline(result))
    write_report(cfg.paths.reports_dir / "benchmark.md", result)
    write_plots(cfg, result, test, examples)
    return out


def headline(bench: dict) -> dict[str, dict[str, float]]:
    """Per benchmark row (`{sampler}_{steps}`, as in the MLflow metric names): channel-mean
    pk_err and rk_err and ms per map. Flat numbers for `dvc metrics show` / `dvc exp show`,
    which skip the lists that benchmark.json is made of."""
    out = {}
    for row in bench["results"]:
        entry = {"ms_per_map": float(row["ms_per_map"])}
        for metric in ("pk_err", "rk_err"):
            values = [ch.get(metric) for ch in row["channels"].values()]
            if values and all(isinstance(v, int | float) for v in values):
                entry[metric] = float(sum(values) / len(values))
        out[f"{row['sampler']}_{row['steps']}"] = entry
    return out


def _fixed_row(name: str, maps: np.ndarray, test: TestSet) -> dict:
    return {
        "sampler": name,
        "steps": 0,
        "nfe": 0,
        "ms_per_map": 0.0,
        "n_maps": len(test.target),
        "n_realizations": 1,
        "channels": score_channels(maps, test),
    }
