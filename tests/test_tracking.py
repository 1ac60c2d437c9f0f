"""MLflow for real (SQLite store in a temp dir): what a user finds in the UI. The experiment
opens on model training; stage runs nest under a parent that carries ≤ 20 headline metrics,
the params that matter, the splits as datasets (digest = DVC's md5), the full benchmark as one
table and the figures; `train` logs a LoggedModel that `register` registers; the gate reads
mass as well as shape; runs of a DVC command have a parent; trials link to their study."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import mlflow
import numpy as np
import optuna
import pytest
import yaml

from halocm.config import load_config
from halocm.pipeline import run_stage, summarize
from halocm.tracking import (
    BENCHMARK_TABLE,
    PARENT_RUN_ENV,
    file_md5,
    gate,
    headline_metrics,
    log_study,
    pipeline_run,
    revision_tags,
    study_link,
    tracking_uri,
    trial_tags,
)

LIMITS = {"sampling_steps": 2, "max_pk_err": 0.5, "max_rk_err": 0.5, "max_mass_bias": 0.2}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """A migrated MLflow SQLite database, made once and copied per test (migrations are slow)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracked(project, empty_store, monkeypatch):
    shutil.copy(empty_store, project / "mlflow.db")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["tracking"].update(
        enabled=True,
        tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
        artifact_root=str(project / "mlartifacts"),
        gate_sampling_steps=1,
        gate_max_pk_err=100.0,
        gate_max_rk_err=100.0,
        gate_max_mass_bias=100.0,
    )
    raw["train"]["steps"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    for name in (PARENT_RUN_ENV, "DVC_EXP_NAME", "DVC_STAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project)  # revision tags and relative paths as a user runs them
    yield project
    mlflow.set_tracking_uri(None)


def _config(project, *overrides):
    return load_config(project / "params.yaml", list(overrides))


def _client(cfg):
    return mlflow.MlflowClient(tracking_uri(cfg.tracking))


def _runs(cfg) -> dict:
    client = _client(cfg)
    exp = client.get_experiment_by_name("halocm")
    return {r.data.tags["stage"]: r for r in client.search_runs([exp.experiment_id])}


def test_a_pipeline_run_holds_the_headline_and_its_stages_their_own(tracked):
    cfg = _config(tracked)
    with pipeline_run(cfg.tracking, tags={"launcher": "test"}) as parent_id:
        assert os.environ[PARENT_RUN_ENV] == parent_id
        run_stage(cfg, "train")
        run_stage(cfg, "evaluate")
        summarize(parent_id, cfg)
    assert PARENT_RUN_ENV not in os.environ
    client = _client(cfg)
    exp = client.get_experiment_by_name("halocm")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = _runs(cfg)
    assert set(runs) == {"pipeline", "train", "evaluate"}
    for stage in ("train", "evaluate"):
        assert runs[stage].data.tags["mlflow.parentRunId"] == parent_id

    # The parent: a handful of metrics, the params that decide, the benchmark as one table.
    parent = client.get_run(parent_id)
    assert 0 < len(parent.data.metrics) <= 20
    assert {"consistency_1/pk_err", "consistency_1/rk_err", "consistency_1/speedup"} <= set(
        parent.data.metrics
    )
    assert {"train.mode", "ct.target_ema", "ct.grid_levels", "train.steps"} <= set(
        parent.data.params
    )
    assert len(parent.data.params) < 20
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {BENCHMARK_TABLE, "benchmark.json", "reports"} <= artifacts
    local = client.download_artifacts(parent_id, BENCHMARK_TABLE, str(tracked))
    with open(local) as fh:
        table = json.load(fh)
    bench = json.loads((tracked / "metrics/benchmark.json").read_text())
    n_entries = sum(len(r["channels"]) for r in bench["results"])
    assert len(table["data"]) == n_entries and "pk_err" in table["columns"]
    assert client.list_artifacts(parent_id, "images"), "figures logged as images"

    # Datasets: each split once, its digest the file's md5 (DVC's hash of the file).
    inputs = {d.dataset.name: d for d in parent.inputs.dataset_inputs}
    assert set(inputs) == {"halocm-train", "halocm-val", "halocm-test"}
    test_split = tracked / "data/processed/test.npz"
    assert inputs["halocm-test"].dataset.digest == file_md5(test_split)
    contexts = {d.dataset.name: d.tags[0].value for d in parent.inputs.dataset_inputs}
    assert contexts["halocm-train"] == "training"

    # Stage runs: the params their DVC stage lists, the splits they read, their outputs.
    train = runs["train"]
    assert train.data.params["ct.target_ema"] == "0.9"
    others = ("cd.", "ict.", "ect.", "tune.", "ct.search")  # not read by train
    assert not any(k.startswith(others) for k in train.data.params)
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2]
    assert "val_pk_err" in train.data.metrics
    trained_on = {d.dataset.name for d in train.inputs.dataset_inputs}
    assert trained_on == {"halocm-train", "halocm-val"}
    assert "consistency.pt" in {a.path for a in client.list_artifacts(train.info.run_id)}
    models = client.search_logged_models(
        [exp.experiment_id], filter_string=f"source_run_id = '{train.info.run_id}'"
    )
    assert len(models) == 1
    assert models[0].tags["checkpoint_md5"] == file_md5(tracked / "models/consistency.pt")
    evaluate = runs["evaluate"]
    assert set(evaluate.data.metrics) == set(parent.data.metrics)
    scored = {d.dataset.name for d in evaluate.inputs.dataset_inputs}
    assert scored == {"halocm-train", "halocm-test"}
    reports = {a.path for a in client.list_artifacts(evaluate.info.run_id, "reports")}
    assert {"reports/benchmark.md", "reports/pk_ratio.png"} <= reports


def test_register_links_the_train_runs_model_and_moves_champion_only_through_the_gate(tracked):
    cfg = _config(tracked)
    run_stage(cfg, "train")
    run_stage(cfg, "evaluate")
    run_stage(cfg, "register")
    first = json.loads((tracked / "metrics/registry.json").read_text())
    assert first["alias"] == "champion" and first["version"] == 1 and first["gate_passed"]
    client = _client(cfg)
    runs = _runs(cfg)
    version = client.get_model_version("halocm-consistency", "1")
    assert version.run_id == runs["train"].info.run_id  # the train run's LoggedModel
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.source_run_id == runs["train"].info.run_id
    assert json.loads(model.tags["mlflow.modelVersions"]) == [
        {"name": "halocm-consistency", "version": "1"}
    ]

    # Same model again: passes the gate but does not beat the champion → challenger.
    run_stage(cfg, "register")
    second = json.loads((tracked / "metrics/registry.json").read_text())
    assert (second["version"], second["alias"]) == (2, "challenger")

    # A strict gate fails: challenger, and the champion stays on version 1.
    strict = _config(tracked, "tracking.gate_max_pk_err=1e-9")
    run_stage(strict, "register")
    third = json.loads((tracked / "metrics/registry.json").read_text())
    assert (third["version"], third["alias"], third["gate_passed"]) == (3, "challenger", False)
    assert int(client.get_model_version_by_alias("halocm-consistency", "champion").version) == 1
    assert int(client.get_model_version_by_alias("halocm-consistency", "challenger").version) == 3

    # The champion loads from the registry as a pyfunc and samples as the pipeline does.
    mlflow.set_tracking_uri(tracking_uri(cfg.tracking))
    model = mlflow.pyfunc.load_model("models:/halocm-consistency@champion")
    assert model.model_config == cfg.sample.model_dump(mode="json")
    cond = np.full((2, 1, 16, 16), 1e9, dtype=np.float32)
    out = model.predict(
        {"condition": cond, "params": np.full((2, 2), 0.5, np.float32)},
        params={"n_steps": 2, "seed": 3},
    )
    assert out.shape == (2, 3, 16, 16) and np.isfinite(out).all()


def _channel(pk=0.05, rk=0.02, bias=0.01):
    return {"pk_err": pk, "rk_err": rk, "mass_bias": bias, "mass_scatter": 0.05}


def _bench(stars_bias: float) -> dict:
    """A benchmark in the shape `evaluate` writes: right shapes everywhere; the stars' whole
    map mass off by `stars_bias` dex, and the total by what the stars take with them."""
    channels = {
        "dm_hydro": _channel(),
        "gas": _channel(),
        "stars": _channel(bias=stars_bias),
        "total": _channel(bias=0.02),
    }
    rows = [
        {"sampler": "consistency", "steps": s, "nfe": s, "ms_per_map": 0.5 * s, "n_maps": 8,
         "n_realizations": 2, "channels": channels}
        for s in (1, 2)
    ]  # fmt: skip
    names = ["dm_hydro", "gas", "stars"]
    return {"results": rows, "mode": "ct", "n_parameters": 10, "channels": names}


def test_a_model_with_right_shapes_but_wrong_masses_stays_out_of_champion(tracked):
    cfg = _config(
        tracked,
        "tracking.gate_sampling_steps=2",
        "tracking.gate_max_pk_err=0.5",
        "tracking.gate_max_rk_err=0.5",
        "tracking.gate_max_mass_bias=0.2",
    )
    run_stage(cfg, "train")
    (tracked / "metrics").mkdir(exist_ok=True)
    (tracked / "metrics/benchmark.json").write_text(json.dumps(_bench(stars_bias=-0.71)))
    run_stage(cfg, "register")
    registry = json.loads((tracked / "metrics/registry.json").read_text())
    assert (registry["version"], registry["alias"], registry["gate_passed"]) == (
        1,
        "challenger",
        False,
    )
    assert "stars: mass_bias -0.71 > 0.2" in registry["gate"]
    client = _client(cfg)
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("halocm-consistency", "champion")

    # The same shapes with the masses right: the next version is champion.
    (tracked / "metrics/benchmark.json").write_text(json.dumps(_bench(stars_bias=0.05)))
    run_stage(cfg, "register")
    champion = client.get_model_version_by_alias("halocm-consistency", "champion")
    assert int(champion.version) == 2


def test_gate_reads_shape_and_mass_of_every_channel_and_the_total():
    t = load_config(os.path.join(os.path.dirname(__file__), "..", "params.yaml")).tracking
    limits = {
        "sampling_steps": t.gate_sampling_steps,
        "max_pk_err": t.gate_max_pk_err,
        "max_rk_err": t.gate_max_rk_err,
        "max_mass_bias": t.gate_max_mass_bias,
    }
    assert limits == LIMITS
    bench = _bench(stars_bias=0.01)
    passes, score, _ = gate(bench, **limits)
    assert passes and score == pytest.approx(0.05 + 0.02 + 0.0125)
    bench["results"][1]["channels"]["total"] = _channel(pk=0.9)  # the total joins pk_err
    passes, _, reason = gate(bench, **limits)
    assert not passes and "total: pk_err 0.9" in reason
    bench = _bench(stars_bias=0.01)
    bench["results"][1]["channels"]["gas"] = _channel(bias=None)  # non-finite: null in JSON
    passes, score, _ = gate(bench, **limits)
    assert not passes and score == float("inf")
    assert gate({"results": []}, **limits)[0] is False


def test_headline_metrics_are_at_most_20_for_the_default_sampling_steps():
    steps = load_config(os.path.join(os.path.dirname(__file__), "..", "params.yaml"))
    rows = [
        {"sampler": "consistency", "steps": s, "nfe": s, "ms_per_map": 0.5 * s,
         "channels": {"gas": _channel(), "stars": _channel(pk=0.2), "total": _channel()}}
        for s in steps.evaluate.sampling_steps
    ]  # fmt: skip
    rows += [
        {"sampler": "teacher", "steps": 18, "nfe": 35, "ms_per_map": 20.0,
         "channels": {"gas": _channel(), "stars": _channel(), "total": _channel()}},
        {"sampler": "denoiser", "steps": 1, "nfe": 1, "ms_per_map": 0.5,
         "channels": {"gas": _channel(), "stars": _channel(), "total": _channel()}},
        {"sampler": "oracle", "steps": 0, "nfe": 0, "ms_per_map": 0.0,
         "channels": {"gas": _channel(pk=0.01, rk=0.01), "stars": _channel(pk=0.02, rk=0.01),
                      "total": _channel()}},
    ]  # fmt: skip
    head = headline_metrics({"results": rows})
    assert len(head) <= 20
    assert head["consistency_1/speedup"] == pytest.approx(40.0)
    assert head["teacher_18/ms_per_map"] == 20.0
    # Worst channel: stars, (0.2 + 0.02) − (0.02 + 0.01) above the oracle.
    assert head["consistency_1/worst_vs_oracle"] == pytest.approx(0.19)
    assert head["consistency_1/pk_err"] == pytest.approx(0.125)  # gas and stars, not total


def _git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}  # fmt: skip
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def test_runs_from_a_dirty_tree_are_tagged_with_the_params_diff(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("ct:\n  target_ema: 0.999\n  grid_levels: 18\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "params.yaml")
    _git(tmp_path, "commit", "-qm", "params")
    monkeypatch.chdir(tmp_path)
    clean = revision_tags()
    assert clean["git_dirty"] == "false" and "params_diff" not in clean
    (tmp_path / "params.yaml").write_text("ct:\n  target_ema: 0.97\n  grid_levels: 18\n")
    dirty = revision_tags()
    assert dirty["git_dirty"] == "true" and dirty["git_changed"] == "params.yaml"
    assert dirty["params_diff"] == "ct.target_ema: 0.999 → 0.97"


def test_stages_of_a_dvc_experiment_share_one_parent_that_gets_the_headline(tracked, monkeypatch):
    """What `dvc exp run` does: DVC exports the experiment's name to every stage command."""
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-ions")
    cfg = _config(tracked)
    run_stage(cfg, "train")
    run_stage(cfg, "evaluate")
    run_stage(cfg, "register")  # the last stage: the parent gets the headline
    client = _client(cfg)
    exp = client.get_experiment_by_name("halocm")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "dvc exp lucky-ions" and parent.info.status == "FINISHED"
    assert parent.data.tags["launcher"] == "dvc exp run"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.data.tags["stage"] for r in children} == {"train", "evaluate", "register"}
    assert all(r.data.tags["dvc_exp_name"] == "lucky-ions" for r in children)
    assert "consistency_1/pk_err" in parent.data.metrics and parent.data.tags["registered"]


def test_trials_and_tune_runs_link_to_their_study(tracked):
    cfg = _config(tracked)
    study = optuna.create_study(study_name="halocm", direction="minimize")
    for value in (0.8, 0.6):
        trial = study.ask({"target_ema": optuna.distributions.FloatDistribution(0.9, 0.999)})
        study.tell(trial, value)
    tags = trial_tags("halocm", 1, "optuna.journal")
    assert tags["optuna.study"] == "halocm" and tags["optuna.trial"] == "1"
    assert "optuna-dashboard optuna.journal" in tags["mlflow.note.content"]
    with pipeline_run(cfg.tracking, "tune") as run_id:
        space = {"target_ema": {"low": 0.9, "high": 0.999, "log": False}}
        log_study(run_id, study, space, "optuna.journal")
    run = _client(cfg).get_run(run_id)
    assert run.data.tags["optuna.study"] == "halocm" and run.data.tags["optuna.best_trial"] == "1"
    assert run.data.metrics["best_value"] == 0.6 and run.data.metrics["n_complete"] == 2
    assert json.loads(run.data.params["search_space"])["target_ema"]["high"] == 0.999


def test_an_overrides_file_from_tune_links_the_pipeline_to_its_study(tmp_path):
    tuned = tmp_path / "params.tuned.yaml"
    tuned.write_text(
        "# Written by `halocm tune`: study halocm, best trial 3 (val_score 0.8073).\n"
        "ct.target_ema: 0.97\ntrain.lr: 0.0003\n"
    )
    assert study_link(tuned) == {
        "tuned_from": str(tuned),
        "optuna.study": "halocm",
        "optuna.trial": "3",
        "optuna.value": "0.8073",
    }


def test_a_real_study_links_its_tune_run_and_trials(tracked):
    """`halocm tune` itself: the tune run carries the study, its search space and best value;
    each trial's run its study, trial number and storage (without a password)."""
    from conftest import TINY_TUNE

    from halocm.config import config_from_dict
    from halocm.stages.tune import tune

    raw = yaml.safe_load((tracked / "params.yaml").read_text())
    raw["tune"].update(TINY_TUNE["tune"])
    raw["ct"]["search"]["grid_levels"] = TINY_TUNE["ct"]["search"]["grid_levels"]
    cfg = config_from_dict(raw, source="tiny tune")
    journal = str(tracked / "optuna.journal")
    tune(cfg, n_trials=2, storage=journal, study_name="linked")
    client = _client(cfg)
    runs = client.search_runs([client.get_experiment_by_name("halocm").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("stage") == "tune"]
    assert parent.data.tags["optuna.study"] == "linked"
    assert parent.data.tags["optuna.storage"] == journal
    assert set(json.loads(parent.data.params["search_space"])) == {
        "target_ema", "grid_levels", "loss", "lr"
    }  # fmt: skip
    assert parent.data.metrics["n_complete"] + parent.data.metrics.get("n_pruned", 0) == 2
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["optuna.trial"] for r in trials) == ["0", "1"]
    assert all(r.data.tags["optuna.study"] == "linked" for r in trials)
    url = "postgresql+psycopg2://halocm:secret@db/optuna"
    assert "secret" not in trial_tags("s", 0, url)["optuna.storage"]
