"""How the teacher's churn (`sample.churn`) moves its scores, run by run.

    python benchmarks/bench_churn.py --run MODELS_DIR PROCESSED_DIR SEED [--run ...]
        [--churn 0 1 2] [--churn-range 0.05 50]   # → benchmarks/results/teacher-churn.json

For each run (a models folder with `denoiser.pt` and the processed split it was trained on)
and each churn, the teacher on `evaluate.teacher_levels` draws `evaluate.teacher_realizations`
samples of the first `evaluate.n_maps` test maps with the run's SEED, scored as `halocm
evaluate` scores its teacher row: churn 0 reproduces that row. Every churn of a run sees the
same maps and the same seed, so the rows differ by the sampler alone. Each run also holds the
oracle's scores on those maps and, per churn, the teacher's oracle bars it misses
(`check_bars.py`).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from check_bars import oracle_bars

from halocm.api import load_model
from halocm.config import load_config
from halocm.evaluation.benchmark import fixed_row, load_test_set, score_channels
from halocm.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "teacher-churn.json"
REPORTED = ("pk_err", "rk_err", "coverage_50", "coverage_90")


def rounded(scores: dict, keys=REPORTED) -> dict:
    return {c: {k: round(float(scores[c][k]), 5) for k in keys} for c in scores}


def teacher_misses(row: dict, oracle: dict) -> list[str]:
    """The teacher's bars against the oracle that `row` misses (oracle_bars wants every
    sampler's row; the others are ignored)."""
    scores = {sampler: row for sampler in ("consistency_1", "consistency_2", "teacher_18")}
    return [
        f"{b.name}: {b.value:.4f} > {b.limit:.4f}"
        for b in oracle_bars(scores, oracle)
        if b.name.startswith("teacher_18") and not b.holds
    ]


def churn_run(cfg, models_dir: str, processed_dir: str, seed: int, churns, churn_range) -> dict:
    """The oracle's scores and one row per churn for one run."""
    ev = cfg.evaluate
    teacher = load_model(Path(models_dir) / "denoiser.pt", device=cfg.device, sample=cfg.sample)
    test = load_test_set(Path(processed_dir) / "test.npz", teacher.stats, ev.n_maps)
    oracle = fixed_row("oracle", test.oracle, test)["channels"]
    rows = []
    for churn in churns:
        # Read at each draw, so one loaded teacher serves every churn.
        teacher.sample_settings = replace(
            teacher.sample_settings, churn=churn, churn_range=churn_range
        )
        t0 = time.perf_counter()
        draws = teacher.draw(
            test.cond_norm,
            test.params_norm,
            n_steps=ev.teacher_levels,
            n_realizations=ev.teacher_realizations,
            seed=seed,
            dtype=np.float64,
        )
        scores = score_channels(draws, test)
        row = rounded(scores)
        rows.append(
            {
                "churn": churn,
                "seconds": round(time.perf_counter() - t0, 1),
                "bars_missed": teacher_misses(scores, oracle),
                **row,
            }
        )
        print(
            f"{models_dir} churn {churn}: "
            + ", ".join(f"{c} {row[c]['pk_err']:.4f} ({row[c]['rk_err']:.4f})" for c in row),
            flush=True,
        )
    return {"oracle": rounded(oracle, ("pk_err", "rk_err")), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument(
        "--run",
        nargs=3,
        action="append",
        required=True,
        metavar=("MODELS_DIR", "PROCESSED_DIR", "SEED"),
    )
    ap.add_argument("--churn", nargs="+", type=float, default=[0.0, 1.0, 2.0])
    ap.add_argument("--churn-range", nargs=2, type=float, default=[0.05, 50.0])
    args = ap.parse_args()
    cfg = load_config(args.params)
    runs = {
        f"seed {seed}": churn_run(
            cfg, models, processed, int(seed), args.churn, tuple(args.churn_range)
        )
        for models, processed, seed in args.run
    }
    result = {
        "what": __doc__.split("\n\n", 2)[2].strip(),
        "command": "python benchmarks/bench_churn.py "
        + " ".join(f"--run {m} {p} {seed}" for m, p, seed in args.run)
        + f" --churn {' '.join(map(str, args.churn))}"
        + f" --churn-range {' '.join(map(str, args.churn_range))}",
        "teacher_levels": cfg.evaluate.teacher_levels,
        "draws": cfg.evaluate.teacher_realizations,
        "n_maps": cfg.evaluate.n_maps,
        "runs": runs,
    }
    write_json(RESULTS, result)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
