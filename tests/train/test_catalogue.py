"""The model catalogue: one table that config checks, recipes, bundles and effect learners read."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.config import parse_config
from precimed.errors import ConfigError
from precimed.models.baselines import LogisticBaseline
from precimed.train import catalogue
from precimed.train.catalogue import CATALOGUE, ModelSpec, plan_models
from precimed.workflows.predicting import predict_frame
from precimed.workflows.training import train_from_config

BASE = {
    "name": "t",
    "data": {"train": {"dataset": "pima_tr"}},
    "task": {"kind": "binary", "target": "type", "positive": "Yes"},
    "features": [{"name": "glu", "kind": "numeric", "unit": "mg/dL", "range": [20, 400]}],
}


def plan(**models):
    return plan_models(parse_config(dict(BASE, models=models)))


def test_a_run_without_model_names_trains_the_mlp_and_the_tasks_baselines():
    p = plan()
    assert p.names == ["mlp", "logistic", "gbm"]
    assert p.primary == "mlp"
    assert p.comparisons == [("mlp", "logistic"), ("mlp", "gbm")]


def test_any_number_of_deep_models_with_a_chosen_primary_and_comparisons():
    p = plan(names=["resmlp", "mlp", "logistic"], compare=["resmlp - logistic", "resmlp - mlp"])
    assert p.primary == "resmlp" and p.deep == ["resmlp", "mlp"] and p.baselines == ["logistic"]
    assert p.comparisons == [("resmlp", "logistic"), ("resmlp", "mlp")]
    assert plan(names=["mlp", "resmlp", "gbm"], primary="resmlp").comparisons == [("resmlp", "gbm")]


def test_an_unknown_model_name_is_one_line_listing_the_choices():
    with pytest.raises(ConfigError, match=r"unknown model 'mpl'; choose from \[.*'mlp'.*'resmlp'.*\]"):
        plan(names=["mpl", "logistic"])
    with pytest.raises(ConfigError, match=r"unknown model settings 'resmpl'"):
        plan(resmpl={"hidden": [8]})


def test_a_baseline_that_does_not_fit_the_task_is_refused():
    with pytest.raises(ConfigError, match="'cox_ph' does not fit a binary task"):
        plan(baselines=["cox_ph"])


def test_a_sequence_net_is_refused_in_a_tabular_run_and_a_primary_must_be_trained():
    with pytest.raises(ConfigError, match="'gru' reads sequence inputs"):
        plan(names=["gru", "logistic"])
    with pytest.raises(ConfigError, match="primary: 'gbm' is not among"):
        plan(names=["mlp", "logistic"], primary="gbm")
    with pytest.raises(ConfigError, match="must read 'model_a - model_b'"):
        plan(names=["mlp", "logistic"], compare=["mlp-logistic"])


def test_a_models_settings_section_is_checked_by_its_catalogue_entry():
    with pytest.raises(ConfigError, match=r"models.resmlp: hidden"):
        plan(names=["resmlp"], resmlp={"hidden": [0]})
    cfg = parse_config(dict(BASE, models={"names": ["resmlp"], "resmlp": {"hidden": [8], "dropout": 0.2}}))
    model = catalogue.build(cfg, "resmlp")
    assert model.hidden == (8,) and model.dropout == 0.2


def test_every_catalogue_entry_builds_from_a_config_for_each_task_it_supports():
    for spec in CATALOGUE.values():
        assert spec.view in ("tabular", "sequence", "image") and spec.role in ("deep", "baseline")
        assert hasattr(spec.cls, "to_state") and hasattr(spec.cls, "from_state")
        assert catalogue.class_named(spec.cls.__name__) is spec.cls


class MedianRuleBaseline(LogisticBaseline):
    """A new model for the test: logistic regression under another name (any sklearn-style class would do)."""


def test_adding_a_model_is_one_class_and_one_catalogue_entry(monkeypatch, tmp_path):
    entry = ModelSpec("median_rule", MedianRuleBaseline, frozenset({"binary"}), "tabular", "baseline",
                      lambda cfg, _settings, _context: {})
    monkeypatch.setitem(CATALOGUE, "median_rule", entry)  # the one entry; nothing else is touched
    config = fast(PIMA)
    config["models"] |= {"names": ["mlp", "median_rule"]}
    run = train_from_config(parse_config(config), tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(doc["models"]) == {"mlp", "median_rule"}
    assert "mlp - median_rule" in doc["comparisons"]
    bundle = load_bundle(run.bundle_path)
    assert isinstance(bundle.models["median_rule"], MedianRuleBaseline)
    frame = pd.DataFrame({"glu": [100, 180], "bmi": [25, 35], "age": [30, 50], "ped": [0.3, 0.9]})
    scored = predict_frame(bundle, frame, model="median_rule")
    assert np.all((scored["probability"] > 0) & (scored["probability"] < 1))


def test_effect_learners_take_their_base_models_from_the_catalogue():
    model = catalogue.build_for_task("resmlp", "survival", {"hidden": (4,)}, seed=3)
    assert model.task == "survival" and model.random_state == 3
    with pytest.raises(ConfigError, match="cannot serve as a survival outcome model"):
        catalogue.build_for_task("logistic", "survival", None, seed=0)
