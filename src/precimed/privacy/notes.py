"""Free-text PHI detection and redaction for clinical notes, offline and rule-based, in two modes.

Detected types: NAME, DATE, PHONE, EMAIL, ID (MRN, SSN, Medicare, health-plan, licence-plate, VIN,
device serial and other record numbers), ADDRESS (street addresses with units, PO boxes, ZIP codes,
city and town names), AGE (ages over 89 only: Safe Harbor allows younger ages, in digits, words or
phrases), URL and IP; in the allowlist mode also OTHER (a word outside the allowlist).

- ``mode="strict"`` (default): the patterns of :mod:`precimed.privacy.note_patterns` and the names of
  :mod:`precimed.privacy.note_names` (lexicon, titles, contexts, credentials, in any case and script).
- ``mode="allowlist"`` (Philter-style, :mod:`precimed.privacy.note_allowlist`): the strict spans, plus
  every word that is not on the allowlist (the 60,000 most frequent English words of ``wordfreq`` less
  the name and place lists, the shipped medical vocabulary and abbreviations) and every number not in a
  safe clinical shape. Higher recall, lower precision.

The structured columns of the note's own row (the patient's name, phone, e-mail, MRN, SSN ...) are
searched for in the note whatever its spelling (:class:`KnownIdentifiers`): name words in any case or
accent, digits with any separators, e-mails written "name at host dot org".

Replacement (:func:`redact`): typed tags ``[NAME]``, ``[DATE]``, ``[PHONE]``, ``[EMAIL]``, ``[ID]``,
``[ADDRESS]``, ``[URL]``, ``[IP]``, ``[REDACTED]``; ages over 89 become ``90+``; with ``shift_days``
dates are shifted by the patient's offset and written in their original format
(:mod:`precimed.privacy.note_dates`). A date that cannot be
shifted becomes ``[DATE]``, and so does anything left that still looks like a date (three numbers
with / . or - between them, a month name beside a number): a note is never released with a date left
unshifted beside shifted ones. With ``uncertain="fail"`` such a note raises :class:`UncertainDateError`
instead. Precision and recall: the synthetic set of :mod:`precimed.privacy.note_corpus`, and the
hand-labelled sets under tests/privacy/data scored by :mod:`precimed.privacy.note_eval`.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import yaml

from precimed.errors import DataError
from precimed.privacy.note_allowlist import clip_to_strict, merge_runs, outside_allowlist
from precimed.privacy.note_dates import shift_date_text
from precimed.privacy.note_names import PARTICLES, TOKEN, name_spans, name_words, signature_spans
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
from precimed.privacy.note_spans import NOTES_MODES, PHI_TYPES, NotesMode, Span
from precimed.privacy.vocabulary import (
    fold,
)

__all__ = ["CITY_STATE_ZIP_RE", "EMAIL_RE", "IPV4_RE", "MONTHS", "NOTES_MODES", "PHI_TYPES", "PHONE_RE", "SSN_RE",
           "STATES", "STREET_RE", "STREET_SUFFIX", "URL_RE", "KnownIdentifiers", "Span", "UncertainDateError",
           "detect_phi", "name_lexicon", "redact", "redact_text", "shift_date_text"]


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
    if known:
        candidates += [Span(m.start(), m.end(), kind) for kind, regex in known.patterns for m in regex.finditer(text)]
    names = sorted(name_spans(text, known.names if known else ()))
    candidates += [Span(a, b, "NAME") for a, b in names]
    candidates += _places_outside_names(text, place_spans(text), names)
    candidates += [Span(a, b, "NAME") for a, b in signature_spans(text)]
    candidates += _ages_after_names(text, names)
    if mode == "allowlist":
        strict = _resolve(candidates)
        return merge_runs(text, strict, clip_to_strict(text, outside_allowlist(text), strict))
    return _resolve(candidates)


def _places_outside_names(text: str, places: list[tuple[int, int]], names: list[tuple[int, int]]) -> list[Span]:
    """Place spans, less a single word inside a longer name ("Dana Levi-Cohen", "Florence Ngata"): there it is a
    given name (a place would win over the name and leave the rest of the name in the text)."""
    starts = [a for a, _ in names]
    out = []
    for a, b in places:
        k = bisect.bisect_right(starts, a) - 1
        if k >= 0 and names[k][1] >= b and (names[k][0], names[k][1]) != (a, b) and " " not in text[a:b]:
            continue
        out.append(Span(a, b, "ADDRESS"))
    return out


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


def _resolve(candidates: Iterable[Span]) -> list[Span]:
    """Keep the highest-priority, then longest, spans; drop spans overlapping a kept one; merge adjacent names.

    Sorting once and checking each span against its two neighbours among the kept ones (bisect) keeps
    this O(n log n) in the number of candidates.
    """
    unions: list[Span] = []
    parts: dict[Span, list[Span]] = {}  # an address union -> the candidates it was made of
    for kind in ("NAME", "ADDRESS"):  # overlapping name (address) candidates become one name (address)
        first = len(unions)
        for span in sorted(s for s in candidates if s.kind == kind):
            if len(unions) > first and span.start < unions[-1].end:
                joined = Span(unions[-1].start, max(unions[-1].end, span.end), kind)
                if kind == "ADDRESS":
                    parts[joined] = [*parts.pop(unions[-1], [unions[-1]]), span]
                unions[-1] = joined
            else:
                unions.append(span)
    others = [s for s in candidates if s.kind not in ("NAME", "ADDRESS")]
    ordered = sorted(others + unions, key=lambda s: (_PRIORITY[s.kind], -(s.end - s.start), s.start))
    starts: list[int] = []
    kept: list[Span] = []

    def place(span: Span) -> bool:
        i = bisect.bisect_left(starts, span.start)
        if (i > 0 and kept[i - 1].end > span.start) or (i < len(kept) and kept[i].start < span.end):
            return False
        starts.insert(i, span.start)
        kept.insert(i, span)
        return True

    for span in ordered:
        if not place(span) and span in parts:  # an address union blocked by a stronger span: its parts, longest first
            for part in sorted(parts[span], key=lambda s: -(s.end - s.start)):
                place(part)
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

