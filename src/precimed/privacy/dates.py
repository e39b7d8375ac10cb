"""Per-patient date shifting derived from the key, and year-only generalization.

Every date of one patient moves by the same whole number of days, ``shift_days(patient_id)``, a
keyed HMAC of the patient id mapped into ``[-max_days, -1] ∪ [1, max_days]`` (never 0). The same key
and patient id give the same shift in every table, note, FHIR resource and DICOM file, so intervals
between a patient's events (length of stay, time to event) are preserved exactly, while the calendar
dates are not. Times of day are kept; weekdays are not (the shift is not a multiple of 7). In table
columns a time with a UTC offset or a time zone is converted to UTC first, whether it arrives as text
or as a time-zone-aware column, so the same instant always shifts to the same instant and intervals
across offsets (daylight saving) stay exact; the output is written in UTC without an offset. FHIR
strings keep their own offset (:func:`shift_fhir_date`).

Shifting is pseudonymization (it is reversible with the key). HIPAA Safe Harbor instead wants all
elements of dates except the year removed: ``mode="year"``.
"""

from __future__ import annotations

import re
import warnings
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from precimed.errors import ConfigError
from precimed.privacy.pseudonym import KeyMaterial, normalize_id

DOMAIN = "precimed/date-shift/v1"
UNLINKED = "\x00unlinked"  # shift used for records that belong to no patient


class DateShifter:
    """``shift_days(patient_id)`` in ``[-max_days, -1] ∪ [1, max_days]``, derived from the key."""

    def __init__(self, key: KeyMaterial, max_days: int = 365) -> None:
        if not 1 <= int(max_days) <= 3650:
            raise ConfigError(f"max_shift_days must lie in [1, 3650], got {max_days}")
        self.key = key
        self.max_days = int(max_days)
        self._cache: dict[str, int] = {}

    def shift_days(self, patient_id: object) -> int | None:
        """The patient's shift in days; None when the patient id is missing."""
        ident = normalize_id(patient_id)
        if ident is None:
            return None
        cached = self._cache.get(ident)
        if cached is None:
            number = int.from_bytes(self.key.mac(DOMAIN, ident.encode())[:8], "big")
            offset = number % (2 * self.max_days)  # 0 .. 2*max-1
            cached = offset - self.max_days if offset < self.max_days else offset - self.max_days + 1
            self._cache[ident] = cached
        return cached

    def shifts_for(self, patient_ids: pd.Series) -> pd.Series:
        """Shift (float days, NaN where the id is missing) for every row; each distinct id is MACed once."""
        codes, uniques = pd.factorize(patient_ids, use_na_sentinel=True)
        table = np.array([self.shift_days(u) for u in uniques] + [None], dtype=object)
        values = table[codes]
        return pd.Series(pd.to_numeric(values, errors="coerce"), index=patient_ids.index, dtype=float)


# ----------------------------------------------------------------------------------------- table columns
_MISSING_TEXT = ("", "NA", "NaN", "nan", "null", "None", "NaT", "<NA>")


