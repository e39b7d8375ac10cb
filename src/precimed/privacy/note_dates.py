"""Shifting a date written in a note by a patient's offset, kept in the format it was written in.

``shift_date_text`` reads ISO, numeric (US month-first), year-first, month-first and day-first dates with month
names, ordinals and month-year; it returns None for text it cannot read (the caller redacts it then), never a
partly shifted date.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December"]
_MONTH_LOOKUP = {m[:3].lower(): i + 1 for i, m in enumerate(_MONTH_NAMES)} | {"sept": 9}


def _month_number(name: str) -> int | None:
    key = name.rstrip(".").lower()
    if key not in _MONTH_LOOKUP and not any(m.lower().startswith(key) for m in _MONTH_NAMES) and key != "sept":
        return None
    return _MONTH_LOOKUP.get(key[:4] if key.startswith("sept") else key[:3])


def _render_month(template: str, month: int) -> str:
    full = _MONTH_NAMES[month - 1]
    core = template.rstrip(".")
    dot = "." if template.endswith(".") else ""
    if len(core) <= 4 and core.lower() != full.lower():
        out = (full[:4] if core.lower() == "sept" and month == 9 else full[:3]) + dot
    else:
        out = full + dot
    if core.isupper() and len(core) > 1:
        return out.upper()
    return out.lower() if core.islower() else out


def shift_date_text(text: str, days: int) -> str | None:
    """Shift a date written in one of the common note formats, keeping that format; None if unparseable."""
    for shifter in (_shift_iso, _shift_numeric, _shift_year_first, _shift_month_first, _shift_day_first,
                    _shift_month_year):
        out = shifter(text, days)
        if out is not False:
            return out  # type: ignore[return-value]
    return None


def _shift_iso(text: str, days: int) -> str | None | bool:
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(.*)", text)
    if not m:
        return False
    d = _safe_date(int(m[1]), int(m[2]), int(m[3]))
    return None if d is None else _shift(d, days).strftime("%Y-%m-%d") + m[4]


def _shift_numeric(text: str, days: int) -> str | None | bool:
    """3/14/2021, 03-14-21, 14.03.2021 (day first when the first number cannot be a month, or with dots), 3/14."""
    m = re.fullmatch(r"(\d{1,2})([/.-])(\d{1,2})(?:([/.-])(\d{2}|\d{4}))?", text)
    if not m:
        return False
    year = int(m[5]) if m[5] else 2001
    if m[5] and len(m[5]) == 2:
        year += 2000 if year < 50 else 1900
    a, b = int(m[1]), int(m[3])
    day_first = a > 12 or (m[2] == "." and b <= 12)
    month, day = (b, a) if day_first else (a, b)
    d = _safe_date(year, month, day)
    if d is None:
        return None
    s = _shift(d, days)
    first, second = (s.day, s.month) if day_first else (s.month, s.day)
    first_s = f"{first:02d}" if len(m[1]) == 2 else str(first)
    second_s = f"{second:02d}" if len(m[3]) == 2 else str(second)
    if not m[5]:
        return f"{first_s}{m[2]}{second_s}"
    y = f"{s.year % 100:02d}" if len(m[5]) == 2 else str(s.year)
    return f"{first_s}{m[2]}{second_s}{m[4]}{y}"


def _shift_year_first(text: str, days: int) -> str | None | bool:
    m = re.fullmatch(r"(\d{4})([/.])(\d{1,2})\2(\d{1,2})", text)
    if not m:
        return False
    d = _safe_date(int(m[1]), int(m[3]), int(m[4]))
    if d is None:
        return None
    s = _shift(d, days)
    return f"{s.year}{m[2]}{s.month:0{len(m[3])}d}{m[2]}{s.day:0{len(m[4])}d}"


def _shift_month_first(text: str, days: int) -> str | None | bool:
    """March 14, 2021 / Mar 14 / March 14th 2021 / march 14."""
    m = re.fullmatch(r"([A-Za-z]+\.?)(,?\s+)(\d{1,2})(st|nd|rd|th)?(,?\s+)?(\d{4})?", text)
    if not (m and _month_number(m[1])):
        return False
    d = _safe_date(int(m[6]) if m[6] else 2001, _month_number(m[1]), int(m[3]))  # type: ignore[arg-type]
    if d is None:
        return None
    s = _shift(d, days)
    out = f"{_render_month(m[1], s.month)}{m[2]}{s.day}{_ordinal(s.day) if m[4] else ''}"
    return out + (f"{m[5] or ' '}{s.year}" if m[6] else "")


def _shift_day_first(text: str, days: int) -> str | None | bool:
    """14 March 2021 / the 14th of March / 14-Mar-2021."""
    m = re.fullmatch(r"((?:the\s+)?)(\d{1,2})(st|nd|rd|th)?(\s+(?:of\s+)?|-)([A-Za-z]+\.?)(,?\s+|-)?(\d{4})?", text,
                     re.I)
    if not (m and _month_number(m[5])):
        return False
    d = _safe_date(int(m[7]) if m[7] else 2001, _month_number(m[5]), int(m[2]))  # type: ignore[arg-type]
    if d is None:
        return None
    s = _shift(d, days)
    out = f"{m[1]}{s.day}{_ordinal(s.day) if m[3] else ''}{m[4]}{_render_month(m[5], s.month)}"
    return out + (f"{m[6] or ' '}{s.year}" if m[7] else "")


def _shift_month_year(text: str, days: int) -> str | None | bool:
    """March 2021 (month precision: anchored at the 1st)."""
    m = re.fullmatch(r"([A-Za-z]+\.?)(,?\s+)(\d{4})", text)
    if not (m and _month_number(m[1])):
        return False
    d = _safe_date(int(m[3]), _month_number(m[1]), 1)  # type: ignore[arg-type]
    if d is None:
        return None
    s = _shift(d, days)
    return f"{_render_month(m[1], s.month)}{m[2]}{s.year}"


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _shift(d: date, days: int) -> date:
    return d + timedelta(days=days)
