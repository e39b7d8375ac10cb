"""The allowlist (Philter-style) mode of the note de-identifier (Norgeot et al., npj Digit Med 2020).

A token survives only if it is medical vocabulary, a common English word that is not a name or a place (with
capitalisation rules for the ambiguous ones), or a number in a safe clinical shape; everything else is
redacted, typed when a rule knows the type, else OTHER. ``outside_allowlist`` gives those spans; the strict
detector's spans (``notes.detect_phi``) always win over them.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cache

from precimed.privacy.note_names import TOKEN, name_words
from precimed.privacy.note_patterns import (
    score_before,
    valid_numeric_date,
)
from precimed.privacy.note_spans import Span
from precimed.privacy.vocabulary import (
    ALLOW_RANK,
    ALLOWLIST_MODE_RANK,
    COMMON_NAME_RANK,
    _ranked_words,
    ambiguous_names,
    clinical_abbreviations,
    fold,
    is_medical,
    lexicon_names,
    medical_words,
    number_value,
    place_words,
)


# Philter-style (Norgeot et al., npj Digit Med 2020): a token survives only if it is on the allowlist or is a
# number in a safe clinical pattern; everything else is redacted, typed when a rule knows the type.
@cache
def _allowlist() -> frozenset[str]:
    """Common English (the wordfreq top ``ALLOWLIST_MODE_RANK``) less every name of the lexicon, plus stop words."""
    return (_ranked_words(ALLOWLIST_MODE_RANK) - lexicon_names()) | name_words().stop


@cache
def _lower_top() -> frozenset[str]:
    """A place spelled like one of these words is an ordinary word when written in lower case ("onset")."""
    return _ranked_words(ALLOW_RANK)


@cache
def _common_top() -> frozenset[str]:
    """The words common enough that a place or name spelled the same is an ordinary word in lower case."""
    return _ranked_words(COMMON_NAME_RANK)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_ROMAN = re.compile(r"x{0,3}(?:ix|iv|v?i{0,3})|X{0,3}(?:IX|IV|V?I{0,3})")
_MONTH_WORDS = frozenset(["january", "february", "march", "april", "may", "june", "july", "august", "september",
                          "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
                          "sept", "oct", "nov", "dec"])
_WEEKDAYS = frozenset(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue",
                       "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun"])
_HOLIDAY_WORDS = frozenset(["christmas", "xmas", "thanksgiving", "easter", "halloween", "hanukkah", "chanukah",
                            "kwanzaa", "diwali", "ramadan", "eid", "juneteenth", "passover", "yom", "nowruz"])
_TERM_WORDS = frozenset(["neg", "pos", "positive", "negative", "test", "tests", "maneuver", "sign", "signs", "score",
                         "scale", "type", "class", "grade", "stage", "criteria", "classification", "tube", "tubes",
                         "fever", "virus", "guidelines", "questionnaire", "rule", "respirations", "breathing",
                         "spotted"])
_NAME_STOPS = frozenset(["dr", "mr", "mrs", "ms", "st", "prof", "sr", "jr", "mx", "rev", "fr"])
_CONTRACTION = re.compile(r"(?i:(n['\u2019]t|['\u2019](?:re|ve|ll|d|m|s))$)")
# a number, an alphanumeric code or numbers joined by / . : , - ("3/14/2021", "128/76", "L4-L5", "1,500", "14:30")
_CLUSTER = re.compile(r"(?<![^\W_])[^\W_]*\d[^\W_]*"
                      r"(?:[/.:,\-](?:[^\W_]*\d[^\W_]*|[^\W\d_]{1,4}(?=[/.:,\-][^\W_]*\d)))*")
_ANY_TOKEN = re.compile(rf"(?P<num>{_CLUSTER.pattern})|(?P<word>{TOKEN.pattern})")
_UNITS = _word_set("""
    mg mcg ug g gm gms gram grams kg kgs lb lbs oz ml mls l cc dl cm mm m km in inch inches ft feet mmhg
    bpm c f u units unit iu meq mmol mol mosm kcal cal calories tab tabs tablet tablets cap caps capsule
    capsules puff puffs drop drops gtt gtts spray sprays patch patches h hr hrs hour hours min mins
    minute minutes sec secs s d day days wk wks week weeks mo mos month months y yr yrs year years yo x
    times beats breaths ng pg nmol pmol umol miu percent pct steps pack packs ppd cigarettes drinks
    beers servings cells cell mcl ul mEq liters liter litres litre ounces pounds lpm fl doses dose
    sessions cycles episodes point points mg/dl""")
_AGE_UNITS = frozenset(["y", "yr", "yrs", "year", "years", "yo"])
_LABELS = _word_set("""
    bp sbp dbp map hr pulse p rr t temp tmax tc o2 spo2 sats sat sao2 fio2 peep wt weight ht height bmi
    gcs nihss apgar apgars pain glucose bg fsbg cbg fs fsg accucheck a1c hba1c na k cl co2 hco3 bun cr
    creat creatinine mg phos ca ica hgb hb hct wbc plt plts platelets anc alc inr ptt pt lactate lac
    trop troponin bnp ldl hdl tg chol tsh ast alt alp alk tbili bili lipase albumin alb ef lvef cvp tv
    vt score grade stage level dose rate egfr gfr ck cpk esr crp ferritin iron uop output intake ua sg
    ph pco2 po2 lvedp qtc qrs pr rate rvsp mmse moca phq gad audit cage asa ecog kps lace braden morse
    rass cam cows ciwa bps ppd ppm x q qd vitals vs ivf bolus cm mm kg lb pack packs""")
_BIG_LABELS = _word_set("""
    plt plts platelets wbc anc alc bnp ntprobnp ck cpk ferritin ldh glucose bg trop troponin uop output
    intake steps crp esr dimer lipase amylase ast alt alp vl cd4 ivf""")
_ID_BEFORE = frozenset(["ssn", "last", "four", "digits", "ext", "x", "id", "mrn", "acct", "account", "no", "number",
                        "box", "pin", "code", "zip", "member", "policy", "plate", "serial", "sn"])
_LABEL_FILLERS = frozenset(["of", "is", "was", "at", "to", "now", "down", "up", "from", "now", "were", "are", "~"])
_SENTENCE_END = ".!?:\n\r"
_LEAD_SKIP = " \t\"'(\u201c\u2018[*\u2022\u2013\u2014-#>"


@dataclass
class _Tok:
    start: int
    end: int
    text: str
    number: bool
    kind: str | None = None  # the type it is redacted as; None: it survives


def outside_allowlist(text: str) -> list[Span]:
    """Tokens off the allowlist (allowlist mode), typed NAME / ADDRESS / DATE / AGE when a rule knows, else OTHER."""
    toks = [_Tok(m.start(), m.end(), m.group(), m.group("num") is not None) for m in _ANY_TOKEN.finditer(text)]
    caps_lines = _caps_lines(text)
    line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
    for i, tok in enumerate(toks):
        if tok.number:
            tok.kind = _number_kind(text, toks, i)
        else:
            line = bisect.bisect_right(line_starts, tok.start) - 1
            tok.kind = _word_kind(text, toks, i, caps_lines[line])
    for i, tok in enumerate(toks):
        if tok.kind == "OTHER" and (fold(tok.text) in _FOREIGN_MONTHS or tok.text.lower() in _VIETNAMESE_DATE):
            tok.kind = "DATE"
        elif not tok.kind and not tok.number:
            line = bisect.bisect_right(line_starts, tok.start) - 1
            tok.kind = _aggressive_word_kind(text, toks, i, caps_lines[line])
    _extend_places(text, toks)
    _proper_terms(text, toks)
    _extend_runs(text, toks)
    _digit_runs(text, toks)
    _numbers_in_context(text, toks)
    return [Span(t.start, t.end, t.kind) for t in toks if t.kind]


def _caps_lines(text: str) -> list[bool]:
    """Per line: written in capitals (at least three words of two letters or more, none with a lower-case letter)."""
    out = []
    for line in text.split("\n"):
        ws = [w for w in re.findall(r"[^\W\d_]{2,}", line)]
        out.append(len(ws) >= 3 and not any(c.islower() for w in ws for c in w))
    return out


def _sentence_start(text: str, start: int) -> bool:
    """The word at `start` opens a sentence, a line, a list item or a "Heading:" value (not after "Dr." or "J.")."""
    j = start - 1
    while j >= 0 and start - j <= 8 and text[j] in _LEAD_SKIP:
        j -= 1
    if j < 0:
        return True
    if start - j > 8 or text[j] not in _SENTENCE_END:
        return False
    if text[j] == ".":
        m = re.search(r"([^\W\d_]+)\.$", text[max(0, j - 12):j + 1])
        if m and (m.group(1).lower() in _NAME_STOPS or (len(m.group(1)) == 1 and m.group(1).isupper())):
            return False
    return True


def _next_word(text: str, toks: list[_Tok], i: int) -> _Tok | None:
    if i + 1 < len(toks) and re.fullmatch(r"[ \t]{0,2}|[ \t]*[:=][ \t]*", text[toks[i].end:toks[i + 1].start]):
        return toks[i + 1]
    return None


_PREV_GAP = re.compile(r"[ \t]{0,3}|[ \t]*[:=~#][ \t]*|[ \t]*\([ \t]*")


def _prev_word(text: str, toks: list[_Tok], i: int, skip_fillers: bool = True) -> _Tok | None:
    j = i - 1
    for _ in range(2):
        if j < 0 or not _PREV_GAP.fullmatch(text[toks[j].end:toks[j + 1].start]):
            return None
        if skip_fillers and fold(toks[j].text) in _LABEL_FILLERS:
            j -= 1
            continue
        return toks[j]
    return None


# ---------------------------------------------------------------- the aggressive rules (issue 11, finding 3)
# What slips through a plain allowlist is mostly a capitalised common word used as a name ("June", "Phil"),
# an initial ("K", "J.R.R."), a word of another language (addresses and dates), one word of a longer name, or
# a number beside any of these. Each rule below states its class; none lists the strings it was written for.
# Capitalised words that stay when capitalised mid-sentence: the pronoun, headings and note furniture.
_CAPITAL_OK = _word_set("""
    i ok okay am pm vs etc plan assessment impression history physical exam examination hpi ros pmh psh
    fh sh medications allergies vitals labs imaging results diagnosis diagnoses problem problems disposition
    discharge admission admit admitted follow followup up summary note notes progress subjective objective
    review systems chief complaint present illness social family surgical past medical general neuro
    neurologic cardiac cardiovascular respiratory pulmonary abdomen abdominal extremities skin heent neck
    chest lungs heart psych psychiatric musculoskeletal genitourinary gastrointestinal endocrine renal
    hematology hematologic infectious disease diseases emergency department unit intensive care icu ward
    clinic hospital hospitalist service team primary attending resident fellow intern nurse nursing
    pharmacy pharmacist therapy physical occupational speech case management social work worker
    radiology laboratory lab pathology surgery medicine internal outpatient inpatient orders order
    instructions education patient pt male female temperature pulse blood pressure rate weight height
    pain none normal negative positive yes no not noted new old other see per with without and or
    the a an of in on at to for by from is was no none
    hospice home health services center centre department dept floor room bed telemetry tele
    english spanish interpreter i'm i've i'll i'd leads lead ab ag
