"""Hyper-parameter search for the deep model with Optuna, on an inner validation split only.

The objective is the best early-stopping validation loss of a single net trained on the training
rows; the test or external data are never seen, so the reported metrics stay honest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone

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
             seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Search `trials` settings of the unfitted net estimator `base` (its other parameters stay as set).

    Returns {"best_params", "best_value", "trials": [...]} (values are inner validation losses).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        params = suggest(trial, space) | {"ensemble": 1, "progress": False, "random_state": seed}
        model = clone(base).set_params(**params).fit(X, y)
        history = model.histories_[0]
        return float(min(history.val_loss))

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, show_progress_bar=progress)
    best = suggest(optuna.trial.FixedTrial(study.best_params), space)
    return {
        "best_params": {k: list(v) if isinstance(v, tuple) else v for k, v in best.items()},
        "best_value": float(study.best_value),
        "objective": "best early-stopping validation loss of one net on an inner split of the training rows",
        "trials": [{"number": t.number, "value": t.value, "params": t.params} for t in study.trials],
    }
