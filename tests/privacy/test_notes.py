import pytest

from precimed.privacy import detect_phi, evaluate_notes, generate_notes, redact
from precimed.privacy.note_corpus import HELDOUT_FIRST, HELDOUT_LAST
from precimed.privacy.notes import name_lexicon, shift_date_text


def _found(text):
    return {(s.kind, text[s.start:s.end]) for s in detect_phi(text)}


def test_each_phi_type_is_found_in_a_note():
    text = ("Patient: Maria Quackenbush  MRN: 00452318  DOB: 03/14/1931\n"
            "Mrs. Quackenbush is a 92-year-old woman seen by Dr. Okonkwo on March 3, 2021. Daughter reachable at "
            "(617) 555-0123 or m.q@example.org. Lives at 12 Oak Street, Springfield, MA 01103. SSN 123-45-6789. "
            "Portal https://portal.example.org/x from 10.2.3.4.")
    found = _found(text)
    for item in [("NAME", "Maria Quackenbush"), ("ID", "00452318"), ("DATE", "03/14/1931"), ("AGE", "92"),
                 ("NAME", "Okonkwo"), ("DATE", "March 3, 2021"), ("PHONE", "(617) 555-0123"),
                 ("EMAIL", "m.q@example.org"), ("ADDRESS", "12 Oak Street, Springfield, MA 01103"),
                 ("ID", "123-45-6789"), ("URL", "https://portal.example.org/x"), ("IP", "10.2.3.4")]:
        assert item in found, item


@pytest.mark.parametrize("text", [
    "Parkinson disease, Foley catheter removed, Murphy sign negative, Bell palsy resolved.",
    "Patient may resume diet. Will follow up in 2 weeks. BP 132/84, HR 88. Lasix 40 mg IV.",
    "A 72-year-old man with a Whipple procedure in 2015; temp 38.2 at 14:30; platelets 245.",
])
def test_clinical_text_without_phi_is_left_alone(text):
    assert detect_phi(text) == []


def test_redaction_uses_typed_tags_and_shifts_dates_in_their_own_format():
    text = "Seen by Dr. Okafor on 03/14/2021 and March 3, 2021; call 617-555-0123. 94 yo F."
    redacted, counts = redact(text, shift_days=10)
    assert redacted == "Seen by Dr. [NAME] on 03/24/2021 and March 13, 2021; call [PHONE]. 90+ yo F."
    assert counts == {"NAME": 1, "DATE": 2, "PHONE": 1, "AGE": 1}
    assert redact(text)[0].count("[DATE]") == 2
    assert shift_date_text("2021-12-25", 10) == "2022-01-04" and shift_date_text("Mar 3", -3) == "Feb 28"


def test_the_note_generator_is_seeded_and_its_labels_match_the_text():
    notes = generate_notes(20, seed=3)
    assert [n.text for n in notes] == [n.text for n in generate_notes(20, seed=3)]
    assert [n.text for n in notes] != [n.text for n in generate_notes(20, seed=4)]
    for note in notes:
        for span in note.spans:
            piece = note.text[span.start:span.end]
            assert piece == piece.strip() and piece
            if span.kind == "AGE":
                assert int(piece) > 89


def test_held_out_names_are_not_in_the_lexicon():
    lex = name_lexicon()
    assert not (set(HELDOUT_FIRST) | set(HELDOUT_LAST)) & (lex.first | lex.last | lex.ambiguous)


@pytest.mark.parametrize("style", ["standard", "heldout"])
def test_precision_and_recall_on_the_synthetic_note_set(style):
    results = evaluate_notes(n=150, seed=11, style=style)
    for kind in ("DATE", "PHONE", "EMAIL", "ID", "ADDRESS", "AGE"):
        assert results[kind]["precision"] >= 0.95 and results[kind]["recall"] >= 0.95, kind
    assert results["NAME"]["precision"] >= 0.95 and results["NAME"]["recall"] >= 0.9
    assert results["ALL"]["leak_recall"] >= 0.95


