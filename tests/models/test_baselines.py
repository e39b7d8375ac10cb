"""Baselines: JSON state round trips, states written by earlier versions, labels, and input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from precimed.errors import DataError
from precimed.models.baselines import CoxPHBaseline, GBMModel, LinearBaseline, LogisticBaseline

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4))
LINEAR = X[:, 0] - 0.7 * X[:, 1]
BINARY = (LINEAR + RNG.normal(scale=0.5, size=300) > 0).astype(float)
MULTI = np.digitize(LINEAR, [-0.7, 0.7]).astype(float)
VALUE = 3 * LINEAR + RNG.normal(size=300)
_t, _c = RNG.exponential(np.exp(-LINEAR)), RNG.exponential(2.0, size=300)
SURVIVAL = np.column_stack([np.minimum(_t, _c), (_t <= _c).astype(float)])

CASES = {
    "logistic": (LogisticBaseline(), BINARY), "logistic-multi": (LogisticBaseline(class_weight="balanced"), MULTI),
    "linear": (LinearBaseline(), VALUE), "cox": (CoxPHBaseline(), SURVIVAL),
    "gbm-binary": (GBMModel(n_estimators=40), BINARY), "gbm-multi": (GBMModel("multiclass", n_estimators=40), MULTI),
    "gbm-regression": (GBMModel("regression", n_estimators=40), VALUE),
    "gbm-survival": (GBMModel("survival", n_estimators=40), SURVIVAL),
}


def _outputs(model) -> dict[str, np.ndarray]:
    out = {"predict": model.predict(X)}
    if hasattr(model, "predict_proba"):
        out["proba"] = model.predict_proba(X)
    if isinstance(model, CoxPHBaseline) or getattr(model, "task", None) == "survival":
        out["risk"] = model.predict_risk(X)
        out["surv"] = model.predict_survival(X, np.array([0.2, 1.0]))
    return out


def test_gbm_is_constructible_without_arguments_as_a_binary_classifier():
    from sklearn.base import is_classifier

    model = GBMModel()
    assert model.task == "binary" and is_classifier(model)


@pytest.mark.parametrize("name", list(CASES))
def test_a_json_state_round_trip_predicts_identically(name):
    model, y = CASES[name]
    model.fit(X, y)
    state, blobs = model.to_state()
    loaded = type(model).from_state(json.loads(json.dumps(state)), blobs)
    assert loaded.n_features_in_ == 4
    for key, value in _outputs(model).items():
        np.testing.assert_array_equal(_outputs(loaded)[key], value, err_msg=key)


@pytest.mark.parametrize(("name", "new_key"), [("logistic", "class_weight"), ("gbm-binary", "classes"),
                                               ("gbm-multi", "classes")])
def test_a_state_written_before_a_key_was_added_still_loads(name, new_key):
    model, y = CASES[name]
    model.fit(X, y)
    state, blobs = model.to_state()
    del state[new_key]
    loaded = type(model).from_state(state, blobs)
    for key, value in _outputs(model).items():
        np.testing.assert_array_equal(_outputs(loaded)[key], value, err_msg=key)


@pytest.mark.parametrize("model", [LogisticBaseline(), GBMModel(n_estimators=40)], ids=["logistic", "gbm"])
def test_classifiers_predict_labels(model):
    labels = np.where(BINARY > 0, "yes", "no")
    model.fit(X, labels)
    assert model.classes_.tolist() == ["no", "yes"]
    assert (model.predict(X) == labels).mean() > 0.75
    state, blobs = model.to_state()
    np.testing.assert_array_equal(type(model).from_state(json.loads(json.dumps(state)), blobs).predict(X),
                                  model.predict(X))


@pytest.mark.parametrize("name", list(CASES))
def test_predictions_refuse_a_wrong_feature_count_and_missing_values(name):
    model, y = CASES[name]
    model.fit(X, y)
    with pytest.raises(DataError, match="X has 3 features"):
        model.predict(X[:, :3])
    bad = X[:3].copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="inf value"):
        model.predict(bad)


def test_a_cox_model_needs_an_event():
    with pytest.raises(DataError, match="no events"):
        CoxPHBaseline().fit(X, np.column_stack([SURVIVAL[:, 0], np.zeros(300)]))
