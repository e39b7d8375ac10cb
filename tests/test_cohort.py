import numpy as np
import pandas as pd
import pytest

from precimed.cohort import build_cohort, split_rows
from precimed.config import parse_config
from precimed.errors import ConfigError, DataError, SchemaError

RAW = pd.DataFrame({
    "pid": [1, 2, 3, 4, 5, 6],
    "age": [50, 61, 70, 45, 80, 66],
    "grp": ["a", "b", "a", "b", "a", "b"],
    "t": [10.0, 20.0, 5.0, 40.0, 30.0, np.nan],
    "e": [1, 0, 1, 1, 0, 1],
})


def _cfg(**task):
    return parse_config({
        "name": "t", "patient_id": "pid", "data": {"train": {"path": "x.csv"}},
        "task": task or {"kind": "survival", "time": "t", "event": "e", "horizons": [15]},
        "features": [{"name": "age", "range": [18, 100]}, {"name": "grp", "kind": "categorical"}],
    })


def test_rows_without_an_outcome_are_excluded_and_counted():
    cfg = _cfg()
    cohort = build_cohort(RAW, cfg.data.train, cfg, id_name="pid")
    assert len(cohort) == 5
    assert any("1 rows without an outcome" in n and "[6]" in n for n in cohort.notes)


def test_administrative_censoring_stops_follow_up_and_events_at_the_cut():
    cfg = _cfg(kind="survival", time="t", event="e", horizons=[15], censor_at=25)
    cohort = build_cohort(RAW, cfg.data.train, cfg, id_name="pid")
    assert cohort.y[:, 0].max() == 25
    assert cohort.y[cohort.X.index.get_loc(4), 1] == 0  # event at 40 > 25 becomes censored


def test_a_survival_cohort_with_no_events_is_refused_by_name():
    cfg = _cfg()
    with pytest.raises(DataError, match="no events in column 'e'"):
        build_cohort(RAW.assign(e=0), cfg.data.train, cfg, id_name="pid")


def test_a_non_numeric_feature_value_names_the_patient():
    cfg = _cfg()
    with pytest.raises(SchemaError, match=r"age.*'old'.*\[3\]"):
        build_cohort(RAW.assign(age=["50", "61", "old", "45", "80", "66"]), cfg.data.train, cfg, id_name="pid")


def test_a_binary_target_without_a_positive_value_asks_for_one():
    cfg = _cfg(kind="binary", target="dx")
    with pytest.raises(ConfigError, match="task.positive"):
        build_cohort(RAW.assign(dx=["yes", "no"] * 3), cfg.data.train, cfg, id_name="pid")


def test_grouped_split_never_puts_a_patient_on_both_sides():
    raw = pd.DataFrame({"pid": np.repeat(np.arange(40), 3), "age": 60.0, "grp": "a",
                        "t": 10.0, "e": np.tile([1, 0, 1], 40)})
    cfg = parse_config({
        "name": "t", "patient_id": "pid", "data": {"train": {"path": "x.csv"}},
        "task": {"kind": "survival", "time": "t", "event": "e", "horizons": [5]},
        "features": [{"name": "age"}], "split": {"kind": "grouped", "test_fraction": 0.25},
    })
    cohort = build_cohort(raw, cfg.data.train, cfg, id_name="pid")
    train, test = split_rows(cohort, cfg.split, cfg.task, seed=0)
    assert not set(cohort.X.index[train]) & set(cohort.X.index[test])
    assert len(test) == 30