# --------------------------------------------------------------------- generalisation (issue 11, finding 3)
@pytest.mark.parametrize(("text", "phi"), [
    ("- rn grace obi", ["grace obi"]),                       # sign-off title in lower case, common-word names
    ("family meeting w/ wife (hope), full code", ["hope"]),  # relation + parenthesis
    ("grandson will.", ["will"]),
    ("name given as \"jack\". CT head neg", ["jack"]),
    ("f/u w/ Siobhán Ó Briain, LICSW", ["Siobhán Ó Briain"]),  # Irish particle, credential
    ("wife Fatima bint Khalid, cell", ["Fatima bint Khalid"]),
    ("- okonkwo, CRNA", ["okonkwo"]),
    ("reachable at 555-0187.", ["555-0187"]),
    ("irish mobile +353 (0)1 555 0142.", ["+353 (0)1 555 0142"]),
    ("lives at 9 Maple Terr in town", ["9 Maple Terr"]),
    ("picks him up at 318 Cascade Rd SW.", ["318 Cascade Rd SW"]),
    ("staying at shelter on Albany St.", ["Albany St"]),
    ("FESS planned mid-January 2025.", ["mid-January 2025"]),
    ("pt turned 90 in August; daughter", ["August"]),
    ("pt is 102 and still sharp", ["102"]),
    ("pt in her late nineties, comfort", ["late nineties"]),
    ("employee # E-220917", ["E-220917"]),
])
def test_generalised_identifiers_are_found(text, phi):
    spans = detect_phi(text)
    found = [text[s.start:s.end] for s in spans]
    for piece in phi:
        assert any(piece in f for f in found), (piece, found)


@pytest.mark.parametrize("text", [
    "Katz 6/6. Tinetti 16. Braden 13. Mallampati II.",
    "Boston bowel prep scale 8.",
    "his son will call tomorrow about the plan",
    "pt prefers text. PT referral placed.",
    "failed 2 courses abx. CT: pansinusitis",
    "CANNOT RETURN TO APT AT 55 WINTHROP ST #3, STAIRS.",
    "vehicle: 2019 honda civic",
    "uses ResMed AirSense at night",
])
def test_clinical_words_are_not_phi(text):
    kinds = {(text[s.start:s.end], s.kind) for s in detect_phi(text)}
    assert not {k for k in kinds if k[0] in ("Katz", "Tinetti", "Braden", "Mallampati", "Boston", "will", "prefers",
                                             "referral", "STAIRS", "2019", "ResMed AirSense")}, kinds
    assert not any("courses" in k[0] for k in kinds), kinds


def test_allowlist_keeps_clinical_shorthand():
    text = "UA neg. peds f/u. ortho paged. Mallampati II. sacubitril/valsartan. Lewy body dementia."
    assert [text[s.start:s.end] for s in detect_phi(text, mode="allowlist")] == []


# ------------------------------------------------------------ second blind set causes (issue 11, finding 3)
def _exact(text, mode="strict"):
    return {(s.kind, text[s.start:s.end]) for s in detect_phi(text, mode=mode)}


