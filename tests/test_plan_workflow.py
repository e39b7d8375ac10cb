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


def test_the_python_api_reads_a_chosen_sample_of_a_variant_only_vcf_as_the_cli_does(tmp_path):
    import precimed
    from precimed.planning import pgx

    rs = pgx.variant_table().by_rsid()["rs4244285"]
    text = "\n".join(["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB",
                      f"chr10\t{rs.pos['GRCh38']}\t.\tG\tA\t.\tPASS\t.\tGT\t0/0\t1/1"]) + "\n"
    (tmp_path / "two.vcf").write_text(text)
    plan = precimed.plan("examples/patients/warfarin_pgx.json", genotypes=tmp_path / "two.vcf", sample="B",
                         absent="reference")
    genes, read = plan["pharmacogenomics"]["genes"], plan["pharmacogenomics"]["vcf"]
    assert genes["CYP2C19"]["phenotype"] == "Poor Metabolizer" and genes["CYP2D6"]["origin"] == "diplotype"
    assert (read["build"], read["build_from"], read["absent"]) == ("GRCh38", "inferred from the positions of the key "
                                                                  "variants", "reference")
    with pytest.raises(DataError, match="two.vcf: 2 samples; choose one with --sample"):
        precimed.plan("examples/patients/warfarin_pgx.json", genotypes=tmp_path / "two.vcf")
