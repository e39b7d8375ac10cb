"""Finding 13, NEWS2: ``on_oxygen`` as text or 0/1 in the vectorized scorer, and a missing consciousness.

The vectorized scorer reads a whole column at once, so it has its own code for every way a file can
spell "on oxygen". Each test spells it another way, on SpO2 scale 2 at 97% (where oxygen moves the SpO2
part from 0 to 3), and asserts that every row scores exactly as the scalar scorer scores it. A missing
consciousness must stay missing (a lower bound, never scored as alert).
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from precimed.errors import ConfigError, SchemaError, ValueRangeError
from precimed.monitoring import LEVELS, PARAMETERS, load_news2_bands, score_news2, score_news2_frame
from precimed.monitoring.news2 import News2Table, parse_vitals, result_from_parts, vitals_parts

#: Scale 2 at 97%: 0 points on air, 3 on oxygen; everything else normal.
BASE = {"resp_rate": 16, "spo2": 97, "spo2_scale": 2, "systolic_bp": 125, "pulse": 72, "consciousness": "A",
        "temperature": 36.8}
LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}


def frame_with_oxygen(column: pd.Series | list) -> pd.DataFrame:
    """One row per on_oxygen value, the rest of the vitals as BASE."""
    n = len(column)
    df = pd.DataFrame({k: [v] * n for k, v in BASE.items()})
    df["on_oxygen"] = column if isinstance(column, pd.Series) else pd.Series(column, dtype=object)
    df["patient_id"] = [f"P{i}" for i in range(n)]
    return df


def assert_rows_match_the_scalar_scorer(df: pd.DataFrame) -> pd.DataFrame:
    """Every row of score_news2_frame(df) equals score_news2 on that row's record."""
    out = score_news2_frame(df)
    for i, record in enumerate(df.to_dict("records")):
        expected = score_news2(record)
        row = out.iloc[i]
        got = {p: (None if pd.isna(row[f"{p}_points"]) else int(row[f"{p}_points"])) for p in PARAMETERS}
        assert got == expected.parts, (i, record["on_oxygen"])
        assert (row["news2"], row["level"], bool(row["complete"])) == (expected.total, expected.level,
                                                                        expected.complete)
    return out


TEXT = ["yes", "no", "true", "false", "YES", " No ", "True", "FALSE", "y", "n", "1", "0", "oxygen", "air", "O2"]
TEXT_OXYGEN = [2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2]


def test_on_oxygen_as_text_scores_like_the_scalar_scorer():
    out = assert_rows_match_the_scalar_scorer(frame_with_oxygen(TEXT))

    assert out["on_oxygen_points"].tolist() == TEXT_OXYGEN
    assert out["spo2_points"].tolist() == [3 if x else 0 for x in TEXT_OXYGEN]   # the scale-2 oxygen column


@pytest.mark.parametrize("column", [
    pd.Series([1, 0, 1], dtype="int64"),
    pd.Series([1.0, 0.0, np.nan], dtype="float64"),
    pd.Series([1, 0, None], dtype="Int64"),
    pd.Series(["yes", "no", None], dtype="string"),
    pd.Series(["yes", "no", "yes"], dtype="category"),
    pd.Series([True, "no", 1, 0.0, None], dtype=object),
    pd.Series(["true", "", "nan"], dtype=object),
], ids=["int", "float-nan", "Int64", "string", "category", "mixed-object", "blank-text"])
def test_on_oxygen_as_0_1_or_any_column_type_scores_like_the_scalar_scorer(column):
    out = assert_rows_match_the_scalar_scorer(frame_with_oxygen(column))

    missing = column.isna() | column.astype(str).str.strip().isin(["", "nan"])
    assert out["on_oxygen_points"].isna().tolist() == missing.tolist()


