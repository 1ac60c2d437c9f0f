"""Optuna: tune `ema_decay`, `ct_n_steps`, learning rate and loss on validation sample quality.

Each trial is a short consistency training from the pretrained denoiser; validation quality
(P(k) + r(k) error of samples, lower is better) is reported every `tune.report_every` steps so
unpromising trials are pruned. Storage is a journal file by default (many processes on one
machine) or any SQLAlchemy URL such as PostgreSQL (many machines); studies resume by name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from halocm.config import Config, config_from_dict
from halocm.io import write_text
from halocm.training import denoiser_path, train

TUNED_KEYS = ("ema_decay", "ct_n_steps", "lr", "loss")


def open_storage(spec: str | None):
    """A journal file path (default `optuna.journal`) or an RDB URL (contains `://`)."""
    spec = spec or "optuna.journal"
    if "://" in spec:
        return _rdb_storage(spec)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(spec)))


def _rdb_storage(url: str, attempts: int = 5):
    """RDB storage with heartbeats; workers starting together on an empty database race to
    create Optuna's tables, and the losers simply retry once the tables exist."""
    from sqlalchemy.exc import SQLAlchemyError

    def connect():
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=60,
            grace_period=180,
            heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=2),
        )

    for attempt in range(attempts - 1):
        try:
            return connect()
        except SQLAlchemyError:
            time.sleep(0.5 * (attempt + 1))
    return connect()


def suggest(trial: optuna.Trial, cfg: Config) -> dict:
    t = cfg.tune
    return {
        "ema_decay": trial.suggest_float("ema_decay", *t.ema_decay),
        "ct_n_steps": trial.suggest_int("ct_n_steps", *t.ct_n_steps, log=True),
        "lr": trial.suggest_float("lr", *t.lr, log=True),
        "loss": trial.suggest_categorical("loss", list(t.losses)),
    }


def trial_config(cfg: Config, values: dict, models_dir: Path) -> Config:
    raw = cfg.to_dict()
    raw["train"].update(
        values,
        steps=cfg.tune.train_steps,
        val_every=cfg.tune.report_every,
        checkpoint_every=cfg.tune.train_steps,
    )
    raw["paths"]["models_dir"] = str(models_dir)
    raw["tracking"]["enabled"] = False  # the trial's own MLflow run is opened by `objective`
    return config_from_dict(raw, source="trial config")


def make_objective(cfg: Config, parent_run_id: str | None):
    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, cfg)
        with tempfile.TemporaryDirectory(prefix="halocm-trial-") as tmp:
            teacher = denoiser_path(cfg)
            if teacher.is_file():
                os.symlink(teacher.resolve(), Path(tmp) / teacher.name)
            tcfg = trial_config(cfg, values, Path(tmp))
            with _trial_run(cfg, trial, values, parent_run_id) as log:
                scores: list[float] = []

                def report(metrics: dict[str, float], step: int) -> None:
                    log(metrics, step)
                    if "val_score" in metrics:
                        scores.append(metrics["val_score"])
                        trial.report(metrics["val_score"], step)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned at step {step}")

                train(tcfg, log_metrics=report)
        return scores[-1]

    return objective


@contextlib.contextmanager
def _trial_run(cfg: Config, trial: optuna.Trial, values: dict, parent_run_id: str | None):
    """One MLflow child run per trial, with an explicit parent id (safe across processes)."""
    from halocm.tracking import child_run

    tags = {"study": trial.study.study_name, "trial": str(trial.number)}
    with child_run(cfg, f"trial-{trial.number}", parent_run_id, tags) as log:
        if log.run_id is not None:
            import mlflow
            from mlflow.entities import Param

            mlflow.MlflowClient().log_batch(
                log.run_id, params=[Param(k, str(v)) for k, v in values.items()]
            )
        try:
            yield log.metrics
        except optuna.TrialPruned:
            if log.run_id is not None:
                import mlflow

                mlflow.MlflowClient().set_tag(log.run_id, "state", "pruned")
            raise


def tune(
    cfg: Config,
    *,
    n_trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
) -> str:
    """Run `n_trials` trials in this process (start several processes for parallel workers)."""
    storage_spec = storage or cfg.tune.storage
    name = study_name or cfg.tune.study_name
    store = open_storage(storage_spec)
    study = optuna.create_study(
        study_name=name,
        storage=store,
        direction="minimize",
        load_if_exists=True,
        pruner=optuna.pruners.PercentilePruner(
            cfg.tune.prune_percentile, n_startup_trials=cfg.tune.prune_startup_trials
        ),
    )
    # Workers joining one study should not replay the same random start-up points.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.trials))
    from halocm.tracking import stage_run

    with stage_run(cfg, "tune") as log:
        study.optimize(
            make_objective(cfg, log.run_id), n_trials=n_trials or cfg.tune.n_trials, catch=()
        )
    return write_best(cfg, study)


def write_best(cfg: Config, study: optuna.Study) -> str:
    """A complete params file with the best trial's values: `--params params.tuned.yaml`."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return f"study {study.study_name}: no completed trial yet"
    best = study.best_trial
    raw = cfg.to_dict()
    raw["train"].update({k: best.params[k] for k in TUNED_KEYS if k in best.params})
    header = (
        f"# Written by `halocm tune`: study {study.study_name}, best trial "
        f"{best.number} (val_score {best.value:.4g}).\n"
    )
    write_text(cfg.tune.output, header + yaml.safe_dump(raw, sort_keys=False))
    counts = {
        s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState
    }
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return (
        f"study {study.study_name}: {summary}; best trial {best.number} "
        f"val_score {best.value:.4g} {best.params} → {cfg.tune.output}"
    )
