from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from precimed.config import parse_config
from precimed.errors import ConfigError
from precimed.jsonio import loads_strict
from precimed.workflows.effects import effects_from_config, load_effects_config

ROOT = Path(__file__).resolve().parents[1]
TINY = {"bootstrap": 2, "folds": 2, "policy_bootstrap": 50}


def tiny(cfg, **gbm):
    """The example config with a small boosting model, so a run takes seconds."""
    models = cfg.models.model_copy(update={"gbm": cfg.models.gbm.model_copy(update={"n_estimators": 40, **gbm})})
    return cfg.model_copy(update={"models": models})


@pytest.fixture(scope="module")
def colon_run(tmp_path_factory):
    cfg, settings = load_effects_config(ROOT / "examples" / "effects-colon.yaml")
    out = tmp_path_factory.mktemp("colon") / "effects"
    doc = effects_from_config(tiny(cfg), out, base="gbm", settings=settings.model_copy(update=TINY))
    return out, doc


def test_colon_run_writes_effects_and_patient_table(colon_run):
    out, doc = colon_run
    on_disk = loads_strict((out / "effects.json").read_text())  # null, never a bare NaN
    assert on_disk == doc
    assert doc["arms"] == ["Obs", "Lev", "Lev+5FU"]
    assert set(doc["ate"]) == {"Lev vs Obs", "Lev+5FU vs Obs"}
    for est in doc["ate"].values():
        assert est["ci_low"] < est["value"] < est["ci_high"]
    assert doc["overlap"]["share_outside_any"] == 0  # randomised 1:1:1 with known probabilities
    table = pd.read_csv(out / "patient_effects.csv")
    assert len(table) == 929 and table["id"].is_unique
    assert {"rmst_Obs", "rmst_Lev+5FU", "effect_Lev+5FU_vs_Obs", "effect_Lev+5FU_vs_Obs_low",
            "effect_Lev+5FU_vs_Obs_high", "recommended", "recommended_t"} <= set(table.columns)
    assert set(table["recommended"]) <= {"Obs", "Lev", "Lev+5FU"}
    assert set(table["fold"]) == {1, 2}
    assert table["rmst_Obs"].between(0, 1826).all()


def test_colon_policy_is_compared_with_treating_everyone_and_no_one(colon_run):
    _, doc = colon_run
    policy = doc["policy"]
    assert policy["treat_none"] == "treat_all:Obs"
    assert set(policy["values"]) == {"model", "model_cautious", "treat_all:Obs", "treat_all:Lev", "treat_all:Lev+5FU"}
    assert {"model - treat_all:Obs", "model - treat_all:Lev+5FU"} <= set(policy["differences"])
    assert policy["verdict"]["vs_best_fixed"].startswith("the model's policy")
    assert sum(policy["recommended_share"].values()) == pytest.approx(1.0)
    assert doc["logrank"]["logrank"]["df"] == 1
    assert doc["logrank"]["matched"]["n"] + doc["logrank"]["unmatched"]["n"] == 929
    assert doc["learners"]["t"]["policy_event_free"]["measure"] == "survival"
    assert "cross-fitting" in doc["design"]["honesty"]


def test_gbsg_run_adjusts_with_a_logistic_propensity(tmp_path):
    cfg, settings = load_effects_config(ROOT / "examples" / "effects-gbsg.yaml")
    doc = effects_from_config(tiny(cfg), tmp_path / "gbsg", base="gbm",
                              settings=settings.model_copy(update=TINY | {"learners": ["t"]}))
    assert list(doc["ate"]) == ["tamoxifen vs none"]
    assert doc["overlap"]["propensity"].startswith("logistic")
    treated = doc["overlap"]["arms"]["tamoxifen"]
    assert treated["n"] == 246
    # tamoxifen went to older, postmenopausal women: the treated have the higher propensities
    assert treated["propensity_received"]["median"] > treated["propensity_others"]["median"] + 0.1
    assert 0 < treated["ess_fraction"] <= 1
    assert doc["data"]["per_arm"] == {"none": {"n": 440, "events": 205}, "tamoxifen": {"n": 246, "events": 94}}