""") | _word_set("""
    english spanish french german italian portuguese polish russian ukrainian arabic hebrew farsi persian
    dari pashto urdu hindi bengali punjabi gujarati tamil telugu nepali mandarin cantonese chinese japanese
    korean vietnamese tagalog filipino thai khmer lao hmong burmese somali amharic tigrinya oromo swahili
    yoruba igbo hausa haitian creole greek turkish kurdish armenian romanian dutch swedish norwegian danish
    finnish irish welsh scottish british american canadian mexican african asian european hispanic latino
    latina latinx caucasian asl sign
    usa us uk america canada mexico ireland england scotland wales britain france germany italy spain
    portugal poland russia ukraine china india pakistan nepal bangladesh japan korea vietnam philippines
    nigeria ghana kenya ethiopia somalia eritrea sudan egypt iran iraq syria afghanistan haiti cuba brazil
    guatemala honduras salvador colombia venezuela peru""")
# a letter or initial next to one of these is part of a clinical term ("hepatitis B", "Kerley B lines")
_LETTER_CONTEXT = _word_set("""
    type group grade class stage lead leads vitamin vit hepatitis hep strep zone plan option lines line wave
    waves cell cells factor protein fraction phase segment bed room wing ward pod bay level floor tier blood
    antigen antibody ab ag influenza flu hemophilia titer view views point points part section category
    mallampati kerley lines score scale pattern block""")
_LINE_END = re.compile(r"[ \t]*(?:\n|$)")
_SIGNATURE_GAP = re.compile(r"[ \t]*(?:[-\u2013\u2014/~,]|--)[ \t]*$")
# month names of the major European languages and Tagalog, and the Vietnamese date words (day, month, year)
_FOREIGN_MONTHS = frozenset(fold(w) for w in _word_set("""
    januar februar marz maerz april mai juni juli august september oktober november dezember janner
    janvier fevrier mars avril juin juillet aout septembre octobre novembre decembre
    enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre
    gennaio febbraio aprile maggio giugno luglio settembre ottobre dicembre
    janeiro fevereiro marco maio junho julho setembro outubro dezembro
    januari februari maart mei augustus
    styczen stycznia luty lutego marzec marca kwiecien kwietnia maj maja czerwiec czerwca lipiec lipca
    sierpien sierpnia wrzesien wrzesnia pazdziernik pazdziernika listopad listopada grudzien grudnia
    pebrero marso hunyo hulyo setyembre oktubre nobyembre disyembre
