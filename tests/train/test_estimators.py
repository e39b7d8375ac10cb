import numpy as np
import pytest

from precimed.errors import DataError
from precimed.train.estimators import NeuralRiskModel

RNG = np.random.default_rng(0)
X = RNG.normal(size=(600, 6)).astype(np.float32)
LINEAR = X[:, 0] - 0.7 * X[:, 1] + 0.4 * X[:, 2]


def _fit(task, y, **kw):
    params = dict(task=task, hidden=(16, 8), max_epochs=60, patience=10, lr=0.01, batch_size=64)
    return NeuralRiskModel(**(params | kw)).fit(X[:450], y[:450])


def test_binary_model_learns_a_planted_signal():
    from sklearn.metrics import roc_auc_score

    y = (LINEAR + RNG.normal(scale=0.5, size=600) > 0).astype(float)
    model = _fit("binary", y)
    assert roc_auc_score(y[450:], model.predict_proba(X[450:])[:, 1]) > 0.85


def test_multiclass_probabilities_sum_to_one_and_rank_the_right_class():
    y = np.digitize(LINEAR, [-0.7, 0.7]).astype(float)
    proba = _fit("multiclass", y).predict_proba(X[450:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba.argmax(axis=1) == y[450:]).mean() > 0.7


def test_regression_predicts_on_the_outcome_scale():
    y = 50 + 10 * LINEAR + RNG.normal(size=600)
    pred = _fit("regression", y).predict(X[450:])
    assert np.corrcoef(pred, y[450:])[0, 1] > 0.9 and abs(pred.mean() - 50) < 3


def test_cox_model_ranks_patients_by_hazard():
    from lifelines.utils import concordance_index

    t = RNG.exponential(np.exp(-LINEAR))
    c = RNG.exponential(2.0, size=600)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    model = _fit("survival", y)
    assert concordance_index(y[450:, 0], -model.predict_risk(X[450:]), y[450:, 1]) > 0.7
    surv = model.predict_survival(X[450:455], np.array([0.1, 1.0, 5.0]))
    assert np.all(np.diff(surv, axis=1) <= 0) and np.all((surv >= 0) & (surv <= 1))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "adagrad", "rmsprop"])
@pytest.mark.parametrize("schedule", ["none", "cosine", "plateau"])
def test_training_is_deterministic_for_a_seed(optimizer, schedule):
    y = (LINEAR > 0).astype(float)
    kw = dict(optimizer=optimizer, lr_schedule=schedule, max_epochs=8, random_state=3)
    a = _fit("binary", y, **kw).predict_proba(X)
    b = _fit("binary", y, **kw).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_early_stopping_keeps_the_best_validation_epoch():
    y = (LINEAR + RNG.normal(scale=2.0, size=600) > 0).astype(float)
    model = _fit("binary", y, max_epochs=200, patience=5, hidden=(64, 64), dropout=0.0, lr=0.05)
    history = model.histories_[0]
    assert len(history.val_loss) < 200
    assert history.val_loss[history.best_epoch] == min(history.val_loss)


def test_balanced_class_weights_raise_the_rare_class_probability():
    y = (LINEAR + RNG.normal(size=600) > 2.2).astype(float)  # a rare, noisy outcome
    plain = _fit("binary", y).predict_proba(X)[:, 1].mean()
    balanced = _fit("binary", y, class_weight="balanced").predict_proba(X)[:, 1].mean()
    assert balanced > plain * 1.5


def test_an_ensemble_averages_several_nets():
    y = (LINEAR > 0).astype(float)
    model = _fit("binary", y, ensemble=3, max_epochs=5)
    assert len(model.nets_) == 3 and len({h.best_epoch for h in model.histories_}) >= 1


def test_a_single_class_outcome_is_refused():
    with pytest.raises(DataError, match="single class"):
        NeuralRiskModel(task="binary").fit(X[:50], np.zeros(50))


def test_missing_values_must_be_imputed_first():
    bad = X[:50].copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        NeuralRiskModel(task="binary").fit(bad, (LINEAR[:50] > 0).astype(float))
