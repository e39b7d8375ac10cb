"""NEWS2 against the RCP chart: every band edge, the triggers, missing values, the vectorized scorer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from precimed.errors import ConfigError, DataError, SchemaError, ValueRangeError
from precimed.monitoring import PARAMETERS, load_news2_bands, score_news2, score_news2_frame

NORMAL = {"resp_rate": 16, "spo2": 97, "spo2_scale": 1, "on_oxygen": False, "systolic_bp": 125, "pulse": 72,
          "consciousness": "A", "temperature": 36.8}


def points(field: str, value, **extra) -> int | None:
    part = "on_oxygen" if field == "on_oxygen" else field
    return score_news2({**NORMAL, **extra, field: value}).parts[part]


# The chart, typed in here independently of news2.yaml: (value, points) at both edges of every band.
RESP_RATE = [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)]
SPO2_SCALE_1 = [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_SCALE_2_AIR = [(70, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 0), (97, 0),
                    (100, 0)]
SPO2_SCALE_2_OXYGEN = [(70, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 1), (94, 1),
                       (95, 2), (96, 2), (97, 3), (100, 3)]
SYSTOLIC = [(50, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (260, 3)]
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3),
         (180, 3)]
TEMPERATURE = [(25.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2),
               (42.0, 2), (45.0, 2)]


@pytest.mark.parametrize(("value", "expected"), RESP_RATE)
def test_respiration_rate_band_edges(value, expected):
    assert points("resp_rate", value) == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE_1)
def test_spo2_scale_1_band_edges(value, expected):
    assert points("spo2", value, spo2_scale=1) == expected
    assert points("spo2", value, spo2_scale=1, on_oxygen=True) == expected  # scale 1 ignores oxygen


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE_2_AIR)
def test_spo2_scale_2_on_air_band_edges(value, expected):
    assert points("spo2", value, spo2_scale=2, on_oxygen=False) == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE_2_OXYGEN)
def test_spo2_scale_2_on_oxygen_band_edges(value, expected):
    assert points("spo2", value, spo2_scale=2, on_oxygen=True) == expected


@pytest.mark.parametrize(("value", "expected"), SYSTOLIC)
def test_systolic_bp_band_edges(value, expected):
    assert points("systolic_bp", value) == expected


@pytest.mark.parametrize(("value", "expected"), PULSE)
def test_pulse_band_edges(value, expected):
    assert points("pulse", value) == expected


@pytest.mark.parametrize(("value", "expected"), TEMPERATURE)
def test_temperature_band_edges(value, expected):
    assert points("temperature", value) == expected


@pytest.mark.parametrize(("value", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3), (" a ", 0),
                                                 ("c", 3)])
def test_consciousness_alert_scores_0_and_new_confusion_or_any_vpu_scores_3(value, expected):
    assert points("consciousness", value) == expected


@pytest.mark.parametrize(("value", "expected"), [(True, 2), (False, 0), ("oxygen", 2), ("air", 0), (1, 2), (0, 0)])
def test_oxygen_scores_2_and_air_0(value, expected):
    assert points("on_oxygen", value) == expected


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("resp_rate", 8.49, 3), ("resp_rate", 8.5, 1), ("resp_rate", 11.4, 1), ("resp_rate", 11.5, 0),
    ("resp_rate", 20.5, 2), ("resp_rate", 24.49, 2), ("resp_rate", 24.5, 3),
    ("spo2", 91.49, 3), ("spo2", 91.5, 2), ("spo2", 95.5, 0),
    ("systolic_bp", 90.4, 3), ("systolic_bp", 90.5, 2), ("systolic_bp", 110.5, 0), ("systolic_bp", 219.5, 3),
    ("pulse", 40.5, 1), ("pulse", 90.49, 0), ("pulse", 90.5, 1), ("pulse", 130.5, 3),
    ("temperature", 35.04, 3), ("temperature", 35.05, 1), ("temperature", 36.04, 1), ("temperature", 36.05, 0),
    ("temperature", 38.04, 0), ("temperature", 38.05, 1), ("temperature", 39.05, 2),
])
def test_values_between_printed_edges_score_as_if_charted_at_the_charts_resolution(field, value, expected):
    assert points(field, value) == expected


def test_spo2_scale_2_between_edges_uses_the_oxygen_column_after_rounding():
    assert points("spo2", 92.4, spo2_scale=2, on_oxygen=True) == 0
    assert points("spo2", 92.5, spo2_scale=2, on_oxygen=True) == 1
    assert points("spo2", 96.5, spo2_scale=2, on_oxygen=True) == 3


def test_all_normal_vitals_score_0_low_with_routine_monitoring():
    r = score_news2(NORMAL)
    assert (r.total, r.level, r.complete, r.single_param_3, r.missing) == (0, "low", True, False, [])
    assert r.parts == dict.fromkeys(PARAMETERS, 0)
    assert r.frequency == "Minimum 12 hourly"
    assert "Continue routine NEWS monitoring" in r.response


def test_total_1_to_4_without_a_3_is_low_with_a_nurse_assessment():
    r = score_news2({**NORMAL, "resp_rate": 22, "pulse": 115})  # 2 + 2
    assert (r.total, r.level, r.single_param_3) == (4, "low", False)
    assert r.frequency == "Minimum 4-6 hourly"
    assert "Inform registered nurse" in r.response


def test_a_single_parameter_scoring_3_makes_a_low_total_low_medium():
    r = score_news2({**NORMAL, "resp_rate": 26})
    assert (r.total, r.level, r.single_param_3) == (3, "low-medium", True)
    assert r.frequency == "Minimum 1 hourly"
    assert "who will review and decide whether escalation of care is necessary" in r.response


def test_total_5_or_6_is_medium_even_with_a_single_3():
    five = score_news2({**NORMAL, "resp_rate": 22, "on_oxygen": True, "pulse": 95})  # 2 + 2 + 1
    six = score_news2({**NORMAL, "resp_rate": 26, "systolic_bp": 105, "pulse": 95, "temperature": 38.5})  # 3+1+1+1
    assert (five.total, five.level) == (5, "medium")
    assert (six.total, six.level, six.single_param_3) == (6, "medium", True)
    assert "urgent assessment" in six.response


def test_total_7_or_more_is_high_with_an_emergency_response():
    r = score_news2({**NORMAL, "resp_rate": 26, "systolic_bp": 88, "pulse": 95})  # 3 + 3 + 1
    assert (r.total, r.level) == (7, "high")
    assert r.frequency == "Continuous monitoring of vital signs"
    assert "critical care competencies" in r.response


def test_the_highest_possible_score_is_20():
    worst = {"resp_rate": 30, "spo2": 99, "spo2_scale": 2, "on_oxygen": True, "systolic_bp": 80, "pulse": 140,
             "consciousness": "U", "temperature": 34.0}
    assert score_news2(worst).total == 20


def test_a_missing_vital_is_reported_missing_not_scored_as_normal():
    r = score_news2({k: v for k, v in NORMAL.items() if k != "spo2"})
    assert r.parts["spo2"] is None
    assert r.missing == ["spo2"]
    assert r.complete is False


@pytest.mark.parametrize("blank", [None, float("nan"), np.nan, "", pd.NA])
def test_none_nan_and_empty_are_all_missing(blank):
    r = score_news2({**NORMAL, "pulse": blank})
    assert r.parts["pulse"] is None and "pulse" in r.missing


def test_the_level_of_an_incomplete_set_is_computed_on_what_is_present():
    r = score_news2({"resp_rate": 26})
    assert (r.total, r.level, r.complete) == (3, "low-medium", False)
    assert set(r.missing) == set(PARAMETERS) - {"resp_rate"}


def test_an_empty_observation_is_all_missing_and_total_0_but_incomplete():
    r = score_news2({})
    assert (r.total, r.complete, r.level) == (0, False, "low")
    assert r.missing == list(PARAMETERS)


def test_scale_2_spo2_of_93_or_more_with_unknown_oxygen_is_missing_but_lower_values_are_scored():
    assert points("spo2", 95, spo2_scale=2, on_oxygen=None) is None
    assert points("spo2", 92, spo2_scale=2, on_oxygen=None) == 0
    assert points("spo2", 85, spo2_scale=2, on_oxygen=None) == 2


def test_spo2_scale_defaults_to_scale_1():
    obs = {k: v for k, v in NORMAL.items() if k != "spo2_scale"}
    assert score_news2({**obs, "spo2": 90}).parts["spo2"] == 3


@pytest.mark.parametrize(("field", "value"), [
    ("spo2", 101), ("spo2", -1), ("resp_rate", -1), ("pulse", -5), ("systolic_bp", -10), ("temperature", 24.9),
    ("temperature", 45.1), ("temperature", 98.6), ("consciousness", "X"), ("consciousness", "Alert"),
    ("spo2_scale", 3), ("spo2_scale", 0), ("on_oxygen", "maybe"), ("on_oxygen", 2), ("resp_rate", True),
])
def test_impossible_values_raise_value_range_error_naming_field_and_patient(field, value):
    with pytest.raises(ValueRangeError, match=field) as info:
        score_news2({**NORMAL, "patient_id": "P-17", field: value})
    assert "P-17" in str(info.value)
    assert info.value.column == field
    assert info.value.rows == ("P-17",)


def test_text_that_is_not_a_number_is_a_schema_error():
    with pytest.raises(SchemaError, match="pulse"):
        score_news2({**NORMAL, "pulse": "fast"})


def test_numbers_given_as_text_are_read():
    assert score_news2({**NORMAL, "resp_rate": "26", "spo2_scale": "2", "on_oxygen": "true"}).parts["resp_rate"] == 3


# ----------------------------------------------------------------------------------------- the YAML file


def test_bands_carry_their_source_and_version_and_are_cached():
    t = load_news2_bands()
    assert t is load_news2_bands()
    assert "Royal College of Physicians" in t.citation and "2017" in t.citation
    assert t.version == "2017-12"
    assert "Chart 1" in t.source


def _shipped() -> dict:
    from importlib import resources

    return yaml.safe_load(resources.files("precimed.monitoring").joinpath("news2.yaml").read_text("utf-8"))


def test_a_gap_between_bands_in_the_yaml_is_refused(tmp_path):
    data = _shipped()
    data["parameters"]["pulse"]["bands"][2]["min"] = 52
    path = tmp_path / "news2.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="pulse"):
        load_news2_bands(path)


def test_an_unknown_key_in_the_yaml_is_refused(tmp_path):
    data = _shipped()
    data["parameters"]["pulse"]["colour"] = "red"
    path = tmp_path / "news2.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="colour"):
        load_news2_bands(path)


def test_an_edited_table_changes_the_score(tmp_path):
    data = _shipped()
    data["parameters"]["resp_rate"]["bands"][4]["points"] = 2
    path = tmp_path / "news2.yaml"
    path.write_text(yaml.safe_dump(data))
    assert score_news2({"resp_rate": 30}, load_news2_bands(path)).parts["resp_rate"] == 2


# -------------------------------------------------------------------------------------------- vectorized


def random_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)

    def col(low, high, decimals, p_missing=0.1):
        x = rng.uniform(low, high, n)
        x = np.where(rng.random(n) < 0.5, np.round(x, decimals), x)  # half on the chart grid, half between
        return np.where(rng.random(n) < p_missing, np.nan, x)

    oxygen = rng.choice(np.array([True, False, None], dtype=object), n, p=[0.3, 0.6, 0.1])
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "resp_rate": col(0, 40, 0), "spo2": col(75, 100, 0), "spo2_scale": rng.choice([1, 2], n, p=[0.7, 0.3]),
        "on_oxygen": pd.array(oxygen, dtype="boolean"),
        "systolic_bp": col(70, 240, 0), "pulse": col(30, 160, 0), "temperature": col(33, 41.5, 1),
        "consciousness": rng.choice(np.array(["A", "A", "A", "C", "V", "P", "U", None], dtype=object), n),
    })


def test_vectorized_scores_equal_the_scalar_function_on_many_random_rows():
    df = random_rows(4000, seed=7)
    out = score_news2_frame(df)
    for i, record in enumerate(df.to_dict("records")):
        r = score_news2(record)
        row = out.iloc[i]
        for p in PARAMETERS:
            got = row[f"{p}_points"]
            assert (None if pd.isna(got) else int(got)) == r.parts[p], (i, p, record)
        assert row["news2"] == r.total
        assert row["n_missing"] == len(r.missing)
        assert row["complete"] == r.complete
        assert row["single_param_3"] == r.single_param_3
        assert row["level"] == r.level
        assert row["response"] == r.response
        assert row["frequency"] == r.frequency


def test_vectorized_scoring_keeps_the_index_and_uses_nullable_points():
    df = random_rows(50, seed=1).set_index(np.arange(100, 150))
    out = score_news2_frame(df)
    assert list(out.index) == list(df.index)
    assert str(out["pulse_points"].dtype) == "Int8"


def test_vectorized_scoring_names_the_patients_with_impossible_values():
    df = random_rows(20, seed=2)
    df.loc[[3, 9], "spo2"] = 104.0
    with pytest.raises(ValueRangeError, match="spo2") as info:
        score_news2_frame(df)
    assert set(info.value.rows) == {"P3", "P9"}


def test_vectorized_scoring_rejects_unknown_consciousness_and_scale():
    df = random_rows(10, seed=3)
    bad = df.copy()
    bad.loc[4, "consciousness"] = "Z"
    with pytest.raises(ValueRangeError, match="consciousness"):
        score_news2_frame(bad)
    bad = df.copy()
    bad.loc[4, "spo2_scale"] = 3
    with pytest.raises(ValueRangeError, match="spo2_scale"):
        score_news2_frame(bad)


def test_vectorized_scoring_needs_every_vital_column():
    with pytest.raises(DataError, match="temperature"):
        score_news2_frame(random_rows(5, seed=4).drop(columns="temperature"))


def test_vectorized_scoring_of_an_empty_frame_is_empty():
    assert len(score_news2_frame(random_rows(0, seed=5))) == 0


def test_missing_stays_missing_in_the_vectorized_scorer():
    df = pd.DataFrame([{**NORMAL, "pulse": math.nan}])
    out = score_news2_frame(df)
    assert pd.isna(out.loc[0, "pulse_points"]) and not out.loc[0, "complete"]
