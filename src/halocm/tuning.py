"""Optuna's pieces for `halocm tune` (halocm.stages.tune): storages and search spaces.

Storage is a journal file by default (many processes on one machine) or any SQLAlchemy URL
such as PostgreSQL (many machines); studies resume by name. A search space is the chosen
method's `search` section plus `tune.lr`, so a trial never varies a knob the method ignores.
"""

from __future__ import annotations

import time

import optuna


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


def suggest(trial: optuna.Trial, space: dict, integer: set[str]) -> dict:
    """One trial's values: a list is a categorical choice; a range (`low`, `high`, `log`) is
    sampled as an integer for the knobs in `integer`, as a float otherwise."""
    values = {}
    for name, choice in space.items():
        if isinstance(choice, list | tuple):
            values[name] = trial.suggest_categorical(name, list(choice))
        elif name in integer:
            values[name] = trial.suggest_int(
                name, int(choice.low), int(choice.high), log=choice.log
            )
        else:
            values[name] = trial.suggest_float(
                name, float(choice.low), float(choice.high), log=choice.log
            )
    return values


def study_summary(study: optuna.Study) -> str:
    """How many trials are in each state, e.g. `5 complete, 1 pruned`."""
    counts = {
        s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState
    }
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)
