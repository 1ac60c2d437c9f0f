"""MLflow: runs per stage and their parents, headline metrics, datasets, the logged model, the
registry and its aliases (docs/design.md §8).

The only module that talks to MLflow; importing it has no side effects. Promotion is an
explicit function gated on benchmark numbers (`gate`, `register_model`).

What a user sees, and where it comes from:
- the experiment is tagged as model development, so the UI opens on the runs table;
- every stage run has a parent: the `halocm pipeline` (or Prefect) run, else one run per
  DVC experiment (`dvc exp run`) or per `dvc repro`, made by the first stage that runs;
- a parent carries the run's headline: ≤ 20 metrics (`headline_metrics`), the params that
  decide between pipelines (`headline_params`), the splits as datasets, the full benchmark as
  one table artifact and the figures as images;
- a stage run carries the params its DVC stage lists, its datasets and its outputs; `train`
  logs the model (a LoggedModel) that `register` registers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from halocm.config import Tracking

PARENT_RUN_ENV = "HALOCM_MLFLOW_PARENT_RUN_ID"
CHAMPION, CHALLENGER = "champion", "challenger"
# The MLflow UI picks its layout from this tag: unset, MLflow 3 may open an experiment on its
# GenAI overview (traces); model development opens on the runs table.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
BENCHMARK_TABLE = "benchmark_table.json"  # the full benchmark, one MLflow table artifact
# MLflow's own warnings that say nothing about this project's runs, silenced where MLflow is
# set up (filters, not catch_warnings, which is not thread-safe; Prefect runs stages in
# threads): importing mlflow.pyfunc warns about `Any` hints in MLflow's GenAI types; MLflow
# registers its local-file dataset source twice (for `file:` and for no scheme) and warns that
# a path matches both, either resolving it the same way.
QUIET = (
    r".*Any type hint is inferred as AnyType",
    r"The specified dataset source can be interpreted in multiple ways",
)
MODEL_VERSIONS = "mlflow.modelVersions"  # LoggedModel tag: its registered versions (JSON)
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "evaluation"}


def tracking_uri(settings: Tracking) -> str:
    """The configured URI first, then MLflow's own MLFLOW_TRACKING_URI (containers and cluster
    jobs point every process at the shared server with it), then the project's SQLite file."""
    if settings.tracking_uri:
        return settings.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def setup(settings: Tracking) -> str:
    """Point MLflow at the project's store; create the experiment (artifact folder, tags)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # A pipeline's console is its stages' progress and summary: MLflow's per-call chatter
    # (INFO lines while logging a model, download progress bars) is not for that console.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    for message in QUIET:
        warnings.filterwarnings("ignore", message=message)
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
            exp_id = client.create_experiment(
                settings.experiment, artifact_location=location, tags=EXPERIMENT_TAGS
            )
        except MlflowException:  # another worker created it first
            exp_id = client.get_experiment_by_name(settings.experiment).experiment_id
    else:
        exp_id = exp.experiment_id
        for key, value in EXPERIMENT_TAGS.items():  # experiments made before the tag existed
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp_id, key, value)
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


# ------------------------------------------------------------------ which code and params


def _git(*args: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        if proc.returncode == 0:
            return proc.stdout
    return None


def _dvc_outputs() -> set[str]:
    """dvc.lock and the outputs it records: files DVC rewrites, not a user's edits."""
    lock = Path("dvc.lock")
    if not lock.is_file():
        return set()
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    outs = {o["path"] for s in stages.values() for o in s.get("outs", [])}
    return {"dvc.lock", *outs}


def params_diff(path: str | Path = "params.yaml") -> dict[str, tuple[str, str]]:
    """Dotted key → (committed value, current value) for every key of the params file that
    differs from Git's HEAD (what `dvc params diff` shows); {} outside Git."""
    committed = _git("show", f"HEAD:{Path(path).as_posix()}")
    if committed is None or not Path(path).is_file():
        return {}
    old = flatten(yaml.safe_load(committed) or {})
    new = flatten(yaml.safe_load(Path(path).read_text()) or {})
    keys = sorted(set(old) | set(new))
    return {k: (old.get(k, "—"), new.get(k, "—")) for k in keys if old.get(k) != new.get(k)}


