"""MLflow: runs per stage, metrics, artifacts, the pyfunc model, the registry and its aliases.

The only module that talks to MLflow; importing it has no side effects. Promotion is an
explicit function gated on benchmark numbers (`register`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from halocm.config import Tracking

PARENT_RUN_ENV = "HALOCM_MLFLOW_PARENT_RUN_ID"
CHAMPION, CHALLENGER = "champion", "challenger"


def tracking_uri(settings: Tracking) -> str:
    """The configured URI first, then MLflow's own MLFLOW_TRACKING_URI (containers and cluster
    jobs point every process at the shared server with it), then the project's SQLite file."""
    if settings.tracking_uri:
        return settings.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def setup(settings: Tracking) -> str:
    """Point MLflow at the project's store; create the experiment with its artifact folder."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(settings.experiment)
    if exp is None:
        # A tracking server stores artifacts itself (--artifacts-destination); a local folder
        # of this machine would be wrong for every other client.
        server = uri.startswith(("http://", "https://"))
        location = None if server else Path(settings.artifact_root).resolve().as_uri()
        try:
            exp_id = client.create_experiment(settings.experiment, artifact_location=location)
        except MlflowException:  # another worker created it first
            exp_id = client.get_experiment_by_name(settings.experiment).experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


def revision_tags() -> dict[str, str]:
    """Git commit and the DVC lock file's state: which code and data made this run."""
    tags = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        tags["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    lock = Path("dvc.lock")
    if lock.is_file():
        import hashlib

        tags["dvc_lock_md5"] = hashlib.md5(lock.read_bytes()).hexdigest()
    return tags


class StageLog:
    """What a stage logs into its run; a no-op when tracking is off."""

    def __init__(self, run_id: str | None):
        self.run_id = run_id
        self._buffer: list = []

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        stamp = _now_ms()
        self._buffer += [Metric(k, float(v), stamp, step) for k, v in values.items()]
        # Batched: one SQLite transaction per ~50 steps, not per step.
        if len(self._buffer) >= 200 or any(k.startswith("val_") for k in values):
            self.flush()

    def flush(self) -> None:
        if self.run_id is None or not self._buffer:
            return
        import mlflow

        mlflow.MlflowClient().log_batch(self.run_id, metrics=self._buffer)
        self._buffer = []

    def artifact(self, path: Path, folder: str | None = None) -> None:
        if self.run_id is not None and Path(path).exists():
            import mlflow

            mlflow.MlflowClient().log_artifact(self.run_id, str(path), folder)

    def benchmark(self, benchmark_json: Path, reports_dir: Path) -> None:
        """The benchmark's numbers as metrics, its report and plots as artifacts."""
        if self.run_id is None:
            return
        import mlflow

        self.metrics(benchmark_metrics(json.loads(Path(benchmark_json).read_text())), 0)
        self.flush()
        self.artifact(benchmark_json)
        reports = Path(reports_dir)
        for path in sorted(reports.glob("benchmark*")) + sorted(reports.glob("*.png")):
            mlflow.MlflowClient().log_artifact(self.run_id, str(path), "reports")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def benchmark_metrics(bench: dict) -> dict[str, float]:
    """Flatten benchmark rows to `{sampler}_{steps}.{channel}.{metric}` MLflow metric names."""
    out = {}
    for row in bench["results"]:
        tag = f"{row['sampler']}_{row['steps']}"
        out[f"{tag}.ms_per_map"] = row["ms_per_map"]
        for channel, values in row["channels"].items():
            for metric, value in values.items():
                if isinstance(value, int | float) and np.isfinite(value):
                    out[f"{tag}.{channel}.{metric}"] = float(value)
    return out


@contextlib.contextmanager
def stage_run(settings: Tracking, stage: str, params: dict) -> Iterator[StageLog]:
    """One MLflow run per stage, nested under the pipeline run when one is active; `params`
    (the resolved config) are logged flat."""
    from halocm.distributed import is_main_process

    if not settings.enabled or not is_main_process():  # torchrun: rank 0 logs
        yield StageLog(None)
        return
    import mlflow

    setup(settings)
    parent = os.environ.get(PARENT_RUN_ENV)
    tags = {"stage": stage, **revision_tags()}
    with mlflow.start_run(run_name=stage, parent_run_id=parent, tags=tags) as run:
        _log_params(run.info.run_id, params)
        log = StageLog(run.info.run_id)
        try:
            yield log
        finally:
            log.flush()


def _log_params(run_id: str, config: dict) -> None:
    import mlflow
    from mlflow.entities import Param

    params = [Param(k, v[:6000]) for k, v in flatten(config).items()]
    client = mlflow.MlflowClient()
    for lo in range(0, len(params), 100):
        client.log_batch(run_id, params=params[lo : lo + 100])


@contextlib.contextmanager
def child_run(
    settings: Tracking, name: str, parent_run_id: str | None, tags: dict[str, str] | None = None
) -> Iterator[StageLog]:
    """A run made through the client, not the fluent API: it never becomes the thread's
    active run, so stages (pipeline parent) or Optuna trials (tune children) can open theirs."""
    if not settings.enabled:
        yield StageLog(None)
        return
    import mlflow

    exp_id = setup(settings)
    client = mlflow.MlflowClient()
    all_tags = {"stage": name, **revision_tags(), **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(exp_id, run_name=name, tags=all_tags)
    log = StageLog(run.info.run_id)
    status = "FAILED"
    try:
        yield log
        status = "FINISHED"
    finally:
        log.flush()
        client.set_terminated(run.info.run_id, status)


@contextlib.contextmanager
def pipeline_run(settings: Tracking, name: str = "pipeline") -> Iterator[str | None]:
    """The parent run: stages started inside (also as subprocesses) nest under it."""
    with child_run(settings, name, os.environ.get(PARENT_RUN_ENV)) as log:
        previous = os.environ.get(PARENT_RUN_ENV)
        if log.run_id is not None:
            os.environ[PARENT_RUN_ENV] = log.run_id
        try:
            yield log.run_id
        finally:
            if previous is None:
                os.environ.pop(PARENT_RUN_ENV, None)
            else:
                os.environ[PARENT_RUN_ENV] = previous


# ---------------------------------------------------------------- the model and the registry


def gate(
    bench: dict, *, sampling_steps: int, max_pk_err: float, max_rk_err: float
) -> tuple[bool, float, str]:
    """The promotion gate on the consistency model's row at `sampling_steps`.

    Returns (passes thresholds, score = mean over channels of pk_err + rk_err, reason).
    """
    rows = [
        r
        for r in bench["results"]
        if r["sampler"] == "consistency" and r["steps"] == sampling_steps
    ]
    if not rows:
        return False, float("inf"), f"no consistency row at {sampling_steps} steps"
    channels = rows[0]["channels"]
    # A non-finite value is written as null in the benchmark: it fails the gate.
    finite = {n: m["pk_err"] is not None and m["rk_err"] is not None for n, m in channels.items()}
    failures = [
        f"{name}: pk_err {m['pk_err']}, rk_err {m['rk_err']}"
        for name, m in channels.items()
        if not (finite[name] and m["pk_err"] <= max_pk_err and m["rk_err"] <= max_rk_err)
    ]
    score = (
        float(np.mean([m["pk_err"] + m["rk_err"] for m in channels.values()]))
        if all(finite.values())
        else float("inf")
    )
    if failures:
        return False, score, "above the gate: " + "; ".join(failures)
    return True, score, "within the gate"


def register_model(
    log: StageLog,
    checkpoint: Path,
    *,
    model_name: str,
    example: dict[str, np.ndarray],
    output: np.ndarray,
    sample_settings: dict,
    passes: bool,
    score: float,
    reason: str,
    mode: str,
) -> tuple[int, str, float | None]:
    """Log the checkpoint as a pyfunc into the active stage run, register a new version and
    set its alias: `champion` only when the gate passes and the score beats the current
    champion's, `challenger` otherwise. Returns (version, alias, previous champion score).

    `sample_settings` (intermediate_sigmas, batch_size) become the model's config: the
    pyfunc samples as the pipeline does."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(example, output, params={"n_steps": 1, "seed": 0})
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("mlflow_model.py")),
        artifacts={"checkpoint": str(checkpoint)},
        model_config=sample_settings,
        signature=signature,
        input_example=example,
        pip_requirements=_requirements(),
    )
    log.metrics({"gate_score": score, "gate_passed": float(passes)}, 0)
    version = mlflow.register_model(
        info.model_uri, model_name, tags={"gate_score": repr(score), "gate": reason, "mode": mode}
    )
    client = mlflow.MlflowClient()
    champion = _champion_score(client, model_name)
    alias = CHAMPION if passes and (champion is None or score < champion) else CHALLENGER
    client.set_registered_model_alias(model_name, alias, version.version)
    return int(version.version), alias, champion


def _champion_score(client, name: str) -> float | None:
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # MLflow raises MlflowException when the alias does not exist yet
        return None
    return float(current.tags.get("gate_score", "inf"))


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"torch=={version('torch')}",
        f"numpy=={version('numpy')}",
        f"mlflow=={version('mlflow')}",
        f"pydantic=={version('pydantic')}",
    ]


def serve_ui(settings: Tracking, port: int = 5000) -> None:
    """`mlflow ui` bound to loopback on this project's store."""
    cmd = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(settings),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    subprocess.run(cmd, check=False)
