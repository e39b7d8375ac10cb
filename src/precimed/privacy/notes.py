"""Free-text PHI detection and redaction for clinical notes, offline and rule-based.

Detected types: NAME, DATE, PHONE, EMAIL, ID (MRN, SSN, account and other record numbers), ADDRESS
(street addresses, PO boxes, "City, ST 12345"), AGE (ages over 89 only: Safe Harbor allows younger
ages), URL and IP.

How names are found (no model download, no network):
  1. a title before the name: "Dr. Okafor", "Mrs. Maria Lopez";
  2. a credential after it: "Jane Doe, MD", "Sam Lee RN";
  3. a context word before it: "Patient: ...", "spoke with ...", "wife ...", "signed by ...";
  4. the name lexicon shipped in ``names.yaml`` (given names and surnames): a lexicon token, extended to
     the capitalized name tokens beside it ("Maria Quackenbush", "Thaddeus Smith"), and "Last, First".
     Lexicon names that are also common words ("Will", "May", "Brown") count only beside another name
     token; eponyms followed by a clinical word ("Parkinson disease", "Foley catheter") are not names.

Replacement (:func:`redact`): typed tags ``[NAME]``, ``[DATE]``, ``[PHONE]``, ``[EMAIL]``, ``[ID]``,
``[ADDRESS]``, ``[URL]``, ``[IP]``; ages over 89 become ``90+``; with ``shift_days`` dates are
shifted by the patient's offset and written in their original format (a date that cannot be parsed
becomes ``[DATE]``). Precision and recall are measured on a synthetic labelled note set
(:mod:`precimed.privacy.note_corpus`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources

import yaml

PHI_TYPES = ("NAME", "DATE", "PHONE", "EMAIL", "ID", "ADDRESS", "AGE", "URL", "IP")


@dataclass(frozen=True, order=True)
class Span:
    """A PHI span: characters ``text[start:end]`` of type `kind`."""

    start: int
    end: int
    kind: str


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
    """The shipped name lexicon (``names.yaml``)."""
    data = _lexicon_data()
    ambiguous = frozenset(data["ambiguous_first_names"]) | frozenset(data["ambiguous_last_names"])
    first = frozenset(data["first_names"]) - ambiguous
    last = frozenset(data["last_names"]) - ambiguous
    heads = frozenset(h.lower() for h in data["clinical_heads"])
    return Lexicon(first, last, ambiguous, frozenset(data["eponyms"]), heads)


_NAME_TOKEN = r"(?:[A-Z][a-z]*'[A-Z][a-z]+|Mc[A-Z][a-z]+|[A-Z][a-z]+(?:-[A-Z][a-z]+)?)"
_INITIAL = r"[A-Z]\."
_CAPS_LAST_FIRST = r"[A-Z][A-Z'-]+,[ \t]+[A-Z][A-Z'-]+"
_NAME_SEQ = rf"{_NAME_TOKEN}(?:[ \t]+{_INITIAL})?(?:[ \t]+{_NAME_TOKEN}){{0,2}}"

# ---------------------------------------------------------------------------------------------- patterns
MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
STATES = (r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
          r"NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR)")
STREET_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
                 r"Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl)")

EMAIL_RE = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
URL_RE = r"(?:https?://|www\.)[^\s<>\"'\])]+"
IPV4_RE = r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
SSN_RE = r"\d{3}-\d{2}-\d{4}"
PHONE_RE = r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
STREET_RE = (rf"\d{{1,6}}\s+(?:[NSEW]\.?\s+)?(?:(?:\d+(?:st|nd|rd|th)|[A-Z][a-zA-Z]+)\.?\s+){{1,3}}{STREET_SUFFIX}\b\.?"
             rf"(?:,?\s+(?:Apt|Apartment|Unit|Suite|Ste|#)\.?\s*[\w-]+)?")
CITY_STATE_ZIP_RE = rf"(?:[A-Z][a-zA-Z]+\s){{0,2}}[A-Z][a-zA-Z]+,\s*{STATES}\s+\d{{5}}(?:-\d{{4}})?"

_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [  # (type, regex, group holding the PHI)
    ("EMAIL", re.compile(rf"\b{EMAIL_RE}\b"), 0),
    ("URL", re.compile(rf"\b{URL_RE}"), 0),
    ("IP", re.compile(rf"(?<![\d.]){IPV4_RE}(?![\d.]*\d)"), 0),
    ("ID", re.compile(rf"\b{SSN_RE}\b"), 0),
    ("ID", re.compile(
        r"(?i:\b(?:MRN|MR\s?#|medical\s+record(?:\s+(?:number|no\.?))?|record\s*#|acct\.?|account"
        r"(?:\s+(?:number|no\.?))?|patient\s+id|pt\s+id|member\s+id|policy(?:\s+(?:number|no\.?))?|insurance\s+id|"
        r"license(?:\s+(?:number|no\.?))?|SSN|encounter(?:\s+(?:number|no\.?))?|CSN|FIN|ID))"
        r"[ \t]*(?:#|no\.?|number)?[ \t]*[:#]?[ \t]*((?:[A-Z]{1,3}-?)?\d[\dA-Z-]{3,}[\dA-Z]|\d{4,})\b"), 1),
    ("PHONE", re.compile(rf"(?<![\w/.-]){PHONE_RE}(?![\w-])"), 0),
    ("PHONE", re.compile(r"(?<![\w+])\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}(?![\w-])"), 0),
    ("PHONE", re.compile(r"(?i:\b(?:phone|tel|telephone|cell|mobile|pager|fax|call(?:ed)?|reach(?:ed)?\s+at|"
                         r"contact(?:\s+number)?)\b)[^\d\n]{0,15}(?<![\d-])(\d{3}[-.]\d{4})\b"), 1),
    ("DATE", re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?\b"), 0),
    ("DATE", re.compile(r"(?<![\d/.-])\d{1,2}[/-]\d{1,2}[/-](?:\d{4}|\d{2})(?![\d/-])"), 0),
    ("DATE", re.compile(r"(?<![\d.])\d{1,2}\.\d{1,2}\.(?:\d{4}|\d{2})(?![\d.]*\d)"), 0),
    ("DATE", re.compile(rf"\b\d{{1,2}}-{MONTHS}-(?:\d{{4}}|\d{{2}})\b"), 0),
    ("DATE", re.compile(rf"\b{MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?(?!\d)"), 0),
    ("DATE", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTHS}\.?(?:,?\s+\d{{4}})?\b"), 0),
    ("DATE", re.compile(rf"\b{MONTHS}\.?,?\s+\d{{4}}\b"), 0),
    ("DATE", re.compile(r"(?i:\b(?:on|since|from|until|through|thru|dated|date:?|seen|admitted|discharged|before|after|"
                        r"removed|placed|started|stopped|scheduled|performed|last|next)\s+)"
                        r"(\d{1,2}/\d{1,2})(?![\d/])"), 1),
    ("ADDRESS", re.compile(rf"\b{STREET_RE}(?:,?\s+{CITY_STATE_ZIP_RE})?"), 0),
    ("ADDRESS", re.compile(r"\bP\.?\s?O\.?\s+Box\s+\d+\b"), 0),
    ("ADDRESS", re.compile(rf"\b{CITY_STATE_ZIP_RE}\b"), 0),
    ("AGE", re.compile(r"(?<![\d.])(9\d|1[0-2]\d)(?=\s*-?\s*(?:years?|yrs?|y/o|y\.o\.|yo)\b)"), 1),
    ("AGE", re.compile(r"(?i:\b(?:age[ds]?|aged)\s*:?\s*)(9\d|1[0-2]\d)\b"), 1),
    ("AGE", re.compile(r"(?<![\d.])(9\d|1[0-2]\d)(?=[MF]\b)"), 1),
    ("ID", re.compile(r"\b[A-Z]{1,3}\d{6,10}\b"), 0),
    ("ID", re.compile(r"(?<![\d.,$])\d{7,10}(?![\d.,]\d|\s*(?:mg|mcg|g|mL|units?)\b)"), 0),
]

_TITLE = re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Doctor)\.?[ \t]+({_NAME_SEQ})")
_CREDENTIAL = re.compile(rf"\b({_NAME_TOKEN}(?:[ \t]+{_INITIAL})?[ \t]+{_NAME_TOKEN}),?[ \t]+"
                         r"(?:MD|M\.D\.|DO|RN|NP|PA-C|PA|PharmD|PhD|LCSW|CNA|APRN)\b")
_CONTEXT = re.compile(
    r"(?i:\b(?:patient(?:'s)?\s+name|name|patient|pt|signed\s+by|electronically\s+signed\s+by|dictated\s+by|"
    r"attending|resident|seen\s+by|spoke\s+(?:with|to)|discussed\s+with|accompanied\s+by|contact|pcp|met\s+with|"
    r"seeing|saw|visited\s+by|"
    r"referring\s+physician|wife|husband|daughter|son|mother|father|sister|brother|partner|friend|"
    r"caregiver|guardian|cc|emergency\s+contact|next\s+of\s+kin|nok)\b)"
    rf"[ \t]*(?:is\s+|was\s+)?[:,-]?[ \t]*({_NAME_TOKEN},[ \t]+{_NAME_TOKEN}|{_NAME_SEQ}|{_CAPS_LAST_FIRST})"
)
# "Rosalind Thistlewood is a 67-year-old ...": the name before an age statement
_BEFORE_AGE = re.compile(rf"({_NAME_SEQ})[ \t]+(?:is|was)[ \t]+an?[ \t]+\d{{1,3}}\s*-?\s*"
                         r"(?:years?|yrs?|yo|y/o|y\.o\.)\b")
# Two or three capitalized tokens inside a sentence (not after . ! ? : or a line start): "... seeing Ann Bo ..."
_MID_SENTENCE = re.compile(rf"(?<=[a-z,;(] )({_NAME_TOKEN}(?:[ \t]+{_INITIAL})?(?:[ \t]+{_NAME_TOKEN}){{1,2}})\b")
_LAST_FIRST = re.compile(rf"\b({_NAME_TOKEN}),[ \t]+({_NAME_TOKEN})(?:[ \t]+{_INITIAL})?")
_CAPS_WORD = re.compile(r"\b[A-Z][A-Za-z'-]*[a-zA-Z]\b")

STOP_WORDS = frozenset(_lexicon_data()["stop_words"])
INSTITUTION_WORDS = frozenset(_lexicon_data()["institution_words"])

_PRIORITY = {"EMAIL": 0, "URL": 1, "IP": 2, "ID": 3, "PHONE": 4, "DATE": 5, "ADDRESS": 6, "AGE": 7, "NAME": 8}


def _valid_date(text: str) -> bool:
    """Reject numeric "dates" whose month/day are impossible (e.g. 45/12/20)."""
    m = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2}|\d{4}))?", text)
    if m is None:
        return True
    month, day = int(m.group(1)), int(m.group(2))
    return 1 <= month <= 12 and 1 <= day <= 31


def _looks_like_date(text: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{2,4}", text))


def _trim_name(text: str, start: int) -> tuple[int, int] | None:
    """Cut a matched name sequence at its first stop word; drop trailing initials."""
    out = []
    for t in re.finditer(r"\S+", text):
        word = t.group()
        if not re.fullmatch(_INITIAL, word) and word.rstrip(".") in STOP_WORDS:
            break
        out.append(t)
    while out and re.fullmatch(_INITIAL, out[-1].group()):
        out.pop()
    if not out:
        return None
    return start + out[0].start(), start + out[-1].end()


def _name_spans(text: str, lex: Lexicon) -> list[Span]:
    spans: list[Span] = []
    for regex in (_TITLE, _CREDENTIAL, _CONTEXT, _BEFORE_AGE):
        for m in regex.finditer(text):
            trimmed = _trim_name(m.group(1), m.start(1))
            if trimmed is None:
                continue
            a, b = trimmed
            if regex in (_CONTEXT, _BEFORE_AGE) and any(t in INSTITUTION_WORDS for t in text[a:b].split()):
                continue
            spans.append(Span(a, b, "NAME"))
    for m in _MID_SENTENCE.finditer(text):
        tokens = m.group(1).split()
        before = text[max(0, m.start(1) - 60):m.start(1)].split()
        if not before or not re.fullmatch(r"[a-z]+|\S*[,;(]", before[-1]):
            continue  # the previous word is capitalized (a term like "Glasgow Coma Scale") or ends a sentence
        if any(t.lower() in lex.heads for t in tokens) or _followed_by_head(text, m.end(1), lex):
            continue
        if all(re.fullmatch(_INITIAL, t) or _name_like(t, lex) for t in tokens):
            spans.append(Span(m.start(1), m.end(1), "NAME"))
    for m in _LAST_FIRST.finditer(text):
        a, b = m.group(1), m.group(2)
        if (_lex_token(a, lex) or _lex_token(b, lex)) and a not in STOP_WORDS and b not in STOP_WORDS:
            spans.append(Span(m.start(), m.end(), "NAME"))
    words = list(_CAPS_WORD.finditer(text))
    for i, w in enumerate(words):
        token = w.group()
        if not _lex_token(token, lex):
            continue
        if token in lex.eponyms and _followed_by_head(text, w.end(), lex):
            continue
        start, end = w.start(), w.end()
        j = i - 1  # extend left over adjacent name tokens
        while j >= 0 and _adjacent(text, words[j].end(), start) and _name_like(words[j].group(), lex):
            start = words[j].start()
            j -= 1
        j = i + 1
        while j < len(words) and _adjacent(text, end, words[j].start()) and _name_like(words[j].group(), lex):
            end = words[j].end()
            j += 1
        spans.append(Span(start, end, "NAME"))
    # ambiguous lexicon words count only next to a clear name token
    for i, w in enumerate(words):
        token = w.group()
        if token not in lex.ambiguous:
            continue
        left = i > 0 and _adjacent(text, words[i - 1].end(), w.start()) and _lex_token(words[i - 1].group(), lex)
        right = (i + 1 < len(words) and _adjacent(text, w.end(), words[i + 1].start())
                 and _name_like(words[i + 1].group(), lex) and words[i + 1].group() not in lex.ambiguous)
        if left or right:
            spans.append(Span(w.start(), w.end(), "NAME"))
    return spans


def _lex_token(token: str, lex: Lexicon) -> bool:
    if token in STOP_WORDS:
        return False
    if len(token) >= 3 and token.isupper():
        token = token.title()
    return token in lex.first or token in lex.last


def _name_like(token: str, lex: Lexicon) -> bool:
    """A capitalized token that could be part of a name next to a lexicon name."""
    if token in STOP_WORDS or token in INSTITUTION_WORDS or token in lex.eponyms:
        return False
    if token.isupper() and len(token) > 1:
        return token.title() in lex.names
    return bool(re.fullmatch(_NAME_TOKEN, token))


def _adjacent(text: str, end: int, start: int) -> bool:
    gap = text[end:start]
    return gap in (" ", "  ") or bool(re.fullmatch(r" [A-Z]\. ", gap))


def _followed_by_head(text: str, end: int, lex: Lexicon) -> bool:
    rest = text[end:end + 30]
    if rest.startswith("'s"):
        return True
    m = re.match(r"[\s-]*([A-Za-z']+)", rest)
    return bool(m and m.group(1).lower() in lex.heads)


def detect_phi(text: str) -> list[Span]:
    """Non-overlapping PHI spans in `text`, sorted by position."""
    if not text:
        return []
    lex = name_lexicon()
    candidates: list[Span] = []
    for kind, regex, group in _PATTERNS:
        for m in regex.finditer(text):
            a, b = m.span(group)
            if a < 0 or a == b:
                continue
            if kind == "DATE" and not _valid_date(text[a:b]):
                continue
            if kind == "ID" and _looks_like_date(text[a:b]):
                continue
            if kind == "URL":
                while b > a and text[b - 1] in ".,;:":
                    b -= 1
            candidates.append(Span(a, b, kind))
    candidates.extend(_name_spans(text, lex))
    return _resolve(candidates)


def _resolve(candidates: Iterable[Span]) -> list[Span]:
    """Keep the highest-priority, then longest, spans; drop spans overlapping a kept one; merge adjacent names."""
    candidates = list(candidates)
    names = sorted(s for s in candidates if s.kind == "NAME")
    unions: list[Span] = []
    for span in names:  # overlapping name candidates become one name
        if unions and span.start < unions[-1].end:
            unions[-1] = Span(unions[-1].start, max(unions[-1].end, span.end), "NAME")
        else:
            unions.append(span)
    candidates = [s for s in candidates if s.kind != "NAME"] + unions
    ordered = sorted(candidates, key=lambda s: (_PRIORITY[s.kind], -(s.end - s.start), s.start))
    kept: list[Span] = []
    for span in ordered:
        if any(span.start < k.end and k.start < span.end for k in kept):
            continue
        kept.append(span)
    kept.sort()
    merged: list[Span] = []
    for span in kept:
        if merged and merged[-1].kind == "NAME" == span.kind and span.start - merged[-1].end <= 1:
            merged[-1] = Span(merged[-1].start, span.end, "NAME")
        else:
            merged.append(span)
    return merged


# ---------------------------------------------------------------------------------------------- redaction
def redact(text: str, spans: list[Span] | None = None, *, shift_days: int | None = None) -> tuple[str, Counter]:
    """Replace PHI with typed tags (dates shifted when `shift_days` is given); return (text, counts per type)."""
    if spans is None:
        spans = detect_phi(text)
    counts: Counter = Counter()
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos:span.start])
        original = text[span.start:span.end]
        out.append(_replacement(original, span.kind, shift_days))
        counts[span.kind] += 1
        pos = span.end
    out.append(text[pos:])
    return "".join(out), counts


def redact_text(text: str, *, shift_days: int | None = None) -> str:
    """The redacted text only."""
    return redact(text, shift_days=shift_days)[0]


def _replacement(original: str, kind: str, shift_days: int | None) -> str:
    if kind == "AGE":
        return "90+"
    if kind == "DATE" and shift_days is not None:
        shifted = shift_date_text(original, shift_days)
        if shifted is not None:
            return shifted
    return f"[{kind}]"


_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December"]
_MONTH_LOOKUP = {m[:3].lower(): i + 1 for i, m in enumerate(_MONTH_NAMES)} | {"sept": 9}


def _month_number(name: str) -> int | None:
    key = name.rstrip(".").lower()
    return _MONTH_LOOKUP.get(key[:4] if key.startswith("sept") else key[:3])


def _render_month(template: str, month: int) -> str:
    full = _MONTH_NAMES[month - 1]
    core = template.rstrip(".")
    dot = "." if template.endswith(".") else ""
    if len(core) <= 4 and core.lower() != full.lower():
        return (full[:4] if core.lower() == "sept" and month == 9 else full[:3]) + dot
    return full + dot


def shift_date_text(text: str, days: int) -> str | None:
    """Shift a date written in one of the common note formats, keeping that format; None if unparseable."""
    # ISO 2021-03-14 (optionally with time)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(.*)", text)
    if m:
        d = _safe_date(int(m[1]), int(m[2]), int(m[3]))
        return None if d is None else _shift(d, days).strftime("%Y-%m-%d") + m[4]
    # 3/14/2021, 03-14-21, 3/14
    m = re.fullmatch(r"(\d{1,2})([/-])(\d{1,2})(?:([/-])(\d{2}|\d{4}))?", text)
    if m:
        year = int(m[5]) if m[5] else 2001
        if m[5] and len(m[5]) == 2:
            year += 2000 if year < 50 else 1900
        d = _safe_date(year, int(m[1]), int(m[3]))
        if d is None:
            return None
        s = _shift(d, days)
        month = f"{s.month:02d}" if len(m[1]) == 2 else str(s.month)
        day = f"{s.day:02d}" if len(m[3]) == 2 else str(s.day)
        if not m[5]:
            return f"{month}{m[2]}{day}"
        y = f"{s.year % 100:02d}" if len(m[5]) == 2 else str(s.year)
        return f"{month}{m[2]}{day}{m[4]}{y}"
    # March 14, 2021 / Mar 14 / March 14th 2021
    m = re.fullmatch(r"([A-Za-z]+\.?)(\s+)(\d{1,2})(st|nd|rd|th)?(,?\s+)?(\d{4})?", text)
    if m and _month_number(m[1]):
        year = int(m[6]) if m[6] else 2001
        d = _safe_date(year, _month_number(m[1]), int(m[3]))  # type: ignore[arg-type]
        if d is None:
            return None
        s = _shift(d, days)
        out = f"{_render_month(m[1], s.month)}{m[2]}{s.day}{_ordinal(s.day) if m[4] else ''}"
        return out + (f"{m[5] or ' '}{s.year}" if m[6] else "")
    # 14 March 2021 / 14th of March
    m = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?(\s+(?:of\s+)?)([A-Za-z]+\.?)(,?\s+)?(\d{4})?", text)
    if m and _month_number(m[4]):
        year = int(m[6]) if m[6] else 2001
        d = _safe_date(year, _month_number(m[4]), int(m[1]))  # type: ignore[arg-type]
        if d is None:
            return None
        s = _shift(d, days)
        out = f"{s.day}{_ordinal(s.day) if m[2] else ''}{m[3]}{_render_month(m[4], s.month)}"
        return out + (f"{m[5] or ' '}{s.year}" if m[6] else "")
    # March 2021 (month precision: anchored at the 1st)
    m = re.fullmatch(r"([A-Za-z]+\.?)(,?\s+)(\d{4})", text)
    if m and _month_number(m[1]):
        d = _safe_date(int(m[3]), _month_number(m[1]), 1)  # type: ignore[arg-type]
        if d is None:
            return None
        s = _shift(d, days)
        return f"{_render_month(m[1], s.month)}{m[2]}{s.year}"
    return None


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
