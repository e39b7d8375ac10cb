"""Finding 13, privacy: shifted dates (times of day, time zones, FHIR year-only dates, 29 February) and keys
(length bounds, equality, key-file permissions).

Dates: a shift must move every date of a patient by the same whole number of days, whatever form the
date takes, so intervals survive and no date sits unshifted beside its shifted siblings. Keys: a short
key is refused, the same key always gives the same pseudonyms, another key other ones, and a key file
that others can read or replace is reported.
"""

from __future__ import annotations

import copy
import hmac
import json
import math
import os
import pickle
import re
import stat
import uuid
from datetime import date, timedelta

import carebundle
import numpy as np
import pandas as pd
import pytest

from precimed.errors import ConfigError
from precimed.privacy import (
    DateShifter,
    KeyMaterial,
    Policy,
    Pseudonymizer,
    deidentify_bundle,
    deidentify_table,
    load_key,
    parse_policy,
)
from precimed.privacy.dates import (
    age_in_years,
    fhir_year,
    format_dates,
    parse_dates,
    shift_column,
    shift_fhir_date,
    top_coded_birth,
    years,
)
from precimed.privacy.pseudonym import MIN_KEY_BYTES, key_file_warnings, new_key_file, normalize_id

KEY = KeyMaterial(b"security-branches-key-0123456789", "test")
POLICY = parse_policy({"patient_id": "mrn", "columns": {"mrn": "pseudonym", "seen": "date"}})


def shifted_table(values: list | pd.Series, ids: list[str] | None = None) -> pd.Series:
    """The `seen` column after deidentify_table, one patient per row unless `ids` is given."""
    seen = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    df = pd.DataFrame({"mrn": ids or ["A"] * len(seen), "seen": seen})
    out, _ = deidentify_table(df, POLICY, KEY)
    return out["seen"]


def shift_of(patient: str) -> int:
    days = DateShifter(KEY).shift_days(patient)
    assert days is not None
    return days


# ------------------------------------------------------------------------------------ times of day


def test_times_of_day_survive_the_shift_to_the_second():
    out = shifted_table(["2021-03-14 08:15:30", "2021-03-14T23:59:59", "2021-03-15 00:00:00"])

    days = timedelta(days=shift_of("A"))
    expected = [(pd.Timestamp(v) + days).strftime("%Y-%m-%dT%H:%M:%S")
                for v in ("2021-03-14 08:15:30", "2021-03-14 23:59:59", "2021-03-15 00:00:00")]
    assert out.tolist() == expected


def test_a_column_with_one_time_of_day_is_written_with_times_and_intervals_intact():
    out = pd.to_datetime(shifted_table(["2021-03-14", "2021-03-16 12:00"]))

    assert out.iloc[1] - out.iloc[0] == pd.Timedelta(days=2, hours=12)
    assert out.iloc[0] == pd.Timestamp("2021-03-14") + pd.Timedelta(days=shift_of("A"))


# ------------------------------------------------------------------------------------ time zones
INSTANTS = ["2021-03-13T23:30:00-05:00", "2021-03-14T23:30:00-04:00", "2021-11-07T01:30:00-05:00"]


def test_offsets_are_read_as_instants_so_intervals_across_daylight_saving_stay_exact():
    out = pd.to_datetime(shifted_table(INSTANTS))

    truth = pd.to_datetime(pd.Series(INSTANTS), utc=True)
    assert (out.diff().iloc[1:] == truth.diff().iloc[1:]).all()     # 23 h across the spring change
    assert out.iloc[0] == pd.Timestamp("2021-03-14T04:30:00") + pd.Timedelta(days=shift_of("A"))


def test_a_time_zone_aware_column_shifts_to_the_same_instants_as_the_same_times_written_with_offsets():
    """Parquet gives a tz-aware column, CSV text with offsets: both must give one output (once: wall time)."""
    aware = pd.Series(pd.to_datetime(INSTANTS, utc=True).tz_convert("America/New_York"))

    from_aware = pd.to_datetime(shifted_table(aware))
    from_text = pd.to_datetime(shifted_table(INSTANTS))

    assert from_aware.tolist() == from_text.tolist()
    assert (from_aware.diff().iloc[1:] == pd.to_datetime(pd.Series(INSTANTS), utc=True).diff().iloc[1:]).all()