"""))
_VIETNAMESE_DATE = frozenset(["tháng", "ngày", "năm"])
# words that announce an address or an identifier: a number beside one belongs to it
_ADDRESS_WORDS = _word_set("""
    street st road rd avenue ave lane ln drive dr boulevard blvd court ct place pl way terrace square sq
    apt apartment unit suite ste floor fl box po pob route rte highway hwy building bldg block flat
    ul ulica rue via calle avenida rua strasse str weg platz laan straat gracht pho ngo ngach so quan phuong
    duong kiet bis ter campus postcode zip eircode barangay purok sitio""")
_ID_WORDS = _ID_BEFORE | _word_set("""
    ref reference ticket claim case file badge reg registration licence license card passport nhs medicare
    medicaid insurance insurer chart accession specimen encounter visit csn fin har pas plan group subscriber
    vin tag dl serial device""")
# the labels of identifier fields and titles: the value after them is redacted, the label is not
_FIELD_WORDS = _ID_WORDS | _NAME_STOPS | _LABELS | _word_set("""
    dob dos doa dod edd lmp tel fax ph phone cell pgr pager email ip ssn vin pt mrn member dl nhs zip
    english spanish french""")
_AGE_WORDS = frozenset(["aged", "age", "is", "yo", "was", "turns", "turned", "ages", "now"])
_LOANWORDS = frozenset(["i'm", "naive", "cafe", "resume", "deja", "role", "facade", "cooperate", "vis-a-vis", "a"])


def _has_non_ascii_letter(word: str) -> bool:
    return any(ord(ch) > 127 and ch.isalpha() for ch in word)


def _aggressive_word_kind(text: str, toks: list[_Tok], i: int, caps_line: bool) -> str | None:
    """The type of a word that survives the plain allowlist but belongs to a class that leaks identifiers."""
    tok = toks[i]
    word = tok.text
    m = _CONTRACTION.search(word)
    if m and len(word) > len(m.group()) + 1:
        word = word[:m.start()]
    f = fold(word)
    nxt = _next_word(text, toks, i)
    prv = _prev_word(text, toks, i, skip_fillers=False)
    if word.lower() in _VIETNAMESE_DATE or f in _FOREIGN_MONTHS and f not in medical_words() and (
            (nxt is not None and nxt.number) or (prv is not None and prv.number) or not _allowed_lower(f)):
        return "DATE"  # 5 czerwca 2026, 19 novembre, Marso 3, ngày 02 tháng 11 năm 2026
    medical = f in medical_words() or is_medical(f) or f in _UNITS
    if _has_non_ascii_letter(word) and not medical and f not in name_words().eponyms and f not in _LOANWORDS:
        return _name_or_place(f)  # Kościuszki, Hà Nội, أحمد: a foreign word is more likely a name than a term
    if medical or not word[:1].isalpha():
        return None
    parts = [p for p in word.split("-") if p]
    start = _sentence_start(text, tok.start)
    if len(word) <= 3 and (word.isupper() or (len(word) == 1 and text[tok.end:tok.end + 1] == ".")) and \
            not caps_line:
        return _initial_kind(text, toks, i, word, f, start, nxt, prv)  # K, MS, JLF, G.L.
    if len(word) <= 3 and word.islower() and _SIGNATURE_GAP.search(text, max(0, tok.start - 8), tok.start) and \
            _LINE_END.match(text, tok.end) and not _allowed_lower(f):
        return "NAME"  # "-- mz" closing a note
    if caps_line or not word[:1].isupper() or not (word[1:].islower() or _NAME_PREFIX.match(word)) or \
            "-" in word and not all(p[:1].isupper() for p in parts):
        return None  # only Title-case words (and McName forms); not KCl, PharmD, ADLs
    if text[tok.end:tok.end + 1] == ":" or f in _CAPITAL_OK or f in _WEEKDAYS or f in name_words().stop or \
            f in _FIELD_WORDS or f in clinical_abbreviations():
        return None  # "Plan:", "I", "Emergency Department", "Member ID"
    nw = name_words()
    if any(fold(p) in nw.eponyms for p in parts) and (_eponym_as_term(text, toks, i, nw) or not any(
            fold(p) in lexicon_names() or fold(p) in ambiguous_names() for p in parts)):
        return None  # Mallampati II, Cheyne-Stokes: an eponym that is no name or is used as a term
    named = any(fold(p) in lexicon_names() or fold(p) in ambiguous_names() for p in parts)
    if start:
        if named and f not in _MODAL_WORDS and not _allowed_stem_only(f):
            return "NAME"  # "Phil called", "Skye to follow up": a name list word opening a line
        return None
    if all(fold(p) in medical_words() or is_medical(fold(p)) or fold(p) in _CAPITAL_OK for p in parts):
        return None
    return "NAME" if named else _name_or_place(f)  # a capitalised word mid-sentence: a proper noun


def _allowed_stem_only(f: str) -> bool:
    """A sentence-opening word that is a very common English word first (The, This, Patient) even if a name."""
    return f in _common_top() and f not in ambiguous_names() and f not in lexicon_names()


def _name_or_place(f: str) -> str:
    if f in lexicon_names() or f in ambiguous_names():
        return "NAME"
    if f in place_words()[0] or f in place_words()[1]:
        return "ADDRESS"
    return "OTHER"


def _initial_kind(text: str, toks: list[_Tok], i: int, word: str, f: str, start: bool, nxt: _Tok | None,
                  prv: _Tok | None) -> str | None:
    """1-3 capital letters or a dotted initial: an abbreviation when medical, else a person's initials."""
    if f in medical_words() or f in _UNITS or f in _CAPITAL_OK or _ROMAN.fullmatch(word) or f in _MONTH_WORDS or \
            f in clinical_abbreviations() or f in _FIELD_WORDS:
        return None
    if f in _LABELS and nxt is not None and nxt.number:
        return None  # K 4.1
    if word == "A" and start:
        return None  # the article
    for other in (prv, nxt):
        if other is not None and not other.number and fold(other.text) in (_LETTER_CONTEXT | _TERM_WORDS):
            return None  # hepatitis B, type A, B lines
    if len(word) == 1 and nxt is not None and (nxt.number or nxt.text.islower()):
        return None  # "R knee", "B symptoms", "A fib": a letter that qualifies the next word
    return "NAME"


