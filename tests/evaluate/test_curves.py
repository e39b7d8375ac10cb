import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from scipy.special import expit, logit
from sklearn import metrics as skm

from precimed.errors import DataError
from precimed.evaluate import binary_metrics, survival_metrics
from precimed.evaluate import curves as cv


def binary_data(seed: int, n: int = 500, calibrated: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from the predicted risk itself (calibrated) or from a noisier risk; rounded p gives ties."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    p = expit(risk - 0.5)
    if calibrated:
        return (rng.random(n) < p).astype(int), p
    y = (rng.random(n) < expit(1.5 * risk - 0.5)).astype(int)
    return y, np.round(expit(risk + rng.normal(scale=0.7, size=n)), 2)


def survival_data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(100 * np.exp(-x))
    t_censor = rng.exponential(150, size=n)
    return np.ceil(np.minimum(t_event, t_censor)), (t_event <= t_censor).astype(int), x


# ----- discrimination ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_points_are_those_of_scikit_learn(seed):
    y, p = binary_data(seed)
    fpr, tpr, thresholds = skm.roc_curve(y, p, drop_intermediate=False)

    roc = cv.roc_curve(y, p)

    np.testing.assert_allclose(roc["fpr"], fpr, atol=1e-12)
    np.testing.assert_allclose(roc["tpr"], tpr, atol=1e-12)
    np.testing.assert_allclose(roc["thresholds"][1:], thresholds[1:])
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_precision_recall_points_match_scikit_learn_and_their_steps_give_average_precision(seed):
    y, p = binary_data(seed)
    precision, recall, _ = skm.precision_recall_curve(y, p, drop_intermediate=False)

    pr = cv.pr_curve(y, p)

    # scikit-learn runs from the lowest threshold up; ours from the highest down
    np.testing.assert_allclose(pr["precision"], precision[::-1], atol=1e-12)
    np.testing.assert_allclose(pr["recall"], recall[::-1], atol=1e-12)
    area = np.sum(np.diff(pr["recall"]) * pr["precision"][1:])
    assert area == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert pr["prevalence"] == pytest.approx(y.mean())


def test_curves_refuse_a_single_outcome_class_with_a_clear_message():
    with pytest.raises(DataError, match="both outcomes"):
        cv.roc_curve(np.zeros(5), np.linspace(0.1, 0.5, 5))


# ----- calibration -------------------------------------------------------------------------------


def test_wilson_interval_gives_the_textbook_values():
    low, high = cv.wilson_interval(np.array([0, 5]), np.array([10, 10]))

    assert low[0] == 0.0
    assert high[0] == pytest.approx(0.2775, abs=1e-4)
    assert (low[1], high[1]) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_decile_groups_hold_a_tenth_of_the_rows_and_their_observed_event_rate():
    y, p = binary_data(3, n=1000, calibrated=True)

    bins = cv.binned_calibration(y, p)

    assert len(bins["n"]) == 10 and bins["n"].sum() == 1000
    assert set(bins["n"]) == {100}
    order = np.argsort(p)
    np.testing.assert_allclose(bins["observed"], y[order].reshape(10, 100).mean(axis=1))
    np.testing.assert_allclose(bins["mean_predicted"], p[order].reshape(10, 100).mean(axis=1))
    assert np.all(bins["ci_low"] <= bins["observed"]) and np.all(bins["observed"] <= bins["ci_high"])


def test_tied_predictions_never_straddle_two_groups():
    p = np.repeat([0.1, 0.2, 0.3], [50, 30, 20])
    y = (np.arange(100) % 4 == 0).astype(int)

    bins = cv.binned_calibration(y, p)

    assert bins["n"].tolist() == [50, 30, 20]


def test_expected_calibration_error_is_near_zero_when_predictions_are_calibrated():
    y, p = binary_data(4, n=20000, calibrated=True)

    assert cv.expected_calibration_error(y, p) < 0.015
    overconfident = expit(3 * logit(p))
    assert cv.expected_calibration_error(y, overconfident) > 0.08


def test_local_linear_smoother_reproduces_a_straight_line_exactly():
    x = np.linspace(0, 1, 200)
    y = 0.2 + 0.5 * x
    grid = np.array([0.0, 0.3, 0.77, 1.0])
    kernel = cv._tricube(x, grid, cv._loess_bandwidth(x, grid, 60))

    fit = cv._local_linear(kernel, grid, x, y, np.ones_like(x))

    np.testing.assert_allclose(fit, 0.2 + 0.5 * grid, atol=1e-10)


def test_smoothed_calibration_follows_the_diagonal_for_a_calibrated_model_and_its_band_covers_it():
    y, p = binary_data(5, n=5000, calibrated=True)

    sm = cv.smoothed_calibration(y, p, n_boot=100)

    assert np.max(np.abs(sm["observed"] - sm["grid"])) < 0.05
    covered = (sm["ci_low"] <= sm["grid"]) & (sm["grid"] <= sm["ci_high"])
    assert covered.mean() >= 0.85
    assert sm["ici"] < 0.02 and sm["e50"] <= sm["e90"] <= sm["emax"]


def test_smoothed_calibration_shows_overconfident_predictions_as_a_flatter_curve():
    y, p = binary_data(6, n=5000, calibrated=True)
    overconfident = expit(2.5 * logit(p))

    sm = cv.smoothed_calibration(y, overconfident, n_boot=0)

    low, high = sm["grid"] < 0.2, sm["grid"] > 0.8
    assert np.all(sm["observed"][low] > sm["grid"][low])  # low predictions too low
    assert np.all(sm["observed"][high] < sm["grid"][high])  # high predictions too high
    assert sm["ici"] > 0.05
    assert np.isnan(sm["ci_low"]).all()


# ----- clinical utility --------------------------------------------------------------------------


def test_net_benefit_is_computed_as_vickers_and_elkin_define_it():
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.3, 0.1])

    dc = cv.decision_curve(y, p, thresholds=[0.35, 0.85])

    # pt = 0.35: patients with p >= 0.35 are treated: 2 true and 1 false positive out of 5
    assert dc["net_benefit"][0] == pytest.approx(2 / 5 - 1 / 5 * 0.35 / 0.65)
    # pt = 0.85: one true positive, no false positive
    assert dc["net_benefit"][1] == pytest.approx(1 / 5)
    assert dc["treat_all"][0] == pytest.approx(0.4 - 0.6 * 0.35 / 0.65)
    assert dc["treat_none"].tolist() == [0.0, 0.0]


