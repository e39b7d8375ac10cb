import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn import metrics as skm

from precimed.errors import ConfigError, DataError
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


# ---------------------------------------------------------------------------------------------
# Every refused input: the exact one-line message, the column and the rows it names (finding 13's
# mutation run showed that a changed message, column or row list went unnoticed).

NAN, INF = float("nan"), float("inf")
SUFFIX = "; every row needs a finite value. Drop or impute those rows before evaluating."

REFUSED = [
    ("y-not-numeric", binary_metrics, (["a", "b"], [0.1, 0.2]), "y",
     "y must be numeric; could not convert it to numbers (could not convert string to float: 'a').", ()),
    ("p-2d", binary_metrics, ([0, 1], [[0.1, 0.2]]), "p", "p must be one-dimensional, got shape (1, 2).", ()),
    ("y-nan", binary_metrics, ([0, NAN, 1], [0.1, 0.2, 0.3]), "y",
     "y contains NaN outcomes in 1 row(s) (rows [1])" + SUFFIX, (1,)),
    ("p-inf", binary_metrics, ([0, 1, 1], [0.1, 0.2, INF]), "p",
     "p contains infinite predictions in 1 row(s) (rows [2])" + SUFFIX, (2,)),
    ("p-many-nan", binary_metrics, ([0, 1] * 4, [NAN] * 7 + [0.5]), "p",
     "p contains NaN predictions in 7 row(s) (rows [0, 1, 2, 3, 4])" + SUFFIX, (0, 1, 2, 3, 4, 5, 6)),
    ("y-not-0-1", binary_metrics, ([0, 2, 1, -1], [0.1, 0.2, 0.3, 0.4]), "y",
     "y must be a binary outcome coded 0/1; found 2.0 in row 1 (2 row(s) not 0/1).", (1, 3)),
    ("p-above-1", binary_metrics, ([0, 1, 0], [0.1, 1.5, -0.2]), "p",
     "p must be probabilities in [0, 1]; found 1.5 in row 1. Pass predicted probabilities, not logits or scores.",
     (1, 2)),
    ("single-class-0", binary_metrics, ([0] * 10, [0.5] * 10), "y",
     "y has a single class (every one of the 10 rows is 0); AUROC, average precision and calibration need both "
     "outcomes. Evaluate on a set that contains events and non-events.", ()),
    ("single-class-1", binary_metrics, ([1] * 3, [0.5] * 3), "y",
     "y has a single class (every one of the 3 rows is 1); AUROC, average precision and calibration need both "
     "outcomes. Evaluate on a set that contains events and non-events.", ()),
    ("mc-length", multiclass_metrics, ([0, 1], [[0.5, 0.5]] * 3), None,
     "inputs have different numbers of rows: y has 2, proba has 3; pass one value per row for each.", ()),
    ("mc-y-nan", multiclass_metrics, ([0, NAN], [[0.5, 0.5]] * 2), "y",
     "y contains NaN outcomes in 1 row(s) (rows [1])" + SUFFIX, (1,)),
    ("mc-y-fraction", multiclass_metrics, ([0.5, 1, 2], [[0.2, 0.3, 0.5]] * 3), "y",
     "y must hold integer class codes 0..2 matching the 3 columns of proba; found 0.5 in row 0.", (0,)),
    ("mc-y-negative", multiclass_metrics, ([0, -1, 2], [[0.2, 0.3, 0.5]] * 3), "y",
     "y must hold integer class codes 0..2 matching the 3 columns of proba; found -1.0 in row 1.", (1,)),
    ("mc-proba-nan", multiclass_metrics, ([0, 1], [[0.5, 0.5], [NAN, 0.5]]), "proba",
     "proba contains NaN predictions in 1 row(s) (rows [1])" + SUFFIX, (1,)),
    ("mc-proba-above-1", multiclass_metrics, ([0, 1], [[1.2, 0.0], [0.5, 0.5]]), "proba",
     "proba must hold probabilities in [0, 1]; pass softmax outputs, not logits.", ()),
    ("mc-proba-sum", multiclass_metrics, ([0, 1, 1], [[0.5, 0.5], [0.5, 0.6], [0.2, 0.9]]), "proba",
     "each row of proba must sum to 1; row 1 sums to 1.1 (2 row(s) off). Pass class probabilities (a softmax), "
     "not scores.", (1, 2)),
    ("mc-missing-class", multiclass_metrics, ([0, 1, 0], [[0.2, 0.3, 0.5]] * 3), "y",
     "class(es) [2] do not occur in y, so their one-vs-rest AUROC is undefined; evaluate on a set where every "
     "class occurs.", ()),
    ("reg-length", regression_metrics, ([1.0, 2.0], [1.0]), None,
     "inputs have different numbers of rows: y has 2, yhat has 1; pass one value per row for each.", ()),
    ("reg-y-nan", regression_metrics, ([1.0, NAN], [1.0, 2.0]), "y",
     "y contains NaN outcomes in 1 row(s) (rows [1])" + SUFFIX, (1,)),
    ("reg-yhat-inf", regression_metrics, ([1.0, 2.0], [-INF, 2.0]), "yhat",
     "yhat contains infinite predictions in 1 row(s) (rows [0])" + SUFFIX, (0,)),
]


