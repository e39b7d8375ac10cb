"""HIPAA Safe Harbor (45 CFR 164.514(b)(2)) as data, and its two generalizations: ages and ZIP codes.

The 18 identifiers, with how precimed handles each, live in ``safe_harbor.yaml``; the restricted
three-digit ZIP prefixes (population of 20,000 or fewer, 2000 Census, as listed by HHS) in
``zip3_restricted.yaml``. Both files carry their source and version.

- Ages over 89 become the single category ``"90+"``; other ages are kept as given.
- A ZIP code keeps its first three digits, and becomes ``"000"`` when those digits are a restricted
  prefix. Integer ZIPs (leading zero lost, e.g. 2134) are zero-padded to five digits first. A value
  with fewer than three digits, or with letters, is not a US ZIP: it becomes missing and is counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
import yaml

from precimed.errors import ConfigError
from precimed.privacy.vocabulary import number_value

TOP_AGE = 90
TOP_AGE_LABEL = "90+"


@dataclass(frozen=True)
class Identifier:
    letter: str
    name: str
    precimed: str
    scan_patterns: tuple[str, ...]


@cache
def _load(name: str) -> dict:
    try:
        text = resources.files("precimed.privacy").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"precimed.privacy data file {name} is missing from the installation") from None
    return yaml.safe_load(text)


def safe_harbor_identifiers() -> list[Identifier]:
    """The 18 Safe Harbor identifiers (A-R) with precimed's handling of each."""
    data = _load("safe_harbor.yaml")
    return [Identifier(i["letter"], " ".join(i["name"].split()), i["precimed"], tuple(i["scan_patterns"]))
            for i in data["identifiers"]]


def safe_harbor_source() -> str:
    return " ".join(_load("safe_harbor.yaml")["source"].split())


@cache
def restricted_zip3() -> frozenset[str]:
    """Three-digit ZIP prefixes that must become "000" (population of 20,000 or fewer)."""
    data = _load("zip3_restricted.yaml")
    prefixes = frozenset(str(p) for p in data["prefixes"])
    if not all(re.fullmatch(r"\d{3}", p) for p in prefixes):
        raise ConfigError("zip3_restricted.yaml: every prefix must be three digits")
    return prefixes


def zip3_source() -> dict[str, str]:
    data = _load("zip3_restricted.yaml")
    return {"version": data["version"], "source": " ".join(data["source"].split())}


# ------------------------------------------------------------------------------------------------ ZIP
_ZIP = re.compile(r"^\s*(\d{3})(\d{2})?(?:[- ]?\d{4})?\s*$")


def zip_digits(value: object) -> str | None:
    """The five-digit (or three-digit) ZIP text of a value, or None when it is not a US ZIP."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, int | np.integer) or (isinstance(value, float | np.floating) and float(value).is_integer()):
        number = int(value)
        if 0 <= number <= 99999:
            return f"{number:05d}"
        if 0 <= number <= 999999999:  # ZIP+4 stored as a number
            return f"{number:09d}"[:5]
        return None
    m = _ZIP.match(str(value))
    if m is None:
        return None
    return m.group(1) + (m.group(2) or "")


def zip_prefix(value: object, digits: int = 3) -> str | None:
    """First `digits` digits of a ZIP; restricted 3-digit prefixes give zeros. None if not a ZIP."""
    text = zip_digits(value)
    if text is None:
        return None
    if text[:3] in restricted_zip3():
        return "0" * digits
    return text[:digits]


def generalize_zip(values: pd.Series, digits: int = 3) -> tuple[pd.Series, int]:
    """ZIP codes -> first `digits` digits (restricted prefixes -> zeros); returns (column, unparseable count)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = [zip_prefix(u, digits) for u in uniques]
    bad_u = np.array([m is None and not _blank(u) for m, u in zip(mapped, uniques, strict=True)] + [False])
    table = np.array(mapped + [None], dtype=object)
    out = pd.Series(table[codes], index=values.index, dtype=object)
    out = out.where(out.notna(), np.nan)
    return out, int(bad_u[codes].sum())


# ------------------------------------------------------------------------------------------------ age
def _blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return str(value).strip() in ("", "NA", "NaN", "nan", "null", "None")


_AGE_TEXT = re.compile(r"(?:>|over|older than|more than)?\s*(\d+(?:\.\d+)?)\s*\+?\s*(?:y|yo|yr|yrs|years?|y/o|y\.o\.)?"
                       r"(?:[\s-]*old|\s+of\s+age|\s+or\s+(?:older|over|more))?")
_AGE_UNITS = re.compile(r"[\s-]*(?:y|yo|yr|yrs|years?|y/o|y\.o\.)?(?:[\s-]*old|\s+of\s+age)?$")


def age_number(value: object) -> float | None:
    """An age as a number: 92, "92", "92 years", "92y", "90+", ">89" (90), "ninety-two"; None when missing or
    not an age."""
    if _blank(value):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = " ".join(str(value).strip().lower().split())
    m = _AGE_TEXT.fullmatch(text)
    if m:
        number = float(m.group(1))
        return max(number, TOP_AGE) if text.startswith((">", "over", "older", "more")) and number >= TOP_AGE - 1 \
            else number
    words = _AGE_UNITS.sub("", text)
    value_in_words = number_value(words) if words else None
    return None if value_in_words is None else float(value_in_words)


def _age_text(value: object, number: float) -> str:
    """A kept age as text: a plain number as written, anything else ("sixty", "60 years") as its number."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
        return value.strip()
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def generalize_age(values: pd.Series) -> tuple[pd.Series, int]:
    """Ages over 89 -> "90+"; others kept (as text); returns (column, unparseable count -> missing)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped: list[str | None] = []
    bad_u = []
    for u in uniques:
        number = age_number(u)
        if number is None or number < 0:
            mapped.append(None)
            bad_u.append(not _blank(u))
        elif number > TOP_AGE - 1:  # "over 89": 89.5 included
            mapped.append(TOP_AGE_LABEL)
            bad_u.append(False)
        else:
            mapped.append(_age_text(u, number))
            bad_u.append(False)
    table = np.array(mapped + [None], dtype=object)
    out = pd.Series(table[codes], index=values.index, dtype=object)
    bad = int(np.array(bad_u + [False])[codes].sum())
    return out.where(out.notna(), np.nan), bad


def age_band(value: object, width: int) -> str | None:
    """Age band "45-49" (width 5), "40-49" (10) ...; 90 and over -> "90+"."""
    number = age_number(value)
    if number is None or number < 0:
        return None
    if number > TOP_AGE - 1 or str(value).strip().endswith("+"):
        return TOP_AGE_LABEL
    low = int(number // width * width)
    return f"{low}-{min(low + width - 1, TOP_AGE - 1)}"
