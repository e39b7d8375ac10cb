import json
from datetime import date

import carebundle
import pandas as pd
import pytest

from precimed.errors import ConfigError, DataError
from precimed.privacy import (
    DateShifter,
    Policy,
    Pseudonymizer,
    deidentify_bundle,
    deidentify_path,
    deidentify_table,
    parse_policy,
)
from precimed.privacy.fhir import validate_bundle


def _bundle(seed=1, **kw) -> dict:
    return json.loads(carebundle.to_json(carebundle.generate_bundle(seed=seed, **kw)))


def _patient(bundle):
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def _identifying_strings(bundle):
    out = set()
    for entry in bundle["entry"]:
        res = entry["resource"]
        for name in res.get("name", []) if res["resourceType"] in ("Patient", "Practitioner") else []:
            out |= {name.get("family", "")} | set(name.get("given", []))
        out |= {i["value"] for i in res.get("identifier", [])}
        out.add(entry["fullUrl"].removeprefix("urn:uuid:"))
    out.add(_patient(bundle)["birthDate"])
    return {s for s in out if s}


def test_names_identifiers_narratives_and_references_are_gone_and_the_output_validates(key):
    source = _bundle()
    validate_bundle(source)
    out, report = deidentify_bundle(source, Policy(), key)
    text = json.dumps(out)
    for value in _identifying_strings(source):
        assert value not in text
    assert "div" not in text and '"name"' not in text
    assert _patient(out)["identifier"] == [{"system": "urn:precimed:pseudonym",
                                            "value": Pseudonymizer(key)(_patient(source)["identifier"][0]["value"])}]
    assert report.counts["narratives_removed"] == len(source["entry"])
    assert report.counts["references_rewritten"] > len(source["entry"])
    patient_url = out["entry"][0]["fullUrl"]
    subjects = {e["resource"]["subject"]["reference"] for e in out["entry"] if "subject" in e["resource"]}
    assert subjects == {patient_url}                                  # references still resolve


def test_every_date_of_a_patient_moves_by_the_same_shift_as_in_the_tables(key):
    source = _bundle(seed=2)
    out, report = deidentify_bundle(source, Policy(), key)
    mrn = _patient(source)["identifier"][0]["value"]
    shift = DateShifter(key).shift_days(mrn)
    assert date.fromisoformat(_patient(out)["birthDate"]) - date.fromisoformat(_patient(source)["birthDate"]) \
        == pd.Timedelta(days=shift)
    for before, after in zip(source["entry"], out["entry"], strict=True):
        for field in ("effectiveDateTime", "onsetDateTime", "authoredOn"):
            if field in before["resource"]:
                moved = pd.Timestamp(after["resource"][field]) - pd.Timestamp(before["resource"][field])
                assert moved == pd.Timedelta(days=shift), field
    table, _ = deidentify_table(pd.DataFrame({"mrn": [mrn], "seen": ["2026-01-01"]}),
                                parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "seen": "date"}}),
                                key)
    encounter = next(e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Encounter")
    assert encounter["period"]["start"].startswith(table["seen"][0])  # same day in table and bundle


def test_year_mode_and_ages_over_89(key):
    source = _bundle(seed=5, age_range=(95, 99))
    out, report = deidentify_bundle(source, parse_policy({"options": {"dates": {"mode": "year"}}}), key)
    assert _patient(out)["birthDate"] == "1936"                      # 2026 - 90: the "90 or older" category
    assert report.counts["birth_dates_top_coded_90_plus"] == 1
    encounter = next(e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Encounter")
    assert encounter["period"] == {"start": "2026", "end": "2026"}


def test_free_text_notes_are_redacted_and_authors_removed(key):
    source = _bundle(seed=1)
    obs = next(e["resource"] for e in source["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["note"] = [{"authorString": "Nurse Ratched", "time": "2026-01-01T10:00:00Z",
                    "text": "Called daughter Maria Quackenbush at (617) 555-0123 on 12/30/2025."}]
    out, report = deidentify_bundle(source, Policy(), key)
    text = json.dumps(out)
    assert "Quackenbush" not in text and "555-0123" not in text and "Ratched" not in text
    assert report.phi_in_text["NAME"] == 1 and report.phi_in_text["PHONE"] == 1


def test_the_same_key_links_bundles_and_a_new_key_does_not(key):
    from precimed.privacy import KeyMaterial

    source = _bundle(seed=7)
    first, _ = deidentify_bundle(source, Policy(), key)
    again, _ = deidentify_bundle(source, Policy(), key)
    other, _ = deidentify_bundle(source, Policy(), KeyMaterial(b"a-different-key-0123456789", "other"))
    assert first == again and first["entry"][0]["fullUrl"] != other["entry"][0]["fullUrl"]


def test_a_non_bundle_is_refused_and_files_are_written_atomically(tmp_path, key_file, write_policy):
    (tmp_path / "p.json").write_text(json.dumps({"resourceType": "Patient"}))
    with pytest.raises(DataError, match="not a FHIR Bundle"):
        deidentify_path(tmp_path / "p.json", tmp_path / "o.json", key_file=key_file)
    assert not (tmp_path / "o.json").exists()
    (tmp_path / "b.json").write_text(carebundle.to_json(carebundle.generate_bundle(seed=1)))
    report = deidentify_path(tmp_path / "b.json", tmp_path / "o.json", write_policy({}), key_file=key_file)
    assert report.kind == "fhir" and json.loads((tmp_path / "o.json").read_text())["resourceType"] == "Bundle"
    with pytest.raises(ConfigError, match="already exists"):
        deidentify_path(tmp_path / "b.json", tmp_path / "o.json", key_file=key_file)


def test_in_a_bundle_of_several_patients_each_resource_takes_its_own_patients_shift(key):
    first, second = _bundle(seed=1, index=0), _bundle(seed=1, index=1)
    merged = {"resourceType": "Bundle", "type": "collection",
              "entry": [{k: v for k, v in e.items() if k != "request"} for e in first["entry"] + second["entry"]]}
    out, report = deidentify_bundle(merged, Policy(), key)
    assert report.counts["patients"] == 2 and report.counts["unlinked_resources"] == 2   # the two practitioners
    shifter = DateShifter(key)
    for source in (first, second):
        shift = shifter.shift_days(_patient(source)["identifier"][0]["value"])
        n = len(source["entry"])
        offset = 0 if source is first else len(first["entry"])
        for before, after in zip(source["entry"], out["entry"][offset:offset + n], strict=True):
            if "effectiveDateTime" in before["resource"]:
                moved = pd.Timestamp(after["resource"]["effectiveDateTime"]) - pd.Timestamp(
                    before["resource"]["effectiveDateTime"])
                assert moved == pd.Timedelta(days=shift)