def test_default_decision_thresholds_run_from_one_to_ninety_nine_percent():
    y, p = binary_data(7)

    dc = cv.decision_curve(y, p)

    assert dc["thresholds"][0] == 0.01 and dc["thresholds"][-1] == 0.99 and len(dc["thresholds"]) == 99


def test_threshold_table_agrees_with_binary_metrics_and_counts_patients_flagged_per_thousand():
    y, p = binary_data(8)

    rows = cv.threshold_table(y, p, extra=0.42)

    assert [r["threshold"] for r in rows] == [0.05, 0.1, 0.2, 0.3, 0.42, 0.5]
    for r in rows:
        m = binary_metrics(y, p, threshold=r["threshold"])
        assert r["sensitivity"] == pytest.approx(m["recall"])
        assert r["specificity"] == pytest.approx(m["specificity"])
        assert r["ppv"] == pytest.approx(m["precision"])
        assert r["flagged_per_1000"] == pytest.approx(1000 * np.mean(p >= r["threshold"]))
        assert r["npv"] == pytest.approx(np.mean(y[p < r["threshold"]] == 0))


def test_a_threshold_that_flags_no_one_has_an_undefined_ppv():
    rows = cv.threshold_table(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]), thresholds=[0.5])

    assert np.isnan(rows[0]["ppv"]) and rows[0]["flagged_per_1000"] == 0.0


def test_confusion_matrices_match_scikit_learn():
    y, p = binary_data(9)
    np.testing.assert_array_equal(cv.confusion_matrix(y, p, 0.3), skm.confusion_matrix(y, p >= 0.3))

    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], size=200)
    codes = rng.integers(0, 3, size=200)
    np.testing.assert_array_equal(cv.multiclass_confusion(codes, proba),
                                  skm.confusion_matrix(codes, proba.argmax(axis=1), labels=[0, 1, 2]))


def test_regression_calibration_averages_within_deciles_of_the_prediction():
    rng = np.random.default_rng(1)
    yhat = rng.normal(size=1000)
    y = yhat + rng.normal(size=1000)

    out = cv.regression_calibration(y, yhat)

    order = np.argsort(yhat)
    np.testing.assert_allclose(out["observed"], y[order].reshape(10, 100).mean(axis=1))
    assert np.all(out["ci_low"] < out["observed"]) and np.all(out["observed"] < out["ci_high"])


