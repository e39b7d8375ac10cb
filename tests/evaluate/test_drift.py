"""Drift statistics: PSI against a hand computation, tests against scipy, BH by hand, the verdict on shifted and
unshifted columns (synthetic, labelled so), the domain classifier on real halves and a shifted copy, rates,
label maturity and calibration."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from precimed.config import FeatureConfig
from precimed.data import load_dataset
from precimed.errors import DataError
from precimed.evaluate.drift import (
    binary_maturity,
    cox_calibration_slope,
    distribution_bins,
    domain_classifier,
    feature_drift,
    numeric_edges,
    observed_vs_predicted,
    population_stability_index,
    prediction_shift,
    survival_maturity,
    survival_window_metrics,
)

NUM = FeatureConfig(name="x")
CAT = FeatureConfig(name="c", kind="categorical", categories=["a", "b", "c"])


def test_psi_matches_a_hand_computation_on_a_tiny_numeric_table():
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    cur = pd.DataFrame({"x": [1.0, 3.0, 4.0, 4.0]})
    # bins=2: the reference median 2.5 cuts (-inf, 2.5] and (2.5, inf): reference 2/4, 2/4; current 1/4, 3/4
    assert numeric_edges(ref["x"].to_numpy(), 2).tolist() == [2.5]
    hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    table = feature_drift(ref, cur, [NUM], bins=2)
    assert table.frame.loc[0, "psi"] == pytest.approx(hand, abs=1e-12)
    assert population_stability_index([2, 2], [1, 3]) == pytest.approx(hand, abs=1e-12)


def test_psi_floors_empty_bins_and_counts_missing_values_as_a_bin():
    ref = pd.DataFrame({"c": ["a", "a", "b", "b"]})
    cur = pd.DataFrame({"c": ["a", "a", "a", None]})
    bins = distribution_bins(ref["c"], cur["c"], kind="categorical", feature=CAT)
    assert bins["labels"] == ["a", "b", "c", "(missing)"]
    assert bins["reference"].tolist() == [2, 2, 0, 0] and bins["current"].tolist() == [3, 0, 0, 1]
    floor = 1e-4
    r = [0.5, 0.5, floor, floor]
    c = [0.75, floor, floor, 0.25]
    hand = sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True))
    assert feature_drift(ref, cur, [CAT]).frame.loc[0, "psi"] == pytest.approx(hand, abs=1e-12)


def test_ks_and_chi2_p_values_are_scipys():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 300), "c": rng.choice(["a", "b", "c"], 300)})
    cur = pd.DataFrame({"x": rng.normal(0.2, 1, 200), "c": rng.choice(["a", "b", "c"], 200, p=[0.5, 0.3, 0.2])})
    frame = feature_drift(ref, cur, [NUM, CAT]).frame.set_index("feature")
    ks = stats.ks_2samp(ref["x"], cur["x"])
    assert frame.loc["x", "test"] == "ks"
    assert frame.loc["x", "statistic"] == pytest.approx(ks.statistic) and frame.loc["x", "p_value"] == pytest.approx(
        ks.pvalue)
    counts = np.vstack([ref["c"].value_counts().reindex(["a", "b", "c"]).to_numpy(),
                        cur["c"].value_counts().reindex(["a", "b", "c"]).to_numpy()])
    chi2, p, _, _ = stats.chi2_contingency(counts, correction=False)
    assert frame.loc["c", "test"] == "chi2"
    assert frame.loc["c", "statistic"] == pytest.approx(chi2) and frame.loc["c", "p_value"] == pytest.approx(p)


def test_q_values_are_benjamini_hochberg_over_every_test_of_the_table():
    rng = np.random.default_rng(2)
    n = 250
    ref = pd.DataFrame({f"x{i}": rng.normal(0, 1, n) for i in range(4)})
    cur = pd.DataFrame({f"x{i}": rng.normal(0.05 * i, 1, n) for i in range(4)})
    ref.loc[:9, "x3"] = np.nan
    cur.loc[:29, "x3"] = np.nan  # x3's missingness test joins the family
    features = [FeatureConfig(name=f"x{i}") for i in range(4)]
    frame = feature_drift(ref, cur, features).frame
    p = np.r_[frame["p_value"].to_numpy(), frame.loc[3, "missing_p"]]
    m = p.size
    order = np.argsort(p)
    hand = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):  # step-up: q_(k) = min_{j >= k} p_(j) * m / j
        running = min(running, p[order[rank - 1]] * m / rank)
        hand[order[rank - 1]] = running
    assert frame["q_value"].to_numpy() == pytest.approx(hand[:4])
    assert frame.loc[3, "missing_q"] == pytest.approx(hand[4])
    assert frame.loc[:2, "missing_q"].isna().all()  # nothing missing: no missingness test


def test_a_shifted_synthetic_column_is_flagged_and_an_unshifted_one_is_not():
    # SYNTHETIC data: normal draws, one column shifted by half a standard deviation, one category share moved
    rng = np.random.default_rng(3)
    n = 1500
    ref = pd.DataFrame({"shifted": rng.normal(0, 1, n), "same": rng.normal(0, 1, n),
                        "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])})
    cur = pd.DataFrame({"shifted": rng.normal(0.5, 1, n), "same": rng.normal(0, 1, n),
                        "c": rng.choice(["a", "b", "c"], n, p=[0.3, 0.3, 0.4])})
    features = [FeatureConfig(name="shifted"), FeatureConfig(name="same"), CAT]
    table = feature_drift(ref, cur, features)
    assert set(table.drifting) == {"shifted", "c"}
    same = table.frame.set_index("feature").loc["same"]
    assert not same["drifting"] and same["psi"] < 0.1 and same["reason"] == ""


def test_missingness_and_out_of_range_rates():
    f = FeatureConfig(name="age", range=(18, 100))
    ref = pd.DataFrame({"age": [20, 30, 40, 50, np.nan, 150, 60, 70, 80, 90]})
    cur = pd.DataFrame({"age": [np.nan, np.nan, 10, 200, 300, 50]})
    row = feature_drift(ref, cur, [f]).frame.iloc[0]
    assert row["missing_reference"] == pytest.approx(0.1) and row["missing_current"] == pytest.approx(2 / 6)
    assert row["out_of_range_reference"] == pytest.approx(0.1) and row["out_of_range_current"] == pytest.approx(3 / 6)


def test_frames_without_rows_or_columns_are_refused():
    with pytest.raises(DataError, match="current data has no rows"):
        feature_drift(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": []}), [NUM])
    with pytest.raises(DataError, match=r"lacks feature column\(s\) \['x'\]"):
        feature_drift(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [1.0]}), [NUM])


ROTTERDAM = [FeatureConfig(name=n) for n in ("age", "grade", "nodes", "pgr", "er")] + [
    FeatureConfig(name="size", kind="categorical", categories=["<=20", "20-50", ">50"]),
    FeatureConfig(name="hormon", kind="binary", positive=[1]),
]


def test_domain_classifier_is_near_half_on_two_halves_of_real_data_and_high_on_a_shift():
    rotterdam = load_dataset("rotterdam")
    perm = np.random.default_rng(0).permutation(len(rotterdam))
    a, b = rotterdam.iloc[perm[:1000]], rotterdam.iloc[perm[1000:2000]]
    same = domain_classifier(a, b, ROTTERDAM, seed=0, n_boot=50)
    assert 0.42 < same["auroc"]["value"] < 0.58
    assert same["n_reference"] == same["n_current"] == 1000 and same["scores"].shape == (2000,)
    shifted = b.assign(age=b["age"] + 12)  # SYNTHETIC shift of a real sample: everyone 12 years older
    high = domain_classifier(a, shifted, ROTTERDAM, seed=0, n_boot=50)["auroc"]
    assert high["value"] > 0.75 and high["ci_low"] <= high["value"] <= high["ci_high"]


def test_prediction_shift():
    rng = np.random.default_rng(4)
    r, c = rng.uniform(0, 1, 500), rng.uniform(0.2, 1, 500)
    out = prediction_shift(r, c)
    assert out["p_value"] == pytest.approx(stats.ks_2samp(r, c).pvalue)
    assert out["psi"] > 0.1 and out["mean_current"] > out["mean_reference"]


def test_survival_maturity_needs_follow_up_to_the_horizon():
    time = np.array([100, 200, 400, 500, 600, 700], dtype=float)
    event = np.array([1, 0, 0, 1, 0, 0], dtype=float)
    m = survival_maturity(time, event, 300, min_known=0.8)
    # known at 300: the event at 100 and the four followed past 300; the one censored at 200 is unknown
    assert m["known_fraction"] == pytest.approx(5 / 6) and m["mature"] and m["censored_before"] == 1
    short = survival_maturity(time, event, 800)
    assert not short["mature"] and "follow-up ends at 700" in short["reason"]
    assert not binary_maturity(np.array([True, True, False, False]), min_known=0.9)["mature"]


def test_cox_calibration_slope_is_one_for_the_true_linear_predictor_and_half_for_a_doubled_one():
    # SYNTHETIC survival times from a Cox model with linear predictor lp
    rng = np.random.default_rng(5)
    lp = rng.normal(0, 1, 3000)
    t = rng.exponential(1.0 / np.exp(lp))
    c = rng.exponential(2.0, lp.size)
    time, event = np.minimum(t, c), (t <= c).astype(float)
    one = cox_calibration_slope(time, event, lp)
    assert one["ci_low"] < 1.0 < one["ci_high"]
    assert cox_calibration_slope(time, event, 2 * lp)["value"] == pytest.approx(one["value"] / 2, rel=1e-4)


def test_observed_risk_is_the_event_fraction_without_censoring_and_immature_horizons_are_skipped():
    time = np.arange(1.0, 11.0)
    event = np.ones(10)
    out = observed_vs_predicted(time, event, np.full(10, 0.4), 4.5)
    assert out["observed"] == pytest.approx(0.4) and out["ratio"] == pytest.approx(1.0)
    risk = -time  # early events have the highest risk: perfect concordance
    metrics = survival_window_metrics(time, event, risk, horizons=[4.5, 20.0],
                                      surv_at_horizons=np.full((10, 2), 0.5), n_boot=20)
    assert metrics["c_harrell"]["value"] == pytest.approx(1.0)
    assert metrics["horizons"]["4.5"]["mature"] and "observed" in metrics["horizons"]["4.5"]
    assert not metrics["horizons"]["20"]["mature"] and "follow-up ends" in metrics["horizons"]["20"]["skipped"]