def revision_tags() -> dict[str, str]:
    """Which code, params and data made this run: the Git commit, whether the tree differs
    from it (DVC's own outputs aside) with the params diff, dvc.lock's hash, and the DVC
    experiment when `dvc exp run` runs the stage."""
    tags = {}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["git_commit"] = commit.strip()
        changed = (_git("diff", "HEAD", "--name-only") or "").split()
        managed = _dvc_outputs()
        edits = [p for p in changed if p not in managed and Path(p).name != ".gitignore"]
        tags["git_dirty"] = "true" if edits else "false"
        if edits:
            tags["git_changed"] = ", ".join(edits)[:1000]
        diff = params_diff()
        if diff:
            tags["params_diff"] = "; ".join(f"{k}: {a} → {b}" for k, (a, b) in diff.items())[:5000]
    lock = Path("dvc.lock")
    if lock.is_file():
        tags["dvc_lock_md5"] = hashlib.md5(lock.read_bytes()).hexdigest()
    for env, tag in (("DVC_EXP_NAME", "dvc_exp_name"), ("DVC_EXP_BASELINE_REV", "dvc_baseline")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


# ------------------------------------------------------------------ what a run logs


class StageLog:
    """What a stage logs into its run; a no-op when tracking is off."""

    def __init__(self, run_id: str | None, parent_id: str | None = None, by_dvc: bool = False):
        self.run_id = run_id
        self.parent_id = parent_id
        self.parent_by_dvc = by_dvc  # the parent is the run of a DVC command (no end hook)
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

    def datasets(self, splits: dict[str, Path]) -> None:
        """The prepared splits this run read, as MLflow datasets (`log_datasets`)."""
        if self.run_id is not None:
            log_datasets(self.run_id, splits)

    def benchmark(self, benchmark_json: Path, reports_dir: Path) -> None:
        """The benchmark's headline metrics, its full table, report and figures."""
        if self.run_id is not None:
            log_benchmark(self.run_id, Path(benchmark_json), Path(reports_dir))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def log_datasets(run_id: str, splits: dict[str, Path]) -> None:
    """Each split file as an MLflow dataset input: name `halocm-<split>`, context training /
    validation / evaluation, digest = the file's md5, which is the hash DVC records for it in
    dvc.lock, so a run's dataset column says exactly which prepared data it read."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for split, path in splits.items():
        if not Path(path).is_file():
            continue
        with np.load(path, allow_pickle=False) as npz:
            features = {k: npz[k] for k in ("condition", "params") if k in npz.files}
            targets = npz["target"] if "target" in npz.files else None
        dataset = mlflow.data.from_numpy(
            features,
            targets=targets,
            source=str(Path(path).resolve()),
            name=f"halocm-{split}",
            digest=file_md5(path),
        )
        context = SPLIT_CONTEXTS.get(split, split)
        tags = [InputTag(key="mlflow.data.context", value=context)]
        inputs.append(DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags))
    if inputs:
        mlflow.MlflowClient().log_inputs(run_id, datasets=inputs)


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes: DVC 3's hash of a file output."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def headline_metrics(bench: dict) -> dict[str, float]:
    """At most 20 numbers that decide between two pipelines, `<row>/<metric>` (the MLflow
    chart view groups them by row): for each consistency row and the teacher, the channel
    means of pk_err and rk_err, and `worst_vs_oracle`, the largest excess over the target
    channels of pk_err + rk_err above the oracle's (0: no worse than a second draw of the
    truth); the consistency rows' `speedup` over the teacher and the teacher's ms per map.
    Everything else (every channel, the total, the baseline, the denoiser, SSIM, masses,
    calibration) is in the benchmark table artifact."""
    rows = bench["results"]
    oracle = next((r for r in rows if r["sampler"] == "oracle"), None)
    teacher = next((r for r in rows if r["sampler"] == "teacher"), None)
    out: dict[str, float] = {}
    for row in rows:
        if row["sampler"] not in ("consistency", "teacher"):
            continue
        tag = f"{row['sampler']}_{row['steps']}"
        channels = {n: m for n, m in row["channels"].items() if n != "total"}
        for metric in ("pk_err", "rk_err"):
            values = [m.get(metric) for m in channels.values()]
            if values and all(_finite(v) for v in values):
                out[f"{tag}/{metric}"] = float(np.mean(values))
        worst = worst_vs_oracle(row, oracle)
        if worst is not None:
            out[f"{tag}/worst_vs_oracle"] = worst
        if row["sampler"] == "teacher":
            out[f"{tag}/ms_per_map"] = float(row["ms_per_map"])
        elif teacher is not None and row["ms_per_map"] > 0:
            out[f"{tag}/speedup"] = float(teacher["ms_per_map"] / row["ms_per_map"])
    return out


def worst_vs_oracle(row: dict, oracle: dict | None) -> float | None:
    """The largest excess, over the target channels, of a row's pk_err + rk_err above the
    oracle's (above 0 without an oracle); None when a value is missing."""
    excess = []
    for name, m in row["channels"].items():
        if name == "total":
            continue
        ref = oracle["channels"].get(name, {}) if oracle else {}
        values = [m.get("pk_err"), m.get("rk_err"), ref.get("pk_err", 0.0), ref.get("rk_err", 0.0)]
        if not all(_finite(v) for v in values):
            return None
        excess.append(values[0] + values[1] - values[2] - values[3])
    return float(max(excess)) if excess else None


