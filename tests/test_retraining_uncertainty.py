"""Gated retraining and bundle updates of a model trained with ``uncertainty:`` (docs/uncertainty.md), on real
cohorts with fast settings.

- ``precimed retrain`` (kind retrain): the challenger's run holds calibration rows out of the window's training part;
  the row-count check counts them, and the challenger bundle keeps the intervals fitted on its own calibration rows.
- ``precimed update`` and the recalibrate challenger: an updated model's outputs are not the ones the intervals were
  calibrated on, so its intervals are dropped (and the record says so); the unchanged parent keeps its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.config import parse_config
from precimed.data import load_dataset
from precimed.workflows.predicting import predict_frame
from precimed.workflows.retraining import challenge
from precimed.workflows.training import train_from_config
from precimed.workflows.updating import update_bundle

ROOT = Path(__file__).resolve().parents[1]
END_1990 = datetime(1990, 12, 31, tzinfo=UTC)
UNCERTAINTY = {"level": 0.9, "calibration_fraction": 0.2}
POLICY = {"window": {"time_column": "year", "last": 5}, "holdout": {"kind": "recent", "last": 1},
          "bootstrap": 20, "gates": {"c_index_diff_lower": -0.05}}
HORIZONS = ("event_probability_1096days", "event_probability_1826days")


@pytest.fixture(scope="module")
def rotterdam_champion(tmp_path_factory) -> Path:
    """examples/rotterdam-temporal.yaml with uncertainty, trained on the years up to 1986 only, shrunk."""
    config = fast(yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text()))
    config["data"]["train"]["filter"] = "year <= 1986"
    config["models"] = {**config["models"], "names": ["mlp", "cox_ph"], "compare": ["mlp - cox_ph"]}
    config["evaluation"] |= {"explain": 0, "bootstrap": 10}
    config["uncertainty"] = UNCERTAINTY
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("champion") / "run",
                             progress=False).bundle_path


@pytest.fixture(scope="module")
def pima_bundle(tmp_path_factory) -> Path:
    config = fast(PIMA) | {"uncertainty": UNCERTAINTY}
    config["models"] = {**config["models"], "names": ["mlp"]}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("pima") / "run", progress=False).bundle_path


def test_a_retrained_challenger_counts_its_calibration_rows_and_keeps_its_intervals(rotterdam_champion, tmp_path):
    champion = load_bundle(rotterdam_champion)
    assert set(champion.uncertainty) == {"mlp", "cox_ph"}
    out = tmp_path / "run"
    decision = challenge(rotterdam_champion, "rotterdam", POLICY, out, trigger="cli:tester", now=END_1990)

    rotterdam = load_dataset("rotterdam")
    window_train = int(rotterdam["year"].between(1986, 1989).sum())
    doc = json.loads((out / "decision.json").read_text())
    assert doc["window"]["train"]["rows"] == window_train
    bundle = load_bundle(decision.paths["bundle"])
    meta = bundle.metadata
    fitted, calibration = meta["training_data"]["n"], meta["uncertainty"]["calibration_data"]["n"]
    assert calibration > 0 and fitted + calibration == window_train  # the check that used to fail
    assert calibration == pytest.approx(0.2 * window_train, abs=1)

    # the challenger keeps uncertainty fitted on its own calibration rows, not the champion's
    assert set(bundle.uncertainty) == {"mlp", "cox_ph"}
    assert bundle.uncertainty["mlp"].n_calibration == calibration != champion.uncertainty["mlp"].n_calibration
    assert bundle.uncertainty["mlp"].level == 0.9 and bundle.uncertainty["mlp"].method == "ipcw-venn-abers"

    # its predictions carry the interval keys
    held_out = rotterdam[rotterdam["year"] == 1990].head(20)
    scored = predict_frame(bundle, held_out)
    for name in HORIZONS:
        assert (scored[f"{name}_lower"] <= scored[f"{name}_upper"]).all()
    assert (scored["interval_level"] == 0.9).all() and (scored["interval_method"] == "ipcw-venn-abers").all()

    # decision.json reports the challenger's coverage, checked on the held-out rows (the 341 patients of 1990)
    summary = doc["uncertainty"]
    assert summary["kept"] is True and summary["level"] == 0.9 and summary["n_calibration"] == calibration
    assert summary["n_evaluated"] == doc["window"]["holdout"]["rows"] == 341
    for name in HORIZONS:
        c = summary["coverage"][f"coverage {name}"]
        assert 0.0 <= c["ci_low"] <= c["value"] <= c["ci_high"] <= 1.0
    page = (out / "retraining.html").read_text()
    assert "Per-patient uncertainty" in page and f"fitted on {calibration} calibration rows" in page


def test_a_recalibrated_challenger_drops_the_champions_intervals_and_says_so(rotterdam_champion, tmp_path):
    policy = POLICY | {"challenger": {"kind": "recalibrate"}}
    decision = challenge(rotterdam_champion, "rotterdam", policy, tmp_path / "run", trigger="cli:tester",
                         now=END_1990)
    bundle = load_bundle(decision.paths["bundle"])
    assert set(bundle.models) == {"mlp", "mlp_parent"}
    assert set(bundle.uncertainty) == {"mlp_parent"}  # the unchanged parent only
    note = decision.doc["uncertainty"]
    assert note["kept"] is False and note["updated_model"] == "dropped" and note["parent_model"] == "kept"
    assert bundle.metadata["update"]["uncertainty"]["updated_model"] == "dropped"
    rows = load_dataset("rotterdam").head(5)
    assert not any(c.endswith(("_lower", "_upper")) for c in predict_frame(bundle, rows).columns)
    assert "interval_method" in predict_frame(bundle, rows, model="mlp_parent").columns
    assert "no longer describe it and were dropped" in (tmp_path / "run" / "retraining.html").read_text()


def test_precimed_update_keeps_the_parents_intervals_only_for_the_parent(pima_bundle, tmp_path):
    parent = load_bundle(pima_bundle)
    result = update_bundle(pima_bundle, "pima_te", tmp_path / "recal", method="recalibrate")
    bundle = load_bundle(result.bundle_path)
    assert set(bundle.uncertainty) == {"mlp_parent"}
    new = load_dataset("pima_te").head(30)
    updated = predict_frame(bundle, new)
    assert "probability_lower" not in updated and "prediction_set" not in updated
    # the parent scores as before, intervals included
    before = predict_frame(parent, new)
    after = predict_frame(bundle, new, model="mlp_parent")
    cols = ["probability", "probability_lower", "probability_upper"]
    pd.testing.assert_frame_equal(before[cols], after[cols])
    assert list(before["prediction_set"]) == list(after["prediction_set"])
    record = json.loads((tmp_path / "recal" / "update.json").read_text())["update"]["uncertainty"]
    assert record["updated_model"] == "dropped" and record["parent_model"] == "kept" and "dropped" in record["note"]


def test_an_update_with_a_new_encoding_keeps_no_intervals(pima_bundle, tmp_path):
    settings = {"finetune": {"refit_preprocessor": True, "max_epochs": 3, "patience": 2}}
    result = update_bundle(pima_bundle, "pima_te", tmp_path / "ft", method="finetune", settings=settings)
    bundle = load_bundle(result.bundle_path)
    assert set(bundle.models) == {"mlp"} and bundle.uncertainty == {}
    assert bundle.metadata["update"]["uncertainty"]["parent_model"] == "not in the bundle"


def test_a_bundle_without_uncertainty_updates_as_before(tmp_path):
    config = fast(PIMA)
    config["models"] = {**config["models"], "names": ["logistic"]}
    run = train_from_config(parse_config(config), tmp_path / "run", progress=False)
    result = update_bundle(run.bundle_path, "pima_te", tmp_path / "recal", method="recalibrate")
    assert "uncertainty" not in result.metrics["update"] and load_bundle(result.bundle_path).uncertainty == {}
