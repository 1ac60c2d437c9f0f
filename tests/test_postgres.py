"""Shared services for real: Optuna workers and an MLflow server on one PostgreSQL.

The test starts Debian's PostgreSQL itself (initdb + pg_ctl in a temporary folder, listening
on 127.0.0.1 only; as the `postgres` user when run as root, since initdb refuses root), then
`mlflow server` with a PostgreSQL backend and two `halocm tune` processes against a PostgreSQL
Optuna storage, as on a cluster (docs/deployment.md). .ci/run installs PostgreSQL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TELEMETRY_OFF, TINY_TUNE, merge

pytestmark = pytest.mark.slow

ENV = {**os.environ, **TELEMETRY_OFF, "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sqlalchemy(url: str, database: str) -> str:
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3: name the installed driver."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1) + f"/{database}"


def _pg_bindir() -> Path | None:
    """Debian keeps the server programs in /usr/lib/postgresql/VERSION/bin, off the PATH."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster on 127.0.0.1; yields its libpq URL (no database)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server programs (initdb, pg_ctl) not found: "
            "apt-get install postgresql (.ci/run does)"
        )
    import psycopg2

    root = Path(tempfile.mkdtemp(prefix="halocm-pg-"))
    user = None
    if os.geteuid() == 0:  # initdb refuses root: run the server as Debian's `postgres` user
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        user = "postgres"
    data, port = root / "data", _free_port()

    def pg(*args: str) -> None:
        subprocess.run(
            [str(bindir / args[0]), *args[1:]],
            user=user,
            check=True,
            capture_output=True,
            timeout=120,
            cwd=root,
        )

    pg("initdb", "-D", str(data), "-U", "halocm", "--auth=trust", "-E", "UTF8", "--no-sync")
    try:
        # Loopback only, the socket in our folder, no fsync (a throwaway cluster).
        pg(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -F",
            "start",
        )
        url = f"postgresql://halocm@127.0.0.1:{port}"
        with contextlib.closing(psycopg2.connect(f"{url}/postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for name in ("optuna", "mlflow"):  # separate: each has its own alembic table
                    cur.execute(f"CREATE DATABASE {name}")
        yield url
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """End the process group we started (the MLflow server runs its workers as children)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    """`mlflow server` on 127.0.0.1 with the PostgreSQL backend and artifacts in tmp."""
    port = _free_port()
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115 (closed in teardown)
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        _sqlalchemy(postgres, "mlflow"),
        "--artifacts-destination",
        str(tmp_path / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # the first start migrates the new database
        while True:
            assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            assert time.monotonic() < deadline, "mlflow server did not become healthy"
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        log.close()


def test_two_tune_workers_share_postgres_and_log_to_one_mlflow_server(
    project, postgres, mlflow_server
):
    import mlflow
    import psycopg2

    raw = merge(yaml.safe_load((project / "params.yaml").read_text()), TINY_TUNE)
    raw["tune"]["output"] = str(project / "params.tuned.yaml")
    raw["tracking"].update(enabled=True, tracking_uri=mlflow_server)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    storage = _sqlalchemy(postgres, "optuna")
    # Create the study once before the workers start, as a cluster job would: workers that
    # all find an empty database race to create Optuna's tables and one of them fails.
    optuna_cli = str(Path(sys.executable).parent / "optuna")
    subprocess.run(
        [
            optuna_cli,
            "create-study",
            "--storage",
            storage,
            "--study-name",
            "shared",
            "--direction",
            "minimize",
            "--skip-if-exists",
        ],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=120,
    )

    cmd = [
        sys.executable,
        "-m",
        "halocm",
        "tune",
        "--n-trials",
        "2",
        "--storage",
        storage,
        "--study-name",
        "shared",
        "--params",
        str(project / "params.yaml"),
    ]
    workers = [
        subprocess.Popen(
            cmd,
            cwd=project,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=600)[0] for w in workers]
    finally:
        for w in workers:
            _stop(w)
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-2000:] for o in outputs)

    # Optuna: one study in PostgreSQL, all four trials finished, none lost or duplicated.
    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert {t.state for t in study.trials} <= finished

    # MLflow: each worker's parent run with its two trial runs, stored in PostgreSQL.
    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("halocm")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # served, not a client path
    runs = client.search_runs([exp.experiment_id])
    parents = {r.info.run_id for r in runs if r.data.tags.get("stage") == "tune"}
    trials = [r for r in runs if r.data.tags.get("study") == "shared"]
    assert len(parents) == 2 and len(trials) == 4
    children = [r.data.tags["mlflow.parentRunId"] for r in trials]
    assert sorted(children.count(p) for p in parents) == [2, 2]
    done = [r for r in trials if r.data.tags.get("state") != "pruned"]
    assert done and all(r.info.status == "FINISHED" for r in done)
    with contextlib.closing(psycopg2.connect(f"{postgres}/mlflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 6