@pytest.mark.parametrize(("text", "item"), [
    # an initial before or after the name is part of its span
    ("R. Castellanos, MD (fellow)", ("NAME", "R. Castellanos")),
    ("Husband K. Senthilkumar asks for results", ("NAME", "K. Senthilkumar")),
    ("ADEBISI O. (goes by Seun) 41M.", ("NAME", "ADEBISI O.")),
    ("Pt HARTIGAN, WILLIAM J joined from home.", ("NAME", "HARTIGAN, WILLIAM J")),
    ("Name: MacKenzie, Ross D.   DOB: 04/30/1971", ("NAME", "MacKenzie, Ross D.")),
    # particles and stop-word surnames, double-barrelled names, honorifics, role in parentheses
    ("son (known to family as Abu Omar) updated", ("NAME", "Abu Omar")),
    ("-Lê Thị Thu, NP", ("NAME", "Lê Thị Thu")),
    ("husband Wang Jun interpreting", ("NAME", "Wang Jun")),
    ("Pt Pieter van der Berg 71M, Parkinson disease H&Y stage 2.", ("NAME", "Pieter van der Berg")),
    ("concern: Autumn Reyes-Whitehorse was seen in clinic", ("NAME", "Autumn Reyes-Whitehorse")),
    ("Photo taken by Summer (wound RN) at 14:10.", ("NAME", "Summer")),
    ("Yamamoto Keiko, 58F. Staff call her Keiko-san.", ("NAME", "Keiko")),
    ("Family (daughter Marcella Two Bulls) notified", ("NAME", "Marcella Two Bulls")),
    ("Pt Winona Tsinajinnie, 94. Family notified.", ("AGE", "94")),
])
def test_names_with_initials_particles_and_tails(text, item):
    assert item in _exact(text), _exact(text)


@pytest.mark.parametrize(("text", "item"), [
    ("TELEPHONE ENCOUNTER 12/01/2026 09:14", ("DATE", "12/01/2026")),  # an ID label no longer takes the "12"
    ("Follow up w Dr Adewumi (PCP) 12/12 and cardiology Jan 2027.", ("DATE", "12/12")),
    ("Photo taken 12/3 14:10.", ("DATE", "12/3")),
    ("DOB: 9 de marzo de 1958", ("DATE", "9 de marzo de 1958")),
    ("né le 1er mars 1950", ("DATE", "1er mars 1950")),
    ("visiting until Christmas.", ("DATE", "Christmas")),
    ("unit contact (787)5550199.", ("PHONE", "(787)5550199")),
    ("surg resident paged, pgr 31442, at 0230.", ("PHONE", "31442")),
    ("connected from 2601:1c2:4e00:9a0::1f, clinician", ("IP", "2601:1c2:4e00:9a0::1f")),
    ("posted at facebook.com/ross.mackenzie.771 - asked", ("URL", "facebook.com/ross.mackenzie.771")),
    ("interp #88417.", ("ID", "88417")),
    ("Burlington VT 05401-4410.", ("ADDRESS", "05401-4410")),
    ("rural rt: rural route 2, box 44, Hillsboro WV", ("ADDRESS", "rural route 2, box 44")),
    ("home address Flat 3, 17 Bruntsfield Place, EH10 4HN, UK.", ("ADDRESS", "Flat 3, 17 Bruntsfield Place")),
    ("home address Flat 3, 17 Bruntsfield Place, EH10 4HN, UK.", ("ADDRESS", "EH10 4HN")),
    ("mail to K1A 0B1 Ottawa", ("ADDRESS", "K1A 0B1")),
    ("verified: 12 Kościuszko Street, Chicopee", ("ADDRESS", "12 Kościuszko Street")),
    ("2207 Westwood Blvd, #5, L.A. CA 90064", ("ADDRESS", "L.A.")),
    ("mailing address PO Box 1187, Chinle AZ 86503", ("ADDRESS", "Chinle")),
])
def test_dates_phones_urls_ips_and_addresses_of_the_second_blind_set(text, item):
    assert item in _exact(text), _exact(text)


@pytest.mark.parametrize(("text", "place"), [
    ("previously followed by dr von Hohenstein in Utrecht.", "Utrecht"),
    ("Pt is a 39F from Kano, Nigeria, returned w fever.", "Kano"),
    ("Brother from Galway visiting.", "Galway"),
    ("travelling to Izmir and Kars for 6 wk.", "Kars"),
    ("living w son in Astoria, Queens.", "Astoria"),
])
def test_the_gazetteer_finds_towns_in_a_place_context(text, place):
    assert ("ADDRESS", place) in _exact(text), _exact(text)