def _finite(value) -> bool:
    return isinstance(value, int | float) and bool(np.isfinite(value))


def log_benchmark(run_id: str, benchmark_json: Path, reports_dir: Path) -> None:
    """Headline metrics, the full per-channel benchmark as one table artifact, the JSON and
    Markdown report, and every figure of `reports_dir` as an image the run page shows."""
    import mlflow
    from mlflow.entities import Metric

    bench = json.loads(benchmark_json.read_text())
    client = mlflow.MlflowClient()
    stamp = _now_ms()
    metrics = [Metric(k, v, stamp, 0) for k, v in headline_metrics(bench).items()]
    client.log_batch(run_id, metrics=metrics)
    client.log_table(run_id, data=benchmark_table(bench), artifact_file=BENCHMARK_TABLE)
    client.log_artifact(run_id, str(benchmark_json))
    for path in sorted(reports_dir.glob("benchmark*.md")):
        client.log_artifact(run_id, str(path), "reports")
    log_figures(run_id, reports_dir)


def benchmark_table(bench: dict):
    """The whole benchmark flat, as a DataFrame: one line per (row, channel) with every
    scalar it holds (lists such as rank_hist stay in benchmark.json)."""
    import pandas as pd

    records = []
    for row in bench["results"]:
        head = {k: v for k, v in row.items() if k != "channels"}
        for channel, values in row["channels"].items():
            scalars = {
                k: np.nan if v is None else float(v)
                for k, v in values.items()
                if v is None or isinstance(v, int | float)
            }
            records.append({**head, "channel": channel, **scalars})
    return pd.DataFrame.from_records(records)


def log_figures(run_id: str, reports_dir: Path) -> None:
    """Each PNG of the reports as an MLflow image under its name (the run's chart view shows
    logged images) and as a file under `reports/`."""
    import mlflow
    from PIL import Image

    client = mlflow.MlflowClient()
    for path in sorted(Path(reports_dir).glob("*.png")):
        with Image.open(path) as image:
            client.log_image(run_id, image.convert("RGB"), key=path.stem, step=0)
        client.log_artifact(run_id, str(path), "reports")


# ------------------------------------------------------------------ runs and their parents


@contextlib.contextmanager
def stage_run(
    settings: Tracking, stage: str, params: dict, datasets: dict[str, Path] | None = None
) -> Iterator[StageLog]:
    """One MLflow run per stage: under the pipeline run when one is active, else under the
    run of the DVC command that runs this stage (`dvc_parent_run`). `params` are logged
    flat, `datasets` (split name → file) as dataset inputs."""
    from halocm.distributed import is_main_process

    if not settings.enabled or not is_main_process():  # torchrun: rank 0 logs
        yield StageLog(None)
        return
    import mlflow

    exp_id = setup(settings)
    parent = os.environ.get(PARENT_RUN_ENV)
    dvc_parent = None if parent else dvc_parent_run(exp_id)
    tags = {"stage": stage, **revision_tags()}
    status = "FAILED"
    try:
        with mlflow.start_run(run_name=stage, parent_run_id=parent or dvc_parent, tags=tags) as run:
            log_params(run.info.run_id, params)
            log = StageLog(run.info.run_id, parent or dvc_parent, by_dvc=dvc_parent is not None)
            log.datasets(datasets or {})
            try:
                yield log
            finally:
                log.flush()
        status = "FINISHED"
    finally:
        if dvc_parent:
            # DVC has no end-of-command hook: each stage leaves the parent finished (or
            # failed) as of its own end; a later stage of the same command reopens it.
            mlflow.MlflowClient().set_terminated(dvc_parent, status)


