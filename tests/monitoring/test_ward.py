"""The simulated ward, labels, look-ahead-free window features and the early-warning evaluation."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from precimed.errors import ConfigError, DataError
from precimed.monitoring import (
    FEATURES,
    deterioration_labels,
    evaluate_early_warning,
    score_news2_frame,
    simulate_ward,
    window_features,
)


@pytest.fixture(scope="module")
def ward():
    return simulate_ward(120, 8, seed=42, deteriorate_fraction=0.25)


def test_the_same_seed_gives_the_same_ward_and_another_seed_another():
    a_obs, a_ev = simulate_ward(30, 3, seed=1)
    b_obs, b_ev = simulate_ward(30, 3, seed=1)
    c_obs, _ = simulate_ward(30, 3, seed=2)
    pd.testing.assert_frame_equal(a_obs, b_obs)
    pd.testing.assert_frame_equal(a_ev, b_ev)
    assert not a_obs.equals(c_obs)


def test_simulated_vitals_lie_within_physiologic_ranges(ward):
    obs, _ = ward
    limits = {"resp_rate": (4, 60), "spo2": (60, 100), "systolic_bp": (50, 240), "pulse": (25, 200),
              "temperature": (32, 42.5), "age": (18, 98)}
    for col, (low, high) in limits.items():
        values = obs[col].dropna()
        assert values.between(low, high).all(), col
    assert set(obs["consciousness"].dropna()) <= set("ACVPU")
    assert set(obs["spo2_scale"]) <= {1, 2}
    assert 36.3 < obs["temperature"].median() < 37.2
    assert 12 <= obs["resp_rate"].median() <= 20
    assert score_news2_frame(obs)["news2"].median() <= 2


def test_some_readings_are_missing_but_most_are_recorded(ward):
    obs, _ = ward
    share = obs[["resp_rate", "spo2", "systolic_bp", "pulse", "temperature"]].isna().mean()
    assert (share > 0).all() and (share < 0.15).all()


def test_observations_are_in_time_order_and_stop_at_the_event(ward):
    obs, events = ward
    assert obs["time"].is_monotonic_increasing
    last = obs.groupby("patient_id")["time"].max()
    for _, e in events.iterrows():
        assert last[e["patient_id"]] <= e["time"]
        assert e["onset"] < e["time"]
    assert set(events["event"]) <= {"icu_transfer", "cardiac_arrest"}
    assert 10 <= len(events) <= 50


def test_observation_frequency_follows_the_news2_response_chart(ward):
    obs, _ = ward
    news2 = score_news2_frame(obs)["news2"]
    gap = obs.groupby("patient_id")["time"].diff(-1).abs().dt.total_seconds() / 3600
    assert gap[news2 == 0].median() > 9
    assert 3.5 < gap[news2.between(1, 2)].median() <= 6.5
    assert gap[news2 >= 7].median() < 1.5


def test_deteriorating_patients_score_higher_in_the_12_hours_before_their_event(ward):
    obs, events = ward
    news2 = score_news2_frame(obs)["news2"]
    before = deterioration_labels(obs, events, timedelta(hours=12))
    others = ~obs["patient_id"].isin(events["patient_id"])
    assert news2[before].mean() > news2[others].mean() + 3
    assert news2[before].mean() >= 5


def test_labels_mark_observations_followed_by_an_event_within_the_horizon():
    t0 = pd.Timestamp("2024-01-01 00:00")
    obs = pd.DataFrame({"patient_id": ["A", "A", "A", "B", "A"],
                        "time": [t0, t0 + pd.Timedelta(hours=5), t0 + pd.Timedelta(hours=11),
                                 t0 + pd.Timedelta(hours=11), t0 + pd.Timedelta(hours=17)]},
                       index=[10, 11, 12, 13, 14])
    events = pd.DataFrame({"patient_id": ["A"], "time": [t0 + pd.Timedelta(hours=17)], "event": ["icu_transfer"]})
    labels = deterioration_labels(obs, events, timedelta(hours=12))
    assert labels.to_dict() == {10: False, 11: True, 12: True, 13: False, 14: True}


def test_no_events_means_no_positive_labels(ward):
    obs, events = ward
    assert not deterioration_labels(obs, events.iloc[0:0]).any()


def test_window_features_summarise_the_trailing_window():
    t0 = pd.Timestamp("2024-01-01 00:00")
    rows = [(0, 14, "A"), (2, 18, "A"), (4, np.nan, "C"), (6, 22, None), (40, 30, "A")]
    obs = pd.DataFrame({"patient_id": "P", "time": [t0 + pd.Timedelta(hours=h) for h, _, _ in rows],
                        "resp_rate": [r for _, r, _ in rows], "spo2": 97.0, "on_oxygen": False,
                        "systolic_bp": 120.0, "pulse": 70.0, "consciousness": [c for _, _, c in rows],
                        "temperature": 37.0})
    f = window_features(obs)
    assert list(f.columns) == list(FEATURES)
    assert f.loc[3, "resp_rate_last"] == 22 and f.loc[2, "resp_rate_last"] == 18
    assert f.loc[3, "resp_rate_slope"] == pytest.approx(9 / 7)  # least squares through 14, 18, 22 at 0, 2, 6 h
    assert (f.loc[3, "resp_rate_min"], f.loc[3, "resp_rate_max"]) == (14, 22)
    assert f.loc[3, "not_alert_last"] == 1.0  # last recorded consciousness was C
    assert f.loc[3, "hours_since_last_obs"] == 2 and np.isnan(f.loc[0, "hours_since_last_obs"])
    assert f.loc[4, "n_obs_window"] == 1 and np.isnan(f.loc[4, "resp_rate_slope"])  # 34 h after: window empty
    assert f.loc[4, "hours_since_last_obs"] == 34
    assert np.isnan(f.loc[0, "resp_rate_slope"])


def test_window_features_never_look_ahead(ward):
    obs, _ = ward
    cut = obs["time"].quantile(0.5)
    changed = obs.copy()
    future = changed["time"] > cut
    rng = np.random.default_rng(0)
    changed.loc[future, "resp_rate"] = rng.integers(5, 40, future.sum()).astype(float)
    changed.loc[future, "pulse"] = 150.0
    changed.loc[future, "consciousness"] = "U"
    extra = changed[future].head(40).assign(time=lambda d: d["time"] + pd.Timedelta(minutes=1))
    changed = pd.concat([changed, extra], ignore_index=True)  # and new future rows
    before = window_features(obs)[~future]
    after = window_features(changed).loc[before.index]
    pd.testing.assert_frame_equal(before, after)
    assert not window_features(obs)[future].equals(window_features(changed).loc[obs.index[future]])


def test_window_features_keep_the_input_order_and_index(ward):
    obs, _ = ward
    shuffled = obs.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(window_features(shuffled).sort_index(), window_features(obs))


def test_evaluation_of_a_perfect_score(ward):
    obs, events = ward
    labels = deterioration_labels(obs, events).astype(float)
    result = evaluate_early_warning(obs, events, labels, threshold=0.5)
    assert result["auroc"] == 1.0
    assert result["detection_rate"] > 0.8
    assert 0 < result["median_lead_hours"] <= 12
    assert result["alerts"] <= len(events) * 2


def test_evaluation_of_news2_on_the_ward(ward):
    obs, events = ward
    news2 = score_news2_frame(obs)["news2"]
    r5 = evaluate_early_warning(obs, events, news2, threshold=5)
    r3 = evaluate_early_warning(obs, events, news2, threshold=3)
    assert r5["auroc"] > 0.8
    assert r3["alerts_per_patient_day"] >= r5["alerts_per_patient_day"] > 0
    assert r3["detection_rate"] >= r5["detection_rate"] > 0.5
    assert r3["median_lead_hours"] >= r5["median_lead_hours"]


def test_lead_time_and_detection_on_a_tiny_ward():
    t0 = pd.Timestamp("2024-01-01 00:00")
    hours = [0, 4, 6, 8, 9]
    obs = pd.DataFrame({"patient_id": "A", "time": [t0 + pd.Timedelta(hours=h) for h in hours],
                        "resp_rate": 16.0, "spo2": 97.0, "on_oxygen": False, "systolic_bp": 120.0, "pulse": 70.0,
                        "consciousness": "A", "temperature": 37.0})
    events = pd.DataFrame({"patient_id": ["A"], "time": [t0 + pd.Timedelta(hours=10)]})
    result = evaluate_early_warning(obs, events, [0.1, 0.2, 0.9, 0.95, 0.99], threshold=0.5)
    assert result["detected"] == 1 and result["median_lead_hours"] == 4
    assert result["alerts"] == 1 and result["patient_days"] == pytest.approx(10 / 24)
    missed = evaluate_early_warning(obs, events, [0.9, 0.1, 0.1, 0.1, 0.1], threshold=0.5)
    assert missed["detected"] == 0 and np.isnan(missed["median_lead_hours"])


def test_scores_must_match_the_observations(ward):
    obs, events = ward
    with pytest.raises(DataError, match="scores"):
        evaluate_early_warning(obs, events, [0.1, 0.2], threshold=0.5)
    with pytest.raises(DataError, match="scores"):
        evaluate_early_warning(obs, events, np.full(len(obs), np.nan), threshold=0.5)


def test_simulator_arguments_are_checked():
    with pytest.raises(ConfigError):
        simulate_ward(0, 3)
    with pytest.raises(ConfigError):
        simulate_ward(10, 3, deteriorate_fraction=1.5)