@pytest.mark.parametrize(("metric", "args", "column", "message", "rows"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_each_refused_input_gives_its_exact_message_column_and_rows(metric, args, column, message, rows):
    with pytest.raises(DataError) as err:
        metric(*(np.asarray(a, dtype=object) if isinstance(a, list) and a and isinstance(a[0], str) else a
                 for a in args))
    assert str(err.value) == message
    assert err.value.column == column
    assert err.value.rows == rows


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1])
def test_a_threshold_outside_the_open_unit_interval_is_refused(threshold):
    with pytest.raises(ConfigError) as err:
        binary_metrics(np.array([0, 1]), np.array([0.2, 0.8]), threshold=threshold)
    assert str(err.value) == f"threshold must lie strictly between 0 and 1, got {threshold!r}."


def test_outcomes_written_as_numeric_text_are_read_as_numbers():
    """A CSV column read as text ("0"/"1") is scored like numbers, not refused or compared as strings."""
    as_text = binary_metrics(np.array(["0", "1", "1", "0"]), np.array(["0.2", "0.9", "0.6", "0.4"]))

    assert as_text == binary_metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.6, 0.4]))


def test_a_logit_spread_of_exactly_one_still_gets_a_calibration_slope():
    """Only a zero spread of logit(p) makes the slope undefined; a spread of exactly 1.0 is ordinary data."""
    p = np.array([0.5, expit(1.0), expit(1.0), 0.5, 0.5, expit(1.0)])
    y = np.array([0, 1, 0, 1, 0, 1])

    m = binary_metrics(y, p)

    assert math.isfinite(m["calibration_slope"])
    assert m["calibration_slope"] == pytest.approx(math.log(4.0), abs=1e-6)   # odds 1:2 -> 2:1 over one logit


SMALL_MULTICLASS = [
    # y, predicted class: a class predicted once, a class with support one and never predicted, an absent class
    ([0, 0, 1, 2, 2, 0], [0, 1, 1, 2, 0, 0], 3),
    ([0, 1, 2, 2, 0, 1], [0, 0, 2, 2, 2, 0], 3),
    ([0, 0, 1, 1, 2, 2], [0, 3, 1, 3, 2, 3], 4),     # class 3 predicted but absent from y: recall 0
    ([0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 2, 2], 4),     # class 3 neither in y nor predicted: left out of macro
    ([0, 0, 1, 2, 2, 0], [0, 0, 0, 2, 2, 0], 3),     # class 1 occurs once and is never predicted: counts as 0
    ([0, 0, 1, 1, 2, 2], [0, 3, 1, 1, 2, 2], 4),     # class 3 predicted once, never in y: precision 0 counts
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(("y", "pred", "k"), SMALL_MULTICLASS)
def test_small_multiclass_sets_with_rare_and_absent_classes_agree_with_scikit_learn(y, pred, k):
    """Singleton and absent classes are where the precision/recall/f1 guards matter; no warning allowed."""
    y, pred = np.array(y), np.array(pred)
    proba = np.full((len(y), k), 0.1 / (k - 1))
    proba[np.arange(len(y)), pred] = 0.9

    with undefined_as_nan():
        m = multiclass_metrics(y, proba)

    for avg in ("macro", "weighted"):
        assert m[f"precision_{avg}"] == pytest.approx(
            skm.precision_score(y, pred, average=avg, zero_division=0), abs=1e-12)
        assert m[f"recall_{avg}"] == pytest.approx(skm.recall_score(y, pred, average=avg, zero_division=0), abs=1e-12)
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0), abs=1e-12)
    assert set(m) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                      "recall_weighted", "f1_weighted", "auroc_macro", "auroc_weighted", "log_loss"}
    assert math.isnan(m["auroc_weighted"]) == (k == 4)


def test_integer_one_hot_probabilities_score_like_float_ones_and_log_loss_is_clipped_below_one():
    """proba is read as floats; a probability of exactly 1 is clipped to 1 - eps, so log_loss is > 0."""
    y = np.array([0, 1, 2])
    as_int = multiclass_metrics(y, np.eye(3, dtype=int))

    assert as_int == multiclass_metrics(y, np.eye(3))
    assert as_int["log_loss"] > 0.0 and as_int["log_loss"] == pytest.approx(np.finfo(float).eps, rel=0.01)


def test_r2_of_an_outcome_with_little_spread_is_defined():
    """R² is NaN only for a constant outcome, not for one whose sum of squares is below 1."""
    y = np.array([0.0, 0.1, 0.2, 0.3])
    yhat = np.array([0.05, 0.1, 0.15, 0.35])

    assert regression_metrics(y, yhat)["r2"] == pytest.approx(skm.r2_score(y, yhat), abs=1e-12)