@pytest.mark.parametrize("text", [
    "Hx thyroid nodule, Bethesda III on FNA.",          # an eponymous classification, not a place
    "Old Denver shunt tied off.",
    "Canadian CT head rule positive.",                  # "Canadian, TX" is a town; "CT" is a scan here
    "travelling to Ghana for a wedding.",               # a country is not an ADDRESS
    "The Mobile unit came by.",                         # a common word that is also a town
    "Reference sent: https://www.cdc.gov/lyme/index.html (not pt specific).",
    "apgars 8/9. pain 3/10. 2/2 volume overload. Grade 2/6 SEM.",
    "2 WKS W DR. IBRAHIM",
    "Repeat in 5 years pending path.",
])
def test_place_like_and_date_like_clinical_text_is_not_phi(text):
    kinds = {k for k, piece in _exact(text) if piece not in ("IBRAHIM",)}
    assert kinds <= {"NAME"} and not any(k in ("ADDRESS", "DATE", "URL") for k in kinds), _exact(text)


@pytest.mark.parametrize("text", [
    "mother w Hashimoto thyroiditis. Ortolani/Barlow neg.",
    "no Courvoisier sign. Kerley B lines absent.",
    "lap Nissen fundoplication. Lachman neg, McMurray + medial.",
    "Veress entry at Palmer point. Dawn phenomenon vs Somogyi: 0300 glucose 142.",
    "his Parkinson meds reviewed.",
    "onc nurse navigator: see below.",
    "Idioma: español. Acompañado.",
])
def test_eponyms_and_ordinary_words_are_not_names(text):
    assert not any(kind == "NAME" for kind, _ in _exact(text)), _exact(text)


def test_allowlist_mode_keeps_eponyms_and_the_larger_clinical_vocabulary():
    text = "no Courvoisier sign; epigastric tenderness; bruit absent; commode at bedside; Kerley B lines."
    assert not {piece for kind, piece in _exact(text, "allowlist") if kind == "OTHER"}


def test_the_row_address_is_found_part_by_part():
    from precimed.privacy.notes import known_from_row

    known = known_from_row({"address": "RR 2 Box 44, Hillsboro, WV 24946"})
    text = "lives in Hillsboro; zip 24946-1102."
    found = {(s.kind, text[s.start:s.end]) for s in detect_phi(text, known=known)}
    assert ("ADDRESS", "Hillsboro") in found and ("ADDRESS", "24946-1102") in found, found


# ------------------------------------------------------------ allowlist mode: Philter-style rules (issue 11, finding 3)
def _redacted(text, mode="allowlist"):
    return [text[s.start:s.end] for s in detect_phi(text, mode=mode)]


@pytest.mark.parametrize(("text", "secret"), [
    ("pt seen today with her sister mbali qorvesh, stable.", "qorvesh"),     # unknown name, lower case
    ("came in with xhoana pėrkalaitė this am.", "pėrkalaitė"),               # diacritics, lower case
    ("visiting from tlaquepaque until friday.", "tlaquepaque"),              # a town in lower case
    ("Discussed plan with Grace and Hope at bedside.", "Grace"),             # common-word names mid-sentence
    ("Discussed plan with Grace and Hope at bedside.", "Hope"),
    ("Grace called back about the results.", "Grace"),                       # at a sentence start, before a verb
    ("Lives in Salt Lake City with her son.", "Salt Lake City"),             # a multi-word place of common words
    ("plate 7XKR221 and device 4471-AB-2290 noted.", "7XKR221"),             # odd ID formats
    ("plate 7XKR221 and device 4471-AB-2290 noted.", "4471-AB-2290"),
    ("seen 12/3, back on the 4th.", "12/3"),                                 # date shapes
    ("seen 12/3, back on the 4th.", "4th"),
    ("callback 555 0134 after noon.", "555 0134"),                           # digit groups
])
def test_allowlist_mode_redacts_what_is_not_on_the_allowlist(text, secret):
    redacted = "".join(f"<{piece}>" for piece in _redacted(text))
    assert all(part in redacted for part in secret.split()), (secret, redacted)


