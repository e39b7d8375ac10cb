"""Scan table columns for identifier patterns; report counts per pattern, never the values.

Patterns: name (two to four words in any case or script, one a lexicon given name or surname), phone
(any separators: spaces, dots, slashes; extensions; ten bare digits), email (also "name at host dot org"),
ssn (dashes, spaces or dots), mrn (record-number-like codes: 6-10 digits, optionally after 1-3 letters),
street_address, url, ip, date (a full date: day, month and year). Each distinct value is tested once. A scan of a large
column can be limited to ``max_unique`` distinct values (the report says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from precimed.privacy.note_names import TOKEN
from precimed.privacy.note_patterns import OBFUSCATED_EMAIL_RE
from precimed.privacy.notes import (
    EMAIL_RE,
    IPV4_RE,
    MONTHS,
    PHONE_RE,
    SSN_RE,
    STREET_RE,
    URL_RE,
)
from precimed.privacy.vocabulary import fold, lexicon_names

PATTERNS: dict[str, re.Pattern[str]] = {
    "phone": re.compile(rf"(?<![\w/.-]){PHONE_RE}(?![\w-])|^\s*\+?1?\d{{10}}\s*$"),
    "email": re.compile(rf"\b{EMAIL_RE}\b|{OBFUSCATED_EMAIL_RE}"),
    "ssn": re.compile(rf"(?<![\d-]){SSN_RE}(?![\d-])"),
    "mrn": re.compile(r"^\s*(?:MRN[:#\s]*)?[A-Z]{0,3}-?\d{6,10}\s*$"),
    "street_address": re.compile(rf"\b{STREET_RE}|\bP\.?\s?O\.?\s+Box\s+\d+\b"),
    "url": re.compile(rf"\b{URL_RE}"),
    "ip": re.compile(rf"(?<![\d.]){IPV4_RE}(?![\d.]*\d)"),
    "date": re.compile(rf"\b\d{{4}}-\d{{1,2}}-\d{{1,2}}\b"
                       rf"|(?<![\d/.-])\d{{1,2}}[/-]\d{{1,2}}[/-](?:\d{{4}}|\d{{2}})(?![\d/-])"
                       rf"|\b{MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"),
}
_NAME_VALUE = re.compile(r"^\s*[^\W\d_][^\W\d_'\u2019.-]*(?:['\u2019.-][^\W\d_]+)*,?"
                         r"(?:\s+[^\W\d_][^\W\d_'\u2019.-]*(?:['\u2019.-][^\W\d_]+)*,?){1,3}\s*$")
PATTERN_NAMES = ("name", *PATTERNS)


def _is_name(value: str) -> bool:
    """Two to four words, in any case or script ("LOPEZ, MARIA", "nguyễn thị mai"), one a lexicon name."""
    if _NAME_VALUE.match(value) is None:
        return False
    names = lexicon_names()
    return any(fold(m.group()) in names for m in TOKEN.finditer(value))


@dataclass
class ColumnScan:
    """Counts of values matching each pattern in one column (never the values)."""

    column: str
    values_scanned: int
    distinct_scanned: int
    patterns: dict[str, int] = field(default_factory=dict)
    sampled: bool = False

    @property
    def flagged(self) -> bool:
        return any(self.patterns.values())

    def to_dict(self) -> dict:
        return {"column": self.column, "values_scanned": self.values_scanned, "distinct_scanned": self.distinct_scanned,
                "patterns": dict(self.patterns), "sampled": self.sampled}


def scan_values(values: pd.Series, *, max_unique: int | None = None) -> ColumnScan:
    """Count the non-missing values of a column that match each identifier pattern."""
    name = str(values.name)
    present = values[values.notna()]
    if present.empty:
        return ColumnScan(name, 0, 0)
    if pd.api.types.is_bool_dtype(present) or pd.api.types.is_float_dtype(present):
        # floats and booleans cannot hold names, e-mails or addresses; whole floats may be record numbers
        counts = {}
        if pd.api.types.is_float_dtype(present):
            whole = present[np.isfinite(present) & (present == np.floor(present)) & (present.abs() >= 1e5)]
            counts = {"mrn": int((whole.abs() < 1e10).sum())} if len(whole) else {}
        return ColumnScan(name, int(len(present)), int(present.nunique()), {k: v for k, v in counts.items() if v})
    if pd.api.types.is_datetime64_any_dtype(present):
        return ColumnScan(name, int(len(present)), int(present.nunique()), {"date": int(len(present))})
    text = present.astype(str)
    counts_by_value = text.value_counts(sort=False)
    sampled = False
    if max_unique is not None and len(counts_by_value) > max_unique:
        counts_by_value = counts_by_value.sample(n=max_unique, random_state=0)
        sampled = True
    uniques = pd.Series(counts_by_value.index, dtype=object)
    weights = counts_by_value.to_numpy()
    found: dict[str, int] = {}
    for pattern, regex in PATTERNS.items():
        hits = uniques.map(lambda v, r=regex: r.search(v) is not None).to_numpy(dtype=bool)
        n = int(weights[hits].sum())
        if n:
            found[pattern] = n
    hits = uniques.map(_is_name).to_numpy(dtype=bool)
    n = int(weights[hits].sum())
    if n:
        found = {"name": n, **found}
    return ColumnScan(name, int(weights.sum()), int(len(uniques)), found, sampled)


def scan_frame(df: pd.DataFrame, columns: list[str] | None = None, *,
               max_unique: int | None = None) -> list[ColumnScan]:
    """Scan several columns (default: all)."""
    return [scan_values(df[c], max_unique=max_unique) for c in (columns if columns is not None else df.columns)]
