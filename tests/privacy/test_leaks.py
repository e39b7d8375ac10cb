"""Nothing leaks: a known identifying value appears nowhere in outputs, reports, logs or error messages."""

import json
import logging
import os

import carebundle
import pandas as pd
import pytest

from precimed.errors import ConfigError, DataError, PrecimedError
from precimed.privacy import deidentify_bundle, deidentify_dicom, deidentify_file, deidentify_path, parse_policy
from precimed.privacy import tables as tables_module

from .conftest import KEY_BYTES

SECRETS = ["Zebediah Quackenbush-Oyelaran", "Quackenbush", "MRN7744123", "617-555-0142", "zq@example.org",
           "078-05-1120", "1931-02-03"]
POLICY = {"patient_id": "mrn", "columns": {"name": "identifier", "mrn": "pseudonym", "birth_date": "date",
                                           "notes": "text", "glucose": "keep"}}


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["Zebediah Quackenbush-Oyelaran", "Ann Lee"],
        "mrn": ["MRN7744123", "MRN0000001"],
        "birth_date": ["1931-02-03", "1970-01-01"],
        "notes": ["Mr. Quackenbush (SSN 078-05-1120) asked us to call 617-555-0142 or zq@example.org.", "stable"],
        "glucose": ["5.5", "6.1"],
        "contact": ["Zebediah Quackenbush-Oyelaran, 617-555-0142", ""],
    })


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in [*SECRETS, KEY_BYTES.decode()]:
            assert secret not in text, secret


@pytest.fixture
def everything_logged(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def test_nothing_identifying_in_the_output_the_report_or_the_logs(tmp_path, key_file, write_policy, everything_logged):
    _table().to_csv(tmp_path / "in.csv", index=False)
    report = deidentify_file(tmp_path / "in.csv", tmp_path / "out.csv", write_policy(POLICY), key_file=key_file)
    _assert_clean((tmp_path / "out.csv").read_text(), report.to_json(), report.summary(), repr(report),
                  everything_logged.text)
    assert report.phi_in_text and any(s["column"] == "contact" for s in report.scans)


def test_the_key_is_never_written_beside_the_data(tmp_path, key_file, write_policy):
    _table().to_csv(tmp_path / "in.csv", index=False)
    deidentify_file(tmp_path / "in.csv", tmp_path / "out" / "t.parquet", write_policy(POLICY), key_file=key_file)
    for path in (tmp_path / "out").iterdir():
        assert KEY_BYTES not in path.read_bytes()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t.parquet"]


def test_error_messages_name_columns_and_rows_never_values(tmp_path, key_file, write_policy, key):
    messages = []
    df = _table()
    for policy in ({"columns": {"mrn": "pseudonym"}, "options": {"unlisted": "error"}},
                   {"patient_id": "nope", "columns": {"nope": "pseudonym", "birth_date": "date"}}):
        with pytest.raises(PrecimedError) as err:
            tables_module.deidentify_table(df, parse_policy(policy), key)
        messages.append(str(err.value))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("name,mrn\nZebediah Quackenbush-Oyelaran,MRN7744123,617-555-0142,extra\n")
    with pytest.raises(DataError) as err:
        deidentify_file(ragged, tmp_path / "o.csv", write_policy(POLICY), key_file=key_file)
    messages.append(str(err.value))
    bundle = json.loads(carebundle.to_json(carebundle.generate_bundle(seed=1)))
    bundle["entry"][0]["resource"]["multipleBirthInteger"] = "Zebediah Quackenbush-Oyelaran"  # not an integer
    with pytest.raises(DataError) as err:
        deidentify_bundle(bundle, parse_policy({}), key)
    messages.append(str(err.value))
    assert "multipleBirthInteger" in messages[-1]
    _assert_clean(*messages)


def test_a_failure_half_way_leaves_no_output_file(tmp_path, key_file, write_policy, monkeypatch):
    _table().to_csv(tmp_path / "in.csv", index=False)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tables_module, "redact", broken)
    with pytest.raises(RuntimeError):
        deidentify_file(tmp_path / "in.csv", tmp_path / "out.csv", write_policy(POLICY), key_file=key_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "policy.yaml"]


def test_an_output_never_overwrites_its_input(tmp_path, key_file, write_policy):
    source = tmp_path / "in.csv"
    _table().to_csv(source, index=False)
    before = source.read_bytes()
    os.link(source, tmp_path / "alias.csv")
    for target in (source, tmp_path / "." / "in.csv", tmp_path / "alias.csv"):
        with pytest.raises(ConfigError, match="never overwrites its input"):
            deidentify_path(source, target, write_policy(POLICY), key_file=key_file, overwrite=True)
    assert source.read_bytes() == before


def test_dicom_and_fhir_reports_hold_counts_only(tmp_path, key_file, everything_logged):
    from deid_data.data import get_dataset

    report = deidentify_dicom(get_dataset("humans"), tmp_path / "d", key_file=key_file)
    text = report.to_json() + everything_logged.text
    assert "SIMPSON" not in text and "00007041776" not in text
    bundle = json.loads(carebundle.to_json(carebundle.generate_bundle(seed=1)))
    _, fhir_report = deidentify_bundle(bundle, parse_policy({}), _key(key_file))
    assert "Syntheson" not in fhir_report.to_json() + everything_logged.text


def _key(key_file):
    from precimed.privacy import load_key

    return load_key(key_file)
