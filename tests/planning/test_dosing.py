"""IWPC warfarin algorithms against worked examples computed by hand from the published coefficients (Klein et al.,
NEJM 2009, supplementary appendix); CKD-EPI 2021 and Cockcroft-Gault known values; renal dose rules."""

from __future__ import annotations

import pytest

from precimed.errors import DataError, ValueRangeError
from precimed.planning import dosing


def test_iwpc_pharmacogenetic_worked_example_with_amiodarone():
    # 67 y (6 decades), 160 cm, 68 kg, white, VKORC1 G/A, CYP2C9 *1/*3, on amiodarone:
    # 5.6044 - 0.2614*6 + 0.0087*160 + 0.0128*68 - 0.8677 - 0.9357 - 0.5503
    # = 5.6044 - 1.5684 + 1.3920 + 0.8704 - 0.8677 - 0.9357 - 0.5503 = 3.9447; 3.9447^2 = 15.5607 mg/week
    d = dosing.iwpc_weekly_dose(age=67, height_cm=160, weight_kg=68, race="white", vkorc1="G/A", cyp2c9="*3/*1",
                                amiodarone=True)
    assert d.sqrt_weekly == pytest.approx(3.9447, abs=1e-9)
    assert d.weekly_mg == pytest.approx(15.56066, abs=1e-4)
    assert d.daily_mg == pytest.approx(15.56066 / 7, abs=1e-4)


def test_iwpc_pharmacogenetic_worked_example_with_an_enzyme_inducer():
    # 45 y (4 decades), 180 cm, 90 kg, Asian, VKORC1 A/A, CYP2C9 *1/*1, enzyme inducer:
    # 5.6044 - 1.0456 + 1.5660 + 1.1520 - 1.6974 + 0 - 0.1092 + 1.1816 = 6.6518; squared 44.2464
    d = dosing.iwpc_weekly_dose(age=45, height_cm=180, weight_kg=90, race="asian", vkorc1="A/A", cyp2c9="*1/*1",
                                enzyme_inducer=True)
    assert d.sqrt_weekly == pytest.approx(6.6518, abs=1e-9)
    assert d.weekly_mg == pytest.approx(44.24644, abs=1e-4)


def test_iwpc_unknown_genotypes_and_missing_race_use_their_published_terms():
    # 72 y (7 decades), 165 cm, 60 kg, race missing, genotypes unknown:
    # 5.6044 - 1.8298 + 1.4355 + 0.7680 - 0.4854 - 0.2188 - 0.1032 = 5.1707; squared 26.7361
    d = dosing.iwpc_weekly_dose(age=72, height_cm=165, weight_kg=60)
    assert d.sqrt_weekly == pytest.approx(5.1707, abs=1e-9)
    assert d.weekly_mg == pytest.approx(26.73614, abs=1e-4)
    assert any("missing or mixed race" in n for n in d.notes)


def test_iwpc_clinical_worked_example():
    # clinical algorithm, 45 y, 180 cm, 90 kg, Asian, enzyme inducer:
    # 4.0376 - 0.2546*4 + 0.0118*180 + 0.0134*90 - 0.6752 + 1.2799
    # = 4.0376 - 1.0184 + 2.1240 + 1.2060 - 0.6752 + 1.2799 = 6.9539; squared 48.3567
    d = dosing.iwpc_weekly_dose(age=45, height_cm=180, weight_kg=90, race="asian", enzyme_inducer=True,
                                algorithm="clinical")
    assert d.sqrt_weekly == pytest.approx(6.9539, abs=1e-9)
    assert d.weekly_mg == pytest.approx(48.35673, abs=1e-4)


def test_iwpc_age_is_counted_in_whole_decades():
    assert [dosing.age_in_decades(a) for a in (19.9, 20, 67, 90)] == [1, 2, 6, 9]


def test_iwpc_refuses_a_missing_weight_and_genotypes_outside_its_categories():
    with pytest.raises(DataError, match="weight_kg is missing"):
        dosing.iwpc_weekly_dose(age=60, height_cm=170, weight_kg=None)
    with pytest.raises(DataError, match="not an IWPC genotype category"):
        dosing.iwpc_weekly_dose(age=60, height_cm=170, weight_kg=70, cyp2c9="*1/*8")
    with pytest.raises(ValueRangeError, match="weight_kg = 700"):
        dosing.iwpc_weekly_dose(age=60, height_cm=170, weight_kg=700)