def test_allowlist_mode_keeps_common_words_in_lower_case_and_at_a_sentence_start():
    assert _redacted("will follow up. hope to discharge. grace period is 30 d. Will call.") == []
    # a capitalised name-list word opening a sentence is redacted in the allowlist mode (the high-recall
    # mode gives up "Grace period" to catch "Grace called"); the strict mode keeps it
    assert _redacted("Grace period is 30 d.") == ["Grace"]
    assert _redacted("Grace period is 30 d.", mode="strict") == []
    assert _redacted("Hope is low. mark the site.") == ["Hope"]  # a name-like word before a verb at the start


@pytest.mark.parametrize("text", [
    "BP 128/76, HR 88, metoprolol 25 mg po bid, GCS 15",
    "T 37.2, SpO2 96% on 2L NC. Na 138, K 4.1, Cr 1.12, INR 2.35, plt 245.",
    "Pain 7/10, strength 5/5 bilat, 2/6 SEM, L4-L5 disc, A1c 7.8, q4h prn, 1000 mL NS bolus at 0900.",
    "Murphy sign negative; Parkinson disease; Bell palsy; Mallampati II; Cheyne-Stokes breathing.",
    "G2P1 at 34w2d, GCS E4V5M6, lesion 4x3x1 cm, s/p CABG x3, 2nd dose given Monday.",
])
def test_allowlist_mode_keeps_clinical_text_intact(text):
    assert _redacted(text) == []


def test_allowlist_mode_types_what_its_rules_know():
    text = "moved from Oxnard in June; plate 7XKR221."
    found = {(s.kind, text[s.start:s.end]) for s in detect_phi(text, mode="allowlist")}
    assert ("ADDRESS", "Oxnard") in found and ("DATE", "June") in found


def test_allowlist_mode_keeps_every_strict_span():
    text = ("Patient: Maria Quackenbush  MRN: 00452318  DOB: 03/14/1931. Seen by Dr. Okonkwo; call (617) 555-0123. "
            "Daughter mbali qorvesh visiting from tlaquepaque.")
    strict = detect_phi(text)
    allow = detect_phi(text, mode="allowlist")
    for s in strict:
        assert any(a.start <= s.start and s.end <= a.end for a in allow), s


