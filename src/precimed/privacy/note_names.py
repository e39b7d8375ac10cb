"""Names in free text, found in one pass over the words (linear in the length of the note).

Every word (letters in any script, apostrophes and hyphens inside: "O'Brien", "Nguyễn", "Jean-Luc") is
classified once from its folded form (:func:`precimed.privacy.vocabulary.fold`):

- *name-like*: not a stop word, and either a lexicon name (``names.yaml``, ambiguous ones included),
  a name known from the row's structured columns, or a word that is neither common English (the
  ``wordfreq`` top 10,000) nor medical (``medical_vocabulary.yaml`` or a clinical suffix);
- a *seed*, a word that is a name by itself: a lexicon given name or surname in any case (except the
  few that are ordinary words in lower case, ``lowercase_words``), a name known from the row, the word
  after a title ("dr", "Mrs.", "nurse") or a name context ("spoke with", "daughter", "Patient:"), the
  word before a credential ("..., MD") or an age statement ("... is a 67-year-old"), and two or more
  capitalized name-like words inside a sentence.

Adjacent name-like words (one or two spaces, an initial "J." between them, or one comma for the
"Surname, Given" form) form runs; a run holding a seed is a name. Each word is looked at a fixed
number of times, so a note made only of names costs time in proportion to its length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from precimed.privacy.vocabulary import _data, common_words, fold, is_medical, lexicon_names

TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*(?:-[^\W\d_]+(?:['\u2019][^\W\d_]+)*)*")
_TITLE = re.compile(r"(?i:\b(?:dr|doctor|mr|mrs|ms|miss|mx|prof|professor|nurse|sister|rev|reverend|pastor|"
                    r"sr|sra|dra|mme|mlle|herr|frau)\b\.?[ \t]+)")
_CONTEXT = re.compile(
    r"(?i:\b(?:patient(?:'s)?\s+name|name|patient|pt|signed\s+by|electronically\s+signed\s+by|dictated\s+by|"
    r"attending|resident|seen\s+by|spoke\s+(?:with|to)|talked\s+(?:with|to)|discussed\s+with|accompanied\s+by|"
    r"contact|pcp|met\s+with|seeing|saw|visited\s+by|reviewed\s+by|examined\s+by|evaluated\s+by|cosigned\s+by|"
    r"referred\s+by|brought\s+in\s+by|called\s+by|covered\s+by|per|caller|callback\s+from|"
    r"referring\s+physician|wife|husband|spouse|daughter|son|mother|father|mom|dad|sister|brother|partner|"
    r"friend|caregiver|guardian|grandson|granddaughter|grandmother|grandfather|niece|nephew|aunt|uncle|cousin|"
    r"neighbor|neighbour|roommate|boyfriend|girlfriend|fiance|fiancee|stepson|stepdaughter|interpreter|"
    r"chaplain|emergency\s+contact|fellow|intern|physician|provider|surgeon|therapist|pharmacist|"
    r"social\s+worker|case\s+manager|nurse\s+practitioner|np|pa|landlord|employer|coworker|"
    r"next\s+of\s+kin|nok|hcp|proxy|named|called|aka|goes\s+by|dear|hi|hello|"
    r"thanks|regards|sincerely|(?:from|to)(?=:)|mrn\s+for)\b)"
    r"[ \t]*(?:(?:is|was|:|-|,)[ \t]*){0,2}")
_CREDENTIAL = re.compile(r"(?:,[ \t]*|[ \t]+)(?:MD|M\.D\.|DO|RN|NP|PA-C|PA|PharmD|PhD|LCSW|CNA|APRN|MSW|LPN|"
                         r"DDS|FNP|CRNP|DNP|MBBS|FRCP)\b")
_AGE_AFTER = re.compile(r"[ \t]+(?:is|was)[ \t]+an?[ \t]+\d{1,3}\s*-?\s*(?:years?|yrs?|yo|y/o|y\.o\.)\b"
                        r"|,[ \t]*\d{1,3}[ \t]?(?:[MF]\b|yo\b|y/o|y\.o\.|years?\b|-year)"
                        r"|[ \t]*\((?:pt|patient|the\s+patient)\)")
_SUBJECT_VERB = re.compile(r"[ \t]+(?:has|had|is|was|says|said|reports|reported|states|stated|called|came|went|"
                           r"will|would|can|could|did|does|feels|felt|wants|wanted|asked|asks|lives|lived|died)\b")
_WORD_ENDING = re.compile(r"(?:ed|ing|ly|ness|tion|ment)$")  # lower-case verbs and nouns, not names
_SAINT = re.compile(r"\b(?:St|Saint|Ste)\.?[ \t]+$")  # "St. Vincent's Hospital" is a place
_INITIAL_GAP = re.compile(r"[ \t]+[A-Z]\.?[ \t]+")
PARTICLES = frozenset({"de", "da", "del", "della", "di", "du", "la", "le", "van", "von", "der", "den", "ter", "y",
                       "bin", "binti", "al", "el", "dos", "das", "st"})


@dataclass(frozen=True)
class NameWords:
    """Folded word sets the name rules read (built once)."""

    lexicon: frozenset[str]
    ambiguous: frozenset[str]
    lowercase_words: frozenset[str]
    stop: frozenset[str]
    eponyms: frozenset[str]
    heads: frozenset[str]


@cache
def name_words() -> NameWords:
    data = _data("names.yaml")
    ambiguous = frozenset(fold(n) for n in (*data["ambiguous_first_names"], *data["ambiguous_last_names"]))
    stop = frozenset(fold(w) for w in (*data["stop_words"], *data["institution_words"]))
    return NameWords(lexicon_names(), ambiguous, frozenset(fold(w) for w in data["lowercase_words"]), stop,
                     frozenset(fold(w) for w in data["eponyms"]), frozenset(h.lower() for h in data["clinical_heads"]))


@dataclass
class _Word:
    start: int
    end: int
    text: str
    folded: str
    case: str  # "cap", "upper", "lower"
    name_like: bool = False
    seed: bool = False


def _case(text: str) -> str:
    if text.isupper():
        return "upper" if len(text) > 1 else "cap"
    return "cap" if text[0].isupper() else "lower"


def words(text: str) -> list[_Word]:
    """The words of `text` with positions; a possessive "'s" is not part of the word."""
    out = []
    for m in TOKEN.finditer(text):
        start, end, token = m.start(), m.end(), m.group()
        if len(token) > 3 and token[-2:].lower() in ("'s", "\u2019s"):
            end, token = end - 2, token[:-2]
        out.append(_Word(start, end, token, fold(token), _case(token)))
    return out


def _classify(w: _Word, text: str, nw: NameWords, known: frozenset[str]) -> None:
    f = w.folded
    if f in known and f not in PARTICLES:
        w.name_like = w.seed = True
        return
    if f in nw.stop or len(f) < 2 or (f in nw.eponyms and _followed_by_head(text, w.end, nw)):
        return
    if f in PARTICLES:
        w.name_like = True  # "de la Cruz", "Nguyen Van An": inside a name, never a name alone
        return
    saint = _SAINT.search(text, max(0, w.start - 8), w.start)
    lex = (f in nw.lexicon or f.replace("'", "") in nw.lexicon) and not saint
    if lex and w.case != "cap" and f in nw.lowercase_words:
        lex = False
        w.name_like = w.case != "lower"
        return
    w.name_like = lex or f in nw.ambiguous or not (f in common_words() or is_medical(f))
    w.seed = lex


def _followed_by_head(text: str, end: int, nw: NameWords) -> bool:
    m = re.match(r"[\s-]*([A-Za-z']+)", text[end:end + 30])
    return bool(m and m.group(1).lower() in nw.heads)


def _adjacent(text: str, a: _Word, b: _Word) -> bool:
    """Two words belong to one name: one or two spaces (or an initial) between them, compatible case."""
    gap = text[a.end:b.start]
    if gap not in (" ", "  ", "\t") and not _INITIAL_GAP.fullmatch(gap):
        if gap.strip() != "," or len(gap) > 3:
            return False
        if not (a.seed or b.seed) or (a.case == "lower") != (b.case == "lower"):
            return False
    if (a.case == "lower") != (b.case == "lower"):
        lower = a if a.case == "lower" else b
        return lower.seed or lower.folded in PARTICLES  # "Ramón de la Cruz"
    return True


def _starts_after(regex: re.Pattern[str], text: str) -> set[int]:
    return {m.end() for m in regex.finditer(text)}


def _mark_context_seeds(text: str, ws: list[_Word]) -> None:
    """Words right after a title or a name context, before a credential or an age statement."""
    after_title = _starts_after(_TITLE, text)
    after_context = _starts_after(_CONTEXT, text)
    for i, w in enumerate(ws):
        rare = w.case != "lower" or w.seed or not _WORD_ENDING.search(w.folded)
        if w.start in after_title and w.folded not in name_words().stop and len(w.folded) > 1:
            if w.case != "lower" or (w.name_like and rare) or w.folded in name_words().lexicon:
                w.name_like = w.seed = True
        elif w.start in after_context and w.folded not in PARTICLES and rare and (
                w.name_like or _two_capitals(text, ws, i)):
            w.name_like = w.seed = True
        if w.case == "cap" and w.name_like and not w.seed and _SUBJECT_VERB.match(text, w.end) and i > 0 \
                and ws[i - 1].case == "lower" and text[ws[i - 1].end:w.start] == " ":
            w.seed = True  # "... reports that Leopold has had ..."
        if w.case != "lower" and w.name_like and (_CREDENTIAL.match(text, w.end) or _AGE_AFTER.match(text, w.end)):
            w.seed = True
            if i > 0 and ws[i - 1].name_like and ws[i - 1].case != "lower" and _adjacent(text, ws[i - 1], w):
                ws[i - 1].seed = True


def _two_capitals(text: str, ws: list[_Word], i: int) -> bool:
    """A capitalized common word after a name context counts when a name-like capitalized word follows it
    ("partner Sam Okoro"), not alone ("patient Care")."""
    return (ws[i].case == "cap" and ws[i].folded not in name_words().stop and i + 1 < len(ws)
            and ws[i + 1].case == "cap" and ws[i + 1].name_like and text[ws[i].end:ws[i + 1].start] == " ")


def _runs(text: str, ws: list[_Word]) -> list[list[_Word]]:
    runs: list[list[_Word]] = []
    current: list[_Word] = []
    for w in ws:
        if not w.name_like:
            if current:
                runs.append(current)
            current = []
            continue
        if current and not _adjacent(text, current[-1], w):
            runs.append(current)
            current = []
        current.append(w)
    if current:
        runs.append(current)
    return runs


def _mid_sentence(text: str, run: list[_Word]) -> bool:
    """Two or more capitalized words inside a sentence (after a lower-case word or , ; ( )."""
    caps = [w for w in run if w.case == "cap"]
    if len(caps) < 2 or len(caps) != len(run):
        return False
    before = text[max(0, run[0].start - 40):run[0].start].rstrip()
    if not before:
        return False
    m = re.search(r"(\S+)$", before)
    prev = m.group(1) if m else ""
    return bool(re.fullmatch(r"[a-z]+|\S*[,;(]", prev))


def name_spans(text: str, known: Iterable[str] = ()) -> list[tuple[int, int]]:
    """(start, end) of every name in `text`; `known`: folded name words of this row (always names)."""
    nw = name_words()
    known_set = frozenset(known)
    ws = words(text)
    for w in ws:
        _classify(w, text, nw, known_set)
    _mark_context_seeds(text, ws)
    found = _named_runs(text, ws)
    # a word found as a name once is a name wherever else it appears in the note
    again = {w.folded for run in found for w in run if w.folded not in PARTICLES and len(w.folded) > 2
             and w.folded not in common_words() and w.folded not in nw.ambiguous}
    if again:
        for w in ws:
            if w.folded in again and not w.seed:
                w.name_like = w.seed = True
        found = _named_runs(text, ws)
    return [(run[0].start, run[-1].end) for run in found]


def _named_runs(text: str, ws: list[_Word]) -> list[list[_Word]]:
    """Runs of name-like words that hold a seed (particles at either end are not part of the name)."""
    out = []
    for run in _runs(text, ws):
        while run and run[0].folded in PARTICLES and not run[0].seed:
            run = run[1:]
        while run and run[-1].folded in PARTICLES and not run[-1].seed:
            run = run[:-1]
        if run and (any(w.seed for w in run) or _mid_sentence(text, run)):
            out.append(run)
    return out
