import json

import numpy as np
import pytest

from precimed.errors import DataError
from precimed.train.estimators import NeuralRiskModel, ResidualRiskModel

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


# ----- scikit-learn contract details the generic checks do not pin down ----------------------------------
def test_predictions_check_their_input_with_a_clear_reason():
    import scipy.sparse as sp

    y = (LINEAR > 0).astype(float)
    model = _fit("binary", y, max_epochs=3)
    bad = X[:5].copy()
    bad[2, 4] = np.inf
    with pytest.raises(DataError, match=r"0 NaN and 1 inf value\(s\), in column\(s\) \[4\]"):
        model.predict_proba(bad)
    with pytest.raises(DataError, match="X has 5 features, but NeuralRiskModel is expecting 6"):
        model.predict(X[:5, :5])
    with pytest.raises(DataError, match="does not accept sparse input"):
        model.predict_proba(sp.csr_matrix(X[:5]))
    with pytest.raises(DataError, match="does not accept sparse input"):
        NeuralRiskModel().fit(sp.csr_matrix(X[:50]), y[:50])


def test_the_kind_of_model_follows_its_task():
    from sklearn.base import is_classifier, is_regressor

    assert is_classifier(NeuralRiskModel(task="binary")) and is_classifier(NeuralRiskModel(task="multiclass"))
    assert is_regressor(NeuralRiskModel(task="regression"))
    survival = NeuralRiskModel(task="survival")
    assert not is_classifier(survival) and not is_regressor(survival)
    regression = _fit("regression", 3 * LINEAR, max_epochs=3)
    assert not hasattr(regression, "predict_proba")
    with pytest.raises(AttributeError, match="has no attribute 'predict_proba'"):
        regression.predict_proba(X[:3])


def test_class_labels_other_than_codes_come_back_as_labels():
    labels = np.where(LINEAR > 0, "sick", "well")
    model = _fit("binary", labels, max_epochs=20)
    assert model.classes_.tolist() == ["sick", "well"]
    pred = model.predict(X[450:])
    assert set(pred) <= {"sick", "well"} and (pred == labels[450:]).mean() > 0.8
    codes = _fit("binary", (LINEAR > 0).astype(float), max_epochs=3)
    assert codes.classes_.tolist() == [0, 1] and codes.predict(X[:4]).dtype.kind == "i"


def test_a_binary_task_refuses_three_classes_and_a_dict_of_class_weights():
    from precimed.errors import ConfigError

    with pytest.raises(DataError, match="Only binary classification is supported"):
        NeuralRiskModel(task="binary").fit(X[:60], np.arange(60) % 3)
    with pytest.raises(ConfigError, match="class_weight must be None or 'balanced'"):
        NeuralRiskModel(task="binary", class_weight={0: 1.0, 1: 2.0}).fit(X[:60], np.arange(60) % 2)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_a_state_written_before_classes_were_saved_still_loads(task):
    y = (LINEAR > 0).astype(float) if task == "binary" else np.digitize(LINEAR, [-0.7, 0.7]).astype(float)
    model = _fit(task, y, max_epochs=3)
    state, blobs = model.to_state()
    del state["classes"]
    old = NeuralRiskModel.from_state(state, blobs)
    np.testing.assert_array_equal(old.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(old.predict(X), model.predict(X))
    assert old.n_features_in_ == 6


# ----- the residual net ------------------------------------------------------------------------------------
def _fit_residual(task, y, **kw):
    params = dict(task=task, hidden=(16, 8), max_epochs=60, patience=10, lr=0.01, batch_size=64)
    return ResidualRiskModel(**(params | kw)).fit(X[:450], y[:450])


def test_the_residual_net_trains_for_binary_regression_and_survival():
    from lifelines.utils import concordance_index
    from sklearn.metrics import roc_auc_score

    yb = (LINEAR + RNG.normal(scale=0.5, size=600) > 0).astype(float)
    assert roc_auc_score(yb[450:], _fit_residual("binary", yb).predict_proba(X[450:])[:, 1]) > 0.85
    yr = 50 + 10 * LINEAR + RNG.normal(size=600)
    pred = _fit_residual("regression", yr).predict(X[450:])
    assert np.corrcoef(pred, yr[450:])[0, 1] > 0.9 and abs(pred.mean() - 50) < 3
    t = RNG.exponential(np.exp(-LINEAR))
    c = RNG.exponential(2.0, size=600)
    ys = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    model = _fit_residual("survival", ys)
    assert concordance_index(ys[450:, 0], -model.predict_risk(X[450:]), ys[450:, 1]) > 0.7
    surv = model.predict_survival(X[450:455], np.array([0.1, 1.0, 5.0]))
    assert np.all(np.diff(surv, axis=1) <= 0) and np.all((surv >= 0) & (surv <= 1))


def test_the_residual_net_learns_what_a_linear_model_misses():
    from sklearn.linear_model import LinearRegression

    y = X[:, 0] * X[:, 1] + np.abs(X[:, 2]) + 0.5 * X[:, 3] + RNG.normal(scale=0.3, size=600)
    net = _fit_residual("regression", y, hidden=(32, 32), max_epochs=200, patience=20)
    linear = LinearRegression().fit(X[:450], y[:450])
    assert net.score(X[450:], y[450:]) > linear.score(X[450:], y[450:]) + 0.3


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression", "survival"])
def test_a_saved_residual_net_predicts_identically(task):
    y = {"binary": (LINEAR > 0).astype(float), "multiclass": np.digitize(LINEAR, [-0.7, 0.7]).astype(float),
         "regression": 3 * LINEAR + 1,
         "survival": np.column_stack([np.exp(-LINEAR) + 0.1, (np.arange(600) % 3 > 0).astype(float)])}[task]
    model = _fit_residual(task, y, max_epochs=10, ensemble=2)
    state, blobs = model.to_state()
    assert set(blobs) == {"resmlp.pt"} and state["params"]["task"] == task
    json.dumps(state)
    loaded = ResidualRiskModel.from_state(json.loads(json.dumps(state)), blobs)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if task == "survival":
        grid = np.array([0.5, 1.0, 2.0])
        np.testing.assert_array_equal(loaded.predict_survival(X, grid), model.predict_survival(X, grid))
    assert loaded.get_params() == model.get_params() | {"hidden": [16, 8]}


def test_on_a_linear_logistic_signal_the_residual_net_is_as_good_as_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    Xl = rng.normal(size=(1500, 8)).astype(np.float32)
    beta = np.array([1.0, -0.8, 0.6, 0.4, -0.3, 0.0, 0.0, 0.0])
    y = (rng.random(1500) < 1 / (1 + np.exp(-(Xl @ beta - 0.5)))).astype(float)
    train, test = slice(0, 1000), slice(1000, None)
    reference = roc_auc_score(y[test], LogisticRegression(max_iter=5000).fit(Xl[train], y[train])
                              .predict_proba(Xl[test])[:, 1])
    net = ResidualRiskModel(task="binary", random_state=0).fit(Xl[train], y[train])  # the defaults
    auroc = roc_auc_score(y[test], net.predict_proba(Xl[test])[:, 1])
    assert auroc >= reference - 0.01, (auroc, reference)
