"""workflows.patient_view: one patient's prediction, explanation, cohort standing and plan, on a small Pima model
trained here (real cohort, seconds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from helpers import PIMA, fast, small_pima_bundle
from precimed.data import load_dataset
from precimed.errors import DataError
from precimed.workflows import patient_view as pv
from precimed.workflows.patients import PatientsInvalid, check_patients, load_planner

PATIENT = {"patient_id": "p1", "glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_pima_bundle(tmp_path_factory.mktemp("pv"))


def without_summary(bundle, key: str, **changes):
    """The bundle as one written before training stored `training_distribution`: the page falls back to the
    explanation background (``key`` keeps the distribution cache apart)."""
    meta = {k: v for k, v in bundle.metadata.items() if k != "training_distribution"}
    return dataclasses.replace(bundle, metadata=meta | {"metadata_sha256": key}, **changes)


@pytest.fixture(scope="module")
def planner():
    return load_planner()


def test_the_view_holds_risk_contributions_in_user_units_and_the_waterfall_adds_up(bundle, planner):
    view = pv.patient_view(bundle, PATIENT, planner=planner)
    assert view.patient_id == "p1" and view.task == "binary" and view.model == bundle.primary
    [risk] = view.risks
    assert risk.name == "probability" and risk.label == "probability of Yes" and 0 < risk.value < 1
    assert not risk.has_interval  # this bundle stores no uncertainty: no interval is invented
    by_feature = {c.feature: c for c in view.contributions}
    assert by_feature["glu"].value == 148 and by_feature["glu"].unit == "mg/dL"
    assert by_feature["glu"].display == "glu = 148 mg/dL"
    # the waterfall runs from the average prediction to this patient's, in percent
    steps = view.waterfall
    assert steps[0].start == pytest.approx(view.waterfall_base)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(steps, steps[1:], strict=False))
    gap = abs(view.explanation["additivity_gap"]) * 100
    assert steps[-1].end == pytest.approx(view.waterfall_prediction, abs=gap + 1e-6)
    assert view.waterfall_prediction == pytest.approx(risk.value * 100, abs=1e-6)
    assert view.waterfall_unit == "%"


def test_the_cohort_comparison_decodes_real_training_values(bundle):
    """The explanation background decodes to values that occur in the training cohort (pima_tr)."""
    bundle = without_summary(bundle, "bg-only")
    dist = pv.training_distribution(bundle)
    assert dist is not None and not dist.exact_range and dist.n == 100
    train = load_dataset("pima_tr")
    for name in ("glu", "bmi", "age", "ped"):
        seen = set(np.round(train[name].astype(float), 4))
        decoded = dist.numbers[name]
        assert len(decoded) == 100 and all(round(float(v), 4) in seen for v in decoded), name
    standing, basis = pv.cohort_standing(bundle, {"glu": 148, "bmi": None, "age": 99, "ped": 0.627})
    assert "sample of 100 training patients" in basis
    s = {x.feature: x for x in standing}
    expected = 100 * (np.sum(dist.numbers["glu"] < 148) + 0.5 * np.sum(dist.numbers["glu"] == 148)) / 100
    assert s["glu"].percentile == pytest.approx(expected) and s["glu"].outside is None
    assert s["age"].outside == "above" and s["age"].train_max == dist.numbers["age"].max()
    assert s["bmi"].value is None and "imputed" in s["bmi"].note


def test_a_stored_training_summary_gives_the_exact_range(bundle):
    meta = {**bundle.metadata, "metadata_sha256": "summary-test",
            "training_distribution": {"age": {"n": 200, "min": 21, "max": 63,
                                              "quantiles": {"0": 21, "0.5": 28, "1": 63}}}}
    other = dataclasses.replace(bundle, metadata=meta)
    standing, basis = pv.cohort_standing(other, {"age": 70, "glu": 100})
    s = {x.feature: x for x in standing}
    assert basis.startswith("the 200 training patients")
    assert s["age"].outside == "above" and s["age"].percentile == 100.0
    assert s["age"].train_min == 21 and s["age"].train_max == 63


def test_interval_keys_become_the_risk_interval_described_by_its_method(bundle):
    row = {"index": 0, "patient_id": "p1", "probability": 0.4, "probability_lower": 0.3, "probability_upper": 0.55,
           "interval_level": 0.9, "interval_method": "conformal-set+venn-abers", "prediction_set": ["No", "Yes"],
           "missing": []}
    [risk] = pv.risks(bundle, row)  # interval keys are not outputs of their own
    assert (risk.lower, risk.upper) == (0.3, 0.55) and not risk.outside_interval
    assert risk.interval_label == "Venn-Abers calibrated-risk interval"  # no coverage level claimed
    assert "no coverage level" in risk.interval_note
    assert dataclasses.replace(risk, lower=0.5, upper=0.6).outside_interval
    regression = {**row, "interval_method": "conformal-absolute-residual"}
    assert pv.interval_label(regression) == "90% prediction interval"
    assert pv.interval_note(regression) == "conformal-absolute-residual"
    # the planner gets values only: these intervals are not confidence intervals of the estimate
    assert pv.plan_predictions([risk], "m v1") == {"probability": {"value": 0.4, "model": "m v1"}}


def test_a_bad_patient_raises_the_api_messages(bundle):
    with pytest.raises(PatientsInvalid) as err:
        pv.patient_view(bundle, {**PATIENT, "glu": 1000, "bmi": "fat"}, plan=False)
    api = check_patients(bundle.features, [{**PATIENT, "glu": 1000, "bmi": "fat"}], "row_id",
                         allow_out_of_range=False)
    assert {(p.field, p.message) for p in err.value.problems} == {(p.field, p.message) for p in api}


def test_the_plan_gets_typed_facts_genotypes_and_ranked_options(bundle, planner):
    facts = pv.parse_facts("sex = female\nmedications = warfarin, amiodarone\nage = 50\natrial_fibrillation = yes",
                           planner)
    assert facts == {"sex": "female", "medications": ["warfarin", "amiodarone"], "age": 50.0,
                     "atrial_fibrillation": True}
    options = pv.parse_options("FOLFOX = 0.12 (0.05 to 0.19): fluorouracil, oxaliplatin\nobservation = 0")
    assert options == {"FOLFOX": {"benefit": 0.12, "ci_low": 0.05, "ci_high": 0.19,
                                  "drugs": ["fluorouracil", "oxaliplatin"]},
                       "observation": {"benefit": 0.0, "drugs": []}}
    assert pv.parse_genotypes("CYP2C9 = *1/*3") == {"CYP2C9": "*1/*3"}
    view = pv.patient_view(bundle, PATIENT, planner=planner, facts=facts, genotypes={"CYP2C9": "*1/*3"},
                           options=options, source="pima-small v1")
    plan = view.plan
    assert [o["option"] for o in plan["options"]] == ["FOLFOX", "observation"]
    assert plan["options"][0]["ci_low"] == 0.05
    assert any(set(i["drugs"]) == {"warfarin", "amiodarone"} for i in plan["interactions"])
    assert plan["pharmacogenomics"]["genes"]["CYP2C9"]["diplotype"] == "*1/*3"
    assert plan["predictions"]["probability"]["model"] == "pima-small v1"
    assert plan["not_evaluated"] and all(n["why"] for n in plan["not_evaluated"])


@pytest.mark.parametrize("text", ["just words", "x = lots", "x = 0.1 (0.2 to"])
def test_a_malformed_option_line_is_refused_naming_the_line(text):
    with pytest.raises(DataError, match="options: line 1"):
        pv.parse_options(text)


def test_without_planner_or_explanation_the_view_says_why(bundle, monkeypatch):
    no_background = without_summary(bundle, "no-bg", background=None)
    view = pv.patient_view(no_background, PATIENT, plan=False)
    assert view.explanation is None and "background" in view.explanation_note
    assert view.standing_basis is None and view.plan is None and view.plan_note
    assert view.risks  # the prediction itself is still there


def test_survival_horizons_are_labelled_in_years():
    assert pv._horizon_label("event_probability_1826days", "days") == \
        "risk of the event by 1826 days (5.0 years)"
    assert pv._horizon_label("event_probability_6months", "months") == "risk of the event by 6 months"


def test_a_bundle_with_stored_uncertainty_gives_each_risk_its_interval(tmp_path, planner):
    """A run with `uncertainty:` (split conformal, evaluation layer) stores intervals; the view and the plan read
    them as they come out of patients.score."""
    from precimed.bundle import load_bundle
    from precimed.config import parse_config
    from precimed.errors import ConfigError
    from precimed.workflows import train_from_config

    cfg = fast(PIMA)
    cfg["models"]["baselines"] = ["logistic"]
    cfg["evaluation"] = {"bootstrap": 5, "explain": 0}
    cfg["uncertainty"] = {"level": 0.9}
    try:
        parsed = parse_config(cfg)
    except ConfigError:
        pytest.skip("this version has no per-patient uncertainty")
    bundle = load_bundle(train_from_config(parsed, tmp_path / "run", progress=False).bundle_path)
    view = pv.patient_view(bundle, PATIENT, planner=planner)
    [risk] = view.risks
    assert risk.has_interval and 0 <= risk.lower <= risk.upper <= 1
    assert view.interval_level == 0.9 and view.interval_method
    assert set(view.prediction_set or []) <= {"Yes", "No"}
    assert view.plan["predictions"]["probability"]["value"] == pytest.approx(risk.value)


def test_a_survival_bundle_shows_each_horizon_and_places_categories_and_log_features(tmp_path):
    """The demo's Rotterdam → GBSG config, shrunk: horizons in words, category shares, log features decoded."""
    import yaml

    from precimed.bundle import load_bundle
    from precimed.config import parse_config
    from precimed.workflows import train_from_config

    root = Path(__file__).resolve().parents[1]
    cfg = fast(yaml.safe_load((root / "examples" / "rotterdam-gbsg.yaml").read_text()))
    cfg["models"] = {"names": ["cox_ph"]}
    cfg["training"].pop("search", None)
    cfg["evaluation"] = {"bootstrap": 5, "explain": 0}
    bundle = load_bundle(train_from_config(parse_config(cfg), tmp_path / "run", progress=False).bundle_path)
    patient = {"patient_id": "g1", "age": 55, "meno": 1, "size": "20-50", "grade": 2, "nodes": 3, "pgr": 100,
               "er": 80, "hormon": 0}
    view = pv.patient_view(bundle, patient, plan=False)
    assert [r.label for r in view.risks] == ["risk of the event by 1096 days (3.0 years)",
                                             "risk of the event by 1826 days (5.0 years)"]
    assert view.risks[0].value < view.risks[1].value and view.waterfall_unit == "log hazard ratio"
    s = {x.feature: x for x in view.standing}
    assert 0 < s["size"].share < 1 and 0 < s["meno"].share < 1 and s["meno"].label == "postmenopausal"
    rotterdam = load_dataset("rotterdam")
    rotterdam = rotterdam[rotterdam["nodes"] > 0]
    for name in ("nodes", "pgr"):  # log1p features decode to values of the cohort
        decoded = pv.training_distribution(without_summary(bundle, "survival-bg")).numbers[name]
        assert set(decoded) <= set(rotterdam[name].astype(float)), name
    assert s["pgr"].train_min >= 0 and s["nodes"].train_min >= 1
