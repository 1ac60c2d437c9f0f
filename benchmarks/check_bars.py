"""Which of the quality bars a run misses on the test cutouts.

    python benchmarks/check_bars.py metrics/benchmark.json
    python benchmarks/check_bars.py benchmarks/results/quality-seed1.json --row "the default"

Reads `halocm evaluate`'s metrics/benchmark.json, or one row of a bench_quality results file,
and prints every bar with its value, its limit and whether it holds; exits 1 when any is
missed. Each score is the row's mean over its draws where it has several (docs/design.md §6).
The bars (oracle = the truth redraws' score on the same maps):
- the consistency model at 1 and 2 steps and the teacher, every channel and the total:
  pk_err ≤ max(2 × oracle, 0.03) and rk_err ≤ max(1.5 × oracle, 0.01);
- the 1-step model against the denoiser's one evaluation: pk_err at most 0.01 above it on
  every channel (dm_hydro, gas, stars), and below it on gas;
- pk_err within 1.25 × the teacher's at 2 steps and 2 × at 1 step, every channel. Total
  matter is held to the first bar only: its pk_err sits below the oracle's in every sampler,
  where a ratio of two such numbers measures noise;
- the 50% and 90% coverage at 2 steps within ±0.07 of nominal on gas and stars;
- 1-step sampling at least 25 × faster than the teacher (benchmark.json only: it has timings).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

CHANNELS = ("dm_hydro", "gas", "stars")
WITH_TOTAL = (*CHANNELS, "total")
SAMPLERS = ("consistency_1", "consistency_2", "teacher_18")


@dataclass(frozen=True)
class Bar:
    name: str
    value: float
    limit: float
    upper: bool = True  # value must be ≤ limit (else ≥)

    @property
    def holds(self) -> bool:
        return self.value <= self.limit if self.upper else self.value >= self.limit


def rows_of(bench: dict) -> tuple[dict, dict]:
    """(scores per row label, ms per map per row label) of a benchmark.json."""
    scores, ms = {}, {}
    for row in bench["results"]:
        label = f"{row['sampler']}_{row['steps']}" if row["steps"] else row["sampler"]
        scores[label] = row["channels"]
        ms[label] = row.get("ms_per_map")
    return scores, ms


def oracle_bars(scores: dict, oracle: dict) -> list[Bar]:
    """The bars against the oracle's scores, per sampler and channel (total included)."""
    out = []
    for sampler in SAMPLERS:
        for c in WITH_TOTAL:
            row = scores[sampler][c]
            out.append(
                Bar(f"{sampler} {c} pk_err", row["pk_err"], max(2 * oracle[c]["pk_err"], 0.03))
            )
            out.append(
                Bar(f"{sampler} {c} rk_err", row["rk_err"], max(1.5 * oracle[c]["rk_err"], 0.01))
            )
    return out


def bars(scores: dict, ms: dict | None = None) -> list[Bar]:
    denoiser, teacher = scores["denoiser_1"], scores["teacher_18"]
    out = oracle_bars(scores, scores["oracle"])
    one, two = scores["consistency_1"], scores["consistency_2"]
    for c in CHANNELS:  # on gas the 1-step model must do better than the mean-like denoiser
        slack = 0.0 if c == "gas" else 0.01
        out.append(Bar(f"1-step {c} vs denoiser", one[c]["pk_err"], denoiser[c]["pk_err"] + slack))
    for c in CHANNELS:
        out.append(Bar(f"2-step {c} vs teacher", two[c]["pk_err"], 1.25 * teacher[c]["pk_err"]))
        out.append(Bar(f"1-step {c} vs teacher", one[c]["pk_err"], 2 * teacher[c]["pk_err"]))
    for c in ("gas", "stars"):
        for nominal in (50, 90):
            miss = abs(two[c][f"coverage_{nominal}"] - nominal / 100)
            out.append(Bar(f"2-step {c} coverage {nominal}% off nominal", miss, 0.07))
    if ms and ms.get("consistency_1") and ms.get("teacher_18"):
        speedup = ms["teacher_18"] / ms["consistency_1"]
        out.append(Bar("1-step speed-up over the teacher", speedup, 25.0, upper=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="benchmark.json or a bench_quality file")
    parser.add_argument("--row", help="the bench_quality row to check")
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    if "results" in data:
        checked = bars(*rows_of(data))
    elif args.row in data.get("rows", {}):
        checked = bars(data["rows"][args.row])
    else:
        sys.exit(f"{args.results}: give --row, one of {sorted(data.get('rows', {}))}")
    for bar in checked:
        sign = "≤" if bar.upper else "≥"
        verdict = "holds" if bar.holds else "MISSED"
        print(f"{verdict:6s}  {bar.name}: {bar.value:.4f} {sign} {bar.limit:.4f}")
    missed = [b for b in checked if not b.holds]
    print(f"{len(missed)} of {len(checked)} bars missed")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
