"""Optuna's pieces for `halocm tune` (halocm.stages.tune): storages, search spaces, and the
recovery of trials whose worker was killed.

Storage is a journal file by default (many processes on one machine) or any SQLAlchemy URL
such as PostgreSQL (many machines); studies resume by name. A search space is the chosen
method's `search` section plus `tune.lr`, so a trial never varies a knob the method ignores.

A killed worker leaves its trial RUNNING. Every trial records its worker (host, pid, start
time); each worker, when it starts and after each of its trials, fails the RUNNING trials
of workers on its host that are gone and queues each once more with the same parameters
(Optuna's RetryHeartbeatStaleTrialCallback). That works on every storage and at once; on an
RDB storage Optuna's heartbeat does the same for workers on other machines, after its grace
period.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from halocm.errors import BadInput, EnvironmentFault
from halocm.processes import ProcessId

WORKER_ATTR = "worker"
MAX_RETRY = 2  # a trial that kills its worker twice more is left FAIL
HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 180


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Queue a failed trial again with its parameters, at most MAX_RETRY times."""
    with warnings.catch_warnings():  # experimental since Optuna 2.8, and the current API
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def open_storage(spec: str | None):
    """A journal file path (default `optuna.journal`) or an RDB URL (contains `://`)."""
    spec = spec or "optuna.journal"
    if "://" in spec:
        return _rdb_storage(spec)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(spec)))


def _rdb_storage(url: str, attempts: int = 5):
    """RDB storage with heartbeats. Workers starting together on an empty database race to
    create Optuna's tables; the losers retry once the tables exist. A missing driver or an
    unreachable database is one line naming the URL (password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import (
        ArgumentError,
        NoSuchModuleError,
        OperationalError,
        SQLAlchemyError,
    )

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise BadInput(f"storage {url!r}: not a database URL") from None
    # SQLite waits up to 60 s for another worker's write instead of failing at once.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}

    def connect():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=retry_callback(),
            )

    for attempt in range(attempts):
        try:
            return connect()
        except (ImportError, NoSuchModuleError) as err:
            raise EnvironmentFault(
                f"storage {shown}: its driver is not installed ({err}); for PostgreSQL use "
                "postgresql+psycopg2://, which the `postgres` extra installs"
            ) from None
        except SQLAlchemyError as err:
            # Losing the table race is a ProgrammingError or IntegrityError (or a locked
            # SQLite file); an unreachable server or a wrong password is an
            # OperationalError, and waiting does not help.
            refused = isinstance(err, OperationalError) and "locked" not in str(err)
            if attempt == attempts - 1 or refused:
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
                raise EnvironmentFault(f"storage {shown}: cannot use it ({reason})") from None
            time.sleep(0.5 * (attempt + 1))


def distributions(space: dict, integer: set[str]) -> dict[str, BaseDistribution]:
    """Optuna's distribution of each knob: a list is a categorical choice; a range (`low`,
    `high`, `log`) is an integer range for the knobs in `integer`, a float range otherwise.
    Built before any trial, so a range Optuna refuses stops the study with one line."""
    out = {}
    for name, choice in space.items():
        try:
            if isinstance(choice, list | tuple):
                out[name] = CategoricalDistribution(list(choice))
            elif name in integer:
                out[name] = IntDistribution(int(choice.low), int(choice.high), log=choice.log)
            else:
                out[name] = FloatDistribution(float(choice.low), float(choice.high), log=choice.log)
        except (ValueError, TypeError) as err:
            raise BadInput(f"search space {name}: {err}") from None
    return out


def suggest(trial: optuna.Trial, space: dict, integer: set[str]) -> dict:
    """One trial's values for the knobs of `space` (see `distributions`)."""
    values = {}
    for name, dist in distributions(space, integer).items():
        if isinstance(dist, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, list(dist.choices))
        elif isinstance(dist, IntDistribution):
            values[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        else:
            values[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return values


def claim(trial: optuna.Trial) -> None:
    """Record this process as the trial's worker, so others can tell when it is gone."""
    trial.set_user_attr(WORKER_ATTR, {**ProcessId.current().record(), "trial": trial.number})


def _abandoned(trial: optuna.trial.FrozenTrial) -> bool:
    """RUNNING, and its worker on this host is gone. A retried trial starts with the record
    of the failed one it copies until its new worker claims it (at once): such an inherited
    record counts only once the grace period has passed."""
    worker = trial.user_attrs.get(WORKER_ATTR)
    if worker is None or not ProcessId.from_record(worker).gone():
        return False
    age = (datetime.now() - (trial.datetime_start or datetime.now())).total_seconds()
    return worker.get("trial") == trial.number or age > GRACE_SECONDS


def recover_killed_trials(study: optuna.Study, storage) -> list[int]:
    """Fail the RUNNING trials whose worker on this host is gone and queue each again with
    its parameters; returns their numbers. Safe against other workers doing the same."""
    study_id = storage.get_study_id_from_name(study.study_name)
    retry, failed = retry_callback(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _abandoned(trial):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker was first
            continue
        retry(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


def study_summary(study: optuna.Study) -> str:
    """How many trials are in each state, e.g. `5 complete, 1 pruned`."""
    counts = {
        s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState
    }
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)
