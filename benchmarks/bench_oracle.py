"""The oracle row with the satellites' hidden variables shared with the truth, and redrawn.

    python benchmarks/bench_oracle.py            # → benchmarks/results/oracle-hidden-redrawn.json
    python benchmarks/bench_oracle.py --seeds 0 --set simulator.neighbour_density=0 \
        --results benchmarks/results/oracle-hidden-redrawn-isolated.json

A satellite's stellar mass follows its infall mass, which the DMO map does not show (docs/design.md
§3, "Truth redraws"). With `simulator.redraw_hidden: false` the truth redraws keep the truth's
infall masses, so the oracle knows more than the map; with `true` they draw them again from
their posterior given the map. For each seed this script generates and prepares the default
data both ways in a temporary directory (the condition and the target are the same maps; only
the redraws differ) and scores the oracle row on the benchmark's test maps as `halocm
evaluate` does. With `--scores`, a results file holding the models' rows per seed (the
`seeds` of draw-averaged-scores.json), it also counts the bars held against the oracle
(pk_err ≤ max(2 × oracle, 0.03), rk_err ≤ max(1.5 × oracle, 0.01)) that each oracle leaves
missed: the model rows do not change, since they are scored against the target.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from check_bars import SAMPLERS, oracle_bars
from check_bars import WITH_TOTAL as CHANNELS

from halocm.config import load_config
from halocm.data.normalize import NormStats
from halocm.evaluation.benchmark import fixed_row, load_test_set
from halocm.io import write_json
from halocm.stages.common import norm_stats_path, split_path
from halocm.stages.generate import generate
from halocm.stages.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]


def oracle_row(seed: int, redraw_hidden: bool, workdir: Path, overrides: list[str]) -> dict:
    """pk_err and rk_err (mean over the redraws, and their sd) of the oracle on the test maps."""
    cfg = load_config(
        ROOT / "params.yaml",
        [
            f"seed={seed}",
            f"simulator.redraw_hidden={str(redraw_hidden).lower()}",
            "simulator.n_figure_maps=0",
            f"paths.raw_dir={workdir / 'raw'}",
            f"paths.processed_dir={workdir / 'processed'}",
            *overrides,
        ],
    )
    generate(cfg)
    prepare(cfg)
    test = load_test_set(
        split_path(cfg, "test"), NormStats.load(norm_stats_path(cfg)), cfg.evaluate.n_maps
    )
    channels = fixed_row("oracle", test.oracle, test)["channels"]
    keys = ("pk_err", "pk_err_sd", "rk_err", "rk_err_sd")
    return {c: {k: channels[c][k] for k in keys} for c in CHANNELS}


def bars_missed(rows: dict, oracle: dict) -> list[str]:
    """The bars against the oracle that the models' rows (their means over draws) miss."""
    scores = {s: {c: rows[s]["channels"][c]["mean_over_draws"] for c in CHANNELS} for s in SAMPLERS}
    return [
        f"{bar.name} {bar.value:.4f} > {bar.limit:.4f}"
        for bar in oracle_bars(scores, oracle)
        if not bar.holds
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scores", type=Path, help="the models' rows per seed (optional)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="a.b=value (params.yaml)"
    )
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks/results/oracle-hidden-redrawn.json"
    )
    args = parser.parse_args()
    scores = json.loads(args.scores.read_text())["seeds"] if args.scores else {}
    out = {"what": __doc__.split("\n\n")[2].replace("\n", " "), "seeds": {}}
    for seed in args.seeds:
        entry = {}
        for redraw in (False, True):
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                oracle = oracle_row(seed, redraw, Path(tmp), args.overrides)
            label = "hidden_redrawn" if redraw else "hidden_shared"
            entry[label] = {"oracle": oracle, "seconds": round(time.perf_counter() - t0, 1)}
            if str(seed) in scores:
                entry[label]["bars_missed"] = bars_missed(scores[str(seed)]["rows"], oracle)
            stars = oracle["stars"]
            print(
                f"seed {seed} {label}: stars pk_err {stars['pk_err']:.4f} rk_err "
                f"{stars['rk_err']:.4f}, gas pk_err {oracle['gas']['pk_err']:.4f}"
            )
        out["seeds"][str(seed)] = entry
    out["command"] = "python benchmarks/bench_oracle.py " + " ".join(
        ["--seeds", *map(str, args.seeds)]
        + (["--scores", str(args.scores)] if args.scores else [])
        + [f"--set {o}" for o in args.overrides]
    )
    write_json(args.results, out)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
