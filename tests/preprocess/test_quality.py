import json

import numpy as np
import pandas as pd
import pytest

from precimed.preprocess import format_quality, quality_report

FEATURES = [
    {"name": "age", "kind": "numeric", "unit": "years", "range": [18, 100]},
    {"name": "sodium", "kind": "numeric", "unit": "mmol/L", "range": [100, 180]},
    {"name": "sex", "kind": "binary", "positive": ["M"]},
    {"name": "size", "kind": "categorical", "categories": ["small", "large"]},
    {"name": "apoe", "kind": "genotype", "alleles": ["E2", "E3", "E4"]},
]


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "age": [45.0, 430.0, 70.0, np.nan, 52.0, 52.0],
            "sodium": [140.0, 138.0, np.nan, np.nan, 141.0, 141.0],
            "sex": ["M", "F", "F", "M", np.nan, np.nan],
            "size": ["small", "huge", "large", "small", "small", "small"],
            "apoe": ["E3/E4", "./.", "E3E5", "e4e4", "E3/E3", "E3/E3"],
        },
        index=pd.Index([428, 430, 431, 432, 433, 433], name="patient_id"),
    )


def test_report_is_plain_json(frame):
    report = quality_report(frame, FEATURES, source="cohort.csv")
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_report_counts_missing_values_for_every_declared_feature(frame):
    report = quality_report(frame, FEATURES, source="cohort.csv")

    assert report["rows"] == 6
    assert report["missing"]["sodium"] == {"count": 2, "fraction": pytest.approx(2 / 6)}
    assert report["missing"]["age"]["count"] == 1  # the out-of-range 430 is reported separately
    assert report["missing"]["apoe"]["count"] == 1  # "./." is a missing call
    assert report["missing"]["size"]["count"] == 0


def test_out_of_range_values_are_listed_with_bounds_unit_ids_and_values(frame):
    report = quality_report(frame, FEATURES, source="cohort.csv")

    assert report["out_of_range"] == {
        "age": {"count": 1, "low": 18.0, "high": 100.0, "unit": "years", "ids": [430], "values": [430.0]}
    }
    assert "age: 1 value outside [18, 100] years set to missing (patient 430: 430.0)" in report["notes"]


def test_duplicate_rows_and_duplicate_ids_are_counted(frame):
    report = quality_report(frame, FEATURES, source="cohort.csv")

    assert report["duplicate_rows"] == {"count": 1, "ids": [433]}
    assert report["duplicate_ids"] == {"count": 1, "ids": [433]}


def test_a_repeated_id_with_different_values_is_not_a_duplicate_row():
    frame = pd.DataFrame({"age": [50.0, 60.0]}, index=[7, 7])
    report = quality_report(frame, FEATURES[:1], source="x")
    assert report["duplicate_rows"]["count"] == 0
    assert report["duplicate_ids"] == {"count": 1, "ids": [7]}


def test_unknown_categories_and_unreadable_genotypes_are_reported_as_invalid(frame):
    report = quality_report(frame, FEATURES, source="cohort.csv")

    assert report["invalid"]["size"]["ids"] == [430]
    assert report["invalid"]["size"]["values"] == ["huge"]
    assert report["invalid"]["apoe"]["values"] == ["E3E5"]
    assert any(note.startswith("apoe: 1 value not a genotype") for note in report["notes"])


def test_non_numeric_values_in_a_numeric_column_are_reported_not_raised():
    frame = pd.DataFrame({"age": ["50", "n/a", 60]}, index=[1, 2, 3])
    report = quality_report(frame, FEATURES[:1], source="x")
    assert report["invalid"]["age"] == {"count": 1, "reason": "not a number", "ids": [2], "values": ["n/a"]}


def test_a_binary_feature_without_positive_and_unreadable_values_is_flagged():
    frame = pd.DataFrame({"sex": ["male", "female", "male"]})
    report = quality_report(frame, [{"name": "sex", "kind": "binary"}], source="x")
    assert report["invalid"]["sex"]["count"] == 3
    assert "declare `positive`" in report["invalid"]["sex"]["reason"]


def test_an_absent_feature_column_is_reported_as_entirely_missing(frame):
    report = quality_report(frame.drop(columns=["sodium"]), FEATURES, source="cohort.csv")
    assert report["missing"]["sodium"] == {"count": 6, "fraction": 1.0, "absent": True}
    assert "sodium: column not found in cohort.csv" in report["notes"]


def test_the_report_changes_nothing(frame):
    before = frame.copy()
    quality_report(frame, FEATURES, source="cohort.csv")
    pd.testing.assert_frame_equal(frame, before)


def test_format_quality_gives_a_short_readable_summary(frame):
    lines = format_quality(quality_report(frame, FEATURES, source="cohort.csv"))

    assert lines[0] == "cohort.csv: 6 rows, 5 features"
    assert "duplicates: 1 repeated row(s), 1 repeated patient_id(s)" in lines
    assert "out of range (set to missing): age 1" in lines
    assert any(line.startswith("missing: 4 of 5 feature(s) incomplete; most: sex 33.3%") for line in lines)
    assert "- age: 1 value outside [18, 100] years set to missing (patient 430: 430.0)" in lines


def test_format_quality_caps_the_notes():
    frame = pd.DataFrame({f"x{i}": [np.nan, 1.0] for i in range(15)})
    features = [{"name": f"x{i}"} for i in range(15)]
    lines = format_quality(quality_report(frame, features, source="x"), max_notes=3)
    assert lines[-1] == "- ... 12 more note(s) in the report"


def test_duplicates_are_explained_in_a_sentence(frame):
    notes = quality_report(frame, FEATURES, source="cohort.csv")["notes"]
    assert any(note.startswith("1 row repeats an earlier row exactly (patient 433)") for note in notes)
    assert any(note.startswith("1 row reuses an earlier patient_id (patient 433)") for note in notes)
