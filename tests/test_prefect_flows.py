"""Prefect for real: the pipeline flow on a tiny project (temporary API from the test harness),
its cache across runs and its benchmark artifacts; then deployments from prefect.yaml against a
real `prefect server` on loopback, one triggered run executed by a process worker."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import TELEMETRY_OFF, write_params

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGE_NAMES = ["generate", "prepare", "regress", "pretrain", "train", "evaluate", "register"]


def _load_flow_module():
    """flows/pipeline.py imported by path, as `prefect deploy` and a user's `python` would."""
    spec = importlib.util.spec_from_file_location(
        "halocm_flow_pipeline", ROOT / "flows" / "pipeline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_project(root: Path, store: Path) -> Path:
    """A project directory (absolute paths) whose MLflow store is a copy of a migrated one."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(store, root / "mlflow.db")
    tracking = {
        "enabled": True,
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_root": str(root / "mlartifacts"),
    }
    return write_params(root, {"tracking": tracking})


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """A migrated MLflow SQLite database, made once and copied (migrations take seconds)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Prefect's test harness (its own database and API), with results and the cache in a
    temporary PREFECT_HOME instead of ~/.prefect."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("OMP_NUM_THREADS", "1")
        updates = {
            PREFECT_HOME: str(home),
            PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(home / "storage"),
        }
        with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=120):
            yield home
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def flow_project(harness, empty_store, tmp_path_factory):
    """The pipeline flow run once on a fresh tiny project: (module, params path, first result)."""
    module = _load_flow_module()
    params = _tiny_project(tmp_path_factory.mktemp("flow") / "project", empty_store)
    start = time.perf_counter()
    state = module.pipeline(str(params), return_state=True)
    elapsed = time.perf_counter() - start
    assert state.is_completed(), state.message
    return module, params, state, elapsed


def _task_states(flow_run_id) -> dict[str, str]:
    """Stage name → final state name of each stage task in one flow run, from the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name: r.state.name for r in runs if r.name in STAGE_NAMES}


def _output_mtimes(params: Path) -> dict[str, int]:
    from halocm.config import load_config
    from halocm.pipeline import STAGES

    cfg = load_config(params)
    return {str(p): p.stat().st_mtime_ns for s in STAGES.values() for p in s.out_paths(cfg)}


def test_pipeline_flow_runs_every_stage_and_writes_outputs(flow_project):
    _, params, state, elapsed = flow_project
    result = state.result()
    assert result["ran"] == STAGE_NAMES and result["cached"] == []
    assert set(result["outputs"]) == set(STAGE_NAMES)
    for paths in result["outputs"].values():
        assert paths and all(Path(p).is_file() for p in paths)
    registry = json.loads((params.parent / "metrics/registry.json").read_text())
    assert registry["model"] == "halocm-consistency" and registry["version"] == 1
    assert set(_task_states(state.state_details.flow_run_id).values()) == {"Completed"}
    print(f"first flow run: {elapsed:.1f} s")


def _version(params: Path) -> int:
    return json.loads((params.parent / "metrics/registry.json").read_text())["version"]


def test_rerun_hits_the_cache_for_every_stage(flow_project):
    module, params, _, _ = flow_project
    before, version = _output_mtimes(params), _version(params)
    state = module.pipeline(str(params), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["cached"] == STAGE_NAMES and result["ran"] == []
    assert _task_states(state.state_details.flow_run_id) == dict.fromkeys(STAGE_NAMES, "Cached")
    assert _output_mtimes(params) == before
    assert _version(params) == version  # register was skipped: no new model version


def test_benchmark_artifacts_are_published(flow_project):
    from prefect.artifacts import Artifact

    _, params, _, _ = flow_project
    report = Artifact.get("halocm-benchmark")
    assert report is not None and report.type == "markdown"
    assert report.data == (params.parent / "reports/benchmark.md").read_text()
    table = Artifact.get("halocm-benchmark-table")
    assert table is not None and table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    bench = json.loads((params.parent / "metrics/benchmark.json").read_text())
    # One line per row and channel, and the total's.
    assert len(rows) == len(bench["results"]) * (len(bench["channels"]) + 1)
    assert {"sampler", "channel", "pk_err", "ms_per_map"} <= set(rows[0])


def test_deleted_output_reruns_its_stage_and_what_reads_it(flow_project):
    module, params, _, _ = flow_project
    version = _version(params)
    (params.parent / "metrics/benchmark.json").unlink()
    result = module.pipeline(str(params))
    # evaluate reruns; its new benchmark.json (fresh timings) is register's input, so register
    # reruns too, keyed on the file's hash.
    assert result["ran"] == ["evaluate", "register"]
    assert result["cached"] == STAGE_NAMES[:5]
    assert _version(params) == version + 1
    # The reruns refreshed their cache entries: the next run is all hits again.
    assert module.pipeline(str(params))["cached"] == STAGE_NAMES


def test_changed_output_is_not_served_from_a_stale_cache(flow_project):
    module, params, _, _ = flow_project
    version = _version(params)
    registry = params.parent / "metrics/registry.json"
    registry.write_text('{"version": 0}')  # edited by hand: no longer what the cache recorded
    result = module.pipeline(str(params))
    assert result["ran"] == ["register"]
    assert _version(params) == version + 1


# ------------------------------------------------- deployments on a real local server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, path: str, body: dict | None = None):
    """GET (or POST a JSON body to) the Prefect REST API."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{url}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen) -> None:
    """End a process started in its own session, with everything it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields the
    environment for CLI calls against it (PREFECT_API_URL set)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        TELEMETRY_OFF,
        OMP_NUM_THREADS="1",
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        PREFECT_HOME=str(tmp_path / "server_home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
    )
    env.pop("HALOCM_MLFLOW_PARENT_RUN_ID", None)
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                BIN / "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-ui",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"server exited:\n{log.read_text()[-3000:]}"
            try:
                if _api(env["PREFECT_API_URL"], "/health") is True:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no /api/health:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield env
    finally:
        _stop(proc)


def _cli(env: dict, cwd: Path, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [BIN / "prefect", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _clean_checkout(dest: Path) -> None:
    """What a fresh clone of this working tree holds: Git's tracked and unignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