# ------------------------------------------------------------ causes of the third blind set's misses (issue 11)
@pytest.mark.parametrize(("text", "secret"), [
    ("Will f/u after ripening.\n-jt/ab", "jt"),                              # signature initials after a dash
    ("Will f/u after ripening.\n-jt/ab", "ab"),                              # ... and a second one after a slash
    ("Consent signed.\n-MB DDS / asst Tiff", "MB"),
    ("RN Jo Reyes / jr", "jr"),
    ("Pathologist: Imani Boateng, MD   Transcribed: kl", "kl"),
    ("template v2.1 -- last edited by SPK]", "SPK"),
    ("Hold per 5150.\nSB / Dr Akana", "SB"),
    ("ESI 2. -AG, RN", "AG"),
    ("Tech: SR.", "SR"),
    ("reviewed per jt.", "jt"),
    ("Eliquis PA submitted (PA ref PA-88120455).", "PA-88120455"),          # prefixed IDs, whole
    ("Exp. HCG-2026-118734", "HCG-2026-118734"),
    ("new Rx# RX-7720198.", "RX-7720198"),
    ("Moved from Ballinasloe, Co. Galway in March.", "Co. Galway"),           # counties and colonias
    ("Domicilio: Av. Hidalgo 1520, Col. Americana, Guadalajara", "Col. Americana"),
    ("to be buried in Dingle, Co. Kerry.", "Dingle"),
    ("Endereço: Rua das Flores, 233, apto 41, Jardim Guanabara", "Rua das Flores, 233, apto 41"),  # foreign streets
    ("Beneficiary address: 1107 Rue Royale, Lafayette", "1107 Rue Royale"),
    ("Visited pt at 417 1/2 Birch St, Rear Unit, Pueblo", "417 1/2 Birch St, Rear Unit"),
    ("Scene: Hwy 9 near mile marker 41, Boulder Creek.", "Hwy 9 near mile marker 41"),
    ("ADDR 14 SAVIN HILL AVE DORCHESTER MA 02125.", "14 SAVIN HILL AVE"),     # capitals
    ("Home address: 2-14-7 Kita-ku, Sapporo", "2-14-7 Kita-ku"),
    ("Patient Deng Garang Majok ninety-nine per family", "ninety-nine"),     # ages in words and in context
    ("Pt Ruth Abramowitz, ninety-seven, end-stage dementia", "ninety-seven"),
    ("Dad is 91 and confused about the new pills", "91"),
    ("geb. 3. Mai 1961", "3. Mai 1961"),                                       # dates of other languages
    ("Next visit when returns 15 січня 2027", "15 січня 2027"),
    ("cath 2026年11月30日 at outside hospital", "2026年11月30日"),
    ("im in Cebu City til jan 15 bc my mom", "jan 15"),
    ("I had my Whipple in august and now", "august"),
    ("Hmong interpreter Pa Kou Yang (interp ID 40218)", "Pa Kou Yang"),        # clan-first names
    ("PATIENT: VANG, PA NHIA  DOB 1988-02-29", "VANG, PA NHIA"),
    ('Pt is Rolando "Jun" Bautista Jr. -- no relation', 'Rolando "Jun" Bautista Jr.'),  # nickname, suffix
    ("spoke to pt's mother, Blessing Mensah-Bonsu, at home", "Blessing Mensah-Bonsu"),  # hyphenated surnames
    ("warm handoff to Dana Levi-Cohen, LCSW.", "Dana Levi-Cohen"),
    ("Pt: Harold Graves, 94 y/o M", "Harold Graves"),                          # an eponym as a surname
    ("Medic 12 crew: J. Kaʻahanui, P. Ngata.", "J. Kaʻahanui"),                # initial + surname
    ("Submitted by J. Thibodeaux, DME billing.", "J. Thibodeaux"),
    ("Pt: TANAKA Haruki (田中 春樹), 66M", "田中 春樹"),                          # a name in another script
    ("Brazil number (11) 91234-5678.", "(11) 91234-5678"),                      # phone formats
    ("Mob 07700 900123.", "07700 900123"),
])
@pytest.mark.parametrize("mode", ["strict", "allowlist"])
def test_the_causes_of_the_third_blind_sets_misses(text, secret, mode):
    spans = detect_phi(text, mode=mode)
    start = text.index(secret)
    end = start + len(secret) - (2 if secret.endswith("'s") else 0)
    covered = set()
    for s in spans:
        covered.update(range(s.start, s.end))
    assert set(range(start, end)) <= covered, [(s.kind, text[s.start:s.end]) for s in spans]


@pytest.mark.parametrize("text", [
    "Romberg negative. PERRLA. Will obtain MRI brain w/wo contrast.",
    "on bictegravir/FTC/TAF.\ndenies SI/HI.",
    "Passenger refused transport, signed AMA.",
    "COVID-19 negative; ICD-10 code noted; L4-L5 disc.",
    "DDx: typhoid, dengue, West Nile unlikely.",
    "Grace is the daughter, Grace Hunter.\nnote: 'Hunter syndrome' on problem list",
    "shallow on R. Nipple trauma R.",
    "ninety-nine percent of cases; ninety-five minutes.",
])
def test_the_new_rules_leave_clinical_text_alone(text):
    found = [text[s.start:s.end] for s in detect_phi(text)]
    for word in ("PERRLA", "RLA", "TAF", "HI", "AMA", "COVID-19", "ICD-10", "West Nile", "Nile", "Nipple",
                 "ninety-nine", "ninety-five"):
        assert word not in found, found
    assert "Hunter syndrome" not in " ".join(found) and found.count("Hunter") <= 1, found


