import numpy as np
import pandas as pd
import pytest

from precimed.privacy import DateShifter, generalize_age, generalize_zip, restricted_zip3, safe_harbor_identifiers
from precimed.privacy.dates import format_dates, parse_dates, shift_fhir_date
from precimed.privacy.safe_harbor import zip3_source


def test_the_shift_is_per_patient_nonzero_bounded_and_reproducible(key):
    shifter = DateShifter(key, max_days=365)
    shifts = [shifter.shift_days(f"P{i}") for i in range(2000)]
    assert all(1 <= abs(s) <= 365 for s in shifts)
    assert len(set(shifts)) > 300                                  # spread over the range
    assert DateShifter(key).shift_days("P7") == shifts[7]         # same key, same shift, any run
    assert shifter.shift_days(None) is None


def test_intervals_between_a_patients_dates_are_preserved_exactly(key):
    ids = pd.Series(["A", "A", "B", "B"])
    admit, bad, _ = parse_dates(pd.Series(["2020-01-01", "2021-06-30", "2019-02-28", "2020-02-29"]))
    discharge, _, _ = parse_dates(pd.Series(["2020-01-09", "2021-07-30", "2019-03-01", "2020-03-01"]))
    shifts = DateShifter(key).shifts_for(ids)
    new_admit, new_discharge = admit + pd.to_timedelta(shifts, "D"), discharge + pd.to_timedelta(shifts, "D")
    assert ((new_discharge - new_admit) == (discharge - admit)).all()
    assert (new_admit != admit).all() and not bad.any()


def test_dates_in_other_formats_parse_and_come_back_in_iso():
    parsed, bad, with_time = parse_dates(pd.Series(["03/14/2021", "2021-03-15", "garbage", None]))
    assert format_dates(parsed, with_time=with_time).tolist()[:2] == ["2021-03-14", "2021-03-15"]
    assert bad.tolist() == [False, False, True, False]


def test_fhir_dates_keep_their_precision_and_time_of_day():
    assert shift_fhir_date("2026-01-01T09:00:00Z", -10) == "2025-12-22T09:00:00Z"
    assert shift_fhir_date("2024-02-28", 1) == "2024-02-29"
    assert shift_fhir_date("2024-03", 1) == "2024-03" and shift_fhir_date("2024", 400) == "2025"
    assert shift_fhir_date("not a date", 3) is None


def test_safe_harbor_lists_the_18_identifiers_with_their_source():
    identifiers = safe_harbor_identifiers()
    assert [i.letter for i in identifiers] == list("ABCDEFGHIJKLMNOPQR")
    assert any("Social security" in i.name for i in identifiers)


def test_restricted_zip_prefixes_are_the_17_from_the_hhs_guidance():
    assert restricted_zip3() == {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831",
                                 "878", "879", "884", "890", "893"}
    assert "2000 Census" in zip3_source()["version"]


def test_zip_codes_keep_three_digits_and_small_areas_become_000():
    out, bad = generalize_zip(pd.Series(["02134", "03601", "10001-1234", 2134, "ABC12", None, "89301"]))
    assert out.iloc[:4].tolist() == ["021", "000", "100", "021"]
    assert pd.isna(out.iloc[4]) and pd.isna(out.iloc[5]) and out.iloc[6] == "000"
    assert bad == 1                                                # "ABC12": not a ZIP, removed and counted


@pytest.mark.parametrize("age, expected", [("89", "89"), ("90", "90+"), (104, "90+"), (89.5, "90+"), ("45", "45")])
def test_ages_over_89_become_90_plus(age, expected):
    out, bad = generalize_age(pd.Series([age]))
    assert out.iloc[0] == expected and bad == 0


def test_unreadable_ages_are_removed_and_counted():
    out, bad = generalize_age(pd.Series(["forty", "", np.nan, "61"]))
    assert pd.isna(out.iloc[0]) and out.iloc[3] == "61" and bad == 1