def log_params(run_id: str, config: dict) -> None:
    """`config` flattened to dotted params, skipping those the run already has (MLflow
    refuses to change a logged param)."""
    import mlflow
    from mlflow.entities import Param

    client = mlflow.MlflowClient()
    have = client.get_run(run_id).data.params
    params = [Param(k, v[:6000]) for k, v in flatten(config).items() if k not in have]
    for lo in range(0, len(params), 100):
        client.log_batch(run_id, params=params[lo : lo + 100])


def dvc_command() -> tuple[str, str, str] | None:
    """(key, run name, launcher) of the DVC command running this stage; None outside DVC.
    Under `dvc exp run` the key is the experiment's name (DVC exports it to stages); under a
    plain `dvc repro` it is the DVC process (stage commands are its children) with its start
    time, so that a reused process id makes a new key."""
    if os.environ.get("DVC_EXP_NAME"):
        name = os.environ["DVC_EXP_NAME"]
        return f"exp:{name}", f"dvc exp {name}", "dvc exp run"
    if os.environ.get("DVC_STAGE"):
        ppid = os.getppid()
        started = ""
        with contextlib.suppress(OSError, IndexError):  # Linux: field 22 of /proc/PID/stat
            started = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        return f"repro:{ppid}:{started}", "dvc repro", "dvc repro"
    return None


def dvc_parent_run(exp_id: str) -> str | None:
    """The parent run of the DVC command running this stage, found by its key or created
    by the command's first stage; None outside DVC."""
    import mlflow

    command = dvc_command()
    if command is None:
        return None
    key, name, launcher = command
    client = mlflow.MlflowClient()
    runs = client.search_runs([exp_id], f"tags.dvc_run = '{key}'", max_results=1)
    if runs:
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id
    tags = {"stage": "pipeline", "launcher": launcher, "dvc_run": key, **revision_tags()}
    return client.create_run(exp_id, run_name=name, tags=tags).info.run_id


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
def pipeline_run(
    settings: Tracking, name: str = "pipeline", tags: dict[str, str] | None = None
) -> Iterator[str | None]:
    """The parent run: stages started inside (also as subprocesses) nest under it. Call
    `summarize` on it before it ends."""
    with child_run(settings, name, os.environ.get(PARENT_RUN_ENV), tags) as log:
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


def set_tags(run_id: str | None, tags: dict[str, str]) -> None:
    if run_id is not None:
        import mlflow

        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_tag(run_id, key, value)


def headline_params(config: dict) -> dict:
    """The params that tell pipelines apart: the method (`train.mode` and its section's
    knobs), the training lengths and rates, the seed, and every key that differs from the
    committed params.yaml (what `dvc exp run -S` or `--set-file` changed)."""
    mode = config["train"]["mode"]
    method = {k: v for k, v in config[mode].items() if k != "search"}
    picked = {
        "seed": config["seed"],
        "train": {k: config["train"][k] for k in ("mode", "steps", "lr")},
        "pretrain": {"steps": config["pretrain"]["steps"]},
        mode: method,
    }
    flat = flatten(picked)
    current = flatten(config)
    flat.update({k: current[k] for k in params_diff() if k in current})
    return flat


