"""A seeded generator of labelled synthetic clinical notes, and precision/recall of the PHI detector on it.

How the notes are made
----------------------
Each note is assembled from one of five templates (discharge summary, progress note, telephone
encounter, social work note, referral letter). A template is a sequence of fixed clinical text and
*slots*; a slot draws a surrogate PHI value and records its character span and type while the note
is being built, so every label is exact by construction. Nothing real is used: names come from two
pools, addresses from invented streets and towns, phone numbers from the fictional 555-01xx range,
e-mails from example.org/example.com, and IDs, dates and IPs are random.

- Names: 70% come from the detector's lexicon (``names.yaml``) and 30% from a held-out pool of names
  that are *not* in the lexicon (checked at import), so name recall also measures the context rules.
  Forms vary: "First Last", "Last, First", "Dr. Last", "Mr./Ms. Last", a bare first name, upper case.
- Dates: ISO, m/d/yyyy, mm/dd/yy, "March 3, 2021", "3 March 2021", "Mar 3", "March 2021", "3/14".
- Ages: 18-104; only ages over 89 are labelled (Safe Harbor keeps younger ages), so ages 18-89 are
  distractors.
- Distractors that must *not* be redacted: eponyms ("Parkinson disease", "Foley catheter", "Bell
  palsy", "Murphy sign"), drug brand names, modal verbs that are also names ("Will", "May"), blood
  pressures (132/84), doses, lab values, times, bare years ("in 2015"), and ages up to 89.

Labels use these types: NAME, DATE, PHONE, EMAIL, ID, ADDRESS, AGE, URL, IP. A title or credential is
not part of a NAME span ("Dr. [Okafor]", "[Jane Doe], MD"); an ID span holds the number, not its label.

Scoring (:func:`evaluate_notes`)
--------------------------------
A predicted span is a true positive when it overlaps a gold span of the same type; precision is
the share of predicted spans that do, recall the share of gold spans overlapped by a prediction of
the same type. ``leak_recall`` counts a gold span as caught when any prediction covers all of its
characters, whatever the type: the share of PHI that would not survive redaction.

The detector and this generator were written by the same people, so the figures are an optimistic
estimate of performance on real notes; the held-out names and the distractors keep it honest where
they can. Re-run with another seed to check that figures do not depend on one draw.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from precimed.privacy.notes import PHI_TYPES, Span, detect_phi, name_lexicon

HELDOUT_FIRST = (
    "Thaddeus", "Ottilie", "Caspian", "Ines", "Leopold", "Saoirse", "Bartholomew", "Philippa", "Anselm", "Marisol",
    "Dagny", "Ignatius", "Rosalind", "Evander", "Imelda", "Cosmo", "Wilhelmina", "Lucius", "Odalys", "Florian",
    "Temperance", "Aurelio", "Zuzana", "Bohdan", "Eulalia", "Cyprian", "Henrietta", "Ambrose", "Marguerite", "Lazlo",
)
HELDOUT_LAST = (
    "Quackenbush", "Abernathy", "Vandersloot", "Okonkwo", "Szymanski", "Fairweather", "Lindqvist", "Castellanos",
    "Hargreaves", "Przybylski", "Oyelaran", "Thistlewood", "Kowalczyk", "Delacroix", "Yamaguchi", "Ferreira",
    "Mwangi", "Villanueva", "Nakagawa", "Featherstone", "Bjornsson", "Achterberg", "Rasmussen", "Ostrowski",
    "Gallardo", "Halvorsen", "Umberger", "Pennington", "Whitcombe", "Dubrovnik",
)
_STREETS = ("Oak", "Maple", "Elm", "Cedar", "Lincoln", "Park", "Main", "Highland", "Sunset", "Lakeview", "Willow",
            "Birch", "Chestnut", "Pine", "Church", "Mill", "River", "Prospect", "Hawthorn", "Juniper")
_SUFFIXES = ("Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Court", "Way", "Blvd", "Place")
_TOWNS = ("Springfield", "Riverton", "Fairview", "Greenville", "Franklin", "Clinton", "Georgetown", "Salem",
          "Arlington", "Ashland", "Dover", "Oakdale", "Brookfield", "New Haven", "Lake City")
_STATES = ("MA", "NY", "CA", "TX", "OH", "PA", "IL", "GA", "NC", "WA", "MN", "OR")
_CONDITIONS = ("type 2 diabetes", "hypertension", "COPD", "heart failure with reduced ejection fraction",
               "chronic kidney disease stage 3", "atrial fibrillation", "coronary artery disease", "hyperlipidemia",
               "Parkinson disease", "hypothyroidism", "Graves disease", "Crohn disease", "asthma", "osteoarthritis")
_COMPLAINTS = ("shortness of breath", "chest pain", "a fall at home", "fever and productive cough", "confusion",
               "abdominal pain", "syncope", "worsening leg swelling", "hyperglycemia")
_DISTRACTORS = (
    "Foley catheter was placed and later removed.", "Glasgow Coma Scale 15.", "Murphy sign negative.",
    "No signs of Cushing syndrome.", "Bell palsy resolved.", "Started Lasix 40 mg IV twice daily.",
    "Coumadin held for INR 3.4.", "BP 132/84, HR 88, RR 18, SpO2 94% on 2L.", "Platelets 245, WBC 11.2, Hgb 10.9.",
    "Creatinine 1.4 (baseline 1.1).", "Patient may resume a regular diet.", "Will follow up in clinic in 2 weeks.",
    "Ambulating with a walker.", "Holter monitor ordered.", "Whipple procedure in 2015.", "Apgar score not applicable.",
    "Metoprolol 25 mg by mouth twice daily.", "Troponin negative x2.", "Chest X-ray without consolidation.",
    "Last colonoscopy in 2019 was normal.", "Physical therapy recommends home with services.",
    "Sodium 134, potassium 4.1, glucose 212.", "Tylenol 650 mg every 6 hours as needed.", "Temp 38.2 at 14:30.",
)
_RELATIONS = ("daughter", "son", "wife", "husband", "sister", "brother", "niece", "friend")


@dataclass(frozen=True)
class LabelledNote:
    text: str
    spans: tuple[Span, ...]


@dataclass
class _Builder:
    rng: random.Random
    parts: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    length: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def phi(self, text: str, kind: str) -> None:
        self.spans.append(Span(self.length, self.length + len(text), kind))
        self.add(text)

    def note(self) -> LabelledNote:
        return LabelledNote("".join(self.parts), tuple(self.spans))


class _Person:
    def __init__(self, rng: random.Random, lexicon_first: Sequence[str], lexicon_last: Sequence[str],
                 heldout: float) -> None:
        self.first = rng.choice(HELDOUT_FIRST if rng.random() < heldout else lexicon_first)
        self.last = rng.choice(HELDOUT_LAST if rng.random() < heldout else lexicon_last)
        self.female = rng.random() < 0.5


class _Generator:
    def __init__(self, seed: int, heldout: float) -> None:
        lex = name_lexicon()
        self.rng = random.Random(seed)
        self.first = sorted(lex.first)
        self.last = sorted(lex.last)
        self.heldout = heldout

    # ----- slots
    def person(self) -> _Person:
        return _Person(self.rng, self.first, self.last, self.heldout)

    def name(self, b: _Builder, p: _Person, form: str | None = None) -> None:
        form = form or self.rng.choice(("full", "full", "title", "first", "last_first", "full_upper", "initial"))
        if form == "full":
            b.phi(f"{p.first} {p.last}", "NAME")
        elif form == "title":
            b.add(("Ms. " if p.female else "Mr. ") if self.rng.random() < 0.8 else "Dr. ")
            b.phi(p.last, "NAME")
        elif form == "first":
            b.phi(p.first, "NAME")
        elif form == "last_first":
            b.phi(f"{p.last}, {p.first}", "NAME")
        elif form == "full_upper":
            b.phi(f"{p.last.upper()}, {p.first.upper()}", "NAME")
        else:
            b.phi(f"{p.first} {self.rng.choice('ABCDEJKLMRST')}. {p.last}", "NAME")

    def doctor(self, b: _Builder, form: str | None = None) -> None:
        p = self.person()
        form = form or self.rng.choice(("dr", "dr_full", "credential"))
        if form == "dr":
            b.add("Dr. ")
            b.phi(p.last, "NAME")
        elif form == "dr_full":
            b.add("Dr. ")
            b.phi(f"{p.first} {p.last}", "NAME")
        else:
            b.phi(f"{p.first} {p.last}", "NAME")
            b.add(self.rng.choice((", MD", ", MD", " MD", ", NP", ", RN", ", PA-C")))

    def date(self, b: _Builder, when: date | None = None, form: str | None = None) -> date:
        d = when or date(2015, 1, 1) + timedelta(days=self.rng.randrange(0, 3650))
        form = form or self.rng.choice(("iso", "us", "us_short", "long", "day_month", "abbr", "month_year", "md"))
        text = {
            "iso": d.isoformat(),
            "us": f"{d.month}/{d.day}/{d.year}",
            "us_short": f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",
            "long": f"{d:%B} {d.day}, {d.year}",
            "day_month": f"{d.day} {d:%B} {d.year}",
            "abbr": f"{d:%b} {d.day}",
            "month_year": f"{d:%B} {d.year}",
            "md": f"{d.month}/{d.day}",
        }[form]
        b.phi(text, "DATE")
        return d

    def birth_date(self, b: _Builder, age: int) -> None:
        born = date(2024, 1, 1) - timedelta(days=int(age * 365.25) + self.rng.randrange(0, 360))
        self.date(b, born, self.rng.choice(("iso", "us", "us_short", "long")))

    def phone(self, b: _Builder) -> None:
        area, line = self.rng.randrange(201, 989), self.rng.randrange(100, 200)
        text = self.rng.choice((f"({area}) 555-0{line}", f"{area}-555-0{line}", f"{area}.555.0{line}",
                                f"+1 {area} 555 0{line}", f"555-0{line}"))
        if text.startswith("555"):
            b.add(self.rng.choice(("phone ", "cell ", "call back at ", "tel. ")))
        b.phi(text, "PHONE")

    def email(self, b: _Builder, p: _Person) -> None:
        user = self.rng.choice((f"{p.first}.{p.last}", f"{p.first[0]}{p.last}",
                                f"{p.last}{self.rng.randrange(10, 99)}"))
        b.phi(f"{user.lower()}@{self.rng.choice(('example.org', 'example.com', 'mail.example.net'))}", "EMAIL")

    def mrn(self, b: _Builder) -> None:
        form = self.rng.choice(("MRN: ", "MRN ", "MR# ", "Medical record number ", "Acct #: ", "Member ID: ",
                                "SSN ", "Patient ID: "))
        b.add(form)
        if form == "SSN ":
            text = f"{self.rng.randrange(100, 899)}-{self.rng.randrange(10, 99)}-{self.rng.randrange(1000, 9999)}"
        elif form in ("Acct #: ", "Member ID: "):
            text = self.rng.choice("ABKMXZ") + str(self.rng.randrange(10**6, 10**8))
        else:
            padded = self.rng.random() < 0.5
            text = f"{self.rng.randrange(0, 10**8):08d}" if padded else str(self.rng.randrange(10**6, 10**7))
        b.phi(text, "ID")

    def address(self, b: _Builder) -> None:
        street = f"{self.rng.randrange(1, 9999)} {self.rng.choice(_STREETS)} {self.rng.choice(_SUFFIXES)}"
        if self.rng.random() < 0.3:
            street += f", Apt {self.rng.randrange(1, 40)}"
        if self.rng.random() < 0.7:
            street += f", {self.rng.choice(_TOWNS)}, {self.rng.choice(_STATES)} {self.rng.randrange(1000, 99999):05d}"
        b.phi(street, "ADDRESS")

    def age(self, b: _Builder, age: int, form: str | None = None) -> None:
        form = form or self.rng.choice(("year_old", "yo", "age"))
        label = "AGE" if age > 89 else None
        if form == "age":
            b.add("age ")
        text = str(age)
        if label:
            b.phi(text, label)
        else:
            b.add(text)
        b.add({"year_old": "-year-old", "yo": " yo", "age": ""}[form])

    def distractors(self, b: _Builder, k: int) -> None:
        for sentence in self.rng.sample(_DISTRACTORS, k):
            b.add(" " + sentence)

    # ----- templates
    def discharge(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        pt = self.person()
        age = r.choice((r.randrange(18, 90), r.randrange(90, 105)))
        b.add("DISCHARGE SUMMARY\nPatient: ")
        self.name(b, pt, r.choice(("full", "last_first", "full_upper")))
        b.add("    ")
        self.mrn(b)
        b.add("\nDOB: ")
        self.birth_date(b, age)
        b.add("\nAdmission date: ")
        admit = self.date(b)
        b.add("    Discharge date: ")
        self.date(b, admit + timedelta(days=r.randrange(1, 15)))
        b.add("\nAttending: ")
        self.doctor(b, "dr")
        b.add("\n\nHPI: ")
        self.name(b, pt, r.choice(("title", "first", "full")))
        b.add(" is a ")
        self.age(b, age, "year_old")
        b.add(f" {'woman' if pt.female else 'man'} with {r.choice(_CONDITIONS)} and {r.choice(_CONDITIONS)} who "
              f"presented on ")
        self.date(b, admit, r.choice(("long", "us", "abbr", "md")))
        b.add(f" with {r.choice(_COMPLAINTS)}.")
        self.distractors(b, 3)
        b.add("\n\nHospital course:")
        self.distractors(b, 3)
        b.add(" Discussed with her " if pt.female else " Discussed with his ")
        b.add(r.choice(_RELATIONS) + " ")
        self.name(b, self.person(), r.choice(("full", "first")))
        b.add(", who can be reached at ")
        self.phone(b)
        b.add(".\n\nDisposition: home. Follow-up with ")
        self.doctor(b)
        b.add(" on ")
        self.date(b, form=r.choice(("us", "long", "abbr")))
        b.add(".\nElectronically signed by ")
        self.doctor(b, "credential")
        b.add(" on ")
        self.date(b, form="iso")
        b.add("\n")
        return b.note()

    def progress(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        pt = self.person()
        age = r.choice((r.randrange(40, 90), r.randrange(90, 105)))
        b.add("PROGRESS NOTE ")
        self.date(b, form=r.choice(("us", "iso", "us_short")))
        b.add("\nS: ")
        self.age(b, age, "yo")
        b.add(f" {'F' if pt.female else 'M'} with {r.choice(_CONDITIONS)}, feels better today.")
        self.distractors(b, 2)
        b.add("\nO:")
        self.distractors(b, 2)
        b.add("\nA/P: continue current plan; ")
        b.add(r.choice(("labs in the morning.", "repeat BMP tomorrow.", "discharge planning.")))
        b.add(" Seen and examined with ")
        self.doctor(b, r.choice(("dr", "dr_full")))
        b.add(".\n")
        self.doctor(b, "credential")
        b.add("\n")
        return b.note()

    def telephone(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        pt, caller = self.person(), self.person()
        b.add("TELEPHONE ENCOUNTER\n")
        self.date(b, form=r.choice(("us", "long", "iso")))
        b.add(f" at {r.randrange(8, 17)}:{r.randrange(0, 60):02d}. Spoke with ")
        self.name(b, caller, r.choice(("full", "first")))
        b.add(f", the patient's {r.choice(_RELATIONS)}, at ")
        self.phone(b)
        b.add(". Caller reports that ")
        self.name(b, pt, r.choice(("title", "first", "full")))
        b.add(f" has had {r.choice(_COMPLAINTS)} since ")
        self.date(b, form=r.choice(("md", "abbr", "long")))
        b.add(".")
        self.distractors(b, 1)
        b.add(" Advised to go to the emergency department. Callback number confirmed; e-mail ")
        self.email(b, caller)
        b.add(".\n")
        return b.note()

    def social_work(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        pt = self.person()
        age = r.choice((r.randrange(60, 90), r.randrange(90, 104)))
        b.add("SOCIAL WORK NOTE\nMet with ")
        self.name(b, pt, r.choice(("full", "title")))
        b.add(" (")
        self.mrn(b)
        b.add(") at bedside. Patient is ")
        self.age(b, age, r.choice(("age", "yo", "year_old")))
        b.add(" and lives alone at ")
        self.address(b)
        b.add(". Emergency contact: ")
        self.name(b, self.person(), "full")
        b.add(", ")
        self.phone(b)
        b.add(". Insurance verified; ")
        self.mrn(b)
        b.add(". Patient portal enrollment sent to ")
        self.email(b, pt)
        b.add(" (")
        b.phi(f"https://portal.example.org/enroll/{r.randrange(10**5, 10**6)}", "URL")
        b.add("). Last portal login from ")
        b.phi(f"10.{r.randrange(0, 255)}.{r.randrange(0, 255)}.{r.randrange(1, 255)}", "IP")
        b.add(".")
        self.distractors(b, 2)
        b.add("\n")
        return b.note()

    def referral(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        pt = self.person()
        age = r.choice((r.randrange(30, 90), r.randrange(90, 103)))
        b.add("Dear ")
        self.doctor(b, "dr")
        b.add(",\n\nThank you for seeing ")
        self.name(b, pt, r.choice(("full", "title", "initial")))
        b.add(" (DOB ")
        self.birth_date(b, age)
        b.add(", ")
        self.mrn(b)
        b.add("), a pleasant ")
        self.age(b, age, "year_old")
        b.add(f" with {r.choice(_CONDITIONS)}, last seen in our clinic in ")
        self.date(b, form="month_year")
        b.add(". Mailing address: ")
        self.address(b)
        b.add(".")
        self.distractors(b, 2)
        b.add("\n\nSincerely,\n")
        self.doctor(b, "credential")
        b.add("\n")
        return b.note()


    # ----- held-out templates: written after the detector was tuned and never used to tune it
    def triage(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        pt = self.person()
        age = r.choice((r.randrange(60, 90), r.randrange(90, 104)))
        b.add(f"ED TRIAGE {r.randrange(0, 24):02d}{r.randrange(0, 60):02d}\n")
        self.age(b, age, r.choice(("yo", "year_old")))
        b.add(f" {'female' if pt.female else 'male'} BIBA from home (")
        self.address(b)
        b.add(f"). CC: {r.choice(_COMPLAINTS)}. Pt states her grandson " if pt.female else
              f"). CC: {r.choice(_COMPLAINTS)}. Pt states his grandson ")
        self.name(b, self.person(), r.choice(("first", "full")))
        b.add(" found the patient on the floor this morning. PCP is ")
        self.doctor(b, r.choice(("dr", "dr_full")))
        b.add(". Pt's own cell ")
        self.phone(b)
        b.add(".")
        self.distractors(b, 2)
        b.add("\n")
        return b.note()

    def radiology(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        age = r.choice((r.randrange(20, 90), r.randrange(90, 101)))
        b.add("EXAM: CT head without contrast\nDATE OF SERVICE: ")
        d = self.date(b, form=r.choice(("us", "iso", "long")))
        b.add("\nCOMPARISON: ")
        self.date(b, d - timedelta(days=r.randrange(30, 900)), r.choice(("us", "us_short", "long")))
        b.add("\nACCESSION: ")
        b.phi(f"{r.choice('CRX')}{r.randrange(10**7, 10**8)}", "ID")
        b.add("\nCLINICAL HISTORY: ")
        self.age(b, age, "year_old")
        b.add(" after a fall. FINDINGS: No acute intracranial hemorrhage. Chronic small vessel ischemic change."
              " IMPRESSION: No acute findings. Results discussed with ")
        p = self.person()
        b.phi(f"{p.first} {p.last}", "NAME")
        b.add(r.choice((", PA", ", NP", " (covering resident)")))
        b.add(" by telephone at 14:05 on ")
        self.date(b, d, r.choice(("md", "abbr")))
        b.add(".\n")
        return b.note()

    def portal(self) -> LabelledNote:
        b, r = _Builder(self.rng), self.rng
        sender, mother = self.person(), self.person()
        b.add("From: ")
        b.phi(f"{sender.first} {sender.last}", "NAME")
        b.add(" <")
        self.email(b, sender)
        b.add(">\nSent: ")
        self.date(b, form=r.choice(("long", "us")))
        b.add("\nHi ")
        self.doctor(b, "dr")
        b.add(", my mother ")
        self.name(b, mother, r.choice(("first", "full")))
        b.add(" has been more tired since we changed her pills. Should she keep taking the Lasix? "
              "You can call me at ")
        self.phone(b)
        b.add(". Thanks, ")
        b.phi(sender.first, "NAME")
        b.add("\n")
        return b.note()

    def nursing(self) -> LabelledNote:
        b = _Builder(self.rng)
        b.add("NURSING NOTE\n0800 Pt resting comfortably, family at bedside (son ")
        b.phi(self.person().first, "NAME")
        b.add("). 1200 ")
        self.doctor(b, "dr")
        b.add(" notified of BP 88/50, 500 mL bolus given.")
        self.distractors(b, 1)
        b.add(" 1600 Pt requests that her niece ")
        self.name(b, self.person(), "full")
        b.add(" be updated at ")
        self.phone(b)
        b.add(". Wristband re-checked: ")
        self.mrn(b)
        b.add(".\n")
        return b.note()


TEMPLATE_STYLES = ("standard", "heldout")


def generate_notes(n: int = 500, seed: int = 0, *, heldout_name_fraction: float = 0.3,
                   style: str = "standard") -> list[LabelledNote]:
    """`n` labelled synthetic notes; the same seed gives the same notes.

    style="standard": the five templates used while writing the detector; style="heldout": four
    templates written afterwards (triage, radiology, portal message, nursing) and never used to tune it.
    """
    gen = _Generator(seed, heldout_name_fraction)
    if style == "standard":
        templates: tuple[Callable[[], LabelledNote], ...] = (gen.discharge, gen.progress, gen.telephone,
                                                             gen.social_work, gen.referral)
    elif style == "heldout":
        templates = (gen.triage, gen.radiology, gen.portal, gen.nursing)
    else:
        raise ValueError(f"style must be one of {TEMPLATE_STYLES}, got {style!r}")
    return [templates[i % len(templates)]() for i in range(n)]


def evaluate_notes(notes: Sequence[LabelledNote] | None = None, *, n: int = 500, seed: int = 0,
                   style: str = "standard",
                   detector: Callable[[str], list[Span]] = detect_phi) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per PHI type (and "ALL"), plus leak recall, on generated notes."""
    if notes is None:
        notes = generate_notes(n, seed, style=style)
    stats = {k: {"gold": 0, "pred": 0, "tp_pred": 0, "tp_gold": 0, "covered": 0} for k in (*PHI_TYPES, "ALL")}
    for note in notes:
        pred = detector(note.text)
        for g in note.spans:
            for key in (g.kind, "ALL"):
                stats[key]["gold"] += 1
                if any(p.kind == g.kind and _overlap(p, g) for p in pred):
                    stats[key]["tp_gold"] += 1
                if _covered(g, pred):
                    stats[key]["covered"] += 1
        for p in pred:
            for key in (p.kind, "ALL"):
                stats[key]["pred"] += 1
                if any(g.kind == p.kind and _overlap(p, g) for g in note.spans):
                    stats[key]["tp_pred"] += 1
    out: dict[str, dict[str, float]] = {}
    for kind, s in stats.items():
        if s["gold"] == 0 and s["pred"] == 0:
            continue
        precision = s["tp_pred"] / s["pred"] if s["pred"] else float("nan")
        recall = s["tp_gold"] / s["gold"] if s["gold"] else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
        out[kind] = {"gold": s["gold"], "predicted": s["pred"], "precision": precision, "recall": recall, "f1": f1,
                     "leak_recall": s["covered"] / s["gold"] if s["gold"] else float("nan")}
    return out


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def _covered(g: Span, pred: Sequence[Span]) -> bool:
    chars = set(range(g.start, g.end))
    for p in pred:
        chars -= set(range(p.start, p.end))
        if not chars:
            return True
    return not chars


def score_table(results: dict[str, dict[str, float]], columns: Sequence[tuple[str, str, int, str]]) -> str:
    """A plain-text table, one row per type: `columns` are (key, header, width, format) after the type column;
    the one formatter of the notes' scoring tables."""
    lines = [f"{'type':8} " + " ".join(f"{header:>{width}}" for _, header, width, _ in columns)]
    for kind, r in results.items():
        lines.append(f"{kind:8} " + " ".join(f"{r[key]:{width}{fmt}}" for key, _, width, fmt in columns))
    return "\n".join(lines)


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`evaluate_notes` results."""
    return score_table(results, [("gold", "gold", 6, "d"), ("predicted", "pred", 6, "d"),
                                 ("precision", "precision", 9, ".3f"), ("recall", "recall", 7, ".3f"),
                                 ("f1", "f1", 6, ".3f"), ("leak_recall", "leak_recall", 11, ".3f")])
