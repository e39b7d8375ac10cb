"""Regular grids ending at a prediction time, carry-forward with limits, summaries, and no look-ahead."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from precimed.data.longitudinal import LONG_COLUMNS
from precimed.errors import ConfigError, SchemaError, ValueRangeError
from precimed.preprocess.temporal import SequencePreprocessor, landmark_samples, resample, summarize

VARIABLES = [{"name": "bili", "kind": "numeric", "unit": "mg/dL", "range": [0, 60], "log": True},
             {"name": "albumin", "kind": "numeric", "unit": "g/dL"},
             {"name": "ascites", "kind": "binary"}]
NAMES = [v["name"] for v in VARIABLES]


def _obs(rows):
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


def _random_history(seed: int, patients: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        for t in np.sort(rng.uniform(-200, 1200, size=rng.integers(1, 15))):
            rows.append((p, round(float(t), 1), "bili", float(rng.lognormal(0.3, 0.8)), "mg/dL"))
            if rng.random() < 0.7:
                rows.append((p, round(float(t), 1), "albumin", float(rng.normal(3.5, 0.4)), "g/dL"))
            if rng.random() < 0.5:
                rows.append((p, round(float(t), 1), "ascites", float(rng.random() < 0.2), np.nan))
    return _obs(rows)


# ----- the grid ---------------------------------------------------------------------------------------
def test_bins_end_at_the_prediction_time_and_an_observation_at_that_time_counts():
    obs = _obs([("a", 100.0, "hr", 70.0, "/min"), ("a", 89.0, "hr", 80.0, "/min"), ("a", 75.0, "hr", 90.0, "/min")])
    grid = resample(obs, landmark_samples(["a"], 100.0), ["hr"], step=10.0, bins=3)

    np.testing.assert_array_equal(grid.offsets, [-20.0, -10.0, 0.0])  # bins (70, 80], (80, 90], (90, 100]
    assert grid.observed[0, :, 0].tolist() == [True, True, True]
    assert grid.values[0, :, 0].tolist() == [90.0, 80.0, 70.0]

    strict = resample(obs, landmark_samples(["a"], 100.0), ["hr"], step=10.0, bins=3, inclusive=False)
    assert strict.observed[0, :, 0].tolist() == [True, True, False]
    assert strict.values[0, 2, 0] == 80.0  # carried forward from t=89
    assert strict.since_last[0, 2, 0] == 11.0


def test_values_are_carried_forward_only_up_to_the_limit_and_unknown_stays_nan():
    obs = _obs([("a", -25.0, "hr", 60.0, "/min"), ("a", 5.0, "hr", 70.0, "/min")])
    samples = landmark_samples(["a"], 40.0)  # bins end at 0, 10, 20, 30, 40

    unlimited = resample(obs, samples, ["hr"], step=10.0, bins=5)
    limited = resample(obs, samples, ["hr"], step=10.0, bins=5, max_carry=20.0)

    # the value from before the window (t=-25) is carried into the first bin
    assert unlimited.values[0, :, 0].tolist() == [60.0, 70.0, 70.0, 70.0, 70.0]
    assert unlimited.since_last[0, :, 0].tolist() == [25.0, 5.0, 15.0, 25.0, 35.0]
    assert limited.values[0, 0, 0] != limited.values[0, 0, 0]  # 25 > 20: NaN, not known
    np.testing.assert_array_equal(limited.values[0, 1:, 0], [70.0, 70.0, np.nan, np.nan])
    assert limited.observed[0, :, 0].tolist() == [False, True, False, False, False]


def test_never_observed_is_nan_with_no_time_since_last():
    grid = resample(_obs([("a", 1.0, "hr", 70.0, "/min")]), landmark_samples(["a", "b"], 5.0), ["hr", "rr"],
                    step=1.0, bins=2)
    assert np.isnan(grid.values[1]).all() and np.isnan(grid.since_last[1]).all() and not grid.observed[1].any()
    assert np.isnan(grid.values[0, :, 1]).all()


def test_mean_aggregation_averages_within_a_bin():
    obs = _obs([("a", 1.0, "hr", 60.0, "/min"), ("a", 2.0, "hr", 80.0, "/min")])
    samples = landmark_samples(["a"], 2.0)
    assert resample(obs, samples, ["hr"], step=5.0, bins=1, aggregate="mean").values[0, 0, 0] == 70.0
    assert resample(obs, samples, ["hr"], step=5.0, bins=1, aggregate="last").values[0, 0, 0] == 80.0


def test_a_patient_can_be_sampled_at_several_prediction_times():
    obs = _obs([("a", 1.0, "hr", 60.0, "/min"), ("a", 3.0, "hr", 80.0, "/min")])
    samples = pd.Series([2.0, 4.0], index=["a", "a"])
    grid = resample(obs, samples, ["hr"], step=1.0, bins=1)
    assert grid.values[:, 0, 0].tolist() == [60.0, 80.0]


def test_patient_ids_of_different_types_are_refused():
    with pytest.raises(SchemaError, match="patient ids of the observations are text"):
        resample(_obs([("1", 1.0, "hr", 60.0, "/min")]), landmark_samples([1], 2.0), ["hr"], step=1.0, bins=1)


def test_summaries_use_the_window_and_the_last_observation_at_or_before_t():
    obs = _obs([("a", -50.0, "x", 100.0, None)] + [("a", float(t), "x", 2.0 * t + 1.0, None) for t in (0, 10, 20)]
               + [("a", 30.0, "x", -999.0, None)])
    out = summarize(obs, landmark_samples(["a", "b"], 20.0), ["x"], window=25.0)

    a = out.iloc[0]
    assert (a.x_last, a.x_age, a.x_count) == (41.0, 0.0, 3.0)
    assert (a.x_mean, a.x_min, a.x_max) == (21.0, 1.0, 41.0)
    assert a.x_slope == pytest.approx(2.0)
    b = out.iloc[1]
    assert b.x_count == 0 and np.isnan([b.x_last, b.x_mean, b.x_slope]).all()


# ----- no look-ahead -------------------------------------------------------------------------------
def _future_changed(obs: pd.DataFrame, t: float, seed: int) -> pd.DataFrame:
    """Alter every observation after t, drop some, and add new ones after t."""
    rng = np.random.default_rng(seed)
    later = obs["time"] > t
    changed = obs.copy()
    changed.loc[later, "value"] = rng.normal(50, 30, size=int(later.sum())).round(2).clip(0.01, None)
    changed.loc[later & (changed["variable"] == "ascites"), "value"] = 1.0
    changed = changed.drop(changed.index[later.to_numpy() & (rng.random(len(changed)) < 0.3)])
    extra = [(int(p), t + float(rng.uniform(0.001, 500)), v, float(rng.uniform(0.1, 5)) if v != "ascites" else 1.0,
              None) for p in obs["patient_id"].unique() for v in NAMES]
    return pd.concat([changed, _obs(extra)], ignore_index=True).sample(frac=1.0, random_state=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_look_ahead_changing_or_adding_observations_after_t_changes_nothing(seed):
    t = 730.0
    obs = _random_history(seed)
    future = _future_changed(obs, t, seed + 100)
    assert not future[future.time > t].empty
    ids = sorted(obs.patient_id.unique())
    samples = landmark_samples(ids, t)

    a = resample(obs, samples, NAMES, step=92.0, bins=8, max_carry=400.0)
    b = resample(future, samples, NAMES, step=92.0, bins=8, max_carry=400.0)
    for field in ("values", "observed", "since_last"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    pd.testing.assert_frame_equal(summarize(obs, samples, NAMES, window=736.0),
                                  summarize(future, samples, NAMES, window=736.0))

    pre = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8, max_carry=400.0).fit(obs, samples)
    pre_future = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8, max_carry=400.0).fit(future, samples)
    assert pre.to_state() == pre_future.to_state()  # fitting does not look ahead either
    np.testing.assert_array_equal(pre.transform(obs, samples), pre.transform(future, samples))
    for view in ("last", "summary"):
        np.testing.assert_array_equal(pre.summary(obs, samples, view), pre.summary(future, samples, view))


def test_look_ahead_check_has_teeth_an_observation_at_t_does_count():
    obs = _random_history(5)
    samples = landmark_samples(sorted(obs.patient_id.unique()), 730.0)
    at_t = pd.concat([obs, _obs([(0, 730.0, "bili", 33.0, "mg/dL")])], ignore_index=True)
    pre = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8).fit(obs, samples)
    assert not np.array_equal(pre.transform(obs, samples), pre.transform(at_t, samples))


# ----- the fitted preprocessor -------------------------------------------------------------------------
def test_the_preprocessor_gives_finite_float32_values_masks_and_times_since_last():
    obs = _random_history(3)
    samples = landmark_samples(sorted(obs.patient_id.unique()), 730.0)
    pre = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8, max_carry=400.0).fit(obs, samples)
    X = pre.transform(obs, samples)

    assert X.shape == (len(samples), 8, 9) and X.dtype == np.float32 and np.isfinite(X).all()
    assert pre.mask_channels_ == (3, 6)
    assert pre.channel_names_[3:6] == ["bili_observed", "albumin_observed", "ascites_observed"]
    assert set(np.unique(X[:, :, 3:6])) <= {0.0, 1.0}
    assert X[:, :, 6:].min() >= 0 and X[:, :, 6:].max() <= 2.0


def test_normalisation_is_learned_from_training_patients_only_after_log():
    obs = _random_history(4)
    train = landmark_samples(range(20), 730.0)
    pre = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8).fit(obs, train)

    seen = obs[(obs.patient_id < 20) & (obs.time <= 730.0) & (obs.variable == "bili")]
    assert pre.center_[0] == pytest.approx(np.log1p(seen.value).mean())
    assert pre.scale_[0] == pytest.approx(np.log1p(seen.value).std(ddof=0))
    test_only = obs.patient_id >= 20
    shifted = obs.assign(value=np.where(test_only & (obs.variable == "bili"), obs.value * 100, obs.value))
    assert SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8).fit(shifted, train).center_ == pre.center_


def test_state_round_trips_through_json_with_identical_output():
    obs = _random_history(6)
    samples = landmark_samples(sorted(obs.patient_id.unique()), 730.0)
    pre = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8, max_carry=300.0).fit(obs, samples)
    again = SequencePreprocessor.from_state(json.loads(json.dumps(pre.to_state())))
    np.testing.assert_array_equal(again.transform(obs, samples), pre.transform(obs, samples))
    np.testing.assert_array_equal(again.summary(obs, samples), pre.summary(obs, samples))
    assert again.summary_names("summary") == pre.summary_names("summary")


def test_out_of_range_observations_are_dropped_and_reported():
    obs = pd.concat([_random_history(7), _obs([(3, 100.0, "bili", 400.0, "mg/dL")])], ignore_index=True)
    samples = landmark_samples(sorted(obs.patient_id.unique()), 730.0)
    pre = SequencePreprocessor(variables=VARIABLES, step=92.0, bins=8).fit(obs, samples)
    assert pre.range_report_["bili"]["count"] == 1 and pre.range_report_["bili"]["ids"] == [3]


def test_binary_variables_must_be_zero_or_one_and_logs_need_non_negative_values():
    samples = landmark_samples([1], 10.0)
    with pytest.raises(SchemaError, match=r"'ascites' has value\(s\) \[2.0\] for patient id\(s\) \[1\]"):
        SequencePreprocessor(variables=VARIABLES).fit(_obs([(1, 1.0, "ascites", 2.0, None)]), samples)
    with pytest.raises(ValueRangeError, match="log-transformed"):
        SequencePreprocessor(variables=[{"name": "x", "log": True}]).fit(_obs([(1, 1.0, "x", -2.0, None)]), samples)
    with pytest.raises(ConfigError, match="numeric or binary"):
        SequencePreprocessor(variables=[{"name": "x", "kind": "categorical"}]).fit(_obs([]), samples)
