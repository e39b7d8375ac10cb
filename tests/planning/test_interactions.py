"""Drug vocabulary, the cited interaction subset, allergies and contraindications."""

from __future__ import annotations

import pytest

from precimed.errors import DataError
from precimed.planning import interactions


def pairs(drugs):
    hits, _ = interactions.check_interactions(drugs)
    return {(h.interaction.id, h.drug_a, h.drug_b, h.action.type, h.action.drug) for h in hits}


@pytest.mark.parametrize(("drugs", "expected"), [
    (["warfarin", "amiodarone"], ("warfarin-amiodarone", "warfarin", "amiodarone", "adjust_dose", "warfarin")),
    (["Prilosec", "Plavix"], ("clopidogrel-omeprazole", "clopidogrel", "omeprazole", "avoid", "omeprazole")),
    (["clarithromycin", "simvastatin"],
     ("simvastatin-strong-cyp3a4-inhibitors", "simvastatin", "clarithromycin", "avoid", "simvastatin")),
    (["tamoxifen", "paroxetine"],
     ("tamoxifen-strong-cyp2d6-inhibitors", "tamoxifen", "paroxetine", "avoid", "paroxetine")),
    (["azathioprine", "allopurinol"],
     ("thiopurine-allopurinol", "azathioprine", "allopurinol", "adjust_dose", "azathioprine")),
    (["warfarin", "capecitabine"], ("warfarin-capecitabine", "warfarin", "capecitabine", "monitor", "warfarin")),
])
def test_listed_interactions_are_found_in_either_order_and_by_brand_name(drugs, expected):
    assert expected in pairs(drugs)
    assert expected in pairs(list(reversed(drugs)))


def test_no_interaction_between_unrelated_drugs():
    assert pairs(["metformin", "lisinopril", "pantoprazole", "clopidogrel"]) == set()


def test_every_interaction_cites_a_source():
    table, version = interactions.interaction_table()
    assert len(table) >= 10 and version
    assert all(("prescribing information" in i.source) or ("CPIC" in i.source) for i in table)


def test_an_unknown_drug_is_refused_with_a_suggestion_or_reported():
    with pytest.raises(DataError, match=r"unknown drug 'warfarine'.*did you mean \['warfarin'\]"):
        interactions.check_interactions(["warfarine", "amiodarone"])
    hits, unknown = interactions.check_interactions(["warfarine", "amiodarone"], on_unknown="report")
    assert hits == [] and unknown == ["warfarine"]


def test_allergies_match_the_drug_or_its_class():
    hits, unknown = interactions.check_allergies(["amoxicillin", "metformin", "codeine"],
                                                 ["penicillin", "Codeine", "unobtainium"])
    assert {(h.drug, h.via) for h in hits} == {("amoxicillin", "penicillins"), ("codeine", "codeine")}
    assert unknown == ["unobtainium"]


def test_contraindications_are_decided_from_facts_and_unknown_stays_undecided():
    hits, undecided = interactions.check_contraindications(["letrozole"], {"menopausal_status": "pre"})
    assert [h.entry.id for h in hits] == ["aromatase-inhibitor-premenopausal"]
    assert hits[0].action.type == "avoid"
    hits, undecided = interactions.check_contraindications(["warfarin"], {})
    assert hits == [] and undecided == [("warfarin-pregnancy", "warfarin", ["mechanical_heart_valve", "pregnant"])]
    hits, _ = interactions.check_contraindications(["aromatase inhibitors"], {"menopausal_status": "pre"})
    assert hits and hits[0].drug == "aromatase inhibitors"