# ----- survival ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_kaplan_meier_and_its_log_log_interval_agree_with_lifelines(seed):
    t, e, _ = survival_data(seed)
    fitted = KaplanMeierFitter().fit(t, e)

    km = cv.kaplan_meier_ci(t, e)

    np.testing.assert_allclose(km["time"], fitted.survival_function_.index.to_numpy())
    np.testing.assert_allclose(km["surv"], fitted.survival_function_.iloc[:, 0].to_numpy(), atol=1e-12)
    inside = (km["surv"] > 0) & (km["surv"] < 1)
    ci = fitted.confidence_interval_.to_numpy()
    np.testing.assert_allclose(km["ci_low"][inside], ci[inside, 0], atol=1e-10)
    np.testing.assert_allclose(km["ci_high"][inside], ci[inside, 1], atol=1e-10)


def test_risk_groups_are_thirds_of_the_predicted_risk_with_the_high_group_doing_worst():
    t, e, x = survival_data(2, n=600)

    groups = cv.km_by_risk_group(t, e, x)

    assert [g["n"] for g in groups] == [200, 200, 200]
    assert sum(g["events"] for g in groups) == e.sum()
    assert groups[0]["label"].startswith("low") and groups[2]["label"].startswith("high")
    at_100 = [cv.km_at(g, 100.0)[0] for g in groups]
    assert at_100[0] > at_100[1] > at_100[2]


def test_time_dependent_auc_is_the_auc_of_survival_metrics_at_each_time():
    t, e, x = survival_data(3)

    td = cv.time_dependent_auc(t, e, x, times=[20.0, 60.0, 100.0])

    reference = survival_metrics(t, e, x, horizons=[20.0, 60.0, 100.0])
    np.testing.assert_allclose(td["auc"], [reference["auc_20"], reference["auc_60"], reference["auc_100"]])


def test_time_dependent_auc_is_nan_where_it_is_undefined():
    t, e, x = survival_data(4)

    td = cv.time_dependent_auc(t, e, x, times=[0.5, 50.0, t.max() + 1])

    assert np.isnan(td["auc"][0]) and np.isfinite(td["auc"][1]) and np.isnan(td["auc"][2])


def test_surv_at_takes_the_last_grid_time_at_or_before_the_horizon():
    grid = np.array([10.0, 20.0, 30.0])
    surv = np.array([[0.9, 0.8, 0.7], [0.95, 0.9, 0.85]])

    np.testing.assert_allclose(cv.surv_at(surv, grid, 25.0), [0.8, 0.9])
    np.testing.assert_allclose(cv.surv_at(surv, grid, 30.0), [0.7, 0.85])


def test_calibration_at_a_horizon_without_censoring_is_the_event_fraction_per_decile():
    rng = np.random.default_rng(5)
    x = rng.normal(size=2000)
    rate = np.exp(x) / 100
    t = rng.exponential(1 / rate)
    e = np.ones_like(t)
    horizon = 60.0
    s_h = np.exp(-rate * horizon)  # the true model: calibrated

    cal = cv.survival_calibration(t, e, s_h, horizon)

    order = np.argsort(1 - s_h)
    by_decile = (t[order] <= horizon).reshape(10, 200).mean(axis=1)
    np.testing.assert_allclose(cal["observed"], by_decile, atol=1e-12)
    inside = (cal["ci_low"] <= cal["mean_predicted"]) & (cal["mean_predicted"] <= cal["ci_high"])
    assert inside.sum() >= 8
    assert cal["ece"] < 0.05


def test_calibration_at_a_horizon_beyond_a_groups_follow_up_is_nan():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    e = np.array([1, 0, 1, 0, 1, 0])

    cal = cv.survival_calibration(t, e, np.linspace(0.9, 0.4, 6), horizon=6.5, n_bins=2)

    # low-risk half (times 1-3): everyone has had the event by 3, so KM is 0 from then on;
    # high-risk half (times 4-6): the last patient is censored at 6, so S(6.5) is unknown
    assert cal["observed"][0] == 1.0
    assert np.isnan(cal["observed"][1])