def test_an_ambiguous_given_name_seen_in_a_full_name_is_that_person_again_with_its_capital():
    """'Dawn' is a common word; once the note named "Dawn Walkingstick", "Dawn's cell" is her, and lower-case
    "joy" stays a word."""
    text, _ = redact("Daughter Dawn Walkingstick visited today. Dawn's cell is on file. Pt expresses joy.")
    assert "Dawn" not in text and "Walkingstick" not in text and "expresses joy" in text


# ------------------------------------------------ allowlist mode: the aggressive rules (issue 11, finding 3)
def test_allowlist_keeps_plain_clinical_shorthand_with_the_aggressive_rules():
    assert _redacted("BP 128/76, HR 88, metoprolol 25 mg po bid, GCS 15, no acute distress") == []
    assert _redacted("Hepatitis B serology neg, R knee effusion, K 4.1, type A dissection ruled out.") == []
    assert _redacted("Plan: follow up in the Emergency Department. I will call. Seen by PT and OT.") == []


def test_allowlist_redacts_capitalised_common_words_mid_sentence_and_name_words_at_a_line_start():
    assert _redacted("Discussed with Hope and Dawn at bedside.") == ["Hope", "Dawn"]
    assert _redacted("Seen with her son Forrest today.") == ["Forrest"]
    assert _redacted("Marty called back about results.\nBrooke to bring the list.") == ["Marty", "Brooke"]


def test_allowlist_redacts_initials_unless_a_clinical_abbreviation():
    assert _redacted("Plan: follow up.\n-- TR") == ["TR"]
    assert _redacted("reviewed by D.W. today") == ["D", "W"]
    assert _redacted("Handoff to QZ overnight, COPD and CHF stable.") == ["QZ"]


def test_allowlist_redacts_words_with_non_ascii_letters_or_another_script():
    found = _redacted("Lives in Łódź near Đống Đa; son أحمد visits; naïve to insulin, Sjögren syndrome.")
    assert {"Łódź", "Đống Đa", "أحمد"} <= set(found) and "naïve" not in found and "Sjögren" not in found


def test_allowlist_extends_a_redaction_over_the_whole_run_of_capitalised_words():
    assert _redacted("Visitor: Anna Kowalczyk-Brandt and Milo Fenwick Hartley.") == [
        "Anna Kowalczyk-Brandt", "Milo Fenwick Hartley"]


@pytest.mark.parametrize(("text", "secrets"), [
    ("Lives at ul. Mickiewicza 22 m. 7, 31-120 Krakow.", ["22", "7", "31-120"]),
    ("Ref 4471 88213 on file; tag 220-4417.", ["4471", "88213", "220-4417"]),
    ("Pt is 93 and lives alone. Age 96.", ["93", "96"]),
    ("Seen 5 NOV 26 and 9 Dec.", ["5", "26", "9"]),
])
def test_allowlist_redacts_numbers_beside_identifiers_grouped_or_old_ages(text, secrets):
    found = " ".join(_redacted(text))
    assert all(s in found for s in secrets), (text, found)


@pytest.mark.parametrize(("text", "secrets"), [
    ("Seen 7 lipca 2026 in clinic.", ["7", "lipca", "2026"]),
    ("Kham ngày 14 tháng 3 năm 2026.", ["ngày", "14", "tháng", "3", "năm", "2026"]),
    ("Bumalik noong Hunyo 9, 2026.", ["Hunyo", "9", "2026"]),
    ("Vu le 21 mars 2026 et le 4. Oktober 2026.", ["21", "mars", "4.", "Oktober"]),
])
def test_allowlist_redacts_foreign_month_names_with_their_numbers(text, secrets):
    spans = detect_phi(text, mode="allowlist")
    found = " ".join(text[s.start:s.end] for s in spans)
    assert all(s.rstrip(".") in found for s in secrets), (text, found)
    month = next(s for s in secrets if s.isalpha() and s not in ("ngày", "năm"))
    assert any(s.kind == "DATE" and month in text[s.start:s.end] for s in spans)
