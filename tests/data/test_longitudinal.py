"""Long-format observations: from tables, visit tables and FHIR bundles; units harmonized by a versioned table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precimed.data.longitudinal import (
    LONG_COLUMNS,
    as_long,
    convert_values,
    harmonize_units,
    load_unit_table,
    loinc_mapping,
    observations_from_fhir,
    read_observations,
    wide_to_long,
)
from precimed.errors import ConfigError, DataError, SchemaError


def _obs(rows):
    return as_long(pd.DataFrame(rows, columns=list(LONG_COLUMNS)))


# ----- long format and visit tables ----------------------------------------------------------------
def test_a_visit_table_becomes_one_row_per_observed_value_with_its_unit():
    visits = pd.DataFrame({"id": [1, 1, 2], "day": [0, 180, 0], "bili": [1.2, np.nan, 0.8],
                           "ascites": [0.0, 1.0, np.nan]})

    long = wide_to_long(visits, id_column="id", time_column="day", variables=["bili", "ascites"],
                        units={"bili": "mg/dL"})

    assert list(long.columns) == list(LONG_COLUMNS)
    assert len(long) == 4  # two missing cells are not observations
    bili = long[long.variable == "bili"]
    assert bili[["patient_id", "time", "value"]].values.tolist() == [[1, 0.0, 1.2], [2, 0.0, 0.8]]
    assert set(bili.unit) == {"mg/dL"} and long[long.variable == "ascites"].unit.isna().all()


def test_an_observation_without_a_time_is_refused_with_its_row():
    frame = pd.DataFrame({"patient_id": ["a", "b"], "time": [1.0, np.nan], "variable": ["hr", "hr"],
                          "value": [70, 80]})
    with pytest.raises(SchemaError, match=r"without 'time'.*rows \[1\]"):
        as_long(frame)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_files_are_read_through_read_table(tmp_path, suffix):
    frame = pd.DataFrame({"subject": ["p1", "p1", "p2"], "time": [0.0, 2.5, 1.0], "variable": ["glucose"] * 3,
                          "value": [5.4, 7.1, 99.0], "unit": ["mmol/L", "mmol/L", "mg/dL"]})
    path = tmp_path / f"obs{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, index=False)

    long = read_observations(path, columns={"subject": "patient_id"})

    assert long.patient_id.tolist() == ["p1", "p1", "p2"] and long.value.tolist() == [5.4, 7.1, 99.0]


# ----- units -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variable", "value", "unit", "target", "expected"), [
    ("glucose", 5.55, "mmol/L", "mg/dL", 100.0),
    ("creatinine", 88.4, "µmol/L", "mg/dL", 1.0),
    ("creatinine", 1.0, "mg/dL", "umol/L", 88.4),
    ("bilirubin", 17.1, "μmol/L", "mg/dL", 1.0),
    ("albumin", 35.0, "g/L", "g/dL", 3.5),
    ("cholesterol", 5.17, "mmol/L", "mg/dL", 200.0),
    ("body_temperature", 98.6, "[degF]", "Cel", 37.0),
    ("hba1c", 53.0, "mmol/mol", "%", 7.0),
    ("alt", 1.0, "ukat/L", "U/L", 60.0),
    ("platelets", 250.0, "10^9/L", "10*3/uL", 250.0),
])
def test_common_labs_convert_to_the_declared_unit(variable, value, unit, target, expected):
    out = harmonize_units(_obs([("p1", 0.0, variable, value, unit)]), units={variable: target})
    assert out.value.iloc[0] == pytest.approx(expected, rel=2e-3)
    assert out.unit.iloc[0] == target


def test_a_variable_named_differently_is_converted_through_its_declared_analyte():
    obs = _obs([("p1", 0.0, "bili", 17.104, "umol/L"), ("p1", 1.0, "bili", 2.0, "mg/dL")])
    out = harmonize_units(obs, units={"bili": "mg/dL"}, analytes={"bili": "bilirubin"})
    np.testing.assert_allclose(out.value, [1.0, 2.0], rtol=1e-4)


def test_an_unknown_unit_is_refused_naming_patient_variable_and_unit():
    obs = _obs([("p1", 0.0, "creatinine", 1.0, "mg/dL"), ("p7", 3.0, "creatinine", 90.0, "mg/L")])
    with pytest.raises(SchemaError, match=r"patient p7: creatinine in unit 'mg/L'") as info:
        harmonize_units(obs)
    assert info.value.column == "creatinine" and info.value.rows == ("p7",)


def test_a_lab_without_a_unit_is_refused():
    obs = _obs([("p3", 0.0, "glucose", 5.5, np.nan)])
    with pytest.raises(SchemaError, match=r"patient p3: glucose in unit nan"):
        harmonize_units(obs)


def test_a_variable_outside_the_table_in_two_units_is_refused_but_one_unit_passes():
    same = _obs([("p1", 0.0, "score", 3.0, "points"), ("p2", 0.0, "score", 4.0, "points")])
    assert harmonize_units(same).value.tolist() == [3.0, 4.0]
    mixed = _obs([("p1", 0.0, "score", 3.0, "points"), ("p2", 0.0, "score", 40.0, "percent")])
    with pytest.raises(SchemaError, match="score is recorded in several units"):
        harmonize_units(mixed)
    with pytest.raises(SchemaError, match=r"patient p2: score in unit 'percent', but it is declared in 'points'"):
        harmonize_units(mixed, units={"score": "points"})


def test_the_unit_table_is_versioned_cites_its_sources_and_round_trips_every_unit():
    table = load_unit_table()
    assert table.version and table.sources
    assert {"glucose", "creatinine", "bilirubin", "albumin", "cholesterol"} <= set(table.analytes)
    for name, analyte in table.analytes.items():
        assert analyte.sources and all(s in table.sources for s in analyte.sources), name
        for unit in analyte.labels.values():
            there = convert_values(np.array([0.5, 12.0]), unit, analyte.labels[analyte.canonical], name)
            back = convert_values(there, analyte.labels[analyte.canonical], unit, name)
            np.testing.assert_allclose(back, [0.5, 12.0], err_msg=f"{name} {unit}")


def test_a_mapping_to_an_analyte_the_table_lacks_is_a_config_error():
    with pytest.raises(ConfigError, match="not in unit table"):
        harmonize_units(_obs([("p1", 0.0, "x", 1.0, "mg/dL")]), analytes={"x": "unobtainium"})


# ----- FHIR ------------------------------------------------------------------------------------------
def _observation(patient, code, value, unit, when, **extra):
    resource = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    resource.update(extra)
    return {"resource": resource}


def _bundle(*entries):
    return {"resourceType": "Bundle", "type": "collection", "entry": list(entries)}


CODES = {"1975-2": "bilirubin", "2160-0": "creatinine", "8480-6": "systolic_bp", "8462-4": "diastolic_bp"}


def test_fhir_observations_become_long_rows_timed_from_each_patients_first_observation():
    bp = {"resource": {"resourceType": "Observation", "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                       "subject": {"reference": "Patient/b"}, "effectiveDateTime": "2024-01-03T12:00:00Z",
                       "component": [
                           {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                            "valueQuantity": {"value": 141, "unit": "mm[Hg]"}},
                           {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                            "valueQuantity": {"value": 88, "unit": "mm[Hg]"}}]}}
    bundle = _bundle(
        _observation("a", "1975-2", 1.1, "mg/dL", "2024-01-01T08:00:00Z"),
        _observation("a", "1975-2", 25.0, "umol/L", "2024-01-11T08:00:00+00:00"),
        _observation("a", "2160-0", 9.9, "mg/dL", "2024-01-02", status="entered-in-error"),
        _observation("a", "718-7", 13.0, "g/dL", "2024-01-02"),  # not mapped: ignored
        _observation("b", "2160-0", 1.0, "mg/dL", "2024-01-01T12:00:00Z"),
        bp,
    )

    long = observations_from_fhir(bundle, codes=CODES)

    a = long[long.patient_id == "a"]
    assert a.variable.tolist() == ["bilirubin", "bilirubin"] and a.time.tolist() == [0.0, 10.0]
    assert a.unit.tolist() == ["mg/dL", "umol/L"]
    b = long[long.patient_id == "b"].set_index("variable")
    assert b.loc["systolic_bp", "value"] == 141 and b.loc["diastolic_bp", "time"] == 2.0
    harmonized = harmonize_units(long)
    assert harmonized[harmonized.variable == "bilirubin"].value.iloc[1] == pytest.approx(25.0 / 17.104, rel=1e-4)


def test_fhir_times_can_count_from_a_declared_reference_per_patient():
    bundle = _bundle(_observation("a", "1975-2", 1.1, "mg/dL", "2024-03-01T00:00:00Z"))
    long = observations_from_fhir(bundle, codes=CODES, reference={"a": "2024-01-01"}, time_unit="days")
    assert long.time.tolist() == [60.0]
    with pytest.raises(SchemaError, match=r"no reference date-time for patient id\(s\) \['a'\]"):
        observations_from_fhir(bundle, codes=CODES, reference={"z": "2024-01-01"})


def test_a_mapped_fhir_observation_without_a_time_or_a_number_is_refused_by_patient():
    no_time = _observation("a", "1975-2", 1.1, "mg/dL", None)
    with pytest.raises(DataError, match="patient a.*no effective time"):
        observations_from_fhir(_bundle(no_time), codes=CODES)
    text = _observation("a", "1975-2", 1.1, "mg/dL", "2024-01-01")
    del text["resource"]["valueQuantity"]
    text["resource"]["valueString"] = "high"
    with pytest.raises(DataError, match="patient a: bilirubin has valueString"):
        observations_from_fhir(_bundle(text), codes=CODES)


def test_carebundle_histories_round_trip_to_long_format_and_a_grid():
    carebundle = pytest.importorskip("carebundle")
    from precimed.preprocess.temporal import landmark_samples, resample

    bundles = [carebundle.generate_history(seed=7, index=i, visits=4, interval_days=90) for i in range(3)]
    long = harmonize_units(observations_from_fhir(bundles, codes=loinc_mapping()))

    systolic = long[long.variable == "systolic_bp"]
    assert systolic.patient_id.nunique() == 3
    assert sorted(systolic.time.unique()) == [0.0, 90.0, 180.0, 270.0]
    assert set(systolic.unit) == {"mm[Hg]"}
    grid = resample(long, landmark_samples(systolic.patient_id.unique(), 270.0), ["systolic_bp", "diastolic_bp"],
                    step=90.0, bins=4)
    assert grid.observed.all()
    first = systolic[systolic.patient_id == grid.ids[0]].value.to_numpy()
    np.testing.assert_array_equal(grid.values[0, :, 0], first)
