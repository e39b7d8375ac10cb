"""precimed plan with an effects run: options ranked by cross-fitted benefit, guideline rules still decide."""

import json

import pandas as pd
import pytest

from precimed.errors import DataError

EFFECTS = {"run": "t", "arms": ["Obs", "Lev", "Lev+5FU"], "control": "Obs", "measure": "rmst", "horizon": 1826,
           "time_unit": "days", "higher_is_better": True, "learners": ["dr"]}
ROW = {"id": "2", "rmst_Obs": 1400.0, "rmst_Obs_low": 1200.0, "rmst_Obs_high": 1600.0,
       "rmst_Lev": 1500.0, "rmst_Lev_low": 1300.0, "rmst_Lev_high": 1700.0,
       "rmst_Lev+5FU": 1700.0, "rmst_Lev+5FU_low": 1500.0, "rmst_Lev+5FU_high": 1826.0,
       "effect_Lev_vs_Obs": 100.0, "effect_Lev_vs_Obs_low": -50.0, "effect_Lev_vs_Obs_high": 250.0,
       "effect_Lev+5FU_vs_Obs": 300.0, "effect_Lev+5FU_vs_Obs_low": 80.0, "effect_Lev+5FU_vs_Obs_high": 520.0}


@pytest.fixture
def effects_dir(tmp_path):
    folder = tmp_path / "effects"
    folder.mkdir()
    (folder / "effects.json").write_text(json.dumps(EFFECTS))
    pd.DataFrame([ROW]).to_csv(folder / "patient_effects.csv", index=False)
    return folder


def test_options_take_the_effects_runs_benefits_and_rules_still_block_levamisole(effects_dir):
    from precimed.workflows.planning import plan_patient

    plan = plan_patient(None, "examples/patients/colon_trial_2.json", effects=effects_dir)
    ranked = {o["option"]: o for o in plan["options"]}
    assert ranked["levamisole + fluorouracil"]["benefit"] == 300.0
    assert ranked["levamisole + fluorouracil"]["ci_low"] == 80.0
    assert ranked["observation"]["benefit"] == 0.0
    assert ranked["levamisole + fluorouracil"]["blocked_by"]  # the obsolete-levamisole rule wins
    pred = plan["predictions"]["rmst_Lev+5FU"]
    assert (pred["value"], pred["ci_low"], pred["ci_high"]) == (1700.0, 1500.0, 1826.0)
    assert plan["provenance"]["effects"]["cross_fitted"] is True


def test_a_patient_missing_from_the_effects_run_is_named(effects_dir):
    from precimed.workflows.planning import plan_patient

    with pytest.raises(DataError, match="'999' is not in patient_effects.csv"):
        plan_patient(None, "examples/patients/colon_trial_2.json", effects=effects_dir, effects_id="999")
