"""The benchmark: samplers × steps against the test split (docs/design.md §6).

Rows: the consistency model at each of `evaluate.sampling_steps`; the denoiser at one network
evaluation, D(σ_max z, σ_max) (the conditional mean a consistency model warm-starts from: one
that does not beat it at one step has learned nothing); the EDM teacher (Heun); the trivial
baseline (condition × mean channel fraction) and, when the data carry truth realisations, the
oracle (an independent redraw of the same condition). Every table has a `total` entry, the sum
of the channels. Every row is scored by
the same metric functions in physical units; the JSON is what DVC, MLflow and the registry gate
read. pk_err and rk_err are means over a row's draws of each draw's score, so they estimate
what one draw scores, with less noise (docs/design.md §6).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from halocm.api import Generator
from halocm.data.dataset import load_split
from halocm.data.normalize import NormStats, denormalize_condition, denormalize_target
from halocm.evaluation import metrics


@dataclass
class TestSet:
    condition: np.ndarray  # physical, (N, Cc, H, W)
    target: np.ndarray  # physical, (N, C, H, W)
    cond_norm: torch.Tensor
    params_norm: torch.Tensor
    r200_pix: np.ndarray | None
    oracle: np.ndarray | None  # truth redrawn, physical (N, R, C, H, W)
    box_size: float
    channel_names: list[str]


def load_test_set(path: Path, stats: NormStats, n_maps: int) -> TestSet:
    """The first `n_maps` maps of the test split (all when fewer), physical and normalised."""
    split = load_split(path)
    n = min(n_maps, len(split["target"]))
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
        oracle=None if truth is None or truth.shape[1] == 0 else np.asarray(truth[:n]),
        box_size=stats.box_size,
        channel_names=list(stats.channel_names),
    )


def mean_channel_fractions(train_path: Path, stats: NormStats) -> np.ndarray:
    """Σ target_c / Σ DMO over the training split: the trivial baseline's multipliers."""
    train = load_split(train_path)
    target = np.asarray(denormalize_target(train["target"].astype(np.float64), stats))
    dmo = np.asarray(denormalize_condition(train["condition"][:, :1].astype(np.float64), stats))
    return target.sum(axis=(0, 2, 3)) / dmo.sum()


def score_channels(draws: np.ndarray, test: TestSet, calibrate: bool = True) -> dict:
    """Every metric per channel and for the total (the channels' sum: total matter, what weak
    lensing sees), from `draws` (N, R, C, H, W). pk_err and rk_err are the mean over the R
    draws of each draw's score, with its standard deviation across draws (`*_sd`, R > 1): one
    draw's gas pk_err moves by more than the margins of the bars it is held to. The other
    metrics are of draw 0. With R > 1 and `calibrate`, the truth's rank among the R draws gives
    the calibration."""
    names = [*test.channel_names, "total"]
    out = {}
    for c, name in enumerate(names):
        pick = _total if name == "total" else (lambda x, c=c: x[..., c, :, :])
        maps, t = pick(draws), pick(test.target)
        g = maps[:, 0]
        row = {}
        for key, fn in metrics.METRICS.items():
            if key in DRAW_AVERAGED:
                row.update(_over_draws(key, fn, maps, t, test.box_size))
            else:
                row[key] = _finite(fn(g, t, test.box_size))
        bias, scatter = metrics.mass_bias_scatter(g.sum(axis=(-2, -1)), t.sum(axis=(-2, -1)))
        row.update(mass_bias=_finite(bias), mass_scatter=_finite(scatter))
        if test.r200_pix is not None:
            bias, scatter = metrics.mass_bias_scatter(
                metrics.aperture_mass(g, test.r200_pix), metrics.aperture_mass(t, test.r200_pix)
            )
            row.update(aperture_bias=_finite(bias), aperture_scatter=_finite(scatter))
        if calibrate and maps.shape[1] > 1:
            cov, hist = metrics.rank_calibration(np.log10(1 + maps), np.log10(1 + t))
            row.update({f"coverage_{round(100 * lvl)}": v for lvl, v in cov.items()})
            row["rank_hist"] = [float(h) for h in hist]
        out[name] = row
    return out


# The metrics the quality bars read, averaged over a row's draws.
DRAW_AVERAGED = ("pk_err", "rk_err")


def _over_draws(key: str, fn, maps: np.ndarray, truth: np.ndarray, box_size: float) -> dict:
    """{key: mean over draws (axis 1) of fn's score, key_sd: their standard deviation}; the
    sd only with more than one draw."""
    scores = np.array([fn(maps[:, r], truth, box_size) for r in range(maps.shape[1])])
    out = {key: _finite(scores.mean())}
    if len(scores) > 1:
        out[f"{key}_sd"] = _finite(scores.std(ddof=1))
    return out


def _total(maps: np.ndarray) -> np.ndarray:
    """The sum over the channel axis (−3): dm_hydro + gas + stars."""
    return maps.sum(axis=-3)


def _finite(value: float) -> float | None:
    """JSON has no inf/NaN (e.g. PSNR of identical maps): such values are written as null."""
    value = float(value)
    return value if np.isfinite(value) else None