def synthetic_config(tmp_path, n: int = 3000, seed: int = 0):
    """A file with a planted effect: the drug cuts the risk when x0 > 0 and raises it otherwise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    drug = rng.integers(0, 2, n)
    p0 = expit(-0.3 + 0.5 * x[:, 1])
    p1 = expit(-0.3 + 0.5 * x[:, 1] + np.where(x[:, 0] > 0, -2.0, 1.0))
    event = (rng.random(n) < np.where(drug == 1, p1, p0)).astype(int)
    frame = pd.DataFrame({"pid": np.arange(n), "x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "drug": drug,
                          "event": event})
    path = tmp_path / "trial.csv"
    frame.to_csv(path, index=False)
    cfg = parse_config({
        "name": "planted", "patient_id": "pid", "data": {"train": {"path": str(path)}},
        "task": {"kind": "binary", "target": "event", "treatment": "drug"},
        "features": [{"name": "x0"}, {"name": "x1"}, {"name": "x2"}, {"name": "drug", "kind": "binary"}],
        "models": {"gbm": {"n_estimators": 150, "learning_rate": 0.05, "num_leaves": 4}},
    })
    settings = {"control": 0, "propensity": "known", "known_probabilities": {0: 0.5, 1: 0.5}, "learners": ["t"],
                "base": "gbm", "bootstrap": 3, "folds": 3, "policy_bootstrap": 300}
    return cfg, settings, (p1 - p0).mean(), np.minimum(p0, p1).mean(), p1.mean()


def test_a_planted_effect_is_found_and_the_learned_policy_beats_treating_everyone(tmp_path):
    cfg, settings, true_ate, oracle_risk, all_risk = synthetic_config(tmp_path)

    doc = effects_from_config(cfg, tmp_path / "out", settings=settings)

    ate = doc["ate"]["1 vs 0"]
    assert ate["ci_low"] <= true_ate <= ate["ci_high"]
    assert doc["measure"] == "risk" and doc["higher_is_better"] is False
    diff = doc["policy"]["differences"]["model - treat_all:1"]  # risk: negative is better
    assert diff["ci_high"] < 0
    assert doc["policy"]["verdict"]["vs_best_fixed"].startswith("the model's policy beats")
    assert doc["policy"]["values"]["model"]["value"] < all_risk
    assert doc["policy"]["values"]["model"]["value"] == pytest.approx(oracle_risk, abs=0.05)
    assert any("treatment 'drug' is listed as a feature" in note for note in doc["data"]["notes"])
    assert "x0" in doc["data"]["features"] and "drug" not in doc["data"]["features"]
    assert doc["learners"]["t"]["matched"]["difference"]["value"] < 0  # matched patients have fewer events


def test_bad_settings_are_refused_before_any_work(tmp_path):
    cfg, settings, *_ = synthetic_config(tmp_path, n=200)
    with pytest.raises(ConfigError, match="effects.folds"):
        effects_from_config(cfg, tmp_path / "a", settings=settings | {"folds": 1})
    with pytest.raises(ConfigError, match="effects.horizn: unknown key"):
        effects_from_config(cfg, tmp_path / "a", settings=settings | {"horizn": 3})
    with pytest.raises(ConfigError, match="needs known_probabilities"):
        effects_from_config(cfg, tmp_path / "a", settings={"control": 0, "propensity": "known"})
    with pytest.raises(ConfigError, match="must name exactly the arms"):
        effects_from_config(cfg, tmp_path / "a", settings=settings | {"known_probabilities": {0: 0.5, 2: 0.5}})
    with pytest.raises(ConfigError, match="control arm '7'"):
        effects_from_config(cfg, tmp_path / "a", settings=settings | {"control": 7})
    with pytest.raises(ConfigError, match="no effects settings"):
        effects_from_config(cfg, tmp_path / "a")
    no_treatment = cfg.model_copy(update={"task": cfg.task.model_copy(update={"treatment": None})})
    with pytest.raises(ConfigError, match="task.treatment"):
        effects_from_config(no_treatment, tmp_path / "a", settings=settings)
    assert not (tmp_path / "a").exists()


def test_an_existing_output_folder_is_kept_unless_overwrite(tmp_path):
    cfg, settings, *_ = synthetic_config(tmp_path, n=400)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        effects_from_config(cfg, out, settings=settings)
    assert (out / "keep.txt").exists()
    effects_from_config(cfg, out, settings=settings | {"bootstrap": 0, "folds": 2}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["effects.json", "patient_effects.csv"]


def test_the_example_configs_parse():
    for name in ("effects-gbsg.yaml", "effects-colon.yaml"):
        cfg, settings = load_effects_config(ROOT / "examples" / name)
        assert cfg.task.treatment and settings.horizon == 1826


def test_summary_lines_report_the_ate_and_the_verdicts(colon_run):
    from precimed.workflows.effects import summary_lines

    lines = summary_lines(colon_run[1])
    assert any(line.startswith("ATE Lev+5FU vs Obs: ") and "days" in line for line in lines)
    assert sum(line.startswith("verdict: the model's policy") for line in lines) == 2
    assert any("log-rank" in line for line in lines)