def summarize(run_id: str | None, config: dict, *, splits: dict, metrics_dir, reports_dir):
    """Put a pipeline's headline on its parent run: `headline_params`, the splits as
    datasets, and when a benchmark exists its headline metrics, table, report and figures,
    and the registered version as tags."""
    if run_id is None:
        return
    import mlflow

    log_params(run_id, headline_params(config))
    # The tree as the pipeline leaves it (`dvc exp run` writes its values into params.yaml
    # after the run began).
    now = revision_tags()
    set_tags(run_id, {k: now[k] for k in ("git_dirty", "git_changed", "params_diff") if k in now})
    log_datasets(run_id, {k: Path(v) for k, v in splits.items()})
    bench = Path(metrics_dir) / "benchmark.json"
    if bench.is_file():
        log_benchmark(run_id, bench, Path(reports_dir))
    registry = Path(metrics_dir) / "registry.json"
    if registry.is_file():
        reg = json.loads(registry.read_text())
        if reg.get("version") is not None:
            client = mlflow.MlflowClient()
            client.set_tag(run_id, "registered", f"{reg['model']} v{reg['version']}")
            client.set_tag(run_id, "alias", str(reg["alias"]))
            client.set_tag(run_id, "gate", str(reg["gate"])[:5000])


# ------------------------------------------------------------------ Optuna studies


def public_storage(storage: str) -> str:
    """An Optuna storage as it may be shown: a database URL without its password."""
    if "://" not in storage:
        return storage
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def trial_tags(study_name: str, trial_number: int, storage: str) -> dict[str, str]:
    """Tags that link a trial's run back to its Optuna study, and a note on how to see it."""
    storage = public_storage(storage)
    return {
        "optuna.study": study_name,
        "optuna.trial": str(trial_number),
        "optuna.storage": storage,
        "mlflow.note.content": (
            f"Optuna study `{study_name}`, trial {trial_number}. See it with "
            f"`optuna-dashboard {storage}` (http://127.0.0.1:8080)."
        ),
    }


def log_study(run_id: str | None, study, space: dict, storage: str) -> None:
    """On a `tune` run: the study's name and storage (tags), its search space (a JSON param)
    and where it stands (best value and trial, trials per state)."""
    if run_id is None:
        return
    import mlflow
    import optuna
    from mlflow.entities import Metric, Param, RunTag

    states = [t.state for t in study.trials]
    State = optuna.trial.TrialState
    metrics = {
        "n_complete": states.count(State.COMPLETE),
        "n_pruned": states.count(State.PRUNED),
        "n_failed": states.count(State.FAIL),
    }
    tags = {"optuna.study": study.study_name, "optuna.storage": public_storage(storage)}
    if metrics["n_complete"]:
        metrics["best_value"] = study.best_value
        tags["optuna.best_trial"] = str(study.best_trial.number)
    space_json = json.dumps(
        {k: v if isinstance(v, list | tuple) else _range(v) for k, v in space.items()}
    )
    client = mlflow.MlflowClient()
    have = client.get_run(run_id).data.params
    stamp = _now_ms()
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
        params=[] if "search_space" in have else [Param("search_space", space_json[:6000])],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


def _range(value) -> dict:
    """A search range (pydantic section or mapping) as a plain dict."""
    return value.model_dump() if hasattr(value, "model_dump") else dict(value)


def study_link(overrides_file: str | Path) -> dict[str, str]:
    """Tags that link a pipeline run to the study an overrides file came from, read from the
    header `halocm tune` writes (`# Written by `halocm tune`: study NAME, best trial N
    (val_score V).`); `tuned_from` alone for a file written by hand."""
    tags = {"tuned_from": str(overrides_file)}
    header = "".join(
        line for line in Path(overrides_file).read_text().splitlines() if line.startswith("#")
    )
    patterns = {
        "optuna.study": r"\bstudy[ =]([^\s,]+)",
        "optuna.trial": r"\btrial[ =](\d+)",
        "optuna.value": r"val_score[ =]([^\s)]+)",
        "optuna.storage": r"\bstorage[ =]([^\s,)]+)",
    }
    for tag, pattern in patterns.items():
        if found := re.search(pattern, header):
            tags[tag] = found.group(1).rstrip(".")
    return tags


# ---------------------------------------------------------------- the model and the registry


