import numpy as np
import pytest

from precimed.errors import ConfigError
from precimed.train.estimators import NeuralRiskModel
from precimed.train.private import PrivacyAccount, default_delta, fit_private

pytest.importorskip("opacus")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(500, 5)).astype(np.float32)
LINEAR = X[:, 0] - 0.7 * X[:, 1]
Y_BINARY = (LINEAR + RNG.normal(scale=0.5, size=500) > 0).astype(float)


def _model(**kw):
    return NeuralRiskModel(**({"hidden": (16,), "lr": 0.05, "batch_size": 64, "max_epochs": 8} | kw))


def test_a_private_binary_model_learns_and_records_its_guarantee():
    from sklearn.metrics import roc_auc_score

    model = fit_private(_model(), X[:400], Y_BINARY[:400], epsilon=8.0)
    account = model.privacy_
    assert isinstance(account, PrivacyAccount)
    assert account.epsilon <= 8.0 + 1e-6 and account.delta == default_delta(400) == 1e-5
    assert account.noise_multiplier > 0 and account.steps == 8 * round(1 / account.sample_rate)
    assert set(account.to_dict()) >= {"epsilon", "delta", "max_grad_norm", "noise_multiplier", "epochs"}
    assert roc_auc_score(Y_BINARY[400:], model.predict_proba(X[400:])[:, 1]) > 0.8


def test_the_private_model_is_a_neural_risk_model_whose_state_round_trips_exactly():
    model = fit_private(_model(), X, Y_BINARY, epsilon=3.0)
    assert type(model) is NeuralRiskModel                            # bundles store and load it unchanged
    state, blobs = model.to_state()
    again = NeuralRiskModel.from_state(state, blobs)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def test_private_training_is_reproducible_and_a_smaller_epsilon_adds_more_noise():
    a = fit_private(_model(), X, Y_BINARY, epsilon=1.0)
    b = fit_private(_model(), X, Y_BINARY, epsilon=1.0)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    loose = fit_private(_model(), X, Y_BINARY, epsilon=8.0)
    assert a.privacy_.noise_multiplier > loose.privacy_.noise_multiplier


def test_multiclass_and_regression_with_public_target_bounds():
    y3 = np.digitize(LINEAR, [-0.7, 0.7]).astype(float)
    proba = fit_private(_model(task="multiclass"), X, y3, epsilon=8.0).predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    y = 50 + 10 * LINEAR
    model = fit_private(_model(task="regression"), X, y, epsilon=8.0, target_range=(0, 100))
    assert model.y_mean_ == 50 and model.y_scale_ == 50                 # from the public bounds, not the data
    assert np.corrcoef(model.predict(X), y)[0, 1] > 0.6
    with pytest.raises(ConfigError, match="target_range"):
        fit_private(_model(task="regression"), X, y, epsilon=8.0)


@pytest.mark.parametrize("kw, fit_kw, match", [
    ({"task": "survival"}, {}, "survival"),
    ({"ensemble": 3}, {}, "ensemble"),
    ({"batch_norm": True}, {}, "batch_norm"),
    ({"class_weight": "balanced"}, {}, "class_weight"),
    ({}, {"epsilon": 0.0}, "epsilon"),
    ({}, {"delta": 0.01}, "delta"),
])
def test_settings_that_would_break_the_guarantee_are_refused(kw, fit_kw, match):
    y = np.column_stack([RNG.exponential(size=500), RNG.integers(0, 2, 500)]) if kw.get("task") else Y_BINARY
    with pytest.raises(ConfigError, match=match):
        fit_private(_model(**kw), X, y, **({"epsilon": 3.0} | fit_kw))