@pytest.mark.slow
def test_deployment_from_prefect_yaml_runs_through_a_worker(prefect_server, empty_store, tmp_path):
    """The work-pool route as prefect.yaml documents it, from a clean checkout and with no
    variable to set: `prefect deploy --all` in the project records its directory."""
    env, url = prefect_server, prefect_server["PREFECT_API_URL"]
    project = tmp_path / "project"
    _clean_checkout(project)
    _tiny_project(project, empty_store)  # tiny sizes; MLflow in a migrated copy
    assert "HALOCM_PROJECT_DIR" not in env

    _cli(env, project, "work-pool", "create", "halocm", "--type", "process")
    _cli(env, project, "--no-prompt", "deploy", "--all")
    nightly = _api(url, "/deployments/name/halocm-pipeline/nightly")
    assert nightly["work_pool_name"] == "halocm"
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}
    ]
    assert _api(url, "/deployments/name/halocm-tune/on-demand")["work_pool_name"] == "halocm"

    # Triggered with the deployment's default `params.yaml`: it resolves only if the pull step
    # moved the run into the project (the worker itself runs in another directory).
    out = _cli(env, project, "deployment", "run", "halocm-pipeline/nightly")
    run_id = out.split("UUID:")[1].split()[0]
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [BIN / "prefect", "worker", "start", "--pool", "halocm", "--run-once"],
            env=env,
            cwd=worker_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        worker.wait(timeout=300)
    finally:
        _stop(worker)
    worker_log = (tmp_path / "worker.log").read_text()
    assert _api(url, f"/flow_runs/{run_id}")["state_type"] == "COMPLETED", worker_log[-3000:]
    assert all(f"stage {name}: ran" in worker_log for name in STAGE_NAMES), worker_log[-3000:]
    assert _version(project / "params.yaml") == 1
    artifacts = _api(url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert {"halocm-benchmark", "halocm-benchmark-table"} <= {a["key"] for a in artifacts}

    # The cron schedule is live: the server's scheduler queues the next nightly runs (it
    # looks at new deployments every few seconds).
    query = {
        "deployments": {"id": {"any_": [nightly["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    deadline = time.monotonic() + 60
    while not (scheduled := _api(url, "/flow_runs/filter", query)):
        assert time.monotonic() < deadline, "no scheduled nightly runs"
        time.sleep(1)
    assert all(r["expected_start_time"].endswith("T02:00:00Z") for r in scheduled)


def test_the_cache_key_covers_what_the_stage_reads_and_nothing_else(project):
    from halocm.config import load_config
    from halocm.pipeline import STAGES, code_deps, fingerprint

    params = project / "params.yaml"
    key = fingerprint(load_config(params), "train")
    assert key is not None
    # Read by train: the method's knobs, the validation's levels.
    assert fingerprint(load_config(params, ["ct.target_ema=0.95"]), "train") != key
    assert fingerprint(load_config(params, ["sample.intermediate_sigmas=[2.0]"]), "train") != key
    # Read when sampling only: evaluate's key, not train's.
    assert fingerprint(load_config(params, ["sample.batch_size=3"]), "train") == key
    assert "sample" in STAGES["evaluate"].params
    # The code is the stage's import closure, not the whole library.
    names = {p.name for p in code_deps(STAGES["generate"])}
    assert "synthetic.py" in names and "training.py" not in names
