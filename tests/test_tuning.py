"""Optuna for real: journal storage, two worker processes on one study, pruning, best params."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY_TUNE, merge, tiny_config

from halocm.config import load_config
from halocm.stages.tune import search_space, trial_config, tune
from halocm.tuning import open_storage, suggest


def _tiny_tune_params(project: Path, **tracking) -> Path:
    raw = merge(yaml.safe_load((project / "params.yaml").read_text()), TINY_TUNE)
    raw["tune"]["output"] = str(project / "params.tuned.yaml")
    raw["tracking"].update({"enabled": False, **tracking})
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    return project / "params.yaml"


@pytest.mark.parametrize("mode", ["ct", "cd", "ict", "ect"])
def test_a_study_tunes_only_the_knobs_of_the_chosen_method(mode, tmp_path):
    cfg = tiny_config({"train": {"mode": mode}})
    space, integer = search_space(cfg)
    section = getattr(cfg, mode)
    assert set(space) == set(section.search) | {"lr"}
    assert set(section.search) <= set(section.fields())  # its own knobs only
    trial = optuna.create_study().ask()
    values = suggest(trial, space, integer)
    tcfg = trial_config(cfg, values, tmp_path)
    assert tcfg.train.lr == values["lr"] and tcfg.train.steps == cfg.tune.trial_steps
    for knob, value in values.items():
        if knob != "lr":
            assert getattr(getattr(tcfg, mode), knob) == value
            assert isinstance(value, int) == (knob in integer)
    others = [m for m in ("ct", "cd", "ict", "ect") if m != mode]
    assert all(getattr(tcfg, m) == getattr(cfg, m) for m in others)


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
    assert set(best) == {"target_ema", "grid_levels", "loss", "lr"}
    assert tuned.ct.target_ema == pytest.approx(best["target_ema"])
    assert tuned.ct.grid_levels == best["grid_levels"] and tuned.ct.loss == best["loss"]
    assert tuned.train.lr == pytest.approx(best["lr"])


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
    assert all("target_ema" in r.data.params for r in trials)
