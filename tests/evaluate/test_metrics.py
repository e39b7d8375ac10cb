import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn import metrics as skm

from precimed.errors import DataError
from precimed.evaluate import binary_metrics, multiclass_metrics, regression_metrics, undefined_as_nan


def binary_data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from a noisy score; predictions rounded so that tied scores occur."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    y = (rng.random(n) < expit(1.5 * risk - 0.5)).astype(int)
    p = np.round(expit(risk + rng.normal(scale=0.7, size=n)), 2)
    return y, p


def negative_loglik(y: np.ndarray, eta: np.ndarray) -> float:
    return float(np.sum(np.logaddexp(0, eta) - y * eta))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_agree_with_scikit_learn(seed):
    y, p = binary_data(seed)
    pred = (p >= 0.5).astype(int)

    m = binary_metrics(y, p)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert all(type(v) is float for v in m.values())


def test_the_threshold_decides_which_rows_count_as_positive():
    y, p = binary_data(3)

    m = binary_metrics(y, p, threshold=0.3)

    assert m["recall"] == pytest.approx(skm.recall_score(y, (p >= 0.3).astype(int)), abs=1e-12)
    assert m["auroc"] == binary_metrics(y, p)["auroc"]


def test_calibration_slope_and_intercept_are_the_logistic_maximum_likelihood_fits():
    y, p = binary_data(4)
    lp = logit(np.clip(p, 1e-7, 1 - 1e-7))

    two = minimize(
        lambda b: negative_loglik(y, b[0] + b[1] * lp), x0=[0.0, 1.0], method="BFGS", options={"gtol": 1e-10}
    )
    one = minimize(lambda a: negative_loglik(y, a[0] + lp), x0=[0.0], method="BFGS", options={"gtol": 1e-10})
    m = binary_metrics(y, p)

    assert m["calibration_slope"] == pytest.approx(two.x[1], abs=1e-5)
    assert m["calibration_intercept"] == pytest.approx(one.x[0], abs=1e-5)


def test_predictions_that_generated_the_outcomes_are_well_calibrated():
    rng = np.random.default_rng(5)
    p = expit(rng.normal(scale=1.5, size=20_000))
    y = (rng.random(p.size) < p).astype(int)

    m = binary_metrics(y, p)

    assert m["calibration_slope"] == pytest.approx(1.0, abs=0.06)
    assert m["calibration_intercept"] == pytest.approx(0.0, abs=0.05)


def test_overconfident_predictions_have_a_calibration_slope_below_one():
    rng = np.random.default_rng(6)
    true_p = expit(rng.normal(scale=1.5, size=20_000))
    y = (rng.random(true_p.size) < true_p).astype(int)
    overconfident = expit(2.0 * logit(true_p))

    m = binary_metrics(y, overconfident)

    assert m["calibration_slope"] == pytest.approx(0.5, abs=0.05)


def test_systematic_overprediction_shows_as_a_negative_calibration_intercept():
    rng = np.random.default_rng(7)
    true_p = expit(rng.normal(size=20_000) - 1.0)
    y = (rng.random(true_p.size) < true_p).astype(int)

    m = binary_metrics(y, expit(logit(true_p) + 1.0))

    assert m["calibration_intercept"] == pytest.approx(-1.0, abs=0.06)
    assert m["calibration_slope"] == pytest.approx(1.0, abs=0.06)


def test_perfectly_separated_outcomes_have_no_finite_calibration_slope():
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])

    m = binary_metrics(y, p)

    assert m["auroc"] == 1.0
    assert math.isnan(m["calibration_slope"])


def test_precision_is_nan_when_nothing_is_predicted_positive():
    m = binary_metrics(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]))

    assert math.isnan(m["precision"])
    assert m["recall"] == 0.0


def test_a_single_outcome_class_is_a_clear_error():
    with pytest.raises(DataError, match="single class") as err:
        binary_metrics(np.zeros(10), np.linspace(0.1, 0.9, 10))
    assert err.value.column == "y"


def test_a_single_outcome_class_gives_nan_ranking_metrics_when_undefined_is_allowed():
    with undefined_as_nan():
        m = binary_metrics(np.ones(10), np.linspace(0.1, 0.9, 10))

    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"]) and math.isnan(m["calibration_slope"])
    assert m["accuracy"] == pytest.approx(0.5)


def test_mismatched_lengths_name_both_inputs():
    with pytest.raises(DataError, match="y has 4, p has 3"):
        binary_metrics(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3]))


def test_nan_predictions_are_reported_with_their_rows():
    p = np.array([0.1, np.nan, 0.3, 0.8])

    with pytest.raises(DataError, match="NaN") as err:
        binary_metrics(np.array([0, 1, 0, 1]), p)
    assert err.value.rows == (1,)
    assert err.value.column == "p"


def test_outcomes_other_than_zero_and_one_are_rejected():
    with pytest.raises(DataError, match="0/1"):
        binary_metrics(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))


def multiclass_data(seed: int, n: int = 500, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.2 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_metrics_agree_with_scikit_learn(seed):
    y, proba = multiclass_data(seed)
    pred = proba.argmax(axis=1)

    m = multiclass_metrics(y, proba)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    for avg in ("macro", "weighted"):
        assert m[f"precision_{avg}"] == pytest.approx(skm.precision_score(y, pred, average=avg), abs=1e-12)
        assert m[f"recall_{avg}"] == pytest.approx(skm.recall_score(y, pred, average=avg), abs=1e-12)
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg), abs=1e-12)
        assert m[f"auroc_{avg}"] == pytest.approx(
            skm.roc_auc_score(y, proba, multi_class="ovr", average=avg), abs=1e-12
        )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=1e-12)


def test_a_class_that_is_never_predicted_counts_as_zero_precision_like_scikit_learn():
    y, proba = multiclass_data(2, k=3)
    proba[:, 2] = 0.0
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)

    m = multiclass_metrics(y, proba)

    expected = skm.precision_score(y, pred, average="macro", zero_division=0)
    assert m["precision_macro"] == pytest.approx(expected, abs=1e-12)


def test_a_class_missing_from_the_outcomes_makes_multiclass_auroc_an_error_or_nan():
    y, proba = multiclass_data(3, k=3)
    y = np.where(y == 2, 0, y)

    with pytest.raises(DataError, match=r"class\(es\) \[2\]"):
        multiclass_metrics(y, proba)
    with undefined_as_nan():
        assert math.isnan(multiclass_metrics(y, proba)["auroc_macro"])


def test_class_probabilities_must_sum_to_one():
    with pytest.raises(DataError, match="sum to 1"):
        multiclass_metrics(np.array([0, 1]), np.array([[0.5, 0.6], [0.2, 0.8]]))


def test_class_codes_must_match_the_probability_columns():
    with pytest.raises(DataError, match="0..1"):
        multiclass_metrics(np.array([0, 2]), np.array([[0.5, 0.5], [0.2, 0.8]]))


def test_regression_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(8)
    y = rng.normal(size=300)
    yhat = y + rng.normal(scale=0.5, size=300)

    m = regression_metrics(y, yhat)

    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, yhat), abs=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, yhat)), abs=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, yhat), abs=1e-12)


def test_r2_is_nan_for_a_constant_outcome():
    assert math.isnan(regression_metrics(np.ones(5), np.arange(5.0))["r2"])