def test_parse_dates_of_a_tz_aware_column_returns_naive_utc_with_times():
    aware = pd.Series(pd.to_datetime(["2021-06-01T22:00:00"]).tz_localize("Europe/Berlin"))

    parsed, bad, with_time = parse_dates(aware)

    assert parsed.tolist() == [pd.Timestamp("2021-06-01T20:00:00")] and not bad.any() and with_time


def test_fhir_date_times_keep_their_offset_and_local_time_of_day():
    assert shift_fhir_date("2021-03-14T23:30:00-05:00", 3) == "2021-03-17T23:30:00-05:00"
    assert shift_fhir_date("2021-03-14T23:30:00.125+05:30", -1) == "2021-03-13T23:30:00.125+05:30"
    assert shift_fhir_date("2021-03-14T00:00:00Z", -14) == "2021-02-28T00:00:00Z"


# ------------------------------------------------------------------------------------ FHIR year-only dates


@pytest.mark.parametrize("days", [-365, -200, -1, 1, 200, 364, 365])
def test_fhir_year_only_and_year_month_dates_keep_their_precision(days):
    """A year or year-month is its first day, shifted, then cut back to the same precision."""
    first = date(2021, 3, 1) + timedelta(days=days)
    jan1 = date(2021, 1, 1) + timedelta(days=days)

    assert shift_fhir_date("2021", days) == f"{jan1.year:04d}"
    assert shift_fhir_date("2021-03", days) == f"{first.year:04d}-{first.month:02d}"
    assert re.fullmatch(r"\d{4}", shift_fhir_date("2021", days))


def fhir_bundle_with(birth_date: str, seen: str) -> dict:
    """A generated bundle whose patient has `birth_date` and whose first Observation is on `seen`."""
    bundle = json.loads(carebundle.to_json(carebundle.generate_bundle(seed=3)))
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Patient":
            res["birthDate"] = birth_date
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    obs["effectiveDateTime"] = seen
    for key in ("effectivePeriod", "issued"):
        obs.pop(key, None)
    return bundle


