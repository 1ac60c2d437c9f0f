"""benchmarks/check_bars.py: the quality bars on known scores, and its exit status."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "check_bars.py"


def _row(pk: float, rk: float, cov50: float = 0.5, cov90: float = 0.9) -> dict:
    channel = {"pk_err": pk, "rk_err": rk, "coverage_50": cov50, "coverage_90": cov90}
    return {c: dict(channel) for c in ("dm_hydro", "gas", "stars", "total")}


def _scores() -> dict:
    """Scores that hold every bar: oracle 0.05 (rk 0.02), every sampler at 0.04 (rk 0.02)."""
    return {
        "oracle": _row(0.05, 0.02),
        "denoiser_1": _row(0.06, 0.02),
        "teacher_18": _row(0.04, 0.02),
        "consistency_1": _row(0.04, 0.02),
        "consistency_2": _row(0.04, 0.02),
    }


def _check(tmp_path: Path, scores: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({"rows": {"a row": scores}}))
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(path), "--row", "a row"],
        capture_output=True,
        text=True,
    )


def test_scores_inside_every_bar_pass(tmp_path):
    done = _check(tmp_path, _scores())
    assert done.returncode == 0, done.stdout
    assert "0 of 37 bars missed" in done.stdout


def test_each_kind_of_miss_is_named_and_fails(tmp_path):
    scores = _scores()
    scores["teacher_18"]["gas"]["pk_err"] = 0.11  # above 2 × the oracle's 0.05
    scores["consistency_1"]["gas"]["pk_err"] = 0.065  # not below the denoiser's 0.06
    scores["consistency_2"]["stars"]["pk_err"] = 0.051  # above 1.25 × the teacher's 0.04
    scores["consistency_2"]["gas"]["coverage_50"] = 0.42  # 0.08 off nominal
    done = _check(tmp_path, scores)
    assert done.returncode == 1
    missed = [line for line in done.stdout.splitlines() if line.startswith("MISSED")]
    assert [line.split(":")[0] for line in missed] == [
        "MISSED  teacher_18 gas pk_err",
        "MISSED  1-step gas vs denoiser",
        "MISSED  2-step stars vs teacher",
        "MISSED  2-step gas coverage 50% off nominal",
    ]


def test_total_matter_is_held_to_the_absolute_bar_only(tmp_path):
    scores = _scores()
    scores["teacher_18"]["total"]["pk_err"] = 0.002  # 20 × below the 1-step model's 0.04
    assert _check(tmp_path, scores).returncode == 0
    scores["consistency_1"]["total"]["pk_err"] = 0.2
    assert "MISSED  consistency_1 total pk_err" in _check(tmp_path, scores).stdout


def test_an_unknown_row_is_one_line(tmp_path):
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({"rows": {"a row": _scores()}}))
    done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"{path}: give --row, one of ['a row']"]