def test_unknown_oxygen_on_scale_2_at_97_percent_leaves_spo2_missing_in_both_scorers():
    """Above 92% on scale 2 the SpO2 part depends on oxygen: unknown must not be scored as air."""
    out = assert_rows_match_the_scalar_scorer(frame_with_oxygen([None, "", np.nan]))

    assert out["spo2_points"].isna().all() and out["on_oxygen_points"].isna().all()
    assert not out["complete"].any()


@pytest.mark.parametrize("bad", ["maybe", "2", "1.0", 2, 0.5, -1])
def test_on_oxygen_that_is_neither_true_nor_false_is_refused_by_both_scorers_naming_the_patient(bad):
    df = frame_with_oxygen(["yes", bad, "no"])

    with pytest.raises(ValueRangeError, match=r"^on_oxygen: 1 value\(s\) are neither true \(oxygen\) nor "
                                              r"false \(air\).*patient id\(s\) \['P1'\]") as err:
        score_news2_frame(df)
    assert err.value.column == "on_oxygen" and list(err.value.rows) == ["P1"]
    with pytest.raises(ValueRangeError, match=r"^patient 'P1': on_oxygen=.* must be true \(oxygen\) or false"):
        score_news2({**BASE, "on_oxygen": bad, "patient_id": "P1"})


def test_a_column_of_0_1_numbers_other_than_0_and_1_is_refused():
    df = frame_with_oxygen(pd.Series([0, 1, 3], dtype="int64"))

    with pytest.raises(ValueRangeError, match=r"on_oxygen: 1 value\(s\).*\['P2'\]"):
        score_news2_frame(df)


SICK = {"resp_rate": 22, "spo2": 95, "spo2_scale": 1, "on_oxygen": False, "systolic_bp": 105, "pulse": 95,
        "temperature": 36.8}  # 2 + 1 + 0 + 1 + 1 + 0 = 5 without consciousness


@pytest.mark.parametrize("absent", ["key-absent", None, float("nan"), "", "  ", pd.NA])
def test_a_missing_consciousness_is_missing_not_alert_in_the_scalar_scorer(absent):
    record = dict(SICK) if isinstance(absent, str) and absent == "key-absent" else {**SICK, "consciousness": absent}

    r = score_news2(record)

    assert r.parts["consciousness"] is None
    assert r.missing == ["consciousness"] and r.complete is False
    assert (r.total, r.level, r.single_param_3) == (5, "medium", False)


@pytest.mark.parametrize("acvpu", ["A", "C", "V", "P", "U"])
def test_the_level_without_consciousness_is_a_lower_bound_of_the_level_with_it(acvpu):
    without = score_news2(SICK)
    with_it = score_news2({**SICK, "consciousness": acvpu})

    assert with_it.complete and with_it.total == without.total + with_it.parts["consciousness"]
    assert LEVEL_RANK[without.level] <= LEVEL_RANK[with_it.level]
    assert with_it.level == ("medium" if acvpu == "A" else "high")


def test_a_missing_consciousness_scores_the_same_in_the_vectorized_scorer():
    df = pd.DataFrame([{**SICK, "consciousness": v} for v in (None, math.nan, "", "A", "v")])

    out = assert_rows_match_the_scalar_scorer(df)

    assert out["consciousness_points"].isna().tolist() == [True, True, True, False, False]
    assert out["n_missing"].tolist() == [1, 1, 1, 0, 0]
    assert out["level"].tolist() == ["medium", "medium", "medium", "medium", "high"]


@pytest.mark.parametrize("bad", [1, 0.0, "alert", "X"])
def test_a_consciousness_that_is_not_acvpu_is_refused_not_treated_as_missing(bad):
    with pytest.raises(ValueRangeError, match=r"consciousness=.* must be one of A, C \(new confusion\), V, P, U"):
        score_news2({**SICK, "consciousness": bad})


# ------------------------------------------------------------------------------------------------------------
# The chart file: loaded from a path it must equal the shipped chart field by field, and each kind of broken
# file is refused with its own one-line message (the mutation run showed these checks could change unseen).

