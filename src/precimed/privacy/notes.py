"""Free-text PHI detection and redaction for clinical notes, offline and rule-based, in two modes.

Detected types: NAME, DATE, PHONE, EMAIL, ID (MRN, SSN, Medicare, health-plan, licence-plate, VIN,
device serial and other record numbers), ADDRESS (street addresses with units, PO boxes, ZIP codes,
city and town names), AGE (ages over 89 only: Safe Harbor allows younger ages, in digits, words or
phrases), URL and IP; in the allowlist mode also OTHER (a word outside the allowlist).

- ``mode="strict"`` (default): the patterns of :mod:`precimed.privacy.note_patterns` and the names of
  :mod:`precimed.privacy.note_names` (lexicon, titles, contexts, credentials, in any case and script).
- ``mode="allowlist"`` (Philter-style): the strict spans, plus every word that is not on the allowlist
  (the 60,000 most frequent English words of ``wordfreq`` less the name lexicon, the shipped medical
  vocabulary, stop words, and short capitalised abbreviations). Higher recall, lower precision.

The structured columns of the note's own row (the patient's name, phone, e-mail, MRN, SSN ...) are
searched for in the note whatever its spelling (:class:`KnownIdentifiers`): name words in any case or
accent, digits with any separators, e-mails written "name at host dot org".

Replacement (:func:`redact`): typed tags ``[NAME]``, ``[DATE]``, ``[PHONE]``, ``[EMAIL]``, ``[ID]``,
``[ADDRESS]``, ``[URL]``, ``[IP]``, ``[REDACTED]``; ages over 89 become ``90+``; with ``shift_days``
dates are shifted by the patient's offset and written in their original format. A date that cannot be
shifted becomes ``[DATE]``, and so does anything left that still looks like a date (three numbers
with / . or - between them, a month name beside a number): a note is never released with a date left
unshifted beside shifted ones. With ``uncertain="fail"`` such a note raises :class:`UncertainDateError`
instead. Precision and recall: the synthetic set of :mod:`precimed.privacy.note_corpus` and the
hand-written adversarial set of :mod:`precimed.privacy.note_eval`.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources
from typing import Literal

import yaml

from precimed.errors import DataError
from precimed.privacy.note_names import PARTICLES, TOKEN, name_spans, name_words
from precimed.privacy.note_patterns import (
    CITY_STATE_ZIP_RE,
    EMAIL_RE,
    IPV4_RE,
    MONTHS,
    MONTHS_I,
    PATTERNS,
    PHONE_RE,
    SSN_RE,
    STATES,
    STREET_RE,
    STREET_SUFFIX,
    URL_RE,
    age_over_89,
    ambiguous_lowercase_month,
    place_spans,
    reference_url,
    score_before,
    valid_numeric_date,
)
from precimed.privacy.vocabulary import (
    ALLOWLIST_MODE_RANK,
    _ranked_words,
    fold,
    is_medical,
    lexicon_names,
    number_value,
)

PHI_TYPES = ("NAME", "DATE", "PHONE", "EMAIL", "ID", "ADDRESS", "AGE", "URL", "IP", "OTHER")
NotesMode = Literal["strict", "allowlist"]
NOTES_MODES: tuple[str, ...] = ("strict", "allowlist")

__all__ = ["CITY_STATE_ZIP_RE", "EMAIL_RE", "IPV4_RE", "MONTHS", "NOTES_MODES", "PHI_TYPES", "PHONE_RE", "SSN_RE",
           "STATES", "STREET_RE", "STREET_SUFFIX", "URL_RE", "KnownIdentifiers", "Span", "UncertainDateError",
           "detect_phi", "name_lexicon", "redact", "redact_text", "shift_date_text"]


@dataclass(frozen=True, order=True)
class Span:
    """A PHI span: characters ``text[start:end]`` of type `kind`."""

    start: int
    end: int
    kind: str


class UncertainDateError(DataError):
    """A note holds date-like text that could not be shifted (policy ``options.text.uncertain_dates: fail``)."""


# ---------------------------------------------------------------------------------------------- lexicon
@dataclass(frozen=True)
class Lexicon:
    first: frozenset[str]
    last: frozenset[str]
    ambiguous: frozenset[str]
    eponyms: frozenset[str]
    heads: frozenset[str]

    @property
    def names(self) -> frozenset[str]:
        return self.first | self.last


@cache
def _lexicon_data() -> dict:
    return yaml.safe_load(resources.files("precimed.privacy").joinpath("names.yaml").read_text(encoding="utf-8"))


@cache
def name_lexicon() -> Lexicon:
    """The shipped name lexicon (``names.yaml``) as written (capitalized)."""
    data = _lexicon_data()
    ambiguous = frozenset(data["ambiguous_first_names"]) | frozenset(data["ambiguous_last_names"])
    first = frozenset(data["first_names"]) - ambiguous
    last = frozenset(data["last_names"]) - ambiguous
    heads = frozenset(h.lower() for h in data["clinical_heads"])
    return Lexicon(first, last, ambiguous, frozenset(data["eponyms"]), heads)


# ---------------------------------------------------------------------------------- the row's own values
@dataclass(frozen=True)
class KnownIdentifiers:
    """Identifiers of the note's own row, searched for in the note in any spelling.

    names: folded name words (any case or accent matches); patterns: (type, regex) for digit strings
    (any separators, and the last seven digits of a phone number), e-mails (also "at"/"dot" spelled
    out) and other values (case-insensitive, any spacing).
    """

    names: frozenset[str] = frozenset()
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()

    @classmethod
    def from_values(cls, values: Iterable[object]) -> KnownIdentifiers:
        names: set[str] = set()
        patterns: list[tuple[str, re.Pattern[str]]] = []
        for value in values:
            text = _value_text(value)
            if text is not None:
                _add_value(text, names, patterns)
        return cls(frozenset(names), tuple(patterns))

    def __bool__(self) -> bool:
        return bool(self.names or self.patterns)


def _value_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text if text and len(text) <= 200 and text not in ("NA", "NaN", "nan", "null", "None") else None


def _add_value(text: str, names: set[str], patterns: list[tuple[str, re.Pattern[str]]]) -> None:
    digits = re.sub(r"\D", "", text)
    alnum = re.sub(r"[\W_]", "", text)
    if "@" in text:
        patterns.append(("EMAIL", _email_pattern(text)))
    elif len(digits) >= 4 and len(digits) * 2 >= len(alnum):
        kind = "PHONE" if len(digits) in (10, 11) and not re.fullmatch(r"\d{3}-\d{2}-\d{4}", text) else "ID"
        for variant in {digits, digits.lstrip("0"), digits[-7:] if kind == "PHONE" else digits}:
            if len(variant) >= 4:
                patterns.append((kind, re.compile(r"(?<![\dA-Za-z])" + r"[\W_]{0,3}".join(variant) + r"(?!\d)")))
    elif digits:
        words = re.findall(r"\w+", text)
        patterns.append(("ADDRESS" if len(words) > 1 else "ID", _words_pattern(words)))
        if len(words) > 1:
            _add_address_parts(text, patterns)
    else:
        stop = name_words().stop
        for m in TOKEN.finditer(text):
            f = fold(m.group())
            if len(f) >= 2 and f not in PARTICLES and f not in stop:
                names.add(f)


def _words_pattern(words: list[str]) -> re.Pattern[str]:
    """Words in order, any case, with up to three separators between them; a ZIP code may carry its +4."""
    zip4 = r"(?:-\d{4})?" if re.fullmatch(r"\d{5}", words[-1]) else ""
    return re.compile(r"(?i:(?<!\w)" + r"[\W_]{1,3}".join(re.escape(w) for w in words) + zip4 + r"(?!\w))")


def _add_address_parts(text: str, patterns: list[tuple[str, re.Pattern[str]]]) -> None:
    """Each comma-separated part of a structured address (street, town, "VT 05401") is found on its own;
    a two-letter state alone is not."""
    for part in text.split(","):
        words = re.findall(r"\w+", part)
        if words and not (len(words) == 1 and len(words[0]) <= 2):
            patterns.append(("ADDRESS", _words_pattern(words)))
        if len(words) == 2 and re.fullmatch(r"[A-Za-z]{2}", words[0]) and re.fullmatch(r"\d{5}", words[1]):
            patterns.append(("ADDRESS", _words_pattern(words[1:])))  # the ZIP code without its state


def _email_pattern(text: str) -> re.Pattern[str]:
    local, _, domain = text.partition("@")
    dot = r"(?:[ \t]*\.[ \t]*|[ \t]*[(\[{<]dot[)\]}>][ \t]*|[ \t]+dot[ \t]+)"
    at = r"(?:[ \t]*@[ \t]*|[ \t]*[(\[{<]at[)\]}>][ \t]*|[ \t]+at[ \t]+)"
    part = lambda s: dot.join(re.escape(p) for p in s.split("."))  # noqa: E731
    return re.compile(rf"(?i:(?<![\w.]){part(local)}{at}{part(domain)}(?!\w))")


# ---------------------------------------------------------------------------------------------- detection
_PRIORITY = {"EMAIL": 0, "URL": 1, "IP": 2, "PHONE": 3, "ID": 4, "DATE": 5, "ADDRESS": 6, "AGE": 7, "NAME": 8,
             "OTHER": 9}


def detect_phi(text: str, *, known: KnownIdentifiers | None = None, mode: NotesMode = "strict") -> list[Span]:
    """Non-overlapping PHI spans in `text`, sorted by position.

    `known`: the row's own identifiers (always found, in any spelling); `mode`: "strict" or "allowlist".
    """
    if mode not in NOTES_MODES:
        raise ValueError(f"notes mode must be one of {NOTES_MODES}, got {mode!r}")
    if not text:
        return []
    candidates = _pattern_spans(text)
    candidates += [Span(a, b, "ADDRESS") for a, b in place_spans(text)]
    if known:
        candidates += [Span(m.start(), m.end(), kind) for kind, regex in known.patterns for m in regex.finditer(text)]
    names = name_spans(text, known.names if known else ())
    candidates += [Span(a, b, "NAME") for a, b in names]
    candidates += _ages_after_names(text, names)
    if mode == "allowlist":
        candidates += _outside_allowlist(text)
    return _resolve(candidates)


_AGE_AFTER_NAME = re.compile(r",[ \t]*(9\d|1[0-2]\d)(?=[ \t]*(?:[.,;)]|$)|[ \t]*(?:yo|y/o|y\.o\.)\b)", re.M)


def _ages_after_names(text: str, names: list[tuple[int, int]]) -> list[Span]:
    """An age of 90 or more written right after a name: "Winona Tsinajinnie, 94."."""
    out = []
    for _, end in names:
        m = _AGE_AFTER_NAME.match(text, end)
        if m:
            out.append(Span(m.start(1), m.end(1), "AGE"))
    return out


def _pattern_spans(text: str) -> list[Span]:
    out = []
    for kind, regex, group in PATTERNS:
        for m in regex.finditer(text):
            a, b = m.span(group)
            if a < 0 or a == b:
                continue
            piece = text[a:b]
            if not _plausible(kind, piece) or (kind == "DATE" and "/" in piece and score_before(text, a)):
                continue
            if kind == "URL":
                while b > a and text[b - 1] in ".,;:":
                    b -= 1
            out.append(Span(a, b, kind))
    return out


def _plausible(kind: str, piece: str) -> bool:
    """Filters a pattern cannot express: impossible numeric dates, verbs that look like months, ages under 90."""
    if kind == "DATE":
        return valid_numeric_date(piece) and not ambiguous_lowercase_month(piece)
    if kind == "ID":
        return not re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{2,4}", piece) and sum(
            c.isdigit() for c in piece) >= 2
    if kind == "AGE":
        return age_over_89(piece)
    if kind == "IP" and ":" in piece:
        return piece.count(":") >= 3 or piece in ("::1",)
    if kind == "URL":
        return not reference_url(piece)
    if kind == "PHONE" and re.search(r"[a-z]", piece, re.I) and not re.search(r"(?i)x|ext", piece):
        return sum(w.lower() in _DIGIT_NAMES for w in re.findall(r"[A-Za-z]+", piece)) >= 3  # spelled-out digits
    return True


_DIGIT_NAMES = frozenset(["zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@cache
def _allowlist() -> frozenset[str]:
    nw = name_words()
    return (_ranked_words(ALLOWLIST_MODE_RANK) - lexicon_names()) | nw.stop | nw.eponyms


_ROMAN = re.compile(r"(?i:[ivxlc]+)")


def _outside_allowlist(text: str) -> list[Span]:
    """Words not on the allowlist (allowlist mode): redacted as OTHER."""
    out = []
    for m in TOKEN.finditer(text):
        word = m.group()
        if word[-2:] in ("'s", "\u2019s"):
            word = word[:-2]
        if not all(_allowed(part) for part in word.split("-") if part):
            out.append(Span(m.start(), m.end(), "OTHER"))
    return out


def _allowed(word: str) -> bool:
    """A word the allowlist mode keeps: common English or medical (also inflected), an abbreviation, a number."""
    f = fold(word)
    if len(f) <= 2 or _ROMAN.fullmatch(f) or number_value(f) is not None:
        return True
    if f in name_words().eponyms:
        return True  # "Courvoisier", "Kerley": a name with a title or beside a name is found by the strict rules
    if f in lexicon_names():
        return False
    if (word.isupper() and len(word) <= 5) or (not word.islower() and not word.istitle() and len(word) <= 6):
        return True  # abbreviations: COPD, NKDA, HFrEF, aVF
    allowed = _allowlist()
    return any(c in allowed or is_medical(c) for c in _stems(f))


def _stems(f: str) -> set[str]:
    """The word and its plausible stems (plural, past, -ing, -ly): 'extremities' -> 'extremity'."""
    out = {f}
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""),
                         ("ing", "e"), ("ly", ""), ("ally", ""), ("er", ""), ("ers", "")):
        if f.endswith(suffix) and len(f) - len(suffix) >= 3:
            out.add(f[:-len(suffix)] + repl)
    return out


def _resolve(candidates: Iterable[Span]) -> list[Span]:
    """Keep the highest-priority, then longest, spans; drop spans overlapping a kept one; merge adjacent names.

    Sorting once and checking each span against its two neighbours among the kept ones (bisect) keeps
    this O(n log n) in the number of candidates.
    """
    names = sorted(s for s in candidates if s.kind == "NAME")
    unions: list[Span] = []
    for span in names:  # overlapping name candidates become one name
        if unions and span.start < unions[-1].end:
            unions[-1] = Span(unions[-1].start, max(unions[-1].end, span.end), "NAME")
        else:
            unions.append(span)
    others = [s for s in candidates if s.kind != "NAME"]
    ordered = sorted(others + unions, key=lambda s: (_PRIORITY[s.kind], -(s.end - s.start), s.start))
    starts: list[int] = []
    kept: list[Span] = []
    for span in ordered:
        i = bisect.bisect_left(starts, span.start)
        if i > 0 and kept[i - 1].end > span.start:
            continue
        if i < len(kept) and kept[i].start < span.end:
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    merged: list[Span] = []
    for span in kept:
        if merged and merged[-1].kind == "NAME" == span.kind and span.start - merged[-1].end <= 1:
            merged[-1] = Span(merged[-1].start, span.end, "NAME")
        else:
            merged.append(span)
    return merged


# ---------------------------------------------------------------------------------------------- uncertain dates
_DATE_LIKE = re.compile(
    rf"(?<![\w.])\d{{1,4}}[/.\-]\d{{1,2}}[/.\-]\d{{1,4}}(?![\w])"
    rf"|\b{MONTHS_I}[a-z]{{0,2}}\b\.?[ \t,]*\d{{1,4}}(?:st|nd|rd|th)?"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?[ \t]*(?:(?i:of)[ \t]+)?{MONTHS_I}[a-z]{{0,2}}\b")  # "Marchh 3": a typo too


def uncertain_dates(text: str, spans: list[Span]) -> list[Span]:
    """Date-like text no span covers (three numbers joined by / . -, a month name beside a number):
    left as it is, it would sit unshifted beside the shifted dates and give the offset away."""
    starts = [s.start for s in spans]
    out = []
    for m in _DATE_LIKE.finditer(text):
        i = bisect.bisect_right(starts, m.start()) - 1
        if i >= 0 and spans[i].end > m.start():
            continue
        if i + 1 < len(spans) and spans[i + 1].start < m.end():
            continue
        out.append(Span(m.start(), m.end(), "DATE"))
    return out


# ---------------------------------------------------------------------------------------------- redaction
@dataclass
class Redaction:
    """A redacted note: its text, counts per type, and how many date-like pieces were redacted unshifted."""

    text: str
    counts: Counter = field(default_factory=Counter)
    uncertain_dates: int = 0


def redact(text: str, spans: list[Span] | None = None, *, shift_days: int | None = None,
           known: KnownIdentifiers | None = None, mode: NotesMode = "strict",
           uncertain: Literal["redact", "fail"] = "redact") -> tuple[str, Counter]:
    """Replace PHI with typed tags (dates shifted when `shift_days` is given); return (text, counts per type).

    With `shift_days`, date-like text that was not found with confidence is redacted as ``[DATE]``
    (counted as ``DATE_UNCERTAIN`` too), or, with ``uncertain="fail"``, raises :class:`UncertainDateError`.
    """
    result = redact_note(text, spans, shift_days=shift_days, known=known, mode=mode, uncertain=uncertain)
    counts = Counter(result.counts)
    if result.uncertain_dates:
        counts["DATE_UNCERTAIN"] = result.uncertain_dates
    return result.text, counts


def redact_note(text: str, spans: list[Span] | None = None, *, shift_days: int | None = None,
                known: KnownIdentifiers | None = None, mode: NotesMode = "strict",
                uncertain: Literal["redact", "fail"] = "redact") -> Redaction:
    """:func:`redact`, returning a :class:`Redaction`."""
    if spans is None:
        spans = detect_phi(text, known=known, mode=mode)
    forced: set[int] = set()
    if shift_days is not None:
        residue = uncertain_dates(text, spans)
        if residue and uncertain == "fail":
            raise UncertainDateError(f"{len(residue)} date-like text(s) could not be read as dates, so the note "
                                     "cannot be shifted consistently")
        forced = {s.start for s in residue}
        spans = sorted([*spans, *residue])
    result = Redaction(text)
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos:span.start])
        original = text[span.start:span.end]
        out.append(f"[{span.kind}]" if span.start in forced else _replacement(original, span.kind, shift_days))
        result.counts[span.kind] += 1
        pos = span.end
    out.append(text[pos:])
    result.text = "".join(out)
    result.uncertain_dates = len(forced)
    return result


def redact_text(text: str, *, shift_days: int | None = None, known: KnownIdentifiers | None = None,
                mode: NotesMode = "strict") -> str:
    """The redacted text only."""
    return redact(text, shift_days=shift_days, known=known, mode=mode)[0]


def _replacement(original: str, kind: str, shift_days: int | None) -> str:
    if kind == "AGE":
        return "90+"
    if kind == "OTHER":
        return "[REDACTED]"
    if kind == "DATE" and shift_days is not None:
        shifted = shift_date_text(original, shift_days)
        if shifted is not None:
            return shifted
    return f"[{kind}]"


def known_from_row(row: Mapping[str, object]) -> KnownIdentifiers:
    """:class:`KnownIdentifiers` from a mapping of column -> value (the identifier columns of one row)."""
    return KnownIdentifiers.from_values(row.values())


# ---------------------------------------------------------------------------------------------- date shifting
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