# On 2 CPU cores the first four 1-step calls after loading a model ran 1.1-1.4x slower than
# the settled ones (docs/experiments.md, "Sampling speed").
WARMUP_CALLS = 5


def warm_up(gen: Generator, test: TestSet) -> None:
    """WARMUP_CALLS one-step calls (allocator, kernels, caches) on the draws' batch before a
    generator is timed: one step runs every network call's shapes; the teacher's 35 would
    cost 35 times as much for nothing."""
    b = min(len(test.target), gen.sample_settings.batch_size)
    for _ in range(WARMUP_CALLS):
        gen.sample_normalized(
            test.cond_norm[:b], test.params_norm[:b], n_steps=1, seed=0, indices=range(b)
        )


def timed_draw(
    gen: Generator, test: TestSet, *, n_steps: int, n_realizations: int, seed: int
) -> tuple[np.ndarray, float]:
    """The row's draws (N, R, C, H, W), in float64 as the metrics score them, and what they
    cost: wall milliseconds per map drawn, decoding to physical units included."""
    _synchronize(gen)
    t0 = time.perf_counter()
    samples = gen.draw(
        test.cond_norm,
        test.params_norm,
        n_steps=n_steps,
        n_realizations=n_realizations,
        seed=seed,
        dtype=np.float64,
    )
    _synchronize(gen)
    return samples, 1000.0 * (time.perf_counter() - t0) / (samples.shape[0] * samples.shape[1])


def _synchronize(gen: Generator) -> None:
    if gen.device.type == "cuda":
        torch.cuda.synchronize()


def benchmark(
    student: Generator,
    teacher: Generator | None,
    test: TestSet,
    fractions: np.ndarray,
    *,
    sampling_steps: tuple[int, ...],
    teacher_levels: int,
    n_realizations: int,
    teacher_realizations: int,
    seed: int,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(benchmark.json's content, example maps per row): the student at each of
    `sampling_steps` (`n_realizations` draws at 1 and 2 steps), the teacher on
    `teacher_levels` (`teacher_realizations` draws), the baseline of `fractions` and the
    oracle (every truth redraw) when the test set has one."""
    rows, examples = [], {}
    jobs = [("consistency", s) for s in sampling_steps]
    if teacher is not None:
        # One level: a single Euler step from σ_max to 0, i.e. D(σ_max z, σ_max) — the
        # denoiser's estimate of the conditional mean, and the consistency model's warm start.
        jobs += [("denoiser", 1), ("teacher", teacher_levels)]

    previous = None
    for sampler, steps in tqdm(jobs, desc="evaluate"):
        gen = student if sampler == "consistency" else teacher
        if gen is not previous:  # the jobs come grouped by model: each is warmed up once
            warm_up(gen, test)
            previous = gen
        n_real = _draws(sampler, steps, n_realizations, teacher_realizations)
        samples, ms_per_map = timed_draw(gen, test, n_steps=steps, n_realizations=n_real, seed=seed)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "nfe": gen.nfe(steps),
                "ms_per_map": ms_per_map,
                "n_maps": len(test.target),
                "n_realizations": n_real,
                "channels": score_channels(samples, test),
            }
        )
        examples[f"{sampler}_{steps}"] = samples[:, 0]

    baseline = test.condition[:, :1] * fractions[None, :, None, None]
    rows.append(fixed_row("baseline", baseline[:, None], test))
    examples["baseline"] = baseline
    if test.oracle is not None:
        rows.append(fixed_row("oracle", test.oracle, test))
        examples["oracle"] = test.oracle[:, 0]

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
    return result, examples


def headline(bench: dict) -> dict[str, dict[str, float]]:
    """Per benchmark row (`{sampler}_{steps}`): the mean over channels of pk_err and rk_err,
    the total's, and ms per map. Flat numbers for `dvc metrics show` / `dvc exp show`, which
    skip the lists that benchmark.json is made of."""
    out = {}
    for row in bench["results"]:
        entry = {"ms_per_map": float(row["ms_per_map"])}
        for metric in ("pk_err", "rk_err"):
            values = [row["channels"][c].get(metric) for c in bench["channels"]]
            if all(isinstance(v, int | float) for v in values):
                entry[metric] = float(sum(values) / len(values))
            total = row["channels"]["total"].get(metric)
            if isinstance(total, int | float):
                entry[f"total_{metric}"] = float(total)
        out[f"{row['sampler']}_{row['steps']}"] = entry
    return out


def _draws(sampler: str, steps: int, n_realizations: int, teacher_realizations: int) -> int:
    """How many draws a row is scored on: several for calibration and for scores less noisy
    than one draw's, where they are affordable (the few-step student, and the teacher as
    configured)."""
    if sampler == "consistency" and steps <= 2:
        return n_realizations
    return teacher_realizations if sampler == "teacher" else 1


def fixed_row(name: str, draws: np.ndarray, test: TestSet) -> dict:
    """A row that samples nothing: `draws` (N, R, C, H, W) are given. Not calibrated: the
    truth's own redraws are calibrated by construction."""
    return {
        "sampler": name,
        "steps": 0,
        "nfe": 0,
        "ms_per_map": 0.0,
        "n_maps": len(test.target),
        "n_realizations": draws.shape[1],
        "channels": score_channels(draws, test, calibrate=False),
    }
