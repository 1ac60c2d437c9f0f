"""MLflow for real (SQLite store in a temp dir): stage runs, the pyfunc model, aliases by gate."""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import numpy as np
import pytest
import yaml

from halocm.config import load_config
from halocm.pipeline import run_stage
from halocm.tracking import PARENT_RUN_ENV, gate, pipeline_run, tracking_uri


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """A migrated MLflow SQLite database, made once and copied per test (migrations are slow)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracked(project, empty_store):
    shutil.copy(empty_store, project / "mlflow.db")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["tracking"].update(
        enabled=True,
        tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
        artifact_root=str(project / "mlartifacts"),
        gate_sampling_steps=1,
        gate_max_pk_err=100.0,
        gate_max_rk_err=100.0,
    )
    raw["train"]["steps"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    cwd = os.getcwd()
    os.chdir(project)  # revision tags and relative paths as a user runs them
    yield project
    os.chdir(cwd)
    mlflow.set_tracking_uri(None)


def _config(project, *overrides):
    return load_config(project / "params.yaml", list(overrides))


def test_stages_nest_under_the_pipeline_run_and_log_params_metrics_artifacts(tracked):
    cfg = _config(tracked)
    with pipeline_run(cfg.tracking) as parent_id:
        assert os.environ[PARENT_RUN_ENV] == parent_id
        run_stage(cfg, "train")
        run_stage(cfg, "evaluate")
    assert PARENT_RUN_ENV not in os.environ
    client = mlflow.MlflowClient(tracking_uri(cfg.tracking))
    runs = {
        r.data.tags["stage"]: r
        for r in client.search_runs([client.get_experiment_by_name("halocm").experiment_id])
    }
    assert set(runs) == {"pipeline", "train", "evaluate"}
    for stage in ("train", "evaluate"):
        assert runs[stage].data.tags["mlflow.parentRunId"] == parent_id
    train = runs["train"]
    assert train.data.params["ct.target_ema"] == "0.999"
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2]
    assert "val_pk_err" in train.data.metrics
    assert "git_commit" in train.data.tags or "dvc_lock_md5" not in train.data.tags
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id)}
    assert "consistency.pt" in artifacts
    evaluate = runs["evaluate"]
    assert "consistency_1.gas.pk_err" in evaluate.data.metrics
    reports = {a.path for a in client.list_artifacts(evaluate.info.run_id, "reports")}
    assert {"reports/benchmark.md", "reports/pk_ratio.png"} <= reports


def test_register_moves_champion_only_through_the_gate(tracked):
    cfg = _config(tracked)
    run_stage(cfg, "train")
    run_stage(cfg, "evaluate")
    run_stage(cfg, "register")
    first = json.loads((tracked / "metrics/registry.json").read_text())
    assert first["alias"] == "champion" and first["version"] == 1 and first["gate_passed"]

    # Same model again: passes the gate but does not beat the champion → challenger.
    run_stage(cfg, "register")
    second = json.loads((tracked / "metrics/registry.json").read_text())
    assert (second["version"], second["alias"]) == (2, "challenger")

    # A strict gate fails: challenger, and the champion stays on version 1.
    strict = _config(tracked, "tracking.gate_max_pk_err=1e-9")
    run_stage(strict, "register")
    third = json.loads((tracked / "metrics/registry.json").read_text())
    assert (third["version"], third["alias"], third["gate_passed"]) == (3, "challenger", False)
    client = mlflow.MlflowClient(tracking_uri(cfg.tracking))
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


def test_gate_reads_the_configured_row():
    t = load_config(os.path.join(os.path.dirname(__file__), "..", "params.yaml")).tracking
    limits = {
        "sampling_steps": t.gate_sampling_steps,
        "max_pk_err": t.gate_max_pk_err,
        "max_rk_err": t.gate_max_rk_err,
    }
    assert limits == {"sampling_steps": 2, "max_pk_err": 0.5, "max_rk_err": 0.5}
    row = {
        "sampler": "consistency",
        "steps": 2,
        "channels": {
            "gas": {"pk_err": 0.1, "rk_err": 0.2},
            "stars": {"pk_err": 0.3, "rk_err": 0.1},
        },
    }
    passes, score, _ = gate({"results": [row]}, **limits)
    assert passes and score == pytest.approx(0.35)
    row["channels"]["stars"]["pk_err"] = 0.9
    passes, _, reason = gate({"results": [row]}, **limits)
    assert not passes and "stars" in reason
    row["channels"]["stars"]["pk_err"] = None  # non-finite in the benchmark
    passes, score, _ = gate({"results": [row]}, **limits)
    assert not passes and score == float("inf")
    assert gate({"results": []}, **limits)[0] is False
