"""Optuna for real: journal storage, two worker processes on one study, pruning, best params."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY_TUNE

from halocm.config import load_config
from halocm.tuning import open_storage, tune


def _tiny_tune_params(project: Path, **tracking) -> Path:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["tune"] = {**TINY_TUNE, "output": str(project / "params.tuned.yaml")}
    raw["tracking"] = {"enabled": False, **tracking}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    return project / "params.yaml"


def _states(storage, name="halocm"):
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    return [t.state for t in study.trials], study


def test_two_worker_processes_share_one_journal_study(project):
    params = _tiny_tune_params(project)
    journal = str(project / "optuna.journal")
    cmd = [
        sys.executable,
        "-m",
        "halocm",
        "tune",
        "--n-trials",
        "3",
        "--storage",
        journal,
        "--params",
        str(params),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    states, study = _states(journal)
    assert len(states) == 6
    assert sorted(t.number for t in study.trials) == list(range(6))  # none lost or duplicated
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert optuna.trial.TrialState.PRUNED in states
    tuned = load_config(project / "params.tuned.yaml")
    best = study.best_trial.params
    assert tuned.train.ema_decay == pytest.approx(best["ema_decay"])
    assert tuned.train.ct_n_steps == best["ct_n_steps"] and tuned.train.loss == best["loss"]


def test_a_study_resumes_by_name_and_logs_one_mlflow_run_per_trial(project, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = _tiny_tune_params(
        project, enabled=True, tracking_uri=uri, artifact_root=str(tmp_path / "art")
    )
    journal = str(project / "optuna.journal")
    cfg = load_config(params)
    tune(cfg, n_trials=2, storage=journal, study_name="resume")
    summary = tune(cfg, n_trials=1, storage=journal, study_name="resume")
    assert len(_states(journal, "resume")[0]) == 3
    assert "best trial" in summary
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("halocm").experiment_id])
    trials = [r for r in runs if r.data.tags.get("study") == "resume"]
    parents = {r.info.run_id for r in runs if r.data.tags.get("stage") == "tune"}
    assert len(trials) == 3 and len(parents) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == parents
    assert all("ema_decay" in r.data.params for r in trials)
