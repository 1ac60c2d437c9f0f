"""`halocm tune`: an Optuna study over the chosen method's `search` knobs and `tune.lr`.

Each trial is a short consistency training from the pretrained denoiser; validation quality
(P(k) + r(k) error of samples, lower is better) is reported every `tune.report_every` steps so
unpromising trials are pruned. One MLflow child run per trial. The best values are written
as overrides (`tune.output`: only the tuned keys, `ct.target_ema: 0.97`), printed as the
`dvc exp run -S ...` line that runs the pipeline with them.

Workers explore: each one's sampler draws its own seed (a shared seed made workers that
start together propose the same points); the storage records every trial's parameters,
which is what reproduces a study. Trials of killed workers are retried (halocm.tuning).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import optuna
import yaml

from halocm.config import Config, config_from_dict, override
from halocm.io import write_text
from halocm.stages.common import denoiser_path, mean_path
from halocm.stages.train import train
from halocm.temporaries import remove_stale_trial_dirs, trial_dir
from halocm.tracking import child_run, log_study, stage_run, trial_tags
from halocm.training import TrainingDiverged
from halocm.tuning import (
    claim,
    distributions,
    open_storage,
    recover_killed_trials,
    study_summary,
    suggest,
)


def search_space(cfg: Config) -> tuple[dict, set[str]]:
    """(knob → range or choices, the integer knobs): `search` of train.mode's section, + lr."""
    section = cfg.method
    integer = {n for n, f in type(section).model_fields.items() if f.annotation is int}
    return {**section.search, "lr": cfg.tune.lr}, integer


def dotted(cfg: Config, knob: str) -> str:
    """The params key of a tuned knob: `lr` is `train.lr`, the others the method's."""
    return "train.lr" if knob == "lr" else f"{cfg.train.mode}.{knob}"


def with_values(cfg: Config, values: dict) -> dict:
    """The config as a dict with the tuned `values` set."""
    raw = cfg.to_dict()
    for knob, value in values.items():
        section, key = dotted(cfg, knob).split(".")
        raw[section][key] = value
    return raw


def trial_config(cfg: Config, values: dict, models_dir: Path) -> Config:
    raw = with_values(cfg, values)
    raw["train"].update(
        steps=cfg.tune.trial_steps,
        val_every=cfg.tune.report_every,
        checkpoint_every=cfg.tune.trial_steps,
    )
    raw["paths"]["models_dir"] = str(models_dir)
    raw["tracking"]["enabled"] = False  # the trial's own MLflow run is opened by `objective`
    return config_from_dict(raw, source="trial config")


def make_objective(cfg: Config, parent_run_id: str | None, storage: str = "optuna.journal"):
    space, integer = search_space(cfg)

    def objective(trial: optuna.Trial) -> float:
        claim(trial)
        values = suggest(trial, space, integer)
        tmp = trial_dir()  # a killed worker's is removed by the next worker (temporaries)
        try:
            for upstream in (denoiser_path(cfg), mean_path(cfg)):
                if upstream.is_file():
                    os.symlink(upstream.resolve(), tmp / upstream.name)
            tcfg = trial_config(cfg, values, tmp)
            with _trial_run(cfg, trial, values, parent_run_id, storage) as log:
                scores: list[float] = []

                def report(metrics: dict[str, float], step: int) -> None:
                    log(metrics, step)
                    if "val_score" in metrics:
                        scores.append(metrics["val_score"])
                        trial.report(metrics["val_score"], step)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned at step {step}")

                train(tcfg, log_metrics=report)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return scores[-1]

    return objective


@contextlib.contextmanager
def _trial_run(
    cfg: Config, trial: optuna.Trial, values: dict, parent_run_id: str | None, storage: str
):
    """One MLflow child run per trial, with an explicit parent id (safe across processes),
    tagged with its study and trial number (tracking.trial_tags)."""
    tags = {
        "study": trial.study.study_name,
        "trial": str(trial.number),
        **trial_tags(trial.study.study_name, trial.number, storage),
    }
    with child_run(cfg.tracking, f"trial-{trial.number}", parent_run_id, tags) as log:
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
    """Run `n_trials` trials in this process (start several processes for parallel workers).
    Trials of killed workers are failed and retried first; a diverged trial is FAIL."""
    t = cfg.tune
    space, integer = search_space(cfg)
    distributions(space, integer)  # a range Optuna refuses stops here, before any trial
    remove_stale_trial_dirs()
    backend = open_storage(storage or t.storage)
    study = optuna.create_study(
        study_name=study_name or t.study_name,
        storage=backend,
        direction="minimize",
        load_if_exists=True,
        # Unseeded: each worker draws its own seed, so parallel workers explore.
        sampler=optuna.samplers.TPESampler(),
        pruner=optuna.pruners.PercentilePruner(
            t.prune_percentile, n_startup_trials=t.prune_startup_trials
        ),
    )
    recover_killed_trials(study, backend)
    spec = storage or t.storage or "optuna.journal"
    with stage_run(cfg.tracking, "tune", cfg.to_dict()) as log:
        study.optimize(
            make_objective(cfg, log.run_id, spec),
            n_trials=n_trials or t.n_trials,
            catch=(TrainingDiverged,),
            callbacks=[lambda study, _: recover_killed_trials(study, backend)],
        )
        # The tune run's lineage: its study, search space and where the study stands.
        log_study(log.run_id, study, space, spec)
    return write_best(cfg, study)


def write_best(cfg: Config, study: optuna.Study) -> str:
    """The best trial's values as overrides (`tune.output`: dotted keys, only the tuned
    ones), and the `dvc exp run -S ...` line that runs the pipeline with them."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return f"study {study.study_name}: {study_summary(study)}; no completed trial yet"
    best = study.best_trial
    space, _ = search_space(cfg)
    tuned = {dotted(cfg, k): best.params[k] for k in space if k in best.params}
    header = (
        f"# Written by `halocm tune`: study {study.study_name}, best trial {best.number} "
        f"(val_score {best.value:.4g}).\n# Overrides of params.yaml: `halocm pipeline "
        f"--set-file {cfg.tune.output}`, or the `dvc exp run -S` line halocm tune printed.\n"
    )
    write_text(cfg.tune.output, header + yaml.safe_dump(tuned, sort_keys=False))
    line = " ".join(["dvc exp run", *(f"-S '{override(k, v)}'" for k, v in tuned.items())])
    return (
        f"study {study.study_name}: {study_summary(study)}; best trial {best.number} "
        f"val_score {best.value:.4g} → {cfg.tune.output}\nrun the pipeline with it: {line}"
    )
