"""Issue 11, findings 3, 5 and part of 9: structured identifiers, ages over 89, and output paths.

Attacks: a table whose identifier columns are written in every common spelling (and repeated in its
notes in another case or format), an age column with one text value that used to stop the capping,
and `precimed deidentify` pointed at its own input, key or policy.
"""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest
import yaml

from precimed.errors import DataError
from precimed.privacy import KeyMaterial, parse_policy
from precimed.privacy.scan import scan_values
from precimed.privacy.tables import deidentify_table

KEY_BYTES = b"test-key-0123456789abcdef-0123456789"
KEY = KeyMaterial(KEY_BYTES, "test")


def _one_line(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]


# ----- finding 5: ages over 89 always generalised --------------------------------------------------------------------
def test_one_text_value_no_longer_stops_an_age_column_from_being_capped():
    df = pd.DataFrame({"mrn": list("123456"), "age": ["92", "105", "110", "ninety-two", "52", "unknown"]})
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "age": "quasi"}})
    out, report = deidentify_table(df, policy, KEY)
    assert out["age"].tolist()[:5] == ["90+", "90+", "90+", "90+", "52"] and pd.isna(out["age"][5])
    action = next(c for c in report.columns if c.column == "age")
    assert action.values_changed == 5 and action.detail == {"unparseable_removed": 1}


@pytest.mark.parametrize("written", ["92 years", "92y", "Ninety two years old", "one hundred and one", ">89", "95.5"])
def test_ages_written_any_way_are_capped(written):
    df = pd.DataFrame({"mrn": ["1", "2"], "age": [written, "40"]})
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "age": "quasi"}})
    assert deidentify_table(df, policy, KEY)[0]["age"].tolist() == ["90+", "40"]


def test_an_unreadable_age_fails_loudly_when_the_policy_says_so():
    df = pd.DataFrame({"mrn": ["1", "2"], "patient_age": ["70", "very old"]})
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "patient_age": "quasi"},
                           "options": {"unparseable": "fail"}})
    with pytest.raises(DataError) as caught:
        deidentify_table(df, policy, KEY, source="t.csv")
    message = str(caught.value)
    assert "'patient_age'" in message and "data row 2" in message and "very old" not in message


# ----- finding 3: structured identifiers in any common spelling ------------------------------------------------------
@pytest.mark.parametrize(("pattern", "value"), [
    ("ssn", "123 45 6789"), ("ssn", "123.45.6789"), ("phone", "617/555/0123"), ("phone", "(617)555-0123 x12"),
    ("phone", "6175550123"), ("email", "maria at example dot com"), ("email", "M.LOPEZ@EXAMPLE.ORG"),
    ("name", "lopez, maria"), ("name", "NGUYỄN THỊ MAI"), ("name", "oluwaseun adeyemi"), ("mrn", "MRN 00452318"),
])
def test_an_unlisted_identifier_column_is_flagged_in_any_spelling(pattern, value):
    scan = scan_values(pd.Series([value, value], name="contact"))
    assert scan.patterns.get(pattern) == 2, scan.patterns


def test_a_rows_identifiers_are_removed_from_its_notes_whatever_the_spelling():
    df = pd.DataFrame({
        "mrn": ["00481516", "00999"],
        "name": ["Nguyễn Thị Mai", "Ottilie Quist"],
        "phone": ["(617) 555-0142", "413-555-0155"],
        "email": ["mai.nguyen@example.org", "oquist@example.com"],
        "note": ["NGUYEN, MAI called from 617 555 0142 (mrn 481516); mail mai dot nguyen at example dot org",
                 "ottilie QUIST emailed OQUIST@EXAMPLE.COM from 4135550155"],
    })
    policy = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "name": "identifier",
                                                           "phone": "identifier", "email": "identifier",
                                                           "note": "text"}})
    out, _ = deidentify_table(df, policy, KEY)
    joined = " ".join(out["note"]).lower()
    for secret in ("nguyen", "mai", "0142", "481516", "ottilie", "quist", "0155"):
        pattern = secret if secret.isdigit() else rf"\b{secret}\b"   # "mai" inside "email" is not a leak
        assert not re.search(pattern, joined), (secret, joined)


# ----- part of finding 9: output paths -----------------------------------------------------------------------------
@pytest.fixture
def deid_files(tmp_path):
    data = tmp_path / "patients.csv"
    data.write_text("mrn,age\n1,95\n2,40\n")
    key = tmp_path / "deid.key"
    key.write_bytes(KEY_BYTES + b"\n")
    os.chmod(key, 0o600)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "age": "quasi"}}))
    return data, key, policy


@pytest.mark.parametrize(("flag", "target", "named"), [
    ("--report", "data", "input"), ("--report", "key", "key file"), ("--report", "policy", "policy"),
    ("--out", "key", "key file"), ("--out", "policy", "policy"), ("--report", "out", "--out"),
])
def test_an_output_naming_the_input_key_or_policy_is_refused_and_nothing_changes(run_cli, tmp_path, deid_files,
                                                                                 flag, target, named):
    data, key, policy = deid_files
    out = tmp_path / "out.csv"
    paths = {"data": data, "key": key, "policy": policy, "out": out}
    before = {p: p.read_bytes() for p in (data, key, policy)}
    args = ["deidentify", data, "--policy", policy, "--key-file", key, "--out", out, "--report", tmp_path / "r.json"]
    args[args.index(flag) + 1] = paths[target]
    line = _one_line(*run_cli(*args)[::2])
    assert named in line and flag in line
    assert {p: p.read_bytes() for p in (data, key, policy)} == before
    assert not (tmp_path / "r.json").exists() and (target == "out" or not out.exists())


def test_a_symlink_to_the_input_is_the_input(run_cli, tmp_path, deid_files):
    data, key, policy = deid_files
    (tmp_path / "alias.json").symlink_to(data)  # a report path that is the input under another name
    before = data.read_bytes()
    line = _one_line(*run_cli("deidentify", data, "--policy", policy, "--key-file", key, "--out",
                              tmp_path / "out.csv", "--report", tmp_path / "alias.json")[::2])
    assert "same file as the input" in line and data.read_bytes() == before


def test_an_unknown_notes_mode_is_one_line_and_exit_2(run_cli, tmp_path, deid_files):
    data, key, policy = deid_files
    line = _one_line(*run_cli("deidentify", data, "--policy", policy, "--key-file", key, "--out",
                              tmp_path / "out.csv", "--notes-mode", "lenient")[::2])
    assert "--notes-mode" in line and "strict" in line and "allowlist" in line


def test_the_allowlist_notes_mode_runs_from_the_command_line(run_cli, tmp_path, deid_files):
    data, key, policy = deid_files
    data.write_text("mrn,note\n1,Zorblatt Quexley visited today\n")
    policy.write_text(yaml.safe_dump({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "note": "text"}}))
    out = tmp_path / "out.csv"
    code, _, err = run_cli("deidentify", data, "--policy", policy, "--key-file", key, "--out", out,
                           "--notes-mode", "allowlist")
    assert code == 0, err
    note = pd.read_csv(out, dtype=str)["note"][0]
    assert "Zorblatt" not in note and "Quexley" not in note and "visited today" in note
