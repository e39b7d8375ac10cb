import numpy as np
import pandas as pd
import pytest

from precimed.errors import DataError
from precimed.evaluate.table_one import table_one

FEATURES = [
    {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
    {"name": "crp", "kind": "numeric", "unit": "mg/L"},
    {"name": "smoker", "kind": "binary", "positive": ["yes"]},
    {"name": "stage", "kind": "categorical", "categories": ["I", "II", "III"]},
]


def cohort(seed: int, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(60, 10, n).round(),
        "crp": rng.lognormal(1.5, 1.0, n),  # right-skewed
        "smoker": rng.choice(np.array(["yes", "no"], dtype=object), n),
        "stage": rng.choice(np.array(["I", "II", "III"], dtype=object), n),
    }).astype({"smoker": object, "stage": object})
    y = (rng.random(n) < 0.3).astype(float)
    return frame, y


def rows_by_label(table: dict) -> dict[str, list[str]]:
    return {r["label"].strip(): r["cells"] for r in table["rows"]}


def test_columns_are_each_split_overall_then_by_outcome():
    train, y_train = cohort(0, 200)
    test, y_test = cohort(1, 100)

    t1 = table_one(train, test, y_train, y_test, FEATURES, task="binary")

    cols = [(c["split"], c["group"], c["n"]) for c in t1["columns"]]
    assert cols == [
        ("Training", "overall", 200), ("Training", "without outcome (0)", int((y_train == 0).sum())),
        ("Training", "with outcome (1)", int(y_train.sum())),
        ("Test", "overall", 100), ("Test", "without outcome (0)", int((y_test == 0).sum())),
        ("Test", "with outcome (1)", int(y_test.sum())),
    ]
    assert all(len(r["cells"]) == 6 for r in t1["rows"])


def test_numeric_features_show_mean_sd_or_median_iqr_when_skewed():
    train, y = cohort(2, 300)

    rows = rows_by_label(table_one(train, None, y, None, FEATURES, task="binary"))

    age = train["age"]
    assert rows["age (years), mean (SD)"][0] == f"{age.mean():.1f} ({age.std():.1f})"
    q1, med, q3 = np.percentile(train["crp"], [25, 50, 75])
    assert rows["crp (mg/L), median [IQR]"][0] == f"{med:.2f} [{q1:.2f}, {q3:.2f}]"


def test_binary_and_categorical_features_show_counts_and_percentages_of_known_values():
    train, y = cohort(3, 250)
    train.loc[train.index[:10], "stage"] = np.nan

    t1 = table_one(train, None, y, None, FEATURES, task="binary")
    rows = rows_by_label(t1)

    smokers = int((train["smoker"] == "yes").sum())
    assert rows["smoker = yes, n (%)"][0] == f"{smokers} ({100 * smokers / 250:.1f}%)"
    known = train["stage"].notna()
    n_ii = int((train["stage"] == "II").sum())
    assert rows["II"][0] == f"{n_ii} ({100 * n_ii / known.sum():.1f}%)"
    stage_at = [r["label"] for r in t1["rows"]].index("stage, n (%)")
    assert [r["label"].strip() for r in t1["rows"][stage_at + 1:stage_at + 5]] == ["I", "II", "III", "missing, n (%)"]
    assert t1["rows"][stage_at + 4]["cells"][0] == "10 (4.0%)"


def test_a_missing_line_appears_only_for_features_with_missing_values():
    train, y = cohort(4, 100)
    train.loc[train.index[:5], "crp"] = np.nan

    t1 = table_one(train, None, y, None, FEATURES, task="binary")

    labels = [r["label"].strip() for r in t1["rows"]]
    assert labels.count("missing, n (%)") == 1
    assert labels[labels.index("crp (mg/L), median [IQR]") + 1] == "missing, n (%)"


def test_values_outside_the_declared_range_are_counted_and_left_out_of_the_summary():
    train, y = cohort(5, 100)
    train.loc[train.index[0], "age"] = 999.0  # a data-entry placeholder

    rows = rows_by_label(table_one(train, None, y, None, FEATURES, task="binary"))

    kept = train["age"].iloc[1:]
    assert rows["age (years), mean (SD)"][0] == f"{kept.mean():.1f} ({kept.std():.1f})"
    assert rows["outside [18, 100] (treated as missing), n (%)"][0] == "1 (1.0%)"


def test_survival_tables_split_by_event_and_report_follow_up():
    train, _ = cohort(6, 120)
    rng = np.random.default_rng(6)
    y = np.column_stack([rng.exponential(300, 120).round() + 1, rng.random(120) < 0.4])

    t1 = table_one(train, None, y, None, FEATURES, task="survival", time_unit="days")

    assert [c["group"] for c in t1["columns"]] == ["overall", "censored", "event"]
    rows = rows_by_label(t1)
    events = int(y[:, 1].sum())
    assert rows["events, n (%)"][0] == f"{events} ({100 * events / 120:.1f}%)"
    assert "time to event or censoring (days), median [IQR]" in rows


def test_multiclass_tables_have_a_column_per_class_and_regression_only_overall():
    train, _ = cohort(7, 90)
    codes = np.repeat([0.0, 1.0, 2.0], 30)

    multi = table_one(train, None, codes, None, FEATURES, task="multiclass", classes=["a", "b", "c"])
    regression = table_one(train, None, np.linspace(0, 1, 90), None, FEATURES, task="regression")

    assert [c["group"] for c in multi["columns"]] == ["overall", "a", "b", "c"]
    assert rows_by_label(multi)["class b, n (%)"][:3] == ["30 (33.3%)", "0 (0.0%)", "30 (100.0%)"]
    assert [c["group"] for c in regression["columns"]] == ["overall"]
    assert "outcome, mean (SD)" in rows_by_label(regression)


def test_a_bundle_evaluated_on_new_data_describes_the_test_cohort_alone():
    test, y = cohort(9, 80)

    t1 = table_one(None, test, None, y, FEATURES, task="binary")

    assert {c["split"] for c in t1["columns"]} == {"Test"}
    assert t1["columns"][0]["n"] == 80


def test_labels_of_the_wrong_shape_are_refused_with_the_split_named():
    train, y = cohort(8, 50)
    with pytest.raises(DataError, match="Training"):
        table_one(train, None, y[:10], None, FEATURES, task="binary")
