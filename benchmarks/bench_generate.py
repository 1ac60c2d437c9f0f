"""Throughput of the embedded halo simulator (docs/design.md §3): maps per second.

    python benchmarks/bench_generate.py [--params params.yaml] [--n-maps 10000]
                                        [--resolution 64] [--realizations 0] [--context]

Times `simulate` (params.yaml's simulator section at the given resolution) end to end (draws,
painting, FFTs; no file I/O) after a small warm-up that builds the cached pixel operators, and
writes benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy

from halocm.config import load_config
from halocm.data.synthetic import simulate
from halocm.io import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--n-maps", type=int, default=10_000)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--realizations", type=int, default=0)
    parser.add_argument("--context", action="store_true", help="add the 2x/4x context channels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    cfg = load_config(args.params).simulator.model_copy(
        update={"resolution": args.resolution, "context_channels": args.context}
    )
    simulate(cfg, 8, args.seed, args.realizations)  # Warm-up: operators, filters, imports.
    start = time.perf_counter()
    out = simulate(cfg, args.n_maps, args.seed, args.realizations)
    seconds = time.perf_counter() - start
    result = {
        "benchmark": "generate",
        "n_maps": args.n_maps,
        "resolution": args.resolution,
        "n_realizations": args.realizations,
        "context_channels": args.context,
        "seconds": round(seconds, 3),
        "maps_per_s": round(args.n_maps / seconds, 1),
        "seconds_per_10k_maps": round(1e4 * seconds / args.n_maps, 2),
        "output_mb": round(sum(v.nbytes for v in out.values()) / 2**20, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }
    write_json(args.out, result)
    print(
        f"{args.n_maps} maps at {args.resolution}² (R={args.realizations}): "
        f"{seconds:.1f} s, {result['maps_per_s']} maps/s → {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