_RUN_GAP = re.compile(r"[ \t]|[ \t]?-[ \t]?|\.[ \t]?")


def _extend_runs(text: str, toks: list[_Tok]) -> None:
    """When one word of a run of capitalised words is redacted as a name or place, the whole run goes with it
    ("Maya Shapiro-Okafor", "Rex Delmont Crabtree", "quận Hai Bà Trưng")."""
    i = 0
    n = len(toks)
    while i < n:
        j = i
        while j < n and not toks[j].number and (toks[j].text[:1].isupper() or _has_non_ascii_letter(toks[j].text)) \
                and (j == i or _run_joined(text, toks[j - 1], toks[j])):
            j += 1
        if j - i >= 2:
            kinds = [t.kind for t in toks[i:j]]
            kind = next((k for k in ("NAME", "ADDRESS", "OTHER") if k in kinds), None)
            if kind:
                for t in toks[i:j]:
                    f = fold(t.text)
                    if t.kind is None and not (len(f) >= 4 and f in medical_words()) and not _furniture(f) and \
                            text[t.end:t.end + 1] != ":" and f not in _WEEKDAYS and f not in _MONTH_WORDS:
                        t.kind = kind
        i = max(j, i + 1)


def _furniture(f: str) -> bool:
    return f in _CAPITAL_OK or f in _FIELD_WORDS or f in clinical_abbreviations() or f in name_words().stop


