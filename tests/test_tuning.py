"""Optuna for real: journal and SQLite storages, two worker processes on one study that
explore different points, pruning, the tuned overrides, and workers killed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY_TUNE, merge, tiny_config

from halocm.config import load_config, read_overrides
from halocm.processes import ProcessId, hostname
from halocm.stages.tune import search_space, trial_config, tune
from halocm.tuning import WORKER_ATTR, open_storage, recover_killed_trials, suggest


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
    # The workers explore: no parameter set was tried twice.
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == len(points), points
    # Only the tuned keys, as overrides that load onto params.yaml.
    best = study.best_trial.params
    assert set(best) == {"target_ema", "grid_levels", "loss", "lr"}
    overrides = yaml.safe_load((project / "params.tuned.yaml").read_text())
    assert overrides == {
        "ct.target_ema": best["target_ema"],
        "ct.grid_levels": best["grid_levels"],
        "ct.loss": best["loss"],
        "train.lr": best["lr"],
    }
    tuned = load_config(params, read_overrides(project / "params.tuned.yaml"))
    assert tuned.ct.target_ema == best["target_ema"] and tuned.train.lr == best["lr"]
    # The worker that finished last saw every trial: its line runs the pipeline with the best.
    lines = [ln for out in outputs for ln in out.splitlines() if "dvc exp run -S" in ln]
    assert any(f"-S 'train.lr={best['lr']}'" in ln and "-S 'ct.loss=" in ln for ln in lines)


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


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_workers_trial_is_failed_and_queued_again_once():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr(
        WORKER_ATTR, {"host": hostname(), "pid": _dead_pid(), "started": None, "trial": 0}
    )
    alive = study.ask()  # claimed by this very process: left alone
    alive.set_user_attr(WORKER_ATTR, {**ProcessId.current().record(), "trial": 1})
    assert recover_killed_trials(study, storage) == [0]
    assert recover_killed_trials(study, storage) == []  # already failed: not retried twice
    states = [t.state for t in study.trials]
    TS = optuna.trial.TrialState
    assert states == [TS.FAIL, TS.RUNNING, TS.WAITING]
    retry = study.trials[2]
    assert retry.params == study.trials[0].params and retry.system_attrs["failed_trial"] == 0


def test_a_bad_search_range_is_refused_before_any_trial(project):
    params = _tiny_tune_params(project)
    storage = project / "optuna.journal"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "halocm",
            "tune",
            "--params",
            str(params),
            "--storage",
            str(storage),
            "--set",
            "ct.search={grid_levels: {low: 12, high: 4, log: true}}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"halocm tune: error: {params}: ct.search.grid_levels: low must be < high"
    ]
    assert not storage.exists()  # no study, no failed trial


def _worker(params: Path, storage: str, n_trials: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "halocm",
        "tune",
        "--params",
        str(params),
        "--storage",
        storage,
        "--n-trials",
        str(n_trials),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd,
        cwd=params.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _running_trial_of(storage: str, pid: int):
    try:
        study = optuna.load_study(study_name="halocm", storage=open_storage(storage))
    except KeyError:  # the study is not created yet
        return None
    for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get(WORKER_ATTR, {}).get("pid") == pid and t.intermediate_values:
            return t.number
    return None


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_worker_killed_mid_trial_is_retried_when_the_study_resumes(project, kind):
    # Long enough trials to kill one midway; no pruning, so the victim's trial is running.
    params = _tiny_tune_params(project)
    raw = yaml.safe_load(params.read_text())
    raw["tune"].update(trial_steps=40, report_every=4, prune_startup_trials=100)
    params.write_text(yaml.safe_dump(raw))
    storage = (
        str(project / "optuna.journal")
        if kind == "journal"
        else f"sqlite:///{project / 'optuna.db'}"
    )
    victim, other = _worker(params, storage, 2), _worker(params, storage, 2)
    deadline = time.monotonic() + 300
    killed = None
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        killed = _running_trial_of(storage, victim.pid)
        time.sleep(0.2)
    assert killed is not None, victim.communicate()[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert other.wait(timeout=600) == 0, other.communicate()[0]

    # Resumed: one more worker (this process) finishes what the killed one left.
    tune(load_config(params), n_trials=1, storage=storage)
    states, study = _states(storage)
    TS = optuna.trial.TrialState
    assert TS.RUNNING not in states and TS.WAITING not in states, states
    assert study.trials[killed].state == TS.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in (TS.COMPLETE, TS.PRUNED)
    assert retries[0].params == study.trials[killed].params
    assert not list(Path(tempfile.gettempdir()).glob(f"halocm-trial-*-{victim.pid}-*"))