def parse_dates(values: pd.Series) -> tuple[pd.Series, pd.Series, bool]:
    """Parse a column into datetime64; return (parsed, unparseable mask, has_time_of_day).

    Text is tried as ISO 8601 first, then in any format pandas recognizes (e.g. 03/14/2021; month
    first). Only the distinct values are parsed. Unparseable non-missing values are reported by the
    caller (never shown) and become missing.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
        if getattr(parsed.dt, "tz", None) is not None:  # as for text with an offset: the instant, in UTC
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        missing = parsed.isna()
        return parsed, pd.Series(False, index=values.index), bool(_has_time(parsed[~missing]))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = [str(u).strip() for u in uniques]
    uniq = pd.Series([None if c in _MISSING_TEXT else c for c in cleaned], dtype=object)
    parsed_u = pd.to_datetime(uniq, format="ISO8601", errors="coerce", utc=True)
    retry = parsed_u.isna() & uniq.notna()
    if retry.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed_u[retry] = pd.to_datetime(uniq[retry], format="mixed", errors="coerce", utc=True)
    parsed_u = parsed_u.dt.tz_localize(None)
    bad_u = parsed_u.isna() & uniq.notna()
    lookup = np.concatenate([parsed_u.to_numpy(dtype="datetime64[ns]"), np.array(["NaT"], dtype="datetime64[ns]")])
    parsed = pd.Series(lookup[codes], index=values.index)
    bad_lookup = np.concatenate([bad_u.to_numpy(), [False]])
    bad = pd.Series(bad_lookup[codes], index=values.index)
    return parsed, bad, bool(_has_time(parsed_u[~parsed_u.isna()]))


def _has_time(parsed: pd.Series) -> bool:
    if parsed.empty:
        return False
    return bool((parsed.dt.normalize() != parsed).any())


def shift_column(parsed: pd.Series, shifts: pd.Series) -> pd.Series:
    """Add a per-row shift in days (NaN shift -> missing date)."""
    days = shifts.to_numpy(dtype=float)
    delta = (np.nan_to_num(days).astype(np.int64) * 86_400_000_000_000).astype("timedelta64[ns]")
    delta[np.isnan(days)] = np.timedelta64("NaT")
    return parsed + pd.Series(delta, index=parsed.index)


def format_dates(parsed: pd.Series, *, with_time: bool) -> pd.Series:
    """ISO 8601 text: YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS when the column held times of day. NaT -> NaN."""
    codes, uniques = pd.factorize(parsed, use_na_sentinel=True)  # a column holds few distinct days
    unit = "s" if with_time else "D"
    arr = np.asarray(uniques, dtype="datetime64[ns]").astype(f"datetime64[{unit}]")
    text = np.append(np.datetime_as_string(arr, unit=unit).astype(object), np.nan)
    return pd.Series(text[codes], index=parsed.index, dtype=object)


def years(parsed: pd.Series) -> pd.Series:
    """The year as a nullable integer."""
    return parsed.dt.year.astype("Int64")


# ----------------------------------------------------------------------------------------- FHIR strings
# FHIR date / dateTime / instant: YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss(.sss)(Z|+hh:mm)
FHIR_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?P<rest>T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def shift_fhir_date(value: str, days: int) -> str | None:
    """Shift a FHIR date/dateTime/instant string by whole days, keeping its precision and time of day.

    A year or year-month is anchored at its first day, shifted, and truncated to the same precision.
    Returns None when `value` is not a FHIR date.
    """
    m = FHIR_DATE.match(value)
    if m is None:
        return None
    y, mo, d = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
    try:
        shifted = date(y, mo, d) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if m["m"] is None:
        return f"{shifted.year:04d}"
    if m["d"] is None:
        return f"{shifted.year:04d}-{shifted.month:02d}"
    return shifted.isoformat() + (m["rest"] or "")


def fhir_year(value: str) -> str | None:
    m = FHIR_DATE.match(value)
    return None if m is None else m["y"]


def parse_fhir_date(value: str) -> date | None:
    m = FHIR_DATE.match(value)
    if m is None:
        return None
    try:
        return date(int(m["y"]), int(m["m"] or 1), int(m["d"] or 1))
    except ValueError:
        return None


def age_in_years(born: date | datetime, at: date | datetime) -> int:
    """Whole years between two dates (birthday not yet reached counts one less)."""
    b = born.date() if isinstance(born, datetime) else born
    a = at.date() if isinstance(at, datetime) else at
    return a.year - b.year - ((a.month, a.day) < (b.month, b.day))


def top_coded_birth(reference: date, top_age: int = 90) -> date:
    """The birth date that makes the age at `reference` exactly `top_age` (Safe Harbor's "90 or older")."""
    try:
        return reference.replace(year=reference.year - top_age)
    except ValueError:  # 29 February
        return reference.replace(year=reference.year - top_age, day=28)