def _run_joined(text: str, a: _Tok, b: _Tok) -> bool:
    gap = text[a.end:b.start]
    if gap.startswith("."):
        return len(a.text) == 1  # "J. Smith", not a sentence end
    return _RUN_GAP.fullmatch(gap) is not None


def _numbers_in_context(text: str, toks: list[_Tok]) -> None:
    """A number within one token of a redacted word, or of a date, address or identifier word, belongs to it;
    numbers grouped by hyphens or spaces with four digits or more are an identifier; 90-99 after an age word is
    an age. A number with a clinical label before it or a unit after it is left to its label."""
    n = len(toks)
    for i, tok in enumerate(toks):
        c = tok.text
        if not tok.number or tok.kind or not re.fullmatch(r"[\d\-./,]+", c):
            continue  # plain numbers only: 66M, x6, DM2 are shorthand
        nxt = _next_word(text, toks, i)
        unit_after = text[tok.end:tok.end + 1] in ("%", "\u00b0") or (
            nxt is not None and not nxt.number and fold(nxt.text) in _UNITS)
        label = _prev_word(text, toks, i)
        clinical = unit_after or (label is not None and not label.number and (
            fold(label.text) in _LABELS or fold(label.text) in medical_words()))
        raw_prev = toks[i - 1] if i and re.fullmatch(r"[ \t]{1,3}", text[toks[i - 1].end:tok.start]) else None
        if c.isdigit() and len(c) <= 2 and int(c) >= 90 and raw_prev is not None and \
                fold(raw_prev.text) in _AGE_WORDS and not clinical:
            tok.kind = "AGE"
            continue
        if clinical and not any(0 <= j < n and not toks[j].number and _date_word(toks[j].text) and
                                _near(text, toks, min(i, j), max(i, j)) for j in (i - 2, i - 1)):
            continue  # a unit or label explains it, unless a month word stands before it ("7 lipca 2026 in")
        if "-" in c and re.fullmatch(r"[\d\-]+", c) and sum(ch.isdigit() for ch in c) >= 4:
            tok.kind = "ID"  # 30-105, 263-2
            continue
        kind = None
        for j in (i - 1, i + 1, i - 2, i + 2):
            if not 0 <= j < n or not _near(text, toks, min(i, j), max(i, j)):
                continue
            other = toks[j]
            if other.kind and (not other.number or other.kind != "OTHER"):
                kind = other.kind if other.kind != "OTHER" else "ID"
            elif not other.number:
                f = fold(other.text)
                if _date_word(other.text):
                    kind = "DATE"
                elif f in _ADDRESS_WORDS:
                    kind = "ADDRESS"
                elif f in _ID_WORDS:
                    kind = "ID"
            elif c.isdigit() and other.text.isdigit() and abs(i - j) == 1 and \
                    len(c) + len(other.text) >= 4 and re.fullmatch(r"[ \t]", text[toks[min(i, j)].end:
                                                                                 toks[max(i, j)].start]):
                kind = "ID"  # 4418 20077
            if kind:
                break
        tok.kind = kind


def _date_word(word: str) -> bool:
    f = fold(word)
    return f in _MONTH_WORDS or f in _FOREIGN_MONTHS or word.lower() in _VIETNAMESE_DATE


def _near(text: str, toks: list[_Tok], a: int, b: int) -> bool:
    """Tokens a < b are within one token of each other on one line, joined by short gaps (no sentence end)."""
    for k in range(a, b):
        gap = text[toks[k].end:toks[k + 1].start]
        if len(gap) > 3 or "\n" in gap or re.search(r"[.;!?)]\s", gap + " ") and "." in gap and \
                not (len(toks[k].text) <= 2 and not toks[k].number):
            return False
    return True


