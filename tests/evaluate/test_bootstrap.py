import json
import math

import numpy as np
import pytest
from scipy.special import expit

from precimed.errors import ConfigError, DataError
from precimed.evaluate import binary_metrics, bootstrap_ci, survival_metrics


def binary_set(n: int, seed: int = 0, prevalence_shift: float = 0.0):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    y = (rng.random(n) < expit(1.5 * risk - prevalence_shift)).astype(int)
    p = expit(risk + rng.normal(scale=0.5, size=n))
    return y, p


def test_the_point_value_is_the_metric_on_all_rows_and_lies_inside_its_interval():
    y, p = binary_set(400)

    ci = bootstrap_ci(lambda idx: binary_metrics(y[idx], p[idx]), len(y), n_boot=200, seed=1)

    assert ci["auroc"]["value"] == binary_metrics(y, p)["auroc"]
    for metric in ("auroc", "auprc", "brier", "accuracy", "calibration_slope"):
        assert ci[metric]["ci_low"] <= ci[metric]["value"] <= ci[metric]["ci_high"], metric
        assert ci[metric]["ci_low"] < ci[metric]["ci_high"], metric


def test_the_same_seed_gives_identical_intervals_and_another_seed_does_not():
    y, p = binary_set(200)

    def fn(idx):
        return binary_metrics(y[idx], p[idx])

    first = bootstrap_ci(fn, len(y), n_boot=100, seed=7)
    again = bootstrap_ci(fn, len(y), n_boot=100, seed=7)
    other = bootstrap_ci(fn, len(y), n_boot=100, seed=8)

    assert first == again
    assert first["auroc"]["ci_low"] != other["auroc"]["ci_low"]


def test_intervals_are_narrower_with_more_data():
    small_y, small_p = binary_set(150, seed=2)
    large_y, large_p = binary_set(3000, seed=2)

    small = bootstrap_ci(lambda i: binary_metrics(small_y[i], small_p[i]), 150, n_boot=150)
    large = bootstrap_ci(lambda i: binary_metrics(large_y[i], large_p[i]), 3000, n_boot=150)

    def width(ci):
        return ci["auroc"]["ci_high"] - ci["auroc"]["ci_low"]

    assert width(large) < width(small) / 2


def test_resampling_within_strata_keeps_the_number_of_events_fixed():
    y, _ = binary_set(300)

    ci = bootstrap_ci(lambda idx: {"events": float(y[idx].sum())}, len(y), n_boot=50, strata=y)

    assert ci["events"] == {"value": float(y.sum()), "ci_low": float(y.sum()), "ci_high": float(y.sum())}


def test_replicates_with_a_single_class_are_left_out_instead_of_failing():
    y = np.zeros(20, dtype=int)
    y[[3, 11]] = 1
    p = np.linspace(0.05, 0.95, 20)

    ci = bootstrap_ci(lambda idx: binary_metrics(y[idx], p[idx]), len(y), n_boot=200, seed=0)

    assert np.isfinite(ci["auroc"]["ci_low"]) and np.isfinite(ci["auroc"]["ci_high"])
    assert np.isfinite(ci["accuracy"]["ci_low"])


def test_the_point_value_still_raises_when_the_whole_set_has_one_class():
    y = np.zeros(20, dtype=int)

    with pytest.raises(DataError, match="single class"):
        bootstrap_ci(lambda idx: binary_metrics(y[idx], np.full(len(idx), 0.3)), 20, n_boot=10)


def test_a_metric_undefined_in_every_replicate_has_a_nan_interval_and_the_result_is_json():
    def fn(idx):
        return {"always_nan": float("nan"), "count": float(len(idx))}

    ci = bootstrap_ci(fn, 10, n_boot=5)

    assert math.isnan(ci["always_nan"]["ci_low"]) and math.isnan(ci["always_nan"]["ci_high"])
    assert ci["count"] == {"value": 10.0, "ci_low": 10.0, "ci_high": 10.0}
    assert all(type(v) is float for metric in ci.values() for v in metric.values())
    json.dumps(ci)


def test_survival_metrics_bootstrap_reproducibly_within_event_strata():
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    t_event, t_censor = rng.exponential(10 * np.exp(-x)), rng.exponential(12, size=300)
    time, event = np.minimum(t_event, t_censor), (t_event <= t_censor).astype(int)
    horizons = np.quantile(time[event == 1], [0.3, 0.6])

    def fn(idx):
        return survival_metrics(time[idx], event[idx], x[idx], horizons=horizons)

    ci = bootstrap_ci(fn, len(time), n_boot=100, seed=0, strata=event)

    assert ci == bootstrap_ci(fn, len(time), n_boot=100, seed=0, strata=event)
    assert 0.6 < ci["c_harrell"]["ci_low"] <= ci["c_harrell"]["value"] <= ci["c_harrell"]["ci_high"] < 0.9


def test_invalid_arguments_are_clear_errors():
    def fn(idx):
        return {"n": float(len(idx))}

    with pytest.raises(ConfigError, match="level"):
        bootstrap_ci(fn, 10, level=95)
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_ci(fn, 10, n_boot=0)
    with pytest.raises(DataError, match="one label per row"):
        bootstrap_ci(fn, 10, strata=np.zeros(9))