SHIPPED = resources.files("precimed.monitoring").joinpath("news2.yaml")


def raw_chart() -> dict:
    """The shipped news2.yaml as plain data, read without precimed's loader."""
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def write_chart(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "news2.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_chart_loaded_from_a_path_matches_the_yaml_field_by_field(tmp_path):
    raw = raw_chart()
    path = write_chart(tmp_path, raw)

    t = load_news2_bands(path)

    assert (t.name, t.version, t.file_version, t.path) == ("NEWS2", "2017-12", 1, str(path))
    assert t.citation == raw["source"]["citation"]
    assert t.charts == {k: raw["source"][k] for k in ("scoring", "thresholds", "response")}
    assert t.source == f"{t.citation} ({t.charts['scoring']}; {t.charts['thresholds']}; {t.charts['response']})"
    params = raw["parameters"]
    assert t.labels == {"resp_rate": "Respiration rate", "spo2": "SpO2", "on_oxygen": "Air or oxygen?",
                        "systolic_bp": params["systolic_bp"]["label"], "pulse": params["pulse"]["label"],
                        "consciousness": "Consciousness", "temperature": params["temperature"]["label"]}
    assert (t.oxygen_points, t.air_points) == (2, 0)
    assert t.consciousness_points == {"A": 0, "C": 3, "V": 3, "P": 3, "U": 3}
    assert t.valid == {k: (float(v["min"]), float(v["max"])) for k, v in raw["validation"].items()}
    for name, bands in t.bands.items():
        spec = params[name]
        assert (bands.label, bands.unit, bands.resolution) == (spec["label"], spec["unit"], spec["resolution"])
        assert bands.edges == tuple(b["max"] + spec["resolution"] / 2 for b in spec["bands"][:-1]), name
        assert bands.points == tuple(b["points"] for b in spec["bands"])
        assert bands.printed == tuple((b.get("min"), b.get("max")) for b in spec["bands"])
    assert [(r.min_total, r.single_points, r.name, r.text) for r in t.levels] == [
        (lv.get("min_total"), lv.get("single_parameter_points"), lv["level"], lv["response"]) for lv in raw["levels"]]
    assert [(r.min_total, r.single_points, r.name, r.text, r.frequency, r.interval_hours) for r in t.responses] == [
        (r.get("min_total"), r.get("single_parameter_points"), r["when"], "; ".join(r["response"]), r["frequency"],
         (r["interval_hours"]["min"], r["interval_hours"]["max"])) for r in raw["clinical_response"]]


@pytest.mark.parametrize(("value", "expected"), [(35.0, 3), (35.04, 3), (35.05, 1), (36.05, 0), (38.05, 1)])
def test_a_chart_loaded_from_a_path_scores_temperatures_between_edges_like_the_shipped_one(tmp_path, value,
                                                                                             expected):
    table = load_news2_bands(write_chart(tmp_path, raw_chart()))

    assert score_news2({**BASE, "on_oxygen": False, "temperature": value}, table).parts["temperature"] == expected


def _set(path: tuple, value):
    def edit(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


_DELETE = object()
RR = ("parameters", "resp_rate", "bands")
PARAMS_NEEDED = ("['consciousness', 'on_oxygen', 'pulse', 'resp_rate', 'spo2_scale_1', 'spo2_scale_2_air', "
                 "'spo2_scale_2_oxygen', 'systolic_bp', 'temperature']")

BROKEN = [
    ("first-band-min", _set(RR + (0, "min"), 0), "resp_rate: the first band must have no 'min' and the last no 'max'"),
    ("last-band-max", _set(RR + (4, "max"), 80), "resp_rate: the first band must have no 'min' and the last no 'max'"),
    ("min-above-max", _set(RR + (1,), {"min": 9, "max": 8, "points": 1}), "resp_rate band 2: min 9.0 > max 8.0"),
    ("inner-without-max", _set(RR + (1,), {"min": 9, "points": 1}),
     "resp_rate: inner bands need both 'min' and 'max' (band 2)"),
    ("gap-before-last", _set(RR + (4, "min"), 26),
     "resp_rate: band 5 starts at 26.0 but band 4 ends at 24.0; with resolution 1.0 it must start at 25"),
    ("both-conditions", _set(("levels", 0, "single_parameter_points"), 3),
     "levels row 1 sets both min_total and single_parameter_points"),
    ("no-condition-before-last", _set(("levels", 2, "single_parameter_points"), _DELETE),
     "levels row 3 has no condition; only the last row may apply always"),
    ("interval-reversed", _set(("clinical_response", 1, "interval_hours"), {"min": 2, "max": 1}),
     "clinical_response row 2: need 0 <= interval_hours.min <= max"),
    ("last-level-needs-1", _set(("levels", 3, "min_total"), 1), "the last levels row must apply to every score"),
    ("last-level-single", _set(("levels", 3, "single_parameter_points"), 3),
     "the last levels row must apply to every score"),
    ("last-response-needs-1", _set(("clinical_response", 4, "min_total"), 1),
     "the last clinical_response row must apply to every score"),
    ("parameter-missing", _set(("parameters", "pulse"), _DELETE),
     f"parameters must be exactly {PARAMS_NEEDED}; found ['consciousness', 'on_oxygen', 'resp_rate', "
     "'spo2_scale_1', 'spo2_scale_2_air', 'spo2_scale_2_oxygen', 'systolic_bp', 'temperature']"),
    ("banded-as-category", _set(("parameters", "resp_rate"), {"label": "RR", "categories": {"fast": 3}}),
     "resp_rate needs 'bands'"),
    ("oxygen-categories", _set(("parameters", "on_oxygen", "categories"), {"air": 0, "o2": 2}),
     "on_oxygen needs categories 'air' and 'oxygen'"),
    ("oxygen-as-bands", _set(("parameters", "on_oxygen"),
                             {"label": "O2", "unit": "", "resolution": 1, "bands": [{"points": 2}]}),
     "on_oxygen needs categories 'air' and 'oxygen'"),
    ("consciousness-without-u", _set(("parameters", "consciousness", "categories"), {"A": 0, "C": 3, "V": 3, "P": 3}),
     "consciousness needs categories ['A', 'C', 'V', 'P', 'U']"),
    ("consciousness-as-bands", _set(("parameters", "consciousness"),
                                    {"label": "C", "unit": "", "resolution": 1, "bands": [{"points": 3}]}),
     "consciousness needs categories ['A', 'C', 'V', 'P', 'U']"),
    ("level-twice", _set(("levels", 1, "level"), "high"),
     "levels must be exactly ['low', 'low-medium', 'medium', 'high']"),
    ("validation-missing", _set(("validation", "pulse"), _DELETE),
     "validation must give a range for each of ['resp_rate', 'spo2', 'systolic_bp', 'pulse', 'temperature']"),
]


@pytest.mark.parametrize(("edit", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_kind_of_broken_chart_is_refused_with_its_own_message(tmp_path, edit, message):
    data = raw_chart()
    edit(data)
    path = write_chart(tmp_path, data)

    with pytest.raises(ConfigError) as err:
        load_news2_bands(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_schema_error_in_the_chart_names_its_dotted_location_and_the_count(tmp_path):
    data = raw_chart()
    data["levels"][0]["level"] = "severe"
    data["parameters"]["pulse"]["bands"][0]["points"] = 4
    path = write_chart(tmp_path, data)

    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: parameters\.pulse\.[^ ]*bands\.0\.points: "
                                          r".*\(\d+ problem\(s\)\)$"):
        load_news2_bands(path)


def test_a_one_value_band_is_legal_and_an_unreadable_chart_names_its_path(tmp_path):
    data = raw_chart()
    data["parameters"]["resp_rate"]["bands"][1:3] = [{"min": 9, "max": 9, "points": 1},
                                                    {"min": 10, "max": 20, "points": 0}]
    table = load_news2_bands(write_chart(tmp_path, data))
    assert [score_news2({**BASE, "on_oxygen": False, "resp_rate": r}, table).parts["resp_rate"]
            for r in (8, 9, 10)] == [3, 1, 0]
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(missing))}: cannot read the NEWS2 table: "):
        load_news2_bands(missing)


def edited_chart(tmp_path: Path) -> News2Table:
    """A chart whose low-medium row fires on any single point and whose pulse range stops at 200."""
    data = raw_chart()
    data["levels"][2]["single_parameter_points"] = 1
    data["clinical_response"][2]["single_parameter_points"] = 1
    data["validation"]["pulse"]["max"] = 200
    return load_news2_bands(write_chart(tmp_path, data))


def test_an_edited_chart_passed_in_decides_levels_and_ranges_in_both_scorers(tmp_path):
    table = edited_chart(tmp_path)
    record = {**BASE, "on_oxygen": False, "pulse": 95}                 # pulse 91-110: 1 point, total 1

    assert score_news2(record, table).level == "low-medium"
    assert score_news2(record).level == "low"
    assert result_from_parts(vitals_parts(parse_vitals(record, table), table), table).level == "low-medium"
    out = score_news2_frame(pd.DataFrame([record, {**record, "pulse": math.nan, "temperature": 36.0}]), table)
    assert out["level"].tolist() == ["low-medium", "low-medium"]
    with pytest.raises(ValueRangeError, match=r"pulse=250 is impossible; it must lie in \[0, 200\]"):
        score_news2({**record, "pulse": 250}, table)
    with pytest.raises(ValueRangeError, match=r"pulse=250 is impossible"):
        parse_vitals({**record, "pulse": 250}, table)


def test_with_an_edited_chart_missing_parts_never_count_toward_a_single_parameter_trigger(tmp_path):
    table = edited_chart(tmp_path)
    df = pd.DataFrame([{**BASE, "on_oxygen": False, "pulse": math.nan}])   # every present part scores 0

    out = score_news2_frame(df, table)

    assert out["level"].tolist() == ["low"] and score_news2(df.iloc[0].to_dict(), table).level == "low"


# ------------------------------------------------------------------------------------------------------------
# Scalar inputs: the exact message, column and rows of each refusal, and the value types read as numbers.


@pytest.mark.parametrize(("field", "value", "patient", "error", "message"), [
    ("pulse", "fast", "P1", SchemaError, "patient 'P1': pulse='fast' is not a number"),
    ("pulse", "fast", None, SchemaError, "observation: pulse='fast' is not a number"),
    ("pulse", [80], "P1", SchemaError, "patient 'P1': pulse=[80] is not a number"),
    ("pulse", [80], None, SchemaError, "observation: pulse=[80] is not a number"),
    ("pulse", True, "P1", ValueRangeError, "patient 'P1': pulse=True must be a number, not true/false"),
    ("pulse", True, None, ValueRangeError, "observation: pulse=True must be a number, not true/false"),
    ("consciousness", "Z", None, ValueRangeError,
     "observation: consciousness='Z' must be one of A, C (new confusion), V, P, U"),
    ("temperature", 50, "P1", ValueRangeError,
     "patient 'P1': temperature=50 is impossible; it must lie in [25, 45] °C. Wrong unit or typo? Correct the record."),
    ("spo2", 101, None, ValueRangeError,
     "observation: spo2=101 is impossible; it must lie in [0, 100] %. Wrong unit or typo? Correct the record."),
    ("pulse", 301, "P1", ValueRangeError,
     "patient 'P1': pulse=301 is impossible; it must lie in [0, 300]. Wrong unit or typo? Correct the record."),
    ("on_oxygen", "maybe", None, ValueRangeError,
     "observation: on_oxygen='maybe' must be true (oxygen) or false (air)"),
    ("consciousness", "Z", "P1", ValueRangeError,
     "patient 'P1': consciousness='Z' must be one of A, C (new confusion), V, P, U"),
    ("spo2_scale", 3, "P1", ValueRangeError, "patient 'P1': spo2_scale=3 must be 1 or 2 (scale 2 only when "
                                             "prescribed for hypercapnic respiratory failure)"),
    ("spo2_scale", "abc", None, ValueRangeError, "observation: spo2_scale='abc' must be 1 or 2 (scale 2 only when "
                                                 "prescribed for hypercapnic respiratory failure)"),
    ("spo2_scale", True, None, ValueRangeError, "observation: spo2_scale=True must be 1 or 2 (scale 2 only when "
                                                "prescribed for hypercapnic respiratory failure)"),
])
def test_each_refused_scalar_value_gives_its_exact_message_column_and_rows(field, value, patient, error, message):
    record = {**BASE, "on_oxygen": False, field: value}
    if patient is not None:
        record["patient_id"] = patient

    with pytest.raises(error) as err:
        score_news2(record)
    assert str(err.value) == message
    assert err.value.column == field
    assert err.value.rows == ((patient,) if patient is not None else ())


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("pulse", np.int64(80), 0), ("pulse", np.float32(120.0), 2), ("pulse", np.float32("nan"), None),
    ("pulse", "nan", None), ("pulse", " 95 ", 1),
    ("on_oxygen", np.True_, 2), ("on_oxygen", np.False_, 0), ("on_oxygen", "null", None), ("on_oxygen", "NULL", None),
])
def test_numpy_and_text_values_score_as_their_numbers(field, value, expected):
    assert score_news2({**BASE, "on_oxygen": False, field: value}).parts[field] == expected