# ---------------------------------------------------------------- numbers
def _number_kind(text: str, toks: list[_Tok], i: int) -> str | None:
    """None when a number (or code) is in a safe clinical pattern, else the type it is redacted as."""
    tok = toks[i]
    c = tok.text
    f = c.lower()
    if f in medical_words():
        return None
    nxt = _next_word(text, toks, i)
    after = text[tok.end:tok.end + 1]
    unit_after = after in ("%", "\u00b0") or (nxt is not None and not nxt.number and fold(nxt.text) in _UNITS
                                              and not text[tok.end:nxt.start].strip())
    prev = _prev_word(text, toks, i)
    label_before = prev is not None and not prev.number and (fold(prev.text) in _LABELS or
                                                             fold(prev.text) in medical_words())
    clinical = unit_after or label_before
    if sum(ch.isdigit() for ch in c) >= 4:  # a large number needs a unit or a lab that counts in thousands
        clinical = unit_after or (prev is not None and fold(prev.text) in _BIG_LABELS)
    if re.fullmatch(r"\d{1,2}:\d{2}(?::\d{2})?(?i:am|pm|h)?|\d{1,3}:\d{1,4}", c):
        return None  # a time of day or a ratio
    if text[tok.start - 1:tok.start] == "$" or re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", c):
        return None if clinical or text[tok.start - 1:tok.start] == "$" else "OTHER"  # $2,416.00; 1,500
    if re.fullmatch(r"(?i:e\d[ ]?v\d[ ]?m\d|\d+(?:\.\d+)?(?:x\d+(?:\.\d+)?)+(?:cm|mm)?|\d{1,2}w\d{1,2}d)", c):
        return None  # GCS E3V3M5, a size 4x3x1 cm, gestation 34w2d
    parts = re.split(r"[/.:,\-]", c)
    seps = re.findall(r"[/.:,\-]", c)
    numeric = all(p.isdigit() for p in parts)
    if numeric and len(parts) >= 3:
        if seps.count(",") == len(seps) and all(len(p) == 3 for p in parts[1:]):
            return None if clinical else "OTHER"  # 1,500,000
        if valid_numeric_date(c):
            return "DATE"
        return "OTHER" if any(len(p) >= 4 for p in parts) or len(set(seps)) == 1 else None  # 160/4.5: a dose
    if numeric and len(parts) == 2:
        a, b, sep = parts[0], parts[1], seps[0]
        if sep == "," and len(b) == 3:
            return None if clinical else "OTHER"  # 1,500 without a unit: an amount that could be an identifier
        if sep == ".":
            if len(a) >= 4 and not clinical:
                return "OTHER"
            if len(b) == 2 and 1 <= int(a) <= 31 and 1 <= int(b) <= 12 and not clinical and len(a) <= 2:
                return "DATE"  # 14.03 (day.month)
            return None
        if any(len(p) == 4 and p[:2] in ("19", "20") for p in (a, b)) and not unit_after:
            return "DATE"  # 3/2021, 2020-21
        if any(len(p) >= 4 for p in (a, b)) and not clinical:
            return "OTHER"
        if _month_day(int(a), int(b)) and not clinical and not _score_or_fraction(text, tok, a, b):
            return "DATE"
        return None
    if numeric:
        return _integer_kind(text, toks, i, c, clinical, unit_after, prev)
    # letters and digits
    for p in parts:
        k = _code_kind(text, toks, i, p, clinical)
        if k:
            return k
    return None


def _month_day(a: int, b: int) -> bool:
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= a <= 31 and 1 <= b <= 12)


def _score_or_fraction(text: str, tok: _Tok, a: str, b: str) -> bool:
    """5/5 strength, 2/6 murmur, 7/10 pain, 3-4 days: not a date."""
    x, y = int(a), int(b)
    if y == 10 or (x <= y <= 6) or score_before(text, tok.start):
        return True
    tail = text[tok.end:tok.end + 14].lower()
    return bool(re.match(r"[ \t]*(?:strength|murmur|sem\b|pain|scale|score|power|reflex|tabs?\b|pills?|doses?|"
                         r"times|x\b|mg|mmhg|\+|ratio|days?|d\b|weeks?|wks?|months?|hours?|hrs?|min)", tail))


def _integer_kind(text: str, toks: list[_Tok], i: int, c: str, clinical: bool, unit_after: bool,
                  prev: _Tok | None) -> str | None:
    value = int(c)
    nxt = _next_word(text, toks, i)
    if unit_after and nxt is not None and fold(nxt.text) in _AGE_UNITS and value >= 90:
        return "AGE"
    if len(c) <= 3:
        return None
    if len(c) == 4 and c[:2] in ("19", "20"):
        return None if unit_after else "DATE"  # a year, unless "2000 mL"
    if len(c) == 4 and int(c[:2]) <= 23 and int(c[2:]) <= 59 and not (
            prev is not None and fold(prev.text) in _ID_BEFORE) and text[toks[i].start - 1:toks[i].start] != "#":
        return None  # 0900, 1430: a time of day
    return None if clinical else "OTHER"


def _code_kind(text: str, toks: list[_Tok], i: int, p: str, clinical: bool) -> str | None:
    """A part of an alphanumeric code: safe when it is a dose with its unit, an ordinal, a short clinical code."""
    if not p or p.isdigit():
        return None if len(p) <= 3 or clinical else "OTHER"
    f = p.lower()
    if f in medical_words() or (not any(ch.isdigit() for ch in f)):
        return None
    m = re.fullmatch(r"(\d+)([^\W\d_]+)", f)
    if m and m.group(2) in _UNITS:
        if m.group(2) in _AGE_UNITS and int(m.group(1)) >= 90:
            return "AGE"
        return None if len(m.group(1)) <= 4 else "OTHER"
    if m and m.group(2) in ("st", "nd", "rd", "th"):
        if int(m.group(1)) > 31:
            return None
        nxt = _next_word(text, toks, i)
        if nxt is not None and not nxt.number and fold(nxt.text) not in _MONTH_WORDS and fold(nxt.text) != "of" \
                and _word_kind(text, toks, i + 1, False) is None:
            return None  # 2nd dose, 3rd trimester
        return "DATE"
    if re.fullmatch(r"g\d{1,2}p\d{1,4}", f):
        return None  # G3P2002: gravidity and parity
    digits = sum(ch.isdigit() for ch in f)
    if digits <= 2 and len(f) <= 5:
        return None  # q4h, spo2, b12, l4, g2p1, aox3, x3
    return "OTHER"


