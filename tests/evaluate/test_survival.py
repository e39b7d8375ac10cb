import math

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from precimed.errors import DataError
from precimed.evaluate import kaplan_meier, survival_metrics, undefined_as_nan

# scikit-survival (GPL) is used here only as an independent cross-check; src/ never imports it.


def cohort(seed: int, n: int = 300, *, ties: bool = True):
    """Exponential event and censoring times; with ties, whole-day times and risks rounded to 0.1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(10 * np.exp(-0.7 * x))
    t_censor = rng.exponential(12, size=n)
    time = np.minimum(t_event, t_censor)
    event = t_event <= t_censor
    risk = x + rng.normal(scale=0.5, size=n)
    if ties:
        time, risk = np.ceil(time), np.round(risk, 1)
    horizons = np.quantile(time[event], [0.25, 0.5, 0.75])
    grid = np.linspace(0.0, np.quantile(time, 0.9), 60)
    surv = np.exp(-np.outer(np.exp(risk), grid) / 10.0)
    return time, event, risk, horizons, grid, surv


CASES = [(seed, ties) for seed in (0, 1, 2) for ties in (True, False)]


@pytest.mark.parametrize(("seed", "ties"), CASES)
def test_harrells_c_matches_lifelines_and_scikit_survival(seed, ties):
    time, event, risk, horizons, *_ = cohort(seed, ties=ties)

    c = survival_metrics(time, event, risk, horizons=horizons)["c_harrell"]

    assert c == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)
    assert c == pytest.approx(concordance_index_censored(event, time, risk)[0], abs=1e-12)


def test_harrells_c_matches_lifelines_on_a_larger_cohort_without_censoring():
    time, event, risk, horizons, *_ = cohort(3, n=2000)
    event = np.ones_like(event)

    c = survival_metrics(time, event, risk, horizons=horizons)["c_harrell"]

    assert c == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)


@pytest.mark.parametrize(("seed", "ties"), CASES)
def test_unos_c_matches_scikit_survival_truncated_at_the_last_horizon(seed, ties):
    time, event, risk, horizons, *_ = cohort(seed, ties=ties)
    y = Surv.from_arrays(event, time)

    c = survival_metrics(time, event, risk, horizons=horizons)["c_uno"]

    assert c == pytest.approx(concordance_index_ipcw(y, y, risk, tau=horizons.max())[0], abs=1e-10)


@pytest.mark.parametrize(("seed", "ties"), CASES)
def test_time_dependent_auc_matches_scikit_survival_at_each_horizon(seed, ties):
    time, event, risk, horizons, *_ = cohort(seed, ties=ties)
    y = Surv.from_arrays(event, time)

    m = survival_metrics(time, event, risk, horizons=horizons)
    expected, _ = cumulative_dynamic_auc(y, y, risk, horizons)

    got = [m[f"auc_{h:g}"] for h in horizons]
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert m["auc_mean"] == pytest.approx(np.mean(expected), abs=1e-10)


@pytest.mark.parametrize(("seed", "ties"), CASES)
def test_brier_scores_and_ibs_match_scikit_survival(seed, ties):
    time, event, risk, horizons, grid, surv = cohort(seed, ties=ties)
    y = Surv.from_arrays(event, time)

    m = survival_metrics(time, event, risk, horizons=horizons, surv=surv, surv_times=grid)

    last_grid_point = np.searchsorted(grid, horizons, side="right") - 1
    _, expected = brier_score(y, y, surv[:, last_grid_point], horizons)
    np.testing.assert_allclose([m[f"brier_{h:g}"] for h in horizons], expected, atol=1e-10)
    within = (grid >= time.min()) & (grid <= horizons.max())
    assert m["ibs"] == pytest.approx(integrated_brier_score(y, y, surv[:, within], grid[within]), abs=1e-10)


def test_metric_keys_name_each_horizon():
    time, event, risk, _, grid, surv = cohort(0)

    m = survival_metrics(time, event, risk, horizons=[2, 5.5], surv=surv, surv_times=grid)

    assert list(m) == ["c_harrell", "c_uno", "auc_2", "auc_5.5", "auc_mean", "brier_2", "brier_5.5", "ibs"]
    assert all(type(v) is float for v in m.values())


def test_a_risk_that_orders_events_perfectly_has_concordance_one():
    time = np.array([1.0, 2, 3, 4, 5, 6])
    event = np.array([1, 1, 0, 1, 1, 0])

    m = survival_metrics(time, event, -time, horizons=[3.5])

    assert m["c_harrell"] == 1.0
    assert m["auc_3.5"] == 1.0
    assert survival_metrics(time, event, time, horizons=[3.5])["c_harrell"] == 0.0


def test_kaplan_meier_matches_lifelines():
    time, event, *_ = cohort(4)

    times, surv = kaplan_meier(time, event)

    kmf = KaplanMeierFitter().fit(time, event)
    np.testing.assert_allclose(surv, kmf.survival_function_at_times(times).to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(times, np.unique(time))


def test_the_censoring_distribution_matches_scikit_survival():
    time, event, *_ = cohort(5)

    times, g = kaplan_meier(time, event, censoring=True)

    expected = CensoringDistributionEstimator().fit(Surv.from_arrays(event, time)).predict_proba(times)
    np.testing.assert_allclose(g, expected, atol=1e-12)


def test_no_events_is_a_clear_error():
    time, event, risk, *_ = cohort(0)

    with pytest.raises(DataError, match="none of the 300 rows has an event"):
        survival_metrics(time, np.zeros_like(event), risk, horizons=[3])


def test_a_horizon_beyond_follow_up_is_a_clear_error():
    time, event, risk, *_ = cohort(0)

    with pytest.raises(DataError, match=f"beyond the last observed time {time.max():g}") as err:
        survival_metrics(time, event, risk, horizons=[3, 1e6])
    assert err.value.column == "time"


def test_undefined_survival_metrics_are_nan_when_undefined_is_allowed():
    time, event, risk, *_ = cohort(0)

    with undefined_as_nan():
        beyond = survival_metrics(time, event, risk, horizons=[3, 1e6])
        no_events = survival_metrics(time, np.zeros_like(event), risk, horizons=[3])

    assert not math.isnan(beyond["auc_3"]) and math.isnan(beyond["auc_1e+06"])
    assert math.isnan(beyond["auc_mean"])
    assert all(math.isnan(v) for v in no_events.values())


def test_a_horizon_before_the_first_event_is_a_clear_error():
    time = np.array([1.0, 2, 3, 4, 5, 6])
    event = np.array([0, 0, 1, 1, 1, 0])

    with pytest.raises(DataError, match="no event at or before horizon 2"):
        survival_metrics(time, event, -time, horizons=[2])


def test_inputs_of_different_lengths_and_nan_risks_are_rejected():
    time, event, risk, *_ = cohort(0)

    with pytest.raises(DataError, match="risk has 299"):
        survival_metrics(time, event, risk[:-1], horizons=[3])
    risk[7] = np.nan
    with pytest.raises(DataError, match="NaN") as err:
        survival_metrics(time, event, risk, horizons=[3])
    assert err.value.rows == (7,)


def test_survival_predictions_need_their_time_grid():
    time, event, risk, _, grid, surv = cohort(0)

    with pytest.raises(DataError, match="together"):
        survival_metrics(time, event, risk, horizons=[3], surv=surv)
    with pytest.raises(DataError, match="shape"):
        survival_metrics(time, event, risk, horizons=[3], surv=surv[:, 1:], surv_times=grid)
