"""Sampling cost per map against `sample.batch_size`, the maps per network call.

    python benchmarks/bench_batch.py [--batch-sizes 16 32 64 128 256] [--rounds 1]
    # → benchmarks/results/batch.json

Needs the pipeline's models and test split. For each batch size, the models are loaded with
that `sample.batch_size` and warmed up as `halocm evaluate` does (`warm_up`), then timed as it
times a row (`timed_draw`): the consistency model at 1 step on `evaluate.n_maps` test maps ×
`evaluate.n_realizations` draws, and the teacher on one draw of them. The draws do not depend on
the batch size (api.Generator.draw), so neither does any score. With `--rounds` > 1 the sizes
are timed again in reverse order each round, so that a slow spell of the machine does not
fall on the same size every round.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from halocm.api import load_model
from halocm.config import load_config
from halocm.evaluation.benchmark import load_test_set, timed_draw, warm_up
from halocm.io import write_json
from halocm.stages.common import consistency_path, denoiser_path, split_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "batch.json"


def row(cfg, batch_size: int) -> dict:
    ev = cfg.evaluate
    sample = cfg.sample.model_copy(update={"batch_size": batch_size})
    student = load_model(consistency_path(cfg), device=cfg.device, sample=sample)
    teacher = load_model(denoiser_path(cfg), device=cfg.device, sample=sample)
    test = load_test_set(split_path(cfg, "test"), student.stats, ev.n_maps)
    warm_up(student, test)
    _, one = timed_draw(student, test, n_steps=1, n_realizations=ev.n_realizations, seed=0)
    warm_up(teacher, test)
    _, heun = timed_draw(teacher, test, n_steps=ev.teacher_levels, n_realizations=1, seed=0)
    return {
        "batch_size": batch_size,
        "one_step_ms_per_map": round(one, 3),
        "teacher_ms_per_map": round(heun, 2),
        "speed_up": round(heun / one, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    cfg = load_config(args.params)
    t0 = time.perf_counter()
    rows = []
    sizes = list(args.batch_sizes)
    for r in range(args.rounds):
        for b in sizes if r % 2 == 0 else sizes[::-1]:
            rows.append({"round": r, **row(cfg, b)})
            print(rows[-1], flush=True)
    result = {
        "what": __doc__.split("\n\n", 2)[2].strip(),
        "command": "python benchmarks/bench_batch.py --batch-sizes "
        + " ".join(map(str, args.batch_sizes))
        + f" --rounds {args.rounds}",
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(RESULTS, result)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