def _digit_runs(text: str, toks: list[_Tok]) -> None:
    """Plain numbers separated only by spaces (or - .) with seven digits or more together: an ID or phone number."""
    i = 0
    while i < len(toks):
        j = i
        while j < len(toks) and toks[j].text.isdigit() and len(toks[j].text) <= 4 and \
                (j == i or re.fullmatch(r"[ \t]{1,2}|[ \t]?[-.][ \t]?", text[toks[j - 1].end:toks[j].start])):
            j += 1
        if j - i >= 2 and sum(len(t.text) for t in toks[i:j]) >= 7:
            kind = "PHONE" if sum(len(t.text) for t in toks[i:j]) in (7, 10, 11) else "ID"
            for t in toks[i:j]:
                t.kind = kind
        i = max(j, i + 1)


# ---------------------------------------------------------------- words
def _word_kind(text: str, toks: list[_Tok], i: int, caps_line: bool) -> str | None:
    """None when a word survives, else the type it is redacted as (all its hyphen-joined parts must survive)."""
    word = toks[i].text
    m = _CONTRACTION.search(word)
    if m and len(word) > len(m.group()) + 1:
        word = word[:m.start()]
    start_of_sentence = _sentence_start(text, toks[i].start)
    parts = [p for p in word.split("-") if p]
    nw = name_words()
    if len(parts) > 1 and any(fold(p) in nw.eponyms for p in parts) and _eponym_as_term(text, toks, i, nw):
        return None  # Cheyne-Stokes breathing, Hawkins-Kennedy +
    kinds = [_part_kind(text, toks, i, part, caps_line, start_of_sentence and n == 0)
             for n, part in enumerate(parts)]
    for kind in ("DATE", "NAME", "ADDRESS", "OTHER"):
        if kind in kinds:
            return kind
    return None


def _part_kind(text: str, toks: list[_Tok], i: int, word: str, caps_line: bool, sentence_start: bool) -> str | None:
    f = fold(word)
    nw = name_words()
    case = "lower" if word.islower() else "upper" if word.isupper() and len(word) > 1 else \
        "title" if word[0].isupper() and (len(word) == 1 or word[1:].islower()) else "mixed"
    if caps_line and case == "upper":
        case = "unknown"  # capitals carry no information in a line written in capitals
    if len(f) == 1:
        return None  # an initial or a letter ("x", "B lines")
    if f in _MONTH_WORDS and case in ("title", "upper") and not (sentence_start and f in ("may", "mar")):
        return "DATE"
    if f in _HOLIDAY_WORDS:
        return "DATE"
    if _ROMAN.fullmatch(word) or number_value(f) is not None:
        return None
    if f in medical_words():
        return None
    single = place_words()[0]
    if f in _LABELS and i + 1 < len(toks) and toks[i + 1].number and \
            re.fullmatch(r"[ \t]*[:=]?[ \t]*", text[toks[i].end:toks[i + 1].start]):
        return None  # Na 138, K 4.1: a lab name before its value
    if f in _WEEKDAYS:
        return None
    if f in nw.eponyms and (case == "lower" or not (f in lexicon_names() or f in ambiguous_names()) or
                            _eponym_as_term(text, toks, i, nw)):
        return None
    if case == "upper" and len(f) <= 3:
        return None  # abbreviations in a mixed-case note: ED, NG, PT, US
    if f in lexicon_names() or f in nw.eponyms:
        return "NAME"  # a name that is no common word: in any case
    if f in single and f not in _common_top() and (case not in ("lower", "unknown") or f not in _lower_top()):
        return "ADDRESS"  # a town that is no common word: "oxnard", "Tlaquepaque" (not "onset" in lower case)
    if f in ambiguous_names() or f in single:
        if case in ("lower", "unknown"):
            return None if _allowed_lower(f) else ("NAME" if f in ambiguous_names() else "ADDRESS")
        if sentence_start and not _subject_follows(text, toks[i].end, f):
            return None if _allowed_lower(f) or f in nw.stop else "NAME"
        return "NAME" if f in ambiguous_names() else "ADDRESS"
    if f in nw.stop or _allowed_lower(f):
        return None
    if case == "upper" and len(f) <= 5 and not caps_line:
        return None  # COPD, NKDA: an abbreviation
    if case == "mixed" and len(word) <= 6 and not _NAME_PREFIX.match(word):
        return None  # HFrEF, aVF, mEq
    return "OTHER"


_NAME_PREFIX = re.compile(r"(?:Mc|Mac|O'|D'|De|Di|Du|Da|La|Le|Van|Von|St|Fitz|Ben|Abu|El|Al)[A-Z]")
_SUBJECT_VERB = re.compile(r"[ \t]+(?:has|had|is|was|says|said|reports|reported|states|stated|called|came|went|"
                           r"would|did|does|feels|felt|wants|wanted|asked|asks|lives|lived|died|agrees|agreed|"
                           r"denies|denied|notes|noted|presents|presented|arrived|returns|returned)\b")