def gate(
    bench: dict,
    *,
    sampling_steps: int,
    max_pk_err: float,
    max_rk_err: float,
    max_mass_bias: float,
) -> tuple[bool, float, str]:
    """The promotion gate on the consistency model's row at `sampling_steps`: in every entry
    of its `channels` (the target channels and the `total`), pk_err ≤ max_pk_err,
    rk_err ≤ max_rk_err (shape) and |mass_bias| ≤ max_mass_bias in dex (amplitude: the mean
    log10 ratio of generated to true map mass).

    Returns (passes, score = mean over those entries of pk_err + rk_err + |mass_bias|,
    reason). A missing or non-finite value (null in the JSON) fails.
    """
    rows = [
        r
        for r in bench["results"]
        if r["sampler"] == "consistency" and r["steps"] == sampling_steps
    ]
    if not rows:
        return False, float("inf"), f"no consistency row at {sampling_steps} steps"
    limits = {"pk_err": max_pk_err, "rk_err": max_rk_err, "mass_bias": max_mass_bias}
    failures, terms = [], []
    for name, m in rows[0]["channels"].items():
        values = {k: m.get(k) for k in limits}
        if not all(_finite(v) for v in values.values()):
            failures.append(f"{name}: {', '.join(f'{k} {v}' for k, v in values.items())}")
            continue
        over = [f"{k} {v:.3g} > {limits[k]:g}" for k, v in values.items() if abs(v) > limits[k]]
        if over:
            failures.append(f"{name}: {', '.join(over)}")
        terms.append(values["pk_err"] + values["rk_err"] + abs(values["mass_bias"]))
    score = float(np.mean(terms)) if len(terms) == len(rows[0]["channels"]) else float("inf")
    if failures:
        return False, score, "outside the gate: " + "; ".join(failures)
    return True, score, "within the gate"


def log_model(
    checkpoint: Path,
    *,
    example: dict[str, np.ndarray],
    output: np.ndarray,
    sample_settings: dict,
    mode: str,
) -> str:
    """Log the checkpoint as a pyfunc LoggedModel of the active run (`mlflow_model.py`, from
    code: nothing pickled), with a signature, its input example and the checkpoint's md5 as a
    tag (how `register` finds it). `sample_settings` (intermediate_sigmas, batch_size) become
    the model's config, so it samples as the pipeline does. Returns the model id."""
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
        tags={"checkpoint_md5": file_md5(checkpoint), "mode": mode},
    )
    return info.model_id


def find_logged_model(settings: Tracking, checkpoint: Path) -> str | None:
    """The id of the LoggedModel whose checkpoint has the same md5 (the `train` run's), if
    any, newest first."""
    import mlflow

    exp_id = setup(settings)
    found = mlflow.MlflowClient().search_logged_models(
        [exp_id],
        filter_string=f"tags.checkpoint_md5 = '{file_md5(checkpoint)}'",
        order_by=[{"field_name": "creation_time", "ascending": False}],
        max_results=1,
    )
    return found[0].model_id if found else None


def register_model(
    log: StageLog,
    model_id: str,
    *,
    model_name: str,
    passes: bool,
    score: float,
    reason: str,
    mode: str,
) -> tuple[int, str, float | None]:
    """Register a version of the LoggedModel `model_id` (linked to it and its run) and set
    its alias: `champion` only when the gate passes and the score beats the current
    champion's, `challenger` otherwise. Returns (version, alias, previous champion score)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    log.metrics({"gate_score": score, "gate_passed": float(passes)}, 0)
    log.flush()
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException:  # the first version of this name
        client.create_registered_model(model_name)
    version = client.create_model_version(
        model_name,
        source=f"models:/{model_id}",
        tags={"gate_score": repr(score), "gate": reason[:5000], "mode": mode},
        model_id=model_id,
    )
    # The UI lists a LoggedModel's registered versions from this tag of the model.
    registered = json.loads(client.get_logged_model(model_id).tags.get(MODEL_VERSIONS, "[]"))
    registered.append({"name": model_name, "version": str(version.version)})
    client.set_logged_model_tags(model_id, {MODEL_VERSIONS: json.dumps(registered)})
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


def serve_ui(settings: Tracking, port: int = 5000) -> int:
    """`mlflow ui` bound to loopback on this project's store, stopped with halocm
    (halocm.children); its exit code."""
    from halocm.children import run_child

    cmd = [
        sys.executable,  # the mlflow beside this halocm, activated or not
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(settings),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return run_child(cmd)
