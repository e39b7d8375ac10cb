"""Finding 13, metrics: predictions of exactly 0 or 1 and empty input.

Each test feeds the point metrics an input that once slipped past the suite: probabilities pinned at 0
or 1 (a tree model or a rounded export gives them), and no rows at all. A metric must come out finite,
or NaN only where the docstring defines it, or raise a one-line DataError naming the input: never a
silent NaN, a warning or a crash.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit
from sklearn import metrics as skm

from precimed.errors import DataError
from precimed.evaluate import binary_metrics, multiclass_metrics, regression_metrics, undefined_as_nan

pytestmark = pytest.mark.filterwarnings("error")  # a RuntimeWarning (log of 0, 0/0) is a failure here


def assert_is_the_intercept_mle(y: np.ndarray, p: np.ndarray, a: float) -> None:
    """`a` solves the score equation of logit P(y=1) = a + logit(clip(p)): sum(y - expit(a + lp)) = 0.

    The score falls strictly in a, so its one root is the maximum-likelihood intercept.
    """
    lp = logit(np.clip(p, 1e-7, 1 - 1e-7))
    assert math.isfinite(a)
    assert abs(float(np.sum(y - expit(a + lp)))) < 1e-7, a


@pytest.mark.parametrize(("y", "p"), [
    ([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0]),                      # confidently right
    ([0, 0, 1, 1], [1.0, 1.0, 0.0, 0.0]),                      # confidently wrong
    ([0, 1], [0.0, 1.0]),                                       # the smallest set with both classes
    ([0, 1, 0, 1, 1, 0], [0.0, 1.0, 0.3, 0.7, 1.0, 0.0]),      # pinned and ordinary predictions mixed
], ids=["right", "wrong", "two-rows", "mixed"])
def test_predictions_of_exactly_0_or_1_have_a_finite_calibration_intercept(y, p):
    """The intercept's MLE exists whenever both classes occur; Newton used to oscillate at its rounding floor."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)

    m = binary_metrics(y, p)

    assert_is_the_intercept_mle(y, p, m["calibration_intercept"])
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)


def test_perfect_0_1_predictions_have_no_finite_slope_but_every_other_metric_is_defined():
    """Separated outcomes: the slope's MLE does not exist (NaN, documented); the rest is exact."""
    m = binary_metrics(np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 1.0, 1.0]))

    assert math.isnan(m["calibration_slope"])
    assert {k: v for k, v in m.items() if k != "calibration_slope"} == {
        "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "specificity": 1.0, "f1": 1.0, "auroc": 1.0,
        "auprc": 1.0, "brier": 0.0, "calibration_intercept": pytest.approx(0.0, abs=1e-9)}


@pytest.mark.parametrize("constant", [0.0, 1.0])
def test_a_constant_prediction_of_0_or_1_has_no_slope_and_the_intercept_of_the_event_rate(constant):
    """With one distinct prediction the slope is undefined (NaN); the intercept is logit(rate) - logit(p)."""
    y = np.array([0, 1, 0, 1, 1])

    m = binary_metrics(y, np.full(5, constant))

    assert math.isnan(m["calibration_slope"])
    expected = logit(0.6) - logit(np.clip(constant, 1e-7, 1 - 1e-7))
    assert m["calibration_intercept"] == pytest.approx(expected, abs=1e-6)
    assert m["auroc"] == 0.5 and m["brier"] == pytest.approx(0.6 if constant == 0.0 else 0.4)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1]),
                          st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0, allow_nan=False))),
                min_size=2, max_size=40))
def test_any_mix_of_pinned_and_ordinary_predictions_gives_a_finite_intercept(rows):
    """Property: with both classes present, every metric is finite except the documented NaNs."""
    y = np.array([r[0] for r in rows], dtype=float)
    p = np.array([r[1] for r in rows], dtype=float)
    if y.min() == y.max():
        with pytest.raises(DataError, match="single class"):
            binary_metrics(y, p)
        return

    m = binary_metrics(y, p)

    may_be_nan = {"precision", "calibration_slope"}  # no predicted positive; separation or one distinct p
    assert all(math.isfinite(v) for k, v in m.items() if k not in may_be_nan), m
    assert math.isnan(m["precision"]) == (not (p >= 0.5).any())
    assert_is_the_intercept_mle(y, p, m["calibration_intercept"])


def test_one_hot_class_probabilities_give_a_finite_log_loss():
    """Multiclass probabilities of exactly 0 and 1: log_loss is clipped, never inf."""
    eye = np.eye(3)
    right = multiclass_metrics(np.array([0, 1, 2]), eye)
    wrong = multiclass_metrics(np.array([0, 1, 2]), eye[[1, 2, 0]])

    assert right["accuracy"] == 1.0 and right["auroc_macro"] == 1.0
    assert right["log_loss"] == pytest.approx(-math.log(1 - np.finfo(float).eps))
    assert wrong["log_loss"] == pytest.approx(-math.log(np.finfo(float).eps))
    assert wrong["accuracy"] == 0.0 and wrong["precision_macro"] == 0.0


@pytest.mark.parametrize(("metric", "args"), [
    (binary_metrics, ([], [])),
    (binary_metrics, (np.array([]), np.array([]))),
    (multiclass_metrics, ([], np.zeros((0, 3)))),
    (regression_metrics, ([], [])),
], ids=["binary-list", "binary-array", "multiclass", "regression"])
def test_empty_input_is_a_data_error_naming_y_even_where_undefined_metrics_are_nan(metric, args):
    """No rows is not an unlucky resample: it raises inside undefined_as_nan too, naming the input."""
    for context in (None, undefined_as_nan):
        with pytest.raises(DataError, match=r"^y is empty; there are no rows to evaluate\.$") as err:
            if context is None:
                metric(*args)
            else:
                with context():
                    metric(*args)
        assert err.value.column == "y"


def test_empty_predictions_beside_outcomes_name_the_mismatch():
    """Rows of y but no predictions: the message names the empty input, not a length of 0 silently scored."""
    with pytest.raises(DataError, match=r"^p is empty") as err:
        binary_metrics(np.array([0, 1]), np.array([]))
    assert err.value.column == "p"
    with pytest.raises(DataError, match=r"^yhat is empty"):
        regression_metrics(np.array([1.0, 2.0]), np.array([]))


def test_empty_class_probabilities_with_one_dimension_are_refused_by_shape():
    with pytest.raises(DataError, match=r"proba must be a 2-D array .* got \(0,\)") as err:
        multiclass_metrics([], [])
    assert err.value.column == "proba"
