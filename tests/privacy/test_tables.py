import json

import numpy as np
import pandas as pd
import pytest

from precimed.errors import ConfigError, SchemaError
from precimed.privacy import (
    DateShifter,
    Pseudonymizer,
    deidentify_file,
    deidentify_path,
    deidentify_table,
    parse_policy,
)

from .conftest import ISSUE_POLICY


def _actions(report):
    return {c.column: c for c in report.columns}


def test_the_issue_policy_deidentifies_a_csv_and_reports_every_column(tmp_path, patients, key_file, write_policy):
    source, out = tmp_path / "patients.csv", tmp_path / "out" / "patients.deid.csv"
    patients.to_csv(source, index=False)

    report = deidentify_file(source, out, write_policy(ISSUE_POLICY), key_file=key_file)

    result = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(result.columns) == ["mrn", "birth_date", "zip", "age", "notes", "glucose"]   # name, contact gone
    assert result["glucose"].tolist() == ["5.4", "6.10", "NA", "7", "5.0"]                    # kept exactly
    assert result["zip"].tolist() == ["000", "021", "100", "000", "606"]                      # 036 is restricted
    assert result["age"].tolist() == ["90+", "52", "43", "90+", "68"]
    assert result["mrn"][0] == result["mrn"][3] != result["mrn"][1]                         # one patient, one pseudonym
    assert "[NAME]" in result["notes"][0] and "[PHONE]" in result["notes"][0] and "90+" in result["notes"][3]
    actions = _actions(report)
    assert actions["name"].action == "removed" and actions["name"].values_changed == 5
    assert actions["glucose"].values_changed == 0 and actions["age"].values_changed == 2
    assert actions["contact"].role == "unlisted" and actions["contact"].action.startswith("dropped")
    assert report.scans[0]["column"] == "contact" and report.scans[0]["patterns"] == {"phone": 2, "email": 1}
    assert report.counts["rows_in"] == report.counts["rows_out"] == 5
    assert report.kanonymity["quasi_identifiers"] == ["zip", "age"]


def test_dates_shift_by_the_same_patient_offset_in_every_table(patients, key):
    visits = pd.DataFrame({"mrn": ["00123", "00456", "00123"], "visit": ["2023-01-10", "2023-02-01", "2023-03-10"]})
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "visit": "date"}})

    first, _ = deidentify_table(visits, policy, key)
    again, _ = deidentify_table(visits.iloc[::-1].reset_index(drop=True), policy, key)

    shift = DateShifter(key).shift_days("00123")
    assert first["visit"][0] == (pd.Timestamp("2023-01-10") + pd.Timedelta(days=shift)).strftime("%Y-%m-%d")
    assert sorted(first["visit"]) == sorted(again["visit"])                    # any order, any run
    gap = pd.Timestamp(first["visit"][2]) - pd.Timestamp(first["visit"][0])
    assert gap == pd.Timestamp("2023-03-10") - pd.Timestamp("2023-01-10")      # interval kept exactly
    assert first["mrn"][0] == Pseudonymizer(key)("00123")                       # same pseudonym as any other table


def test_year_mode_keeps_only_the_year_and_tops_birth_dates_at_90(key):
    df = pd.DataFrame({"mrn": ["1", "2"], "birth_date": ["1925-06-01", "1980-02-02"],
                       "admit": ["2020-05-01", "2020-01-01"]})
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "birth_date": "date", "admit": "date"},
                           "options": {"dates": {"mode": "year"}}})
    out, report = deidentify_table(df, policy, key)
    assert out["admit"].tolist() == [2020, 2020]
    assert out["birth_date"].tolist() == [1930, 1980]                       # 94 at admission -> counted as 90
    assert _actions(report)["birth_date"].detail["top_coded_age_90_plus"] == 1


def test_parquet_keeps_datetime_types_and_rows_without_patient_lose_their_dates(tmp_path, key_file, write_policy):
    df = pd.DataFrame({"pid": ["a", None, "b"], "when": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]),
                       "value": [1.5, 2.5, np.nan]})
    df.to_parquet(tmp_path / "in.parquet")
    policy = write_policy({"patient_id": "pid", "columns": {"when": "date", "value": "keep"}})
    report = deidentify_file(tmp_path / "in.parquet", tmp_path / "out.parquet", policy, key_file=key_file)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert pd.api.types.is_datetime64_any_dtype(out["when"]) and out["when"].isna().tolist() == [False, True, False]
    assert _actions(report)["when"].detail == {"no_patient_id_removed": 1}
    assert _actions(report)["pid"].action.startswith("pseudonymized")       # the patient id is never kept in clear
    assert out["value"].isna().tolist() == [False, False, True]


def test_target_k_generalizes_then_suppresses_and_counts_the_rows(key):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": [str(i) for i in range(400)],
                       "age": rng.integers(20, 95, 400).astype(str),
                       "zip": rng.choice(["02134", "02139", "10001", "60614", "94110"], 400)})
    policy = parse_policy({"columns": {"id": "pseudonym", "age": "quasi", "zip": "quasi"},
                           "options": {"k": 5, "max_suppression": 0.02}})
    out, report = deidentify_table(df, policy, key)
    k = report.kanonymity
    assert k["k"] >= 5 and out.groupby(["age", "zip"]).size().min() >= 5
    assert k["suppressed_records"] == report.counts["rows_suppressed"] == 400 - len(out)
    assert k["suppressed_records"] <= 8 and k["generalization"]["age"] in ("age5", "age10", "age20")


def test_unlisted_columns_can_be_refused_or_kept_when_clean(key):
    df = pd.DataFrame({"id": ["1", "2"], "ward": ["A", "B"], "phone": ["617-555-0100", "617-555-0101"]})
    with pytest.raises(ConfigError, match=r"\['ward', 'phone'\]"):
        deidentify_table(df, parse_policy({"columns": {"id": "pseudonym"}, "options": {"unlisted": "error"}}), key)
    out, report = deidentify_table(df, parse_policy({"columns": {"id": "pseudonym"},
                                                     "options": {"unlisted": "keep_unflagged"}}), key)
    assert list(out.columns) == ["id", "ward"]


def test_a_missing_patient_id_column_is_named(key):
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "d": "date"}})
    with pytest.raises(SchemaError, match="'mrn'"):
        deidentify_table(pd.DataFrame({"d": ["2020-01-01"]}), policy, key)


def test_the_report_is_json_and_the_dispatcher_picks_the_table_handler(tmp_path, patients, key_file, write_policy):
    patients.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    report = deidentify_path(tmp_path / "p.tsv", tmp_path / "p.parquet", write_policy(ISSUE_POLICY), key_file=key_file)
    assert json.loads(report.to_json())["kind"] == "table"
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == 5
    assert "removed" in report.summary()


def test_a_birth_date_alone_is_aged_at_the_policys_reference_date(key):
    df = pd.DataFrame({"mrn": ["1", "2"], "dob": ["1925-06-01", "1980-02-02"]})
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "dob": "date"},
                           "options": {"dates": {"mode": "year", "reference_date": "2020-01-01"}}})
    out, report = deidentify_table(df, policy, key)
    assert out["dob"].tolist() == [1930, 1980]
    assert _actions(report)["dob"].detail == {"top_coded_age_90_plus": 1}