@pytest.mark.parametrize(("scale", "points"), [("", 3), ("  ", 3), ("2", 0), (" 2 ", 0), (2.0, 0), (np.int64(2), 0),
                                                (math.nan, 3), ("NaN", 3), ("nan", 3), (None, 3), (1, 3)])
def test_spo2_scale_blank_or_nan_is_scale_1_and_2_in_any_spelling_is_scale_2(scale, points):
    """At 90% on air scale 1 gives 3 points and scale 2 gives 0: the scale read decides it."""
    record = {**BASE, "spo2": 90, "on_oxygen": False, "spo2_scale": scale}

    assert score_news2(record).parts["spo2"] == points
    assert score_news2_frame(pd.DataFrame([record]))["spo2_points"].tolist() == [points]


# ------------------------------------------------------------------------------------------------------------
# Vectorized inputs: messages naming patients or index rows, and every column spelling of the scale.


def frame(n: int = 3, **columns) -> pd.DataFrame:
    df = pd.DataFrame({**{k: [v] * n for k, v in BASE.items()}, "on_oxygen": [False] * n,
                       "patient_id": [f"P{i}" for i in range(n)]})
    for name, values in columns.items():
        df[name] = values
    return df


@pytest.mark.parametrize(("columns", "error", "message", "rows"), [
    ({"pulse": pd.Series([True, False, True], dtype=bool)}, ValueRangeError,
     "pulse: 3 value(s) are true/false, not numbers, e.g. [True, False, True] at patient id(s) ['P0', 'P1', 'P2']",
     ("P0", "P1", "P2")),
    ({"spo2_scale": pd.Series([True, False, True], dtype=bool)}, ValueRangeError,
     "spo2_scale: 3 value(s) are true/false, not 1 or 2, e.g. [True, False, True] at patient id(s) "
     "['P0', 'P1', 'P2']", ("P0", "P1", "P2")),
    ({"spo2_scale": pd.Series(["1", "x", "3"], dtype=object)}, ValueRangeError,
     "spo2_scale: 2 value(s) are neither 1 nor 2, e.g. ['x', '3'] at patient id(s) ['P1', 'P2']", ("P1", "P2")),
    ({"on_oxygen": pd.Series([0, 1, 3])}, ValueRangeError,
     "on_oxygen: 1 value(s) are neither true (oxygen) nor false (air), e.g. [3] at patient id(s) ['P2']", ("P2",)),
    ({"on_oxygen": pd.Series(["x", "yes", "z"], dtype=object)}, ValueRangeError,
     "on_oxygen: 2 value(s) are neither true (oxygen) nor false (air), e.g. ['x', 'z'] at patient id(s) "
     "['P0', 'P2']", ("P0", "P2")),
    ({"consciousness": pd.Series(["A", "Q", "a"], dtype=object)}, ValueRangeError,
     "consciousness: 1 value(s) are not one of A, C (new confusion), V, P, U, e.g. ['Q'] at patient id(s) ['P1']",
     ("P1",)),
    ({"pulse": pd.Series([70, "fast", 80], dtype=object)}, SchemaError,
     "score_news2_frame: column 'pulse' must be numeric, but 1 value(s) are not, e.g. ['fast'] at patient id(s) "
     "['P1']", ("P1",)),
], ids=["bool-number", "bool-scale", "text-scale", "oxygen-3", "oxygen-text", "acvpu", "text-number"])
def test_each_refused_column_gives_its_exact_message_and_patients(columns, error, message, rows):
    with pytest.raises(error) as err:
        score_news2_frame(frame(**columns))
    assert str(err.value) == message
    assert tuple(err.value.rows) == rows