_MODAL_WORDS = frozenset(["may", "will", "can", "must", "shall", "might", "would", "could", "should", "did", "does"])


def _subject_follows(text: str, end: int, folded: str) -> bool:
    """"Grace called back": a name-like common word opening a sentence, followed by a verb, is a name."""
    return folded not in _MODAL_WORDS and _SUBJECT_VERB.match(text, end) is not None


def _eponym_as_term(text: str, toks: list[_Tok], i: int, nw) -> bool:
    """Murphy sign, Parkinson disease, Kerley B lines, McMurray +, Mallampati II: an eponym used as a term."""
    m = re.compile(r"(?:['\u2019]s)?[ \t]*(?:(?:[A-Z]|[IVX]+|\d{1,2})[ \t]+)?(?:([+\-](?![A-Za-z]))|([A-Za-z]+))"
                   r"|(?:['\u2019]s)?[ \t]+(?:[IVX]+|\d{1,2})\b").match(text, toks[i].end)
    if m is None:
        return False
    if m.group(2) is None:
        return True
    f = fold(m.group(2))
    return f in nw.heads or f in _TERM_WORDS or f in medical_words() or f in nw.eponyms


def _allowed_lower(f: str) -> bool:
    """A common English word (wordfreq top ``ALLOWLIST_MODE_RANK``, less names) or a medical word, or a stem of one."""
    allowed = _allowlist()
    if f in allowed or is_medical(f):
        return True
    return any(c in allowed or c in medical_words() for c in _stems(f))


def _stems(f: str) -> set[str]:
    """The word and its plausible stems (plural, past, -ing, -ly): 'extremities' -> 'extremity'."""
    out = {f}
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""),
                         ("ing", "e"), ("ly", ""), ("ally", ""), ("er", ""), ("ers", "")):
        if f.endswith(suffix) and len(f) - len(suffix) >= 3:
            out.add(f[:-len(suffix)] + repl)
    return out


def _extend_places(text: str, toks: list[_Tok]) -> None:
    """A capitalised word of a multi-word place beside a redacted capitalised word goes with it ("Lake Oswego")."""
    parts = place_words()[1]
    for i, tok in enumerate(toks):
        if tok.kind or tok.number or not tok.text.istitle() or fold(tok.text) not in parts:
            continue
        for j in (i - 1, i + 1):
            if 0 <= j < len(toks) and toks[j].kind in ("ADDRESS", "OTHER") and toks[j].text.istitle() \
                    and re.fullmatch(r"[ \t]|-", text[min(tok.end, toks[j].end):max(tok.start, toks[j].start)]):
                tok.kind = "ADDRESS"
                break


def _proper_terms(text: str, toks: list[_Tok]) -> None:
    """A run of up to three capitalised list words before a clinical head word is the name of a term, not of a
    person or place: "San Francisco syncope rule", "Kansas City Cardiomyopathy Questionnaire"."""
    nw = name_words()
    i = 0
    while i < len(toks):
        j = i
        while j < len(toks) and j - i < 4 and toks[j].kind in ("NAME", "ADDRESS") and toks[j].text[:1].isupper() and \
                (j == i or re.fullmatch(r"[ \t]|[-/]", text[toks[j - 1].end:toks[j].start])):
            j += 1
        if 0 < j - i <= 3 and j < len(toks) and not toks[j].number and \
                re.fullmatch(r"(?:['\u2019]s)?[ \t]", text[toks[j - 1].end:toks[j].start]):
            f = fold(toks[j].text)
            if f in nw.heads or f in _TERM_WORDS or any(s in nw.heads for s in _stems(f)) or (
                    len(f) >= 7 and f in medical_words()):
                for t in toks[i:j]:
                    t.kind = None
        i = max(j, i + 1)


def clip_to_strict(text: str, spans: list[Span], strict: list[Span]) -> list[Span]:
    """The parts of allowlist spans outside the strict spans (which win), merged with them and sorted."""
    starts = [s.start for s in strict]
    out: list[Span] = []
    for span in spans:
        pos = span.start
        k = max(0, bisect.bisect_right(starts, span.start) - 1)
        while k < len(strict) and strict[k].start < span.end:
            s = strict[k]
            if s.end > pos:
                if s.start > pos and any(ch.isalnum() for ch in text[pos:s.start]):
                    out.append(Span(pos, s.start, span.kind))
                pos = max(pos, s.end)
            k += 1
        if pos < span.end and any(ch.isalnum() for ch in text[pos:span.end]):
            out.append(Span(pos, span.end, span.kind))
    return out


def merge_runs(text: str, strict: list[Span], extra: list[Span]) -> list[Span]:
    """Strict and allowlist spans in order; an allowlist span joins a neighbour of its type across one space."""
    added = set(extra)
    out: list[Span] = []
    for span in sorted([*strict, *extra]):
        last = out[-1] if out else None
        if last is not None and last.kind == span.kind and (span in added or last in added) and \
                re.fullmatch(r"[ \t]?", text[last.end:span.start]):
            out[-1] = Span(last.start, span.end, span.kind)
            added.add(out[-1])
        else:
            out.append(span)
    return out
