"""Hyper-parameter search for the deep model with Optuna, on an inner validation split only.

The objective is the best early-stopping validation loss of a single net trained on the training
rows; the test or external data are never seen, so the reported metrics stay honest.

With a storage URL the study lives in a database (PostgreSQL, or SQLite on one machine) and several processes
share it: each stops once the study holds `trials` completed trials, waits for the trials still running
elsewhere, and then reads its result from the study, so every process records the same best trial.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np
from sklearn.base import clone

from precimed.config import mask_url
from precimed.errors import ConfigError

WIDTHS = (16, 32, 64, 128)


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Draw one set of MLP / training settings from the search space."""
    depth = trial.suggest_int("depth", *space["depth"])
    width = trial.suggest_categorical("width", [w for w in WIDTHS if space["width"][0] <= w <= space["width"][1]])
    return {
        "hidden": tuple(max(8, width // (2**i)) for i in range(depth)),  # funnel: 64 → 64-32 → 64-32-16
        "dropout": trial.suggest_float("dropout", *space["dropout"]),
        "lr": trial.suggest_float("lr", *space["lr"], log=True),
        "weight_decay": trial.suggest_float("weight_decay", *space["weight_decay"], log=True),
    }


def tune_net(X: np.ndarray, y: np.ndarray, base: Any, *, trials: int, space: dict[str, Any],
             seed: int = 0, progress: bool = False, storage: str | None = None,
             study: str | None = None) -> dict[str, Any]:
    """Search `trials` settings of the unfitted net estimator `base` (its other parameters stay as set).

    With `storage` (a SQLAlchemy URL) the search runs in the shared study `study` (created if missing): this
    process adds trials until the study holds `trials` completed ones in total, and the result is read from
    the study once no trial is running, so each process sharing it returns the same best trial.
    Returns {"best_params", "best_value", "trials": [...]} (values are inner validation losses).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        # the inner split and the net's initialisation are seeded by `seed` alone, so a setting scores the
        # same in every process sharing a study
        params = suggest(trial, space) | {"ensemble": 1, "progress": False, "random_state": seed}
        model = clone(base).set_params(**params).fit(X, y)
        history = model.histories_[0]
        return float(min(history.val_loss))

    if storage is None:
        shared = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        shared.optimize(objective, n_trials=trials, show_progress_bar=progress)
        done = shared.trials
    else:
        shared = _shared_study(storage, study or "precimed-search", seed)
        done = _run_shared(shared, objective, trials, progress)
    best_trial = min(done, key=lambda t: t.value) if storage is not None else shared.best_trial
    best = suggest(optuna.trial.FixedTrial(best_trial.params), space)
    result = {
        "best_params": {k: list(v) if isinstance(v, tuple) else v for k, v in best.items()},
        "best_value": float(best_trial.value),
        "objective": "best early-stopping validation loss of one net on an inner split of the training rows",
        "trials": [{"number": t.number, "value": t.value, "params": t.params} for t in done],
    }
    if storage is not None:
        result |= {"study": shared.study_name, "storage": mask_url(storage)}
    return result


def _shared_study(storage: str, name: str, seed: int) -> Any:
    """The study `name` in the database at `storage`, created if missing; a ConfigError if it cannot be opened."""
    import optuna

    url = "postgresql+psycopg://" + storage.split("://", 1)[1] if storage.startswith("postgresql://") else storage
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    # every process samples from its own stream (the same seed would propose the same settings everywhere);
    # the constant liar keeps TPE away from the settings other processes are running
    sampler = optuna.samplers.TPESampler(seed=int(np.random.SeedSequence([seed, os.getpid()]).generate_state(1)[0]),
                                         constant_liar=True)
    for attempt in range(3):  # processes starting together race to create the tables and the study
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=30,
                                                 grace_period=120)
            return optuna.create_study(storage=rdb, study_name=name, load_if_exists=True, direction="minimize",
                                       sampler=sampler)
        except Exception as exc:  # unreachable server, bad credentials, missing driver, unwritable file
            if attempt == 2 or not _is_race(exc):
                raise ConfigError(f"cannot open the search study {name!r} at {mask_url(storage)} "
                                  f"(training.search.storage): {_reason(exc, storage)}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _is_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("already exists", "duplicate", "unique", "locked"))


def _reason(exc: Exception, storage: str) -> str:
    """The first line of the driver's message, without the password should a driver ever echo it."""
    inner = getattr(exc, "orig", None) or exc
    line = (str(inner).strip().splitlines() or [""])[0][:200]
    userinfo = storage.partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    if password:
        line = line.replace(password, "***")
    return f"{type(inner).__name__}: {line}" if line else type(inner).__name__


def _run_shared(study: Any, objective: Any, trials: int, progress: bool) -> list[Any]:
    """Add trials until the study holds `trials` completed ones; then wait for the others' running trials.

    Returns the study's completed trials. Two processes can each start a trial while the study holds
    `trials` - 1, so the study may end with a few more than `trials` (at most one more per extra process).
    """
    import optuna
    from optuna.trial import TrialState

    complete = (TrialState.COMPLETE,)
    if len(study.get_trials(deepcopy=False, states=complete)) < trials:
        study.optimize(objective, n_trials=trials, show_progress_bar=progress,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=complete)])
    # a trial another process is still running may become the best: wait until it ends (a crashed process's
    # trial is failed once its heartbeat is older than the grace period)
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(1.0)
    return sorted(study.get_trials(deepcopy=False, states=complete), key=lambda t: t.number)
