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

from precimed.privacy.vocabulary import (
    ALLOW_RANK,
    _data,
    _ranked_words,
    ambiguous_names,
    common_words,
    fold,
    is_medical,
    lexicon_names,
    shipped_names,
    zipf,
    zipf_in,
)

TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*(?:-[^\W\d_]+(?:['\u2019][^\W\d_]+)*)*")
_TITLE = re.compile(r"(?i:\b(?:dr|doctor|mr|mrs|ms|miss|mx|prof|professor|nurse|sister|rev|reverend|pastor|"
                    r"sr|sra|dra|mme|mlle|herr|frau|rn|lpn|crna|cna)\b\.?[ \t]+)")
_CONTEXT = re.compile(
    r"(?i:\b(?:name\s+given\s+as|known\s+as|patient(?:'s)?\s+name|name|patient|pt|signed\s+by|electronically\s+signed\s+by|dictated\s+by|"
    r"attending|resident|seen\s+by|spoke\s+(?:with|to)|talked\s+(?:with|to)|discussed\s+with|accompanied\s+by|"
    r"contact|pcp|met\s+with|seeing|saw|visited\s+by|reviewed\s+by|examined\s+by|evaluated\s+by|cosigned\s+by|"
    r"referred\s+by|brought\s+in\s+by|called\s+by|covered\s+by|per|caller|callback\s+from|"
    r"referring\s+physician|wife|husband|spouse|daughter|son|mother|father|mom|dad|sister|brother|partner|"
    r"friend|caregiver|guardian|grandson|granddaughter|grandmother|grandfather|niece|nephew|aunt|uncle|cousin|"
    r"neighbor|neighbour|roommate|boyfriend|girlfriend|fiance|fiancee|stepson|stepdaughter|interpreter|"
    r"chaplain|emergency\s+contact|fellow|intern|physician|provider|surgeon|therapist|pharmacist|"
    r"social\s+worker|case\s+manager|nurse\s+practitioner|np|pa|landlord|employer|coworker|"
    r"next\s+of\s+kin|nok|hcp|proxy|named|called|aka|goes\s+by|dear|hi|hello|"
    r"thanks|regards|sincerely|(?:from|to)(?=:)|mrn\s+for|sponsor|case\s*worker|advocate|doula|midwife|"
    r"named|nicknamed|husband's|wife's|son's|daughter's|aide|navigator|sitter|scribe|coordinator|liaison|"
    r"volunteer|technician|tech|assistant|asst|doula|sonographer|medic|crew|paramedic|emt)\b)"
    r"[ \t]*(?:(?:is|was|:|-|,|\(|\"|')[ \t]*){0,2}")
_PARENTHESIS = re.compile(r"\(?[^()\n]{1,20}\)[ \t]*")  # "interpreter (somali) Faadumo"
_CREDENTIAL = re.compile(r"(?:,[ \t]*|[ \t]+)(?:MD|M\.D\.|DO|RN|NP|PA-C|PA|PhD|CNA|MSW|DDS|MBBS|FRCP|RD|OTR|DPT|CNM|"
                         r"MPH|BSN|MSN|(?i:md|rn|np|pharmd|lcsw|licsw|lmsw|lpn|aprn|fnp|crnp|dnp|crna|lmft|psyd))\b")
_ROLE_IN_PARENTHESES = re.compile(r"[ \t]*\((?:[A-Za-z]+[ \t]+){0,2}(?:RN|MD|NP|PA|PA-C|DO|LPN|CNA|MSW|LCSW|PT|OT|"
                                  r"(?i:rn|md|np|nurse|doctor|resident|fellow|attending|interpreter|chaplain|"
                                  r"aide|tech|therapist|pharmacist|social\s+worker))\)")
_INITIAL_SKIP = re.compile(r"[A-Z]\.[ \t]*")  # "husband K. Senthilkumar": the context reaches past the initial
_HONORIFIC = re.compile(r"-(?:san|sama|chan|kun|sensei|ssi|nim|ji|sahib|hanım|hanim|bey)$", re.I)
_AGE_AFTER = re.compile(r"[ \t]+(?:is|was)[ \t]+an?[ \t]+\d{1,3}\s*-?\s*(?:years?|yrs?|yo|y/o|y\.o\.)\b"
                        r"|,?[ \t]*\d{1,3}[ \t]?(?:[MF]\b|yo\b|y/o|y\.o\.|years?\b|-year)"
                        r"|[ \t]*\((?:pt|patient|the\s+patient)\)")
_SUBJECT_VERB = re.compile(r"[ \t]+(?:has|had|is|was|says|said|reports|reported|states|stated|called|came|went|"
                           r"will|would|can|could|did|does|feels|felt|wants|wanted|asked|asks|lives|lived|died)\b")
_WORD_ENDING = re.compile(r"(?:ed|ing|ly|ness|tion|ment)$")  # lower-case verbs and nouns, not names
_SAINT = re.compile(r"\b(?:St|Saint|Ste)\.?[ \t]+$")  # "St. Vincent's Hospital" is a place
_INITIAL_GAP = re.compile(r"[ \t]+[A-Z]\.?[ \t]+")
PARTICLES = frozenset({"de", "da", "del", "della", "di", "du", "la", "le", "van", "von", "der", "den", "ter", "y",
                       "bin", "binti", "bint", "ibn", "al", "el", "dos", "das", "st", "o", "mac", "mc", "ni", "nic",
                       "ui", "ten", "vander", "abu", "ap", "dal", "degli", "af", "zu"})
_NAME_PREFIX = re.compile(r"(?:Mc|Mac|O'|D'|De|Di|Du|Da|La|Le|Van|Von|St|Fitz|Ben|Abu|El|Al)[A-Z]")
_MODALS = frozenset({"may", "will", "can", "must", "shall", "might", "would", "could", "should", "did", "does"})
_FUNCTION_WORD_ZIPF = 6.0  # "will", "may": a name after a context only when no lower-case word follows


@dataclass(frozen=True)
class NameWords:
    """Folded word sets the name rules read (built once)."""

    lexicon: frozenset[str]
    ambiguous: frozenset[str]
    lowercase_words: frozenset[str]
    stop: frozenset[str]
    eponyms: frozenset[str]
    heads: frozenset[str]
    world_only: frozenset[str] = frozenset()  # lexicon names from names_world.yaml only (not names.yaml)
    shipped: frozenset[str] = frozenset()  # lexicon names of names.yaml


@cache
def name_words() -> NameWords:
    data = _data("names.yaml")
    ambiguous = ambiguous_names()
    stop = frozenset(fold(w) for w in (*data["stop_words"], *data["institution_words"]))
    return NameWords(lexicon_names(), ambiguous, frozenset(fold(w) for w in data["lowercase_words"]), stop,
                     frozenset(fold(w) for w in data["eponyms"]), frozenset(h.lower() for h in data["clinical_heads"]),
                     lexicon_names() - shipped_names(), shipped_names())


@dataclass
class _Word:
    start: int
    end: int
    text: str
    folded: str
    case: str  # "cap", "upper", "lower"
    name_like: bool = False
    seed: bool = False
    nickname: bool = False


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
        honorific = _HONORIFIC.search(token)
        if honorific and honorific.start() >= 2:
            end, token = end - len(honorific.group()), token[:honorific.start()]  # "Keiko-san" is "Keiko"
        out.append(_Word(start, end, token, fold(token), _case(token)))
    return out


def _classify(w: _Word, text: str, nw: NameWords, known: frozenset[str]) -> None:
    f = w.folded
    if f in known and f not in PARTICLES:
        w.name_like = w.seed = True
        return
    if f in PARTICLES:
        w.name_like = f not in nw.stop or w.text[0].isupper()  # "de la Cruz", "Ó Briain": inside a name only
        return
    if f in nw.stop or len(f) < 2 or (f in nw.eponyms and _followed_by_head(text, w.end, nw)):
        return
    saint = _SAINT.search(text, max(0, w.start - 8), w.start)
    lex = (f in nw.lexicon or f.replace("'", "") in nw.lexicon or _hyphenated_name(w, nw)) and not saint
    if lex and w.case != "cap" and f in nw.lowercase_words:
        w.name_like = True  # "rosa", "kim": a name beside a name or after a context, not alone
        return
    if _brand_like(w.text) and not lex:
        return  # "ResMed", "AirSense": a product, not "McDonald" or "DeShawn"
    ordinary = f in common_words() or is_medical(f)
    w.name_like = lex or f in nw.ambiguous or not ordinary
    w.seed = lex and not (w.case == "upper" and len(f) <= 3 and f in nw.world_only)  # "OSA", "EDD"
    if w.case == "lower" and f in nw.world_only and _common_lower_any(w.text.lower()):
        w.seed = False  # "español", "esposa": a word of another language, not a name, unless in a name context
    if (f in nw.eponyms or any(part in nw.eponyms for part in f.split("-"))) and f not in nw.shipped:
        w.seed = False  # "his Parkinson meds", "Ortolani/Barlow neg": a name only with a title, context or name


def _hyphenated_name(w: _Word, nw: NameWords) -> bool:
    """A capitalized double-barrelled name with a lexicon part: "Reyes-Whitehorse" (not "Cheyne-Stokes")."""
    parts = w.folded.split("-")
    if len(parts) < 2 or w.case != "cap" or not all(p[:1].isalpha() for p in parts):
        return False
    if any(p in nw.eponyms for p in parts) or not all(c[:1].isupper() for c in w.text.split("-")):
        return False
    return any(p in nw.lexicon and p not in nw.ambiguous for p in parts)


def _common_lower_any(folded: str) -> bool:
    """An ordinary word in English or another language's frequency list (wordfreq es/pt/fr)."""
    return any(zipf_in(folded, lang) >= 4.0 for lang in ("es", "pt", "fr"))


def _brand_like(token: str) -> bool:
    """A capital inside a word that is not a name prefix (Mc, Mac, O', De, La ...): a brand or an acronym."""
    inner = [i for i, c in enumerate(token) if i and c.isupper()]
    return bool(inner) and not token.isupper() and not _NAME_PREFIX.match(token) and "-" not in token


@cache
def _common_lower(folded: str) -> bool:
    """A lower-case word that is an ordinary English word (the ``ALLOW_RANK`` most frequent, or its stem)."""
    ranked = _ranked_words(ALLOW_RANK)
    return any(stem in ranked for stem in _stems(folded))


def _stems(f: str) -> set[str]:
    """The word and its plausible stems (plural, past, -ing, -ly, -al): 'referrals' -> 'referral', 'refer'."""
    out = {f}
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""),
                         ("ing", "e"), ("ly", ""), ("ally", ""), ("er", ""), ("ers", ""), ("al", ""), ("rals", "")):
        if f.endswith(suffix) and len(f) - len(suffix) >= 3:
            out.add(f[:-len(suffix)] + repl)
    return out


def _followed_by_head(text: str, end: int, nw: NameWords) -> bool:
    """An eponym followed by a clinical head word ("Parkinson disease") or a score ("Katz 6/6", "Mallampati II")."""
    rest = text[end:end + 30]
    if _SCORE_AFTER.match(rest):
        return True
    m = re.match(r"[\s-]*([A-Za-z']+)", rest)
    return bool(m and m.group(1).lower() in nw.heads)


def _head_next(text: str, end: int, nw: NameWords) -> bool:
    """A clinical head word after a word, past a possessive: "Hunter syndrome", "Graves' disease"."""
    m = re.compile(r"(?:['\u2019]s?)?[ \t-]+([A-Za-z]+)").match(text, end)
    return bool(m and m.group(1).lower() in nw.heads) or _SCORE_AFTER.match(text, end) is not None


# a score after an eponym ("Katz 6/6", "Mallampati II"), not an age ("van der Berg 71M")
_SCORE_AFTER = re.compile(r"(?:'s)?[ \t]*(?::[ \t]*)?(?:\d+(?:/\d+)?(?![\d/])"
                          r"(?![ \t]?(?:[MF]\b|yo\b|y/o|y\.o|years?\b|-year))|(?:I{1,3}|IV|V)\b)")


def _adjacent(text: str, a: _Word, b: _Word) -> bool:
    """Two words belong to one name: one or two spaces (or an initial) between them, compatible case."""
    gap = text[a.end:b.start]
    if (a.nickname or b.nickname) and re.fullmatch(r"[ \t]*[\"\u201c\u201d'][ \t]*", gap):
        return True
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
    after_title |= {m.end() for start in list(after_title) if (m := _INITIAL_SKIP.match(text, start))}
    after_context = _starts_after(_CONTEXT, text)
    after_context |= {m.end() for start in list(after_context) if (m := _INITIAL_SKIP.match(text, start))}
    after_context |= {m.end() for start in list(after_context) if (m := _PARENTHESIS.match(text, start))}
    nw = name_words()
    for i, w in enumerate(ws):
        rare = w.case != "lower" or w.seed or not _WORD_ENDING.search(w.folded)
        if w.start in after_title and w.folded not in name_words().stop and len(w.folded) > 1:
            lexicon = any(w.folded in group for group in (nw.lexicon, nw.eponyms, nw.ambiguous, PARTICLES))
            if w.case != "lower" or lexicon or (w.name_like and rare and not _common_lower(w.folded)):
                w.name_like = w.seed = True  # "dr saperstein", not "nurse navigator"
                _capitalized_tail(text, ws, i)
        elif w.start in after_context and w.folded not in PARTICLES and rare and (
                w.name_like or _two_capitals(text, ws, i) or w.folded in name_words().ambiguous
        ) and not _function_word(text, ws, i) and not (
                w.case == "lower" and w.folded not in nw.ambiguous and w.folded not in nw.lexicon
                and _common_lower(w.folded)):  # "pt prefers", "PT referral"
            w.name_like = w.seed = True
            _capitalized_tail(text, ws, i)
        if w.case == "cap" and w.name_like and not w.seed and _SUBJECT_VERB.match(text, w.end) and i > 0 \
                and ws[i - 1].case == "lower" and text[ws[i - 1].end:w.start] == " ":
            w.seed = True  # "... reports that Leopold has had ..."
        if (w.case != "lower" or (w.name_like and rare)) and w.name_like and (
                _CREDENTIAL.match(text, w.end) or _AGE_AFTER.match(text, w.end)
                or _ROLE_IN_PARENTHESES.match(text, w.end)):
            w.seed = True
            if i > 0 and ws[i - 1].name_like and ws[i - 1].case != "lower" and _adjacent(text, ws[i - 1], w):
                ws[i - 1].seed = True


_TAIL_END = re.compile(r"[ \t]*(?:[,;.)]|$)", re.M)


def _capitalized_tail(text: str, ws: list[_Word], i: int) -> None:
    """Up to two capitalized words right after a name found from its context, ending at a comma, a period
    or a parenthesis, belong to it ("daughter Marcella Two Bulls)", "Joseph Little Thunder,")."""
    tail = []
    for j in range(i + 1, min(i + 3, len(ws))):
        w = ws[j]
        if w.case != "cap" or text[ws[j - 1].end:w.start] != " " or w.folded in name_words().stop \
                or is_medical(w.folded) or w.folded in name_words().eponyms:
            break
        tail.append(w)
    while tail and not _TAIL_END.match(text, tail[-1].end):
        tail.pop()
    for w in tail:
        w.name_like = True


def _function_word(text: str, ws: list[_Word], i: int) -> bool:
    """A very frequent word ("will", "may") followed by a lower-case word: "son will call", not a name."""
    w = ws[i]
    frequent = w.folded in _MODALS or zipf(w.folded) >= _FUNCTION_WORD_ZIPF
    if w.case != "lower" or not frequent or i + 1 >= len(ws):
        return False
    nxt = ws[i + 1]
    return nxt.case == "lower" and text[w.end:nxt.start] == " "


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
    _stop_word_surnames(text, ws, nw)
    _given_name_before(text, ws, nw)
    _initial_surnames(text, ws, nw)
    found = _named_runs(text, ws)
    # a word found as a name once is a name wherever else it appears in the note
    again = {w.folded for run in found for w in run if w.folded not in PARTICLES and len(w.folded) > 2
             and w.folded not in common_words() and w.folded not in nw.ambiguous}
    # an ambiguous given name found in a name ("daughter Dawn Walkingstick") is that person again when written
    # with its capital ("Dawn's cell"); not the modal verbs and very frequent words ("Will", "May")
    again_cap = {w.folded for run in found if len(run) > 1 for w in run if w.folded in nw.ambiguous
                 and w.case == "cap" and w.folded not in _MODALS and zipf(w.folded) < 5.0}
    if again or again_cap:
        for w in ws:
            possessive = text.startswith(("'s", "’s"), w.end)  # "Dawn's cell": a person, whatever follows
            if (w.folded in again or (w.folded in again_cap and w.case == "cap" and (possessive or not _head_next(
                    text, w.end, nw)))) and not w.seed and not (w.case == "lower" and _common_lower(w.folded)):
                w.name_like = w.seed = True
        found = _named_runs(text, ws)
    spans = [_with_initials(text, run[0].start, run[-1].end, run) for run in found]
    spans += [extra for _, end in spans if (extra := _script_name_after(text, end))]
    return spans


_INITIAL_BEFORE = re.compile(r"(?<![\w.])[A-Z]\.[ \t]?$")
_INITIAL_AFTER = re.compile(r"[ \t]+[A-Z](?:\.|(?=[ \t]*(?:[,;)\n]|$)))")
_INITIAL_AFTER_CAPS = re.compile(r"[ \t]+[A-Z]\b\.?(?!['\w])")


def _with_initials(text: str, start: int, end: int, run: list[_Word]) -> tuple[int, int]:
    """A name's span with the initial written before it ("R. Castellanos") or after it ("ADEBISI O.",
    "MacKenzie, Ross D."; without a dot after a surname-first or all-capitals name: "HARTIGAN, WILLIAM J")."""
    before = _INITIAL_BEFORE.search(text, max(0, start - 3), start)
    if before:
        start = before.start()
    caps = all(w.case == "upper" for w in run) or "," in text[run[0].end:run[-1].start]
    after = (_INITIAL_AFTER_CAPS if caps else _INITIAL_AFTER).match(text, end)
    if after:
        end = after.end()
    suffix = _SUFFIX_AFTER.match(text, end)
    if suffix:
        end = suffix.end()
    return start, end


_SUFFIX_AFTER = re.compile(r",?[ \t]+(?:Jr|Sr|II|III|IV|JR|SR)(?:\.|\b)(?![ \t]*\d)")


def _leading_particle(run: list[_Word]) -> bool:
    """A capitalized particle before a capitalized name word is part of the name: "Abu Omar", "De Souza"."""
    return len(run) > 1 and run[0].case == "cap" and run[1].case == "cap"


def _stop_word_surnames(text: str, ws: list[_Word], nw: NameWords) -> None:
    """A capitalized stop word that is also a lexicon name, right after a name and not before a number,
    is part of it: "Wang Jun", "Lê Thị Thu" (not "Jun 12", "Thu 3pm")."""
    for i in range(1, len(ws)):
        w, prev = ws[i], ws[i - 1]
        name = w.folded in nw.stop and (w.folded in nw.lexicon or w.folded in nw.ambiguous)
        if name and w.case in ("cap", "upper") and w.case == prev.case and prev.name_like \
                and text[prev.end:w.start] == " " and not re.match(r"[ \t]*[\d:]", text[w.end:w.end + 3]):
            w.name_like = True
            w.seed = w.seed or prev.seed


def _given_name_before(text: str, ws: list[_Word], nw: NameWords) -> None:
    """Words that a name right after them makes a name (one pass):

    - a capitalized stop word that is a given name, before a name word of the same case: "Pa Kou Yang",
      "VANG, PA NHIA" (not "PA 12345", "PA-C");
    - a capitalized common word before a double-barrelled surname: "Blessing Mensah-Bonsu", "Dana Levi-Cohen";
    - an eponym after a capitalized given name is a surname: "Harold Graves" (not "Graves disease");
    - a nickname in quotes between two name words: "Rolando \"Jun\" Bautista".
    """
    first = _given_names()
    for i in range(len(ws) - 1):
        w, nxt = ws[i], ws[i + 1]
        gap = text[w.end:nxt.start]
        if gap != " ":
            if re.fullmatch(r"[ \t]+[\"\u201c']", gap) and i + 2 < len(ws) and w.name_like and w.case == "cap" \
                    and re.fullmatch(r"[\"\u201d'][ \t]+", text[nxt.end:ws[i + 2].start]) \
                    and ws[i + 2].case == "cap" and ws[i + 2].name_like and nxt.text[:1].isupper():
                nxt.name_like = nxt.nickname = True
            continue
        stop_given = w.case in ("cap", "upper") and w.case == nxt.case and not w.name_like and \
            w.folded in nw.stop and (w.folded in nw.ambiguous or w.folded in nw.lexicon) and \
            (nxt.seed or nxt.folded in nw.lexicon) and not re.match(r"[ \t]*[\d:-]", text[nxt.end:nxt.end + 2])
        before_double = w.case == "cap" and not w.name_like and "-" in nxt.text and nxt.case == "cap" and \
            nxt.seed and w.folded not in nw.stop and not is_medical(w.folded) and w.folded not in nw.eponyms
        if stop_given or before_double:
            w.name_like = True
        elif w.case == "cap" and w.folded in first and nxt.case == "cap" and nxt.folded in nw.eponyms and \
                not _followed_by_head(text, nxt.end, nw):
            w.name_like = w.seed = nxt.name_like = True


_INITIAL_BEFORE_WORD = re.compile(r"(?<![\w.])[A-Z]\.[ \t]?$")


def _initial_surnames(text: str, ws: list[_Word], nw: NameWords) -> None:
    """An initial before a capitalized word that is neither common nor medical: "J. Thibodeaux", "P. Ngata",
    "J. Kaʻahanui" (not "E. Coli", "S. Aureus", "D. Patient")."""
    for w in ws:
        if w.case == "cap" and w.name_like and not w.seed and w.folded not in nw.stop and \
                w.folded not in nw.ambiguous and len(w.folded) > 2 and zipf(w.folded) < 2.5 and \
                _INITIAL_BEFORE_WORD.search(text, max(0, w.start - 3), w.start):
            w.seed = True


# letters of scripts without case (CJK, kana, Hangul, Arabic, Hebrew, Devanagari, Ethiopic, Thai ...)
CASELESS_SCRIPT = re.compile(r"[\u0590-\u08ff\u0900-\u0dff\u0e00-\u0eff\u1200-\u139f\u1100-\u11ff\u3040-\u30ff"
                             r"\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CASELESS_RUN = re.compile(r"[ \t]*[(\uff08][ \t]*((?:[^\W\d_]+[ \t]?){1,4}?)[ \t]*[)\uff09]")


def _script_name_after(text: str, end: int) -> tuple[int, int] | None:
    """A name in a script without case in parentheses right after a name: "TANAKA Haruki (田中 春樹)"."""
    m = _CASELESS_RUN.match(text, end)
    if m and CASELESS_SCRIPT.match(m.group(1)) and not is_medical(fold(m.group(1))):
        return m.start(1), m.end(1)
    return None


@cache
def _given_names() -> frozenset[str]:
    data = _data("names.yaml")
    return frozenset(fold(n) for n in data["first_names"])


def _named_runs(text: str, ws: list[_Word]) -> list[list[_Word]]:
    """Runs of name-like words that hold a seed (particles at either end are not part of the name)."""
    out = []
    for run in _runs(text, ws):
        while run and run[0].folded in PARTICLES and not run[0].seed and not _leading_particle(run):
            run = run[1:]
        while run and run[-1].folded in PARTICLES and not run[-1].seed:
            run = run[:-1]
        if run and (any(w.seed for w in run) or _mid_sentence(text, run)):
            out.append(run)
    return out


# ---------------------------------------------------------------------------------------------- signature initials
# Two or three letters (any case) used as a clinician's signature: "-jt/ab" or "-AG, RN" opening a line,
# "Jo Reyes / jr" or "SIGNED RJK" ending one, "SB / Dr Akana", after "per", "/s/", "cosigned", "transcribed",
# "Tech:", "Sonographer". The labelling rules count these as names.
_SIG_CREDENTIAL = (r"(?:MD|DO|RN|NP|PA|PA-C|DDS|DMD|LPN|CNA|CNM|MSW|LCSW|RT|RRT|PT|OT|SLP|RD|PharmD|APRN|CRNA|"
                   r"PGY-?\d|MS\d|OMFS|NNP|FNP|EMT|(?i:md|rn|np|dds|pgy-?\d))")
_SIG = r"([A-Za-z]{2,3})"
_SIG_END = rf"(?=[ \t]*(?:$|[,;/)\]]|\.(?:[ \t]|$)|[ \t]+{_SIG_CREDENTIAL}\b))"
_SIGNATURE_RES = (
    # a dash opening a line, and a second signer after a slash: "-jt/ab", "-AG, RN", "-ch PGY2", "—dm"
    re.compile(rf"(?:^|(?<=[.!?])[ \t])[ \t]*[-\u2013\u2014~][ \t]?{_SIG}(?:/{_SIG})?{_SIG_END}", re.M),
    # a second signature after a spaced slash ending the line: "Jo Reyes / jr", "PNB / transcribed rt"
    re.compile(rf"(?<=\S)(?:[ \t]/[ \t]?|[ \t]?/[ \t])(?:(?i:transcribed|typed|scribe|by)[ \t]+)?{_SIG}"
               r"[ \t]*\.?[ \t]*$", re.M),
    # initials opening a line before another signer: "SB / Dr Akana"
    re.compile(rf"^[ \t]*{_SIG}[ \t]*/[ \t]*(?=(?i:dr|md|rn|np)\b)", re.M),
    # after a signing word or a role: "SIGNED RJK", "Transcribed: kl", "per jt", "/s/ MB", "Tech: SR."
    re.compile(rf"(?i:\b(?:signed|e-signed|cosigned|co-signed|transcribed|dictated|typed|scribed|edited|initials|"
               rf"reviewed|verified|entered|per|tech|technologist|sonographer|scribe|asst|assistant)"
               rf"(?:[ \t]+by)?(?:[ \t]*:[ \t]*|[ \t]+)|/s/[ \t]*){_SIG}{_SIG_END}", re.M),
)
_NOT_INITIALS = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "go", "he", "her", "him", "his", "if", "in", "is", "it",
    "me", "my", "no", "of", "off", "ok", "on", "or", "so", "the", "to", "up", "us", "we", "yes", "you", "pt", "pts",
    "md", "rn", "np", "pa", "mom", "dad", "son", "day", "wk", "hr", "hrs", "min", "os", "iv", "im", "po", "pr",
    "sq", "sc", "am", "pm", "icu", "ed", "er", "or", "pcp", "all", "any", "can", "did", "for", "had", "has", "how",
    "may", "not", "now", "one", "our", "out", "see", "she", "two", "was", "who", "why", "its", "per", "via", "ref",
    "rx", "dx", "tx", "hx", "sx", "fx", "bid", "tid", "qid", "prn", "qd", "qhs", "lab", "labs", "new", "old", "due",
    "yet", "too", "ask", "plan", "call", "note", "see", "n/a", "na", "nil", "none", "nad", "wnl", "ama", "dnr",
    "dni", "cpr", "hi", "si", "wo", "w",
])


def signature_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of clinician initials used as a signature (a fixed number of bounded regex scans)."""
    out = []
    for n, regex in enumerate(_SIGNATURE_RES):
        for m in regex.finditer(text):
            for g in range(1, (regex.groups or 0) + 1):
                initials = m.group(g)
                if initials is None or initials.lower() in _NOT_INITIALS or not (
                        initials.islower() or initials.isupper()):
                    continue
                if n == 1 and m.group().lstrip(" \t/")[:1].lower() == initials[:1].lower() and is_medical(
                        fold(initials)):
                    continue  # "HR / BP" ending a line: a pair of abbreviations, not a second signer
                out.append((m.start(g), m.end(g)))
    return out