def test_without_a_patient_id_column_the_index_labels_name_the_rows_and_at_most_five_are_kept():
    df = frame(7, spo2=[104.0] * 7).drop(columns="patient_id").set_index(pd.Index([10, 11, 12, 13, 14, 15, 16]))

    with pytest.raises(ValueRangeError) as err:
        score_news2_frame(df)
    assert str(err.value).endswith("at row(s) [10, 11, 12, 13, 14, ...]") or "at row(s) [10, 11, 12" in str(err.value)
    assert str(err.value).startswith("spo2: 7 value(s) are impossible (must lie in [0, 100]), e.g. ")
    assert list(err.value.rows) == [10, 11, 12, 13, 14]


def test_a_missing_vital_column_is_named_with_the_scorer():
    with pytest.raises(SchemaError) as err:
        score_news2_frame(frame().drop(columns=["pulse", "temperature"]))
    assert str(err.value).startswith("score_news2_frame: missing column(s) ['pulse', 'temperature']; ")


@pytest.mark.parametrize("scale", [
    pd.Series(["", " ", "2", None, "1", np.nan, "NaN", " nan "], dtype=object),
    pd.Series([np.nan, 2.0, 1.0, np.nan, 2.0, 1.0]),
    pd.Series([None, 2, 1, None, 2, None], dtype="Int64"),
], ids=["text", "float", "Int64"])
def test_every_spelling_of_the_scale_column_scores_like_the_scalar_scorer(scale):
    df = frame(len(scale), spo2=[90] * len(scale), spo2_scale=scale)

    out = assert_rows_match_the_scalar_scorer(df)

    scale_2 = [not pd.isna(s) and str(s).strip() in ("2", "2.0") for s in scale]
    assert out["spo2_points"].tolist() == [0 if two else 3 for two in scale_2]


def test_a_frame_without_a_scale_column_is_scale_1_and_totals_are_integers():
    df = frame(2, spo2=[90, 97]).drop(columns="spo2_scale")

    out = assert_rows_match_the_scalar_scorer(df)

    assert out["spo2_points"].tolist() == [3, 0]
    assert out["news2"].dtype == np.int64 and out["n_missing"].dtype == np.int64


def test_an_empty_frame_has_every_output_column():
    out = score_news2_frame(frame(0))

    assert list(out.columns) == [f"{p}_points" for p in PARAMETERS] + [
        "news2", "n_missing", "complete", "single_param_3", "level", "response", "frequency"]
    assert len(out) == 0
