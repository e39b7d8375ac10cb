"""Small configs on real cohorts that train in a second or two."""

import copy


def fast(config: dict, **training) -> dict:
    """Shrink a config so it trains in a second or two: few epochs, one net, few bootstrap replicates."""
    config = copy.deepcopy(config)
    config["training"] = {**config.get("training", {}), "max_epochs": 40, "patience": 8, "lr": 0.01,
                          "batch_size": 64, "progress": False, **training}
    config["models"] = {**config.get("models", {}), "mlp": {"hidden": [16, 8], "ensemble": 1},
                        "gbm": {"n_estimators": 30}}
    config["evaluation"] = {"bootstrap": 30}
    return config


PIMA = {
    "name": "pima-small",
    "data": {"train": {"dataset": "pima_tr"}, "test": {"dataset": "pima_te"}},
    "task": {"kind": "binary", "target": "type", "positive": "Yes"},
    "features": [
        {"name": "glu", "kind": "numeric", "unit": "mg/dL", "range": [20, 400]},
        {"name": "bmi", "kind": "numeric", "unit": "kg/m2", "range": [12, 80]},
        {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
        {"name": "ped", "kind": "numeric", "range": [0, 3]},
    ],
    "split": {"kind": "external"},
}
