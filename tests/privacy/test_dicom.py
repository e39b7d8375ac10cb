import re
import shutil
from pathlib import Path

import pydicom
import pytest
from deid_data.data import get_dataset
from pydicom.datadict import keyword_for_tag

from precimed.privacy import DateShifter, Pseudonymizer, deidentify_dicom, deidentify_path
from precimed.privacy.dicom import basic_profile, profile_source

HUMANS = Path(get_dataset("humans"))        # two CT slices of one patient and study, with private tags


@pytest.fixture(scope="module")
def originals():
    return {p.name: pydicom.dcmread(p) for p in sorted(HUMANS.glob("*.dcm"))}


def _identifying(ds) -> list[bytes]:
    values = [str(ds.PatientName).split("^")[0], ds.PatientID, ds.PatientBirthDate, ds.StudyInstanceUID,
              ds.SOPInstanceUID, ds.get("InstitutionName", ""), ds.get("AccessionNumber", "")]
    return [v.encode() for v in values if v]


def test_the_action_table_has_its_source_and_the_standard_keywords():
    table = basic_profile()
    assert "PS3.15" in profile_source()["source"] and len(table) > 100
    assert all(keyword_for_tag(tag) == attr.keyword for tag, attr in table.items())
    assert table[0x00100010].action == "Z" and table[0x0020000D].action == "U" and table[0x00081030].action == "X"


def test_headers_lose_phi_and_private_tags_and_uids_stay_consistent(tmp_path, key_file, originals):
    report = deidentify_dicom(HUMANS, tmp_path / "out", key_file=key_file)
    out = {p.name: pydicom.dcmread(p) for p in sorted((tmp_path / "out").glob("*.dcm"))}
    assert set(out) == set(originals) and report.counts["files"] == 2
    for name, ds in out.items():
        raw = (tmp_path / "out" / name).read_bytes()
        for value in _identifying(originals[name]):
            assert value not in raw
        assert not any(e.tag.is_private for e in ds.iterall())
        assert ds.PatientName == "" and ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID == Pseudonymizer(_key(key_file))(originals[name].PatientID)
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert re.fullmatch(r"2\.25\.[1-9]\d*", uid) and len(uid) <= 64
        assert ds.SOPClassUID == originals[name].SOPClassUID           # class UIDs are kept
        assert ds.pixel_array.shape == originals[name].pixel_array.shape
    first, second = out.values()
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        same_before = originals["ctbrain1.dcm"].get(uid) == originals["ctbrain2.dcm"].get(uid)
        assert (first.get(uid) == second.get(uid)) == same_before, uid   # equal stays equal, distinct distinct
    assert report.counts["private_tags_removed"] > 0


def test_distinct_studies_stay_distinct_and_one_patient_keeps_one_pseudonym(tmp_path, key_file):
    cookies = Path(get_dataset("dicom-cookies"))
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("image1.dcm", "image2.dcm"):
        shutil.copy(cookies / name, folder / name)
    deidentify_dicom(folder, tmp_path / "out", key_file=key_file)
    a, b = (pydicom.dcmread(tmp_path / "out" / n) for n in ("image1.dcm", "image2.dcm"))
    assert a.StudyInstanceUID != b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.PatientID == b.PatientID != "cookie-47"


def _key(key_file):
    from precimed.privacy import load_key

    return load_key(key_file)


def test_the_same_key_gives_the_same_uids_across_runs(tmp_path, key_file):
    source = tmp_path / "one.dcm"
    shutil.copy(HUMANS / "ctbrain1.dcm", source)
    deidentify_path(source, tmp_path / "a.dcm", key_file=key_file)
    deidentify_path(source, tmp_path / "b.dcm", key_file=key_file)
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()


def test_shift_mode_moves_dates_by_the_patients_shift(tmp_path, key_file, write_policy, originals):
    policy = write_policy({"options": {"dicom": {"dates": "shift"}}})
    deidentify_dicom(HUMANS / "ctbrain1.dcm", tmp_path / "s.dcm", policy, key_file=key_file)
    ds, before = pydicom.dcmread(tmp_path / "s.dcm"), originals["ctbrain1.dcm"]
    shift = DateShifter(_key(key_file)).shift_days(before.PatientID)
    from datetime import datetime, timedelta

    expected = (datetime.strptime(before.StudyDate, "%Y%m%d") + timedelta(days=shift)).strftime("%Y%m%d")
    assert ds.StudyDate == expected and ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_folders_skip_non_dicom_files_and_warn_about_pixel_data(tmp_path, key_file):
    report = deidentify_dicom(get_dataset("ultrasounds"), tmp_path / "us", key_file=key_file)
    assert report.counts["non_dicom_files_skipped"] == 2 and report.counts["files"] == 3
    assert any("pixel data was NOT de-identified" in w for w in report.warnings)
