"""SequenceRiskModel: learns planted temporal signals for each task and kind; seeded; exact state round trip."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from precimed.errors import ConfigError, DataError
from precimed.train.sequence import KINDS, SequenceRiskModel, pack_static

RNG = np.random.default_rng(0)
N, T, C, S = 500, 6, 3, 2
SEQ = RNG.normal(size=(N, T, C)).astype(np.float32)
STATIC = RNG.normal(size=(N, S)).astype(np.float32)
X = pack_static(SEQ, STATIC)
# the signal: a recent trend in channel 0, plus one static feature
LINEAR = SEQ[:, -2:, 0].mean(axis=1) - SEQ[:, :2, 0].mean(axis=1) + 0.5 * STATIC[:, 0]


def _fit(task, y, kind="gru", **kw):
    params = dict(task=task, kind=kind, hidden=16, n_static=S, max_epochs=60, patience=10, lr=0.01,
                  batch_size=64, mask_channels=None)
    return SequenceRiskModel(**(params | kw)).fit(X[:380], y[:380])


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_learns_a_planted_trend_for_a_binary_outcome(kind):
    from sklearn.metrics import roc_auc_score

    noise = np.random.default_rng(1).normal(scale=0.4, size=N)
    y = (LINEAR + noise > 0).astype(float)
    model = _fit("binary", y, kind, layers=2)  # two CNN blocks see 13 > T steps
    assert roc_auc_score(y[380:], model.predict_proba(X[380:])[:, 1]) > 0.85


def test_survival_model_ranks_patients_and_gives_decreasing_survival_curves():
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(2)
    t = rng.exponential(np.exp(-LINEAR))
    c = rng.exponential(2.0, size=N)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    model = _fit("survival", y, "cnn", layers=2)
    assert concordance_index(y[380:, 0], -model.predict_risk(X[380:]), y[380:, 1]) > 0.7
    surv = model.predict_survival(X[380:390], np.array([0.1, 1.0, 5.0]))
    assert np.all(np.diff(surv, axis=1) <= 0) and np.all((surv >= 0) & (surv <= 1))


def test_regression_predicts_on_the_outcome_scale():
    y = 50 + 10 * LINEAR + np.random.default_rng(3).normal(size=N)
    pred = _fit("regression", y, "lstm").predict(X[380:])
    assert np.corrcoef(pred, y[380:])[0, 1] > 0.85 and abs(pred.mean() - 50) < 3


@pytest.mark.parametrize("kind", KINDS)
def test_training_is_deterministic_and_the_state_round_trip_is_exact(kind):
    y = (LINEAR > 0).astype(float)
    kw = dict(max_epochs=5, ensemble=2, random_state=3, mask_channels=(1, 2))
    a = _fit("binary", y, kind, **kw)
    b = _fit("binary", y, kind, **kw)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    state, blobs = a.to_state()
    import json

    again = SequenceRiskModel.from_state(json.loads(json.dumps(state)), blobs)
    assert len(again.nets_) == 2 and again.get_params() == a.get_params()
    np.testing.assert_array_equal(again.predict_proba(X), a.predict_proba(X))


def test_it_follows_the_sklearn_contract():
    model = SequenceRiskModel(kind="transformer", hidden=8, heads=2)
    assert clone(model).get_params() == model.get_params()
    assert "nets_" not in vars(model)


def test_wrong_inputs_are_refused_with_a_clear_message():
    y = (LINEAR > 0).astype(float)
    with pytest.raises(DataError, match="3-D array"):
        SequenceRiskModel().fit(X[:, 0, :], y)
    bad = X.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        SequenceRiskModel().fit(bad, y)
    with pytest.raises(ConfigError, match="unknown sequence model kind 'rnn'"):
        SequenceRiskModel(kind="rnn").fit(X, y)
    with pytest.raises(ConfigError, match="divisible"):
        SequenceRiskModel(kind="transformer", hidden=10, heads=3).fit(X, y)
    model = _fit("binary", y, max_epochs=2)
    with pytest.raises(DataError, match="fitted on 5"):
        model.predict_proba(X[:, :, :4])