def test_warfarin_suggestion_reduces_for_cyp2c9_alleles_outside_iwpc():
    facts = {"age": 67, "height_cm": 160, "weight_kg": 68, "race": "black", "medications": []}
    pg, clinical = dosing.warfarin_suggestion(facts, "*1/*8", "G/G")
    base = dosing.iwpc_weekly_dose(age=67, height_cm=160, weight_kg=68, race="black", cyp2c9="*1/*1", vkorc1="G/G")
    assert pg.value == pytest.approx(base.weekly_mg)
    assert pg.range == pytest.approx((0.70 * base.weekly_mg, 0.85 * base.weekly_mg))
    assert clinical.method == "IWPC clinical"


def test_warfarin_suggestion_lists_what_is_missing():
    (s,) = dosing.warfarin_suggestion({"age": 67, "height_cm": 160, "medications": []})
    assert s.status == "not computed" and s.missing == ("weight_kg",)


@pytest.mark.parametrize(("scr", "age", "sex", "expected"), [
    # 142 * min(Scr/k,1)^a * max(Scr/k,1)^-1.2 * 0.9938^age * 1.012[female], worked by hand:
    (0.7, 50, "female", 105.3),   # 142 * 1 * 1 * 0.73277 * 1.012
    (1.2, 60, "male", 69.2),      # 142 * (1.2/0.9)^-1.2 = 0.70805; 0.9938^60 = 0.68855
    (2.0, 80, "female", 24.8),    # (2/0.7)^-1.2 = 0.28372; 0.9938^80 = 0.60805; * 1.012
    (0.6, 30, "male", 133.2),     # (0.6/0.9)^-0.302 = 1.13027; 0.9938^30 = 0.82979
])
def test_ckd_epi_2021_known_values(scr, age, sex, expected):
    assert dosing.egfr_ckd_epi_2021(scr, age=age, sex=sex) == pytest.approx(expected, abs=0.1)


def test_ckd_epi_accepts_umol_per_litre():
    assert dosing.egfr_ckd_epi_2021(106.08, age=60, sex="male", unit="umol/L") == pytest.approx(69.2, abs=0.1)


def test_cockcroft_gault_known_values():
    # (140 - 60) * 80 / (72 * 1.2) = 74.07; women * 0.85
    assert dosing.crcl_cockcroft_gault(1.2, age=60, weight_kg=80, sex="male") == pytest.approx(74.07, abs=0.01)
    assert dosing.crcl_cockcroft_gault(1.2, age=60, weight_kg=80, sex="female") == pytest.approx(62.96, abs=0.01)


def test_kidney_equations_refuse_children_and_unknown_sex():
    with pytest.raises(ValueRangeError, match="age"):
        dosing.egfr_ckd_epi_2021(0.7, age=12, sex="female")
    with pytest.raises(DataError, match="sex must be"):
        dosing.egfr_ckd_epi_2021(0.7, age=40, sex="unknown")


@pytest.mark.parametrize(("drug", "kwargs", "action", "text"), [
    ("metformin", {"egfr": 25}, "avoid", "Contraindicated"),
    ("metformin", {"egfr": 40}, "adjust_dose", "Do not start"),
    ("metformin", {"egfr": 45}, "none", "No renal dose adjustment"),
    ("enoxaparin", {"crcl": 29}, "adjust_dose", "30 mg SC once daily"),
    ("gabapentin", {"crcl": 45}, "adjust_dose", "400-1400 mg/day"),
    ("gabapentin", {"crcl": 10}, "adjust_dose", "100-300 mg/day"),
    ("dabigatran", {"crcl": 30}, "adjust_dose", "75 mg twice daily"),
    ("dabigatran", {"crcl": 30.5}, "none", "150 mg twice daily"),
    ("capecitabine", {"crcl": 40}, "adjust_dose", "75%"),
])
def test_renal_dose_rules_follow_the_label_bands(drug, kwargs, action, text):
    r = dosing.renal_dose(drug, **kwargs)
    assert r.status == "decided" and r.action == action and text in r.text
    assert "prescribing information" in r.source or "SmPC" in r.source


def test_apixaban_dose_counts_the_label_criteria_and_decides_when_it_can():
    two = dosing.renal_dose("apixaban", facts={"age": 82, "weight_kg": 58})
    assert two.action == "adjust_dose" and "2.5 mg" in two.text
    none_possible = dosing.renal_dose("apixaban", facts={"age": 60, "creatinine_mg_dl": 0.9})
    assert none_possible.status == "decided" and "5 mg" in none_possible.text  # weight alone cannot reach 2
    undecided = dosing.renal_dose("apixaban", facts={"age": 85, "creatinine_mg_dl": 1.0})
    assert undecided.status == "not decided" and undecided.missing == ("weight_kg",)


def test_a_renal_rule_without_its_measure_is_not_decided_and_an_unknown_drug_is_refused():
    assert dosing.renal_dose("gabapentin").status == "not decided"
    with pytest.raises(DataError, match="no renal dose rule for drug 'paracetamol'"):
        dosing.renal_dose("paracetamol", egfr=50)
