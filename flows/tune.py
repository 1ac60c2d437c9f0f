"""Prefect flow: an Optuna study over the chosen method's `search` knobs and the learning rate.

Run once:  python flows/tune.py --n-trials 8 [--storage optuna.journal] [--study-name halocm]
"""

from __future__ import annotations

import argparse

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from halocm.config import load_config
from halocm.stages.tune import tune


@task(cache_policy=NO_CACHE)
def run_study(
    params: str,
    overrides: list[str],
    n_trials: int | None,
    storage: str | None,
    study_name: str | None,
) -> str:
    return tune(
        load_config(params, overrides), n_trials=n_trials, storage=storage, study_name=study_name
    )


@flow(name="halocm-tune", log_prints=True)
def tune_flow(
    params: str = "params.yaml",
    overrides: list[str] | None = None,
    n_trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> str:
    summary = run_study(params, list(overrides or []), n_trials, storage, study_name)
    print(summary)
    create_markdown_artifact(key="halocm-tune", markdown=f"# Optuna study\n\n{summary}\n")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="override KEY=VALUE"
    )
    parser.add_argument("--n-trials", type=int, help="trials to run (default: tune.n_trials)")
    parser.add_argument(
        "--storage", help="journal file or database URL (default: tune.storage, optuna.journal)"
    )
    parser.add_argument("--study-name", help="study to create or join (default: tune.study_name)")
    a = parser.parse_args()
    tune_flow(a.params, a.overrides, a.n_trials, a.storage, a.study_name)
