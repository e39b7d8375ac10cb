"""The sequence recipe end to end on pbcseq: landmark design, sequence nets vs baselines, bundle, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from precimed.bundle import load_bundle
from precimed.config import load_config, parse_config
from precimed.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pbcseq.yaml"


def tiny(**changes) -> dict:
    """The pbcseq example with tiny settings: few epochs, one net per kind, 30 bootstrap replicates."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["models"]["sequence"] |= {"hidden": 8, "head_hidden": 8, "ensemble": 1}
    config["models"]["gbm"] = {"n_estimators": 30}
    config["training"] |= {"max_epochs": 6, "patience": 3, "lr": 0.01, "progress": False}
    config["evaluation"] = {"bootstrap": 30}
    return config | changes


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from precimed.workflows.sequence import train_sequence_from_config

    out = tmp_path_factory.mktemp("runs") / "pbcseq"
    return train_sequence_from_config(parse_config(tiny()), out, progress=False)


def test_the_example_config_declares_a_landmark_design():
    cfg = load_config(EXAMPLE)
    assert cfg.sequence is not None and cfg.sequence.landmark == 730
    assert cfg.models.sequence.kinds == ["gru", "lstm", "cnn", "transformer"]


def test_only_patients_at_risk_at_the_landmark_are_kept_and_the_excluded_are_counted(run):
    doc = run.metrics
    notes = doc["sequence"]["notes"]
    assert any("34 of 312 patients excluded as no longer at risk (34 with the event and 0 censored" in n
               for n in notes)
    train, test = doc["data"]["train"], doc["data"]["test"]
    assert train["n"] + test["n"] == 312 - 34
    # follow-up counts from the landmark and is censored 5 years after it
    assert max(train["median_follow_up"], test["median_follow_up"]) <= 1826.25


def test_sequence_nets_and_baselines_are_scored_on_the_same_patients_with_cis(run):
    doc = run.metrics
    assert list(doc["models"]) == ["gru", "lstm", "cnn", "transformer", "cox_ph_summary", "gbm_last"]
    assert doc["sequence"]["inputs"]["gbm_last"] == "last" and doc["sequence"]["inputs"]["gru"] == "sequence"
    for name, metrics in doc["models"].items():
        c = metrics["c_harrell"]
        assert c["ci_low"] <= c["value"] <= c["ci_high"], name
        assert {"auc_365", "auc_1096", "auc_1826", "ibs"} <= set(metrics)
    assert doc["models"]["gbm_last"]["c_harrell"]["value"] > 0.65
    assert set(doc["comparisons"]) == {f"{s} - {b}" for s in ("gru", "lstm", "cnn", "transformer")
                                       for b in ("cox_ph_summary", "gbm_last")}


def test_the_run_folder_has_the_usual_layout_and_the_bundle_reloads_exactly(run):
    out = run.out_dir
    assert {p.name for p in out.iterdir()} == {"bundle", "metrics.json", "quality.json", "report.html", "model_card.md"}
    assert json.loads((out / "metrics.json").read_text())["run"] == "pbcseq-landmark"
    quality = json.loads((out / "quality.json").read_text())
    assert quality["longitudinal"]["train"]["bili"]["ignored_after_landmark"] > 0
    bundle = load_bundle(run.bundle_path)
    assert bundle.sequence_preprocessor is not None
    assert "sequence_preprocessor.json" in bundle.metadata["sha256"]
    assert set(bundle.models) == set(run.models)

    from precimed.data import load_dataset
    from precimed.workflows.sequence import predict_sequence_frame

    visits = load_dataset("pbcseq")
    visits = visits[visits.id.isin([2, 3, 4, 5, 6])]
    for name in ("gru", "transformer", "gbm_last", "cox_ph_summary"):
        first = predict_sequence_frame(bundle, visits, model=name)
        again = predict_sequence_frame(load_bundle(run.bundle_path), visits, model=name)
        np.testing.assert_array_equal(first["risk_score"], again["risk_score"])
    assert first.columns.tolist()[-3:] == [f"event_probability_{h}days_after" for h in (365, 1096, 1826)]


def test_predictions_at_the_landmark_ignore_visits_after_it(run):
    from precimed.data import load_dataset
    from precimed.workflows.sequence import predict_sequence_frame

    bundle = load_bundle(run.bundle_path)
    visits = load_dataset("pbcseq")
    visits = visits[visits.id.isin([2, 3, 4, 5, 6])]
    early = visits[visits.day <= 730]
    for name in ("cnn", "gbm_last"):
        np.testing.assert_array_equal(predict_sequence_frame(bundle, visits, model=name)["risk_score"],
                                      predict_sequence_frame(bundle, early, model=name)["risk_score"])


def test_a_sequence_section_with_an_unknown_key_or_a_clash_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'sequence.landmarks'"):
        parse_config(tiny(sequence=tiny()["sequence"] | {"landmarks": 3}))
    clash = tiny()
    clash["sequence"]["variables"].append({"name": "age"})
    with pytest.raises(ConfigError, match=r"sequence variables \['age'\] cannot also be static features"):
        parse_config(clash)


def test_a_sequence_run_on_a_file_needs_the_patient_id(tmp_path):
    from precimed.data import load_dataset
    from precimed.workflows.sequence import train_sequence_from_config

    visits = load_dataset("pbcseq")
    visits.assign(death_or_tx=(visits.status >= 1).astype(int)).to_csv(tmp_path / "visits.csv", index=False)
    config = tiny(data={"train": {"path": str(tmp_path / "visits.csv")}})
    config.pop("patient_id")
    with pytest.raises(ConfigError, match="needs the patient id column"):
        train_sequence_from_config(parse_config(config), tmp_path / "out", progress=False)


def test_an_altered_sequence_preprocessor_is_refused(run, tmp_path):
    import shutil

    from precimed.errors import ArtifactError

    copy = tmp_path / "bundle"
    shutil.copytree(run.bundle_path, copy)
    state = json.loads((copy / "sequence_preprocessor.json").read_text())
    state["center"][0] += 1.0
    (copy / "sequence_preprocessor.json").write_text(json.dumps(state))
    with pytest.raises(ArtifactError, match="sequence_preprocessor.json does not match its recorded sha256"):
        load_bundle(copy)