def deidentified_birth_date_and_shift(birth_date: str, seen: str = "2021-01-01") -> tuple[str, int]:
    """The de-identified birthDate and the patient's shift read off the Observation's full date."""
    source = fhir_bundle_with(birth_date, seen)
    obs_index = next(i for i, e in enumerate(source["entry"]) if e["resource"]["resourceType"] == "Observation")
    out, _ = deidentify_bundle(copy.deepcopy(source), Policy(), KEY)
    patient = next(e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Patient")
    new_seen = date.fromisoformat(out["entry"][obs_index]["resource"]["effectiveDateTime"][:10])
    return patient["birthDate"], (new_seen - date.fromisoformat(seen[:10])).days


@pytest.mark.parametrize("birth_date", ["1970", "1970-06", "1970-06-15"])
def test_a_fhir_birth_date_of_any_precision_moves_with_the_patients_other_dates(birth_date):
    new, days = deidentified_birth_date_and_shift(birth_date)

    assert days != 0
    assert new == shift_fhir_date(birth_date, days)
    assert len(new) == len(birth_date)


def test_a_year_only_birth_over_89_is_top_coded_to_exactly_90_at_the_latest_date():
    """A year is read as its 1 January (the oldest the patient can be): 1940 at 2030-01-01 is 90, so 90+."""
    new, days = deidentified_birth_date_and_shift("1940", seen="2030-01-01")
    latest = date(2030, 1, 1) + timedelta(days=days)

    assert len(new) == 4  # still a year: top-coding never adds precision the record did not have
    assert age_in_years(date(int(new), 1, 1), latest) >= 90  # read as its 1 January: 90 or over
    month, days = deidentified_birth_date_and_shift("1939-06", seen="2030-01-01")
    assert len(month) == 7 and age_in_years(date.fromisoformat(month + "-01"),
                                            date(2030, 1, 1) + timedelta(days=days)) >= 90
    kept, days = deidentified_birth_date_and_shift("1941", seen="2030-01-01")
    assert kept == shift_fhir_date("1941", days)                   # 89 at most: not top-coded, still a year


# ------------------------------------------------------------------------------------ 29 February


@pytest.mark.parametrize(("days", "expected"), [(365, "2025-02-28"), (366, "2025-03-01"), (-366, "2023-02-28"),
                                                (-365, "2023-03-01"), (1, "2024-03-01"), (-1, "2024-02-28")])
def test_29_february_shifted_into_a_non_leap_year_is_a_real_day_in_fhir_and_tables(days, expected):
    assert shift_fhir_date("2024-02-29", days) == expected
    parsed, bad, with_time = parse_dates(pd.Series(["2024-02-29"]))
    shifted = format_dates(shift_column(parsed, pd.Series([float(days)])), with_time=with_time)
    assert shifted.tolist() == [expected] and not bad.any()


def test_29_february_keeps_its_interval_to_the_patients_other_dates():
    out = pd.to_datetime(shifted_table(["2024-02-28", "2024-02-29", "2024-03-01", "2023-03-01"]))

    assert out.diff().iloc[1:].dt.days.tolist() == [1, 1, -366]


def test_29_february_that_does_not_exist_is_unparseable_not_moved_to_1_march():
    parsed, bad, _ = parse_dates(pd.Series(["2023-02-29", "2024-02-29"]))

    assert bad.tolist() == [True, False] and pd.isna(parsed.iloc[0])


def test_a_reference_on_29_february_top_codes_birth_to_exactly_90_years():
    born = top_coded_birth(date(2024, 2, 29))

    assert born == date(1934, 2, 28)
    assert age_in_years(born, date(2024, 2, 29)) == 90
    assert age_in_years(date(2024, 2, 29), date(2025, 2, 28)) == 0
    assert age_in_years(date(2024, 2, 29), date(2025, 3, 1)) == 1


# ------------------------------------------------------------------------------------ key length and equality


def test_a_key_one_byte_short_of_the_minimum_is_refused_and_the_minimum_is_accepted(tmp_path, monkeypatch):
    short, enough = b"k" * (MIN_KEY_BYTES - 1), b"k" * MIN_KEY_BYTES

    with pytest.raises(ConfigError, match=rf"is {MIN_KEY_BYTES - 1} bytes; use at least {MIN_KEY_BYTES}"):
        KeyMaterial(short)
    (tmp_path / "short.key").write_bytes(short + b"\n\n")      # trailing whitespace does not count
    with pytest.raises(ConfigError, match="at least 16"):
        load_key(tmp_path / "short.key")
    monkeypatch.setenv("PRECIMED_BRANCH_KEY", "  " + short.decode() + " ")
    with pytest.raises(ConfigError, match="at least 16"):
        load_key(key_env="PRECIMED_BRANCH_KEY")
    assert KeyMaterial(enough) == KeyMaterial(bytearray(enough))


@pytest.mark.parametrize("bad", ["k" * 32, None, 12345678901234567890])
def test_a_key_that_is_not_bytes_is_refused(bad):
    with pytest.raises(ConfigError, match="a key must be bytes"):
        KeyMaterial(bad)


def test_equal_keys_give_the_same_pseudonyms_and_shifts_and_compare_equal():
    a, b = KeyMaterial(b"same-key-0123456789abcdef", "a"), KeyMaterial(b"same-key-0123456789abcdef", "b")
    ids = [f"MRN{i:05d}" for i in range(200)]

    assert a == b and hash(a) == hash(b) and a.fingerprint == b.fingerprint
    assert [Pseudonymizer(a)(i) for i in ids] == [Pseudonymizer(b)(i) for i in ids]
    assert [DateShifter(a).shift_days(i) for i in ids] == [DateShifter(b).shift_days(i) for i in ids]


def test_keys_one_bit_apart_give_unrelated_pseudonyms_and_shifts():
    a = KeyMaterial(b"same-key-0123456789abcdef", "a")
    b = KeyMaterial(b"same-key-0123456789abcdeg", "b")          # last byte differs by one bit
    ids = [f"MRN{i:05d}" for i in range(200)]

    pa, pb = [Pseudonymizer(a)(i) for i in ids], [Pseudonymizer(b)(i) for i in ids]
    assert a != b and a.fingerprint != b.fingerprint and a != b"same-key-0123456789abcdef"
    assert not set(pa) & set(pb) and len(set(pa)) == len(ids)
    same_shift = sum(DateShifter(a).shift_days(i) == DateShifter(b).shift_days(i) for i in ids)
    assert same_shift < 10                                           # chance alone: 200 / 730


@pytest.mark.parametrize(("length", "ok"), [(15, False), (16, True), (64, True), (65, False), (0, False)])
def test_pseudonym_length_is_bounded_to_16_through_64_hex_characters(length, ok):
    if not ok:
        with pytest.raises(ConfigError, match=rf"must lie in \[16, 64\] hex characters, got {length}"):
            Pseudonymizer(KEY, length=length)
        return
    pseudonym = Pseudonymizer(KEY, length=length, prefix="p-")("00123")
    assert re.fullmatch(rf"p-[0-9a-f]{{{length}}}", pseudonym)


# ------------------------------------------------------------------------------------ key-file permissions


@pytest.fixture
def key_file(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    path = folder / "deid.key"
    path.write_bytes(b"k" * 32 + b"\n")
    return path


@pytest.mark.parametrize(("mode", "expected"), [
    (0o600, []),
    (0o400, []),
    (0o640, ["readable"]),
    (0o604, ["readable"]),
    (0o644, ["readable"]),
    (0o620, ["writable"]),
    (0o602, ["writable"]),
    (0o666, ["readable", "writable"]),
], ids=lambda v: f"{v:o}" if isinstance(v, int) else "-".join(v) or "none")
def test_a_key_file_others_can_read_or_replace_is_reported(key_file, tmp_path, mode, expected):
    os.chmod(key_file, mode)

    warnings = key_file_warnings(key_file, [tmp_path / "data" / "in.csv"])

    assert warnings == [f"key file deid.key is {what} by group/others; chmod 600 it" for what in expected]


def test_a_key_file_beside_the_data_is_reported_once(key_file):
    os.chmod(key_file, 0o600)
    data = [key_file.parent / "in.csv", key_file.parent / "out.csv"]

    assert key_file_warnings(key_file, data) == [
        "key file deid.key sits in the same folder as the data; keep keys apart from data"]
    assert key_file_warnings(None, data) == []


def test_a_symlinked_key_file_is_judged_by_the_file_it_points_to(key_file, tmp_path):
    os.chmod(key_file, 0o644)
    link = tmp_path / "link.key"
    link.symlink_to(key_file)

    assert key_file_warnings(link, [tmp_path / "data" / "in.csv"]) == [
        "key file deid.key is readable by group/others; chmod 600 it"]


# ------------------------------------------------------------------------------------ exact behaviour the
# mutation run found untested: messages, sources, known answers, index and missing-value handling.


def test_key_refusals_give_their_exact_messages(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as err:
        KeyMaterial("k" * 32)
    assert str(err.value) == "a key must be bytes"
    with pytest.raises(ConfigError) as err:
        KeyMaterial(b"short", "file k.key")
    assert str(err.value) == ("the key from file k.key is 5 bytes; use at least 16 random bytes "
                              "(e.g. `python -c \"import secrets; print(secrets.token_hex(32))\"`)")
    with pytest.raises(ConfigError) as err:
        load_key(tmp_path / "k.key", "PRECIMED_BRANCH_KEY")
    assert str(err.value) == "give either a key file or a key environment variable, not both"
    (tmp_path / "empty.key").write_bytes(b" \n")
    with pytest.raises(ConfigError) as err:
        load_key(tmp_path / "empty.key")
    assert str(err.value) == f"key file {tmp_path / 'empty.key'} is empty; no key, no output"
    with pytest.raises(ConfigError) as err:
        load_key()
    assert str(err.value) == ("no key given: pass --key-file KEY (or a key environment variable); "
                              "no key, no output")
    with pytest.raises(TypeError) as err:
        pickle.dumps(KEY)
    assert str(err.value) == ("KeyMaterial cannot be pickled; load the key from its file or variable where it "
                              "is used")


def test_a_key_says_where_it_came_from(key_file, monkeypatch):
    monkeypatch.setenv("PRECIMED_BRANCH_KEY", "e" * 20)

    assert load_key(key_file).source == "file deid.key"
    assert load_key(key_env="PRECIMED_BRANCH_KEY").source == "environment variable PRECIMED_BRANCH_KEY"
    assert KeyMaterial(b"k" * 16).source == "memory"
    assert "source='file deid.key'" in repr(load_key(key_file))


def test_pseudonyms_shifts_and_uuids_are_the_documented_hmacs():
    """Known answers computed here with hmac directly: the domain label, a NUL, then the message."""
    raw = b"security-branches-key-0123456789"

    def mac(domain: str, message: bytes) -> bytes:
        return hmac.digest(raw, domain.encode() + b"\x00" + message, "sha256")

    assert Pseudonymizer(KEY)("00123") == mac("precimed/pseudonym/v1", b"00123").hex()[:20]
    assert KEY.fingerprint == mac("precimed/fingerprint/v1", b"").hex()[:8]
    number = int.from_bytes(mac("precimed/date-shift/v1", b"A")[:8], "big") % 730
    assert shift_of("A") == (number - 365 if number < 365 else number - 364)
    expected = uuid.UUID(bytes=mac("precimed/uuid/v1", b"Patient/1")[:16], version=4)
    assert Pseudonymizer(KEY).uuid("Patient/1") == str(expected) and expected.version == 4


def test_new_key_files_create_their_folders_and_hold_hex_of_the_asked_length(tmp_path):
    path = new_key_file(tmp_path / "a" / "b" / "k.key", nbytes=16)

    text = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{32}\n", text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}\n", new_key_file(tmp_path / "default.key").read_text())  # 32 bytes


@pytest.mark.parametrize(("value", "expected"), [
    (12.5, "12.5"), (np.float64(12.5), "12.5"), (12.0, "12"), (True, "True"), (np.True_, "True"),
    (np.int64(7), "7"), (pd.NaT, None), (pd.NA, None), (" NaN ", None), (" x1 ", "x1"),
])
def test_identifiers_normalize_to_one_text(value, expected):
    assert normalize_id(value) == expected


def test_a_pseudonymized_column_keeps_its_index_name_and_missing_values():
    ids = pd.Series(["00123", None, "00456", "00123", np.nan], index=[10, 20, 30, 40, 50], name="mrn")

    out = Pseudonymizer(KEY).map_series(ids)

    p = Pseudonymizer(KEY)
    assert out.index.tolist() == [10, 20, 30, 40, 50] and out.name == "mrn" and out.dtype == object
    assert out[10] == out[40] == p("00123") and out[30] == p("00456")
    assert out.isna().tolist() == [False, True, False, False, True]


@pytest.mark.parametrize(("max_days", "ok"), [(0, False), (1, True), (3650, True), (3651, False)])
def test_the_largest_shift_is_bounded_to_1_through_3650_days(max_days, ok):
    if not ok:
        with pytest.raises(ConfigError) as err:
            DateShifter(KEY, max_days)
        assert str(err.value) == f"max_shift_days must lie in [1, 3650], got {max_days}"
        return
    shifts = {DateShifter(KEY, max_days).shift_days(f"P{i}") for i in range(300)}
    assert shifts <= set(range(-max_days, 0)) | set(range(1, max_days + 1))
    assert (shifts == {-1, 1}) == (max_days == 1)


def test_shifts_for_a_column_keep_its_index_and_leave_missing_ids_missing():
    ids = pd.Series(["A", None, "B", "A"], index=[7, 8, 9, 10])

    shifts = DateShifter(KEY).shifts_for(ids)

    assert shifts.index.tolist() == [7, 8, 9, 10] and shifts.dtype == float
    assert shifts[7] == shifts[10] == shift_of("A") and shifts[9] == shift_of("B") and math.isnan(shifts[8])


def test_parsing_shifting_and_formatting_keep_a_custom_index_and_missing_dates():
    values = pd.Series(["2021-03-14", None, "garbage", "2021-03-16"], index=[5, 6, 7, 8])

    parsed, bad, with_time = parse_dates(values)
    shifted = shift_column(parsed, pd.Series([2.0, 2.0, 2.0, math.nan], index=[5, 6, 7, 8]))
    text = format_dates(shifted, with_time=with_time)

    assert parsed.index.tolist() == bad.index.tolist() == text.index.tolist() == [5, 6, 7, 8]
    assert bad.tolist() == [False, False, True, False] and with_time is False
    assert text[5] == "2021-03-16" and all(isinstance(text[i], float) and math.isnan(text[i]) for i in (6, 7, 8))
    assert years(parsed).tolist()[0] == 2021 and str(years(parsed).dtype) == "Int64" and pd.isna(years(parsed)[6])


def test_a_tz_aware_column_parses_with_its_index_and_no_bad_rows():
    aware = pd.Series(pd.to_datetime(["2021-06-01T22:00:00", None]).tz_localize("Europe/Berlin"), index=[3, 4])

    parsed, bad, _ = parse_dates(aware)

    assert bad.index.tolist() == [3, 4] and bad.tolist() == [False, False]


def test_an_all_missing_column_has_no_time_of_day_and_two_text_formats_both_parse():
    assert parse_dates(pd.Series([None, "", "NaT"], dtype=object))[2] is False
    assert parse_dates(pd.Series(["NA", "null", " None ", "2021-01-01"]))[1].tolist() == [False] * 4  # missing, not bad
    parsed, bad, _ = parse_dates(pd.Series(["03/14/2021", "14 March 2021", "March 15, 2021"]))
    assert not bad.any()
    assert parsed.dt.strftime("%Y-%m-%d").tolist() == ["2021-03-14", "2021-03-14", "2021-03-15"]


def test_the_year_of_a_fhir_date_is_its_first_four_digits():
    assert [fhir_year(v) for v in ("2021", "2021-03", "2021-03-14T10:00:00Z", "21-03", "x")] == [
        "2021", "2021", "2021", None, None]


# ------------------------------------------------------------------------------------ exact values of the helpers


@pytest.mark.parametrize(("value", "expected"), [
    ("1940", date(1940, 1, 1)), ("1940-06", date(1940, 6, 1)), ("1940-06-15", date(1940, 6, 15)),
    ("1940-06-15T10:30:00Z", date(1940, 6, 15)), ("1940-13", None), ("1940-02-30", None), ("June 1940", None),
])
def test_a_fhir_date_of_each_precision_is_read_as_its_first_day_and_a_bad_one_as_none(value, expected):
    from precimed.privacy.dates import parse_fhir_date

    assert parse_fhir_date(value) == expected


@pytest.mark.parametrize(("born", "at", "years"), [
    (date(1940, 6, 15), date(2030, 6, 15), 90),   # the birthday itself: a year older that day
    (date(1940, 6, 15), date(2030, 6, 14), 89),   # the day before: not yet
    (date(1940, 6, 15), date(2030, 7, 1), 90),
    (date(1940, 2, 29), date(2030, 2, 28), 89),   # a 29 February birthday in a common year: not until 1 March
])
def test_age_in_whole_years_counts_the_birthday_itself(born, at, years):
    assert age_in_years(born, at) == years
