import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from precimed.errors import ConfigError, DataError, ValueRangeError
from precimed.evaluate import (
    age_bands,
    binary_metrics,
    fairness_gaps,
    sex_groups,
    subgroup_metrics,
    survival_fairness_gaps,
)


def binary_cohort(n: int = 3000, seed: int = 0, underestimate_men_by: float = 0.0):
    """Risk model fitted on everyone; with a shift, men's true risk is higher than predicted."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], size=n, p=[0.55, 0.45])
    site = rng.choice(["north", "south", "west"], size=n)  # unrelated to outcome or prediction
    x = rng.normal(size=n)
    p = expit(1.2 * x - 1.0)
    true_logit = 1.2 * x - 1.0 + underestimate_men_by * (sex == "M")
    y = (rng.random(n) < expit(true_logit)).astype(int)
    return y, p, {"sex": sex_groups(sex), "site": site}


# ----- deriving groups -------------------------------------------------------------------------


def test_age_bands_label_decades_from_under_40_to_80_plus_and_keep_unknown_ages_unknown():
    bands = age_bands([18, 39.9, 40, 49, 63, 79, 80, 101, np.nan])

    assert list(bands.categories) == ["<40", "40-49", "50-59", "60-69", "70-79", "80+"]
    assert list(np.asarray(bands, dtype=object)[:8]) == ["<40", "<40", "40-49", "40-49", "60-69", "70-79", "80+",
                                                         "80+"]
    assert pd.isna(bands[8])


def test_an_age_outside_the_edges_is_a_range_error_that_names_the_row():
    with pytest.raises(ValueRangeError, match=r"row 1.*unit"):
        age_bands([50, 730, 60])


def test_sex_is_read_from_common_words_but_numeric_codes_need_a_mapping():
    assert list(sex_groups(["F", "male", " Woman ", "", None, np.nan])) == ["female", "male", "female", None, None,
                                                                          None]
    with pytest.raises(DataError, match="mapping"):
        sex_groups([0, 1, 1])
    assert list(sex_groups([0, 1, np.nan], mapping={1: "male", 0: "female"})) == ["female", "male", None]


# ----- metrics by subgroup ------------------------------------------------------------------------


def test_each_group_gets_its_own_metrics_and_the_point_lies_inside_its_interval():
    y, p, groups = binary_cohort(n=1200)

    table = subgroup_metrics(groups, lambda i: binary_metrics(y[i], p[i]), len(y), n_boot=200, seed=1, strata=y,
                             events=y)

    for attribute, labels in (("sex", ["female", "male"]), ("site", ["north", "south", "west"])):
        assert list(table[attribute]) == labels
        for label in labels:
            entry = table[attribute][label]
            rows = np.asarray(groups[attribute], dtype=object) == label
            assert entry["status"] == "ok"
            assert entry["n"] == rows.sum() and entry["events"] == y[rows].sum()
            assert entry["auroc"]["value"] == pytest.approx(binary_metrics(y[rows], p[rows])["auroc"])
            for metric in ("auroc", "brier", "recall"):
                assert entry[metric]["ci_low"] <= entry[metric]["value"] <= entry[metric]["ci_high"]


def test_small_groups_are_reported_as_too_small_and_unknown_labels_are_counted_apart():
    y, p, _ = binary_cohort(n=400)
    age = np.r_[np.full(380, 65.0), np.full(15, 30.0), np.full(5, np.nan)]

    table = subgroup_metrics({"age": age_bands(age)}, lambda i: binary_metrics(y[i], p[i]), len(y), n_boot=50,
                             events=y, min_size=30)["age"]

    assert list(table) == ["<40", "60-69", "(unknown)"]  # band order, empty bands left out
    assert table["<40"] == {"n": 15, "events": int(y[380:395].sum()), "status": "too small"}
    assert table["(unknown)"]["n"] == 5 and table["(unknown)"]["status"] == "unknown"
    assert "auroc" in table["60-69"]


def test_a_group_without_events_reports_undefined_metrics_as_nan_instead_of_failing():
    y, p, _ = binary_cohort(n=300)
    y = y.copy()
    group = np.where(np.arange(300) < 100, "a", "b")
    y[:100] = 0

    table = subgroup_metrics({"g": group}, lambda i: binary_metrics(y[i], p[i]), 300, n_boot=20)

    assert np.isnan(table["g"]["a"]["auroc"]["value"])
    assert not np.isnan(table["g"]["b"]["auroc"]["value"])


def test_labels_must_match_the_number_of_rows():
    with pytest.raises(DataError, match="one label per row"):
        subgroup_metrics({"sex": ["F", "M"]}, lambda i: {"m": 0.0}, 3, n_boot=10)


# ----- fairness gaps ------------------------------------------------------------------------------


def test_an_underestimated_subgroup_is_flagged_for_calibration_and_an_unrelated_attribute_is_not():
    y, p, groups = binary_cohort(underestimate_men_by=0.9)

    gaps = fairness_gaps(y, p, groups, threshold=0.3, n_boot=400, seed=3)

    calibration = {(g["attribute"], g["group"]): g for g in gaps if g["measure"] == "calibration_in_the_large"}
    men = calibration[("sex", "male")]
    assert men["reference"] == "female"  # the largest group by default
    assert men["difference"] > 0.05 and men["flagged"]
    assert men["ci_low"] <= men["difference"] <= men["ci_high"]
    assert not any(g["flagged"] for g in gaps if g["attribute"] == "site")


def test_a_fair_model_raises_no_flag():
    y, p, groups = binary_cohort(underestimate_men_by=0.0, seed=5)

    gaps = fairness_gaps(y, p, groups, threshold=0.3, n_boot=400, seed=3)

    assert len(gaps) == 3 * (1 + 2)  # three measures: men vs women, two sites vs the largest site
    assert not any(g["flagged"] for g in gaps)
    assert all(g["ci_low"] < 0 < g["ci_high"] for g in gaps)


def test_a_sensitivity_gap_is_the_difference_of_the_groups_recall_at_the_threshold():
    y, p, groups = binary_cohort(n=2000, seed=2)
    p = np.where(np.asarray(groups["sex"], dtype=object) == "male", p * 0.5, p)  # men's risks pushed below 0.3

    gaps = fairness_gaps(y, p, {"sex": groups["sex"]}, threshold=0.3, n_boot=300, seed=0,
                         reference={"sex": "male"})

    sensitivity = next(g for g in gaps if g["measure"] == "sensitivity")
    men = np.asarray(groups["sex"], dtype=object) == "male"
    expected = binary_metrics(y[~men], p[~men], 0.3)["recall"] - binary_metrics(y[men], p[men], 0.3)["recall"]
    assert (sensitivity["group"], sensitivity["reference"]) == ("female", "male")
    assert sensitivity["difference"] == pytest.approx(expected)
    assert sensitivity["flagged"] and sensitivity["ci_low"] > 0


def test_gaps_are_seeded_and_skip_groups_below_the_minimum_size():
    y, p, _ = binary_cohort(n=600)
    group = np.r_[np.full(500, "big"), np.full(80, "mid"), np.full(20, "tiny")]

    first = fairness_gaps(y, p, {"g": group}, n_boot=100, seed=4)
    again = fairness_gaps(y, p, {"g": group}, n_boot=100, seed=4)

    assert first == again
    assert {g["group"] for g in first} == {"mid"}
    assert {g["n_reference"] for g in first} == {500}


def test_an_unknown_reference_group_is_a_config_error():
    y, p, groups = binary_cohort(n=300)
    with pytest.raises(ConfigError, match="nonbinary"):
        fairness_gaps(y, p, groups, n_boot=10, reference={"sex": "nonbinary"})


def test_survival_gaps_flag_a_group_where_the_model_ranks_worse():
    rng = np.random.default_rng(0)
    n = 1500
    group = rng.choice(["a", "b"], size=n)
    x = rng.normal(size=n)
    strength = np.where(group == "a", 1.0, 0.1)  # the score x predicts well in a, hardly in b
    t_event = rng.exponential(10 * np.exp(-strength * x))
    t_censor = rng.exponential(15, size=n)
    time, event = np.minimum(t_event, t_censor), (t_event <= t_censor).astype(int)
    site = rng.choice(["north", "south"], size=n)

    gaps = survival_fairness_gaps(time, event, x, {"group": group, "site": site}, n_boot=200, seed=1,
                                  reference={"group": "a"})

    by_attribute = {g["attribute"]: g for g in gaps}
    assert by_attribute["group"]["measure"] == "c_index"
    assert by_attribute["group"]["difference"] < -0.1 and by_attribute["group"]["flagged"]
    assert not by_attribute["site"]["flagged"]
