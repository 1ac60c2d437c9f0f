"""How steady the benchmark's 1-step speed-up over the teacher is.

    python benchmarks/bench_timing.py [--trials 8]   # → benchmarks/results/timing.json

Needs the pipeline's models and test split. `halocm evaluate` times each row by its scored
draws (`timed_draw`: `evaluate.n_realizations` draws of the test maps at 1 step,
`evaluate.teacher_realizations` for the teacher), after `warm_up`. This script loads the
models as evaluate does, warms each up once, draws the consistency model at 1 step and the
teacher `--trials` times in turn as evaluate does, and reports each trial's speed-up: their
spread is what one evaluate run's figure can be off by on this machine, and the first trial
is the one evaluate's 1-step row gets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from halocm.api import load_model
from halocm.config import load_config
from halocm.evaluation.benchmark import load_test_set, timed_draw, warm_up
from halocm.io import write_json
from halocm.stages.common import consistency_path, denoiser_path, split_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "timing.json"


def speed_ups(cfg, trials: int) -> list[dict]:
    ev = cfg.evaluate
    student = load_model(consistency_path(cfg), device=cfg.device, sample=cfg.sample)
    teacher = load_model(denoiser_path(cfg), device=cfg.device, sample=cfg.sample)
    test = load_test_set(split_path(cfg, "test"), student.stats, ev.n_maps)
    warm_up(student, test)
    warm_up(teacher, test)
    out = []
    for _ in range(trials):
        _, one = timed_draw(
            student, test, n_steps=1, n_realizations=ev.n_realizations, seed=cfg.seed
        )
        _, heun = timed_draw(
            teacher,
            test,
            n_steps=ev.teacher_levels,
            n_realizations=ev.teacher_realizations,
            seed=cfg.seed,
        )
        out.append({"one_step_ms": one, "teacher_ms": heun, "speed_up": heun / one})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    cfg = load_config(args.params)
    t0 = time.perf_counter()
    rows = speed_ups(cfg, args.trials)
    ratios = np.array([r["speed_up"] for r in rows])
    result = {
        "what": __doc__.split("\n\n", 2)[2].strip(),
        "command": f"python benchmarks/bench_timing.py --trials {args.trials}",
        "trials": rows,
        "speed_up_min": float(ratios.min()),
        "speed_up_median": float(np.median(ratios)),
        "speed_up_max": float(ratios.max()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"speed-up per trial: {np.round(ratios, 1).tolist()}")
    write_json(RESULTS, result)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
