"""The update recipe and `precimed update`: a new bundle version that names its parent, scores through
predict_frame, round-trips, refuses bad input in one line and leaves nothing behind when it fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.config import load_config, parse_config
from precimed.data import load_dataset
from precimed.errors import ConfigError, DataError
from precimed.train.updating import RecalibratedModel
from precimed.workflows import updating
from precimed.workflows._run import typed_patients
from precimed.workflows.predicting import predict_frame
from precimed.workflows.training import demo_config_path, train_from_config
from precimed.workflows.updating import update_bundle


@pytest.fixture(scope="module")
def pima_bundle(tmp_path_factory):
    config = fast(PIMA)
    config["models"] |= {"names": ["mlp", "logistic"], "mlp": {"hidden": [16, 8], "ensemble": 2}}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("pima") / "run",
                             progress=False).bundle_path


@pytest.fixture(scope="module")
def breast_bundle(tmp_path_factory):
    """Rotterdam (node-positive) -> GBSG, the demo's task, shrunk to train in seconds."""
    config = load_config(demo_config_path()).model_dump(mode="json", exclude_none=True)
    config.pop("training")
    config = fast(config)
    config["models"] = {"names": ["mlp", "cox_ph"], "mlp": {"hidden": [16, 8], "ensemble": 2}}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("breast") / "run",
                             progress=False).bundle_path


def _gbsg_rows():
    frame = load_dataset("gbsg").head(8).copy()
    frame["size"] = np.where(frame["size"] <= 20, "<=20", np.where(frame["size"] <= 50, "20-50", ">50"))
    return frame


def test_a_cox_recalibration_is_a_new_version_that_names_its_parent_and_scores(breast_bundle, tmp_path):
    parent = load_bundle(breast_bundle)
    result = update_bundle(breast_bundle, "gbsg", tmp_path / "up", method="recalibrate", settings={"holdout": 0.3})
    bundle = load_bundle(result.bundle_path)
    assert bundle.metadata["parent"] == parent.ref and bundle.ref != parent.ref
    assert bundle.metadata["name"] == parent.metadata["name"]  # a new version of the same model
    record = bundle.metadata["update"]
    assert record["method"] == "recalibrate" and record["parent_model"] == "mlp" and record["parent"] == parent.ref
    assert record["data"]["rows"] + record["holdout"]["rows"] == 686 and len(record["data"]["ids_sha256"]) == 64
    # the data window is counts and a digest: no patient id is stored
    assert set(record["data"]) == {"name", "rows", "ids_sha256", "events", "max_follow_up"}
    assert not any(isinstance(v, list) for v in record["data"].values())
    written = (tmp_path / "up" / "bundle" / "metadata.json").read_text()
    assert bundle.primary == "mlp" and sorted(bundle.models) == ["mlp", "mlp_parent"]
    assert isinstance(bundle.models["mlp"], RecalibratedModel) and record["fitted"]["b"] == bundle.models["mlp"].b_
    assert bundle.comparisons == [("mlp", "mlp_parent")] and "mlp_parent" in written
    doc = json.loads((tmp_path / "up" / "update.json").read_text())
    assert set(doc["models"]) == {"mlp", "mlp_parent"} and "mlp - mlp_parent" in doc["comparisons"]
    assert doc["data"]["test"]["n"] == record["holdout"]["rows"]
    # identical predictions after the round trip; the compiled path scores the wrapper (its base compiled)
    rows = _gbsg_rows()
    assert bundle.scorer.models["mlp"].kind == "recalibrated" and "mlp_parent" in bundle.scorer.models
    scored = predict_frame(bundle, rows)
    X = bundle.preprocessor.transform(typed_patients(bundle, rows, where="rows")[1])
    in_memory = result.models["mlp"]
    # the compiled path agrees with the estimator to float32 rounding (tests/test_compiled.py holds it to 1e-6)
    np.testing.assert_allclose(scored["risk_score"], in_memory.predict_risk(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(scored["event_probability_1826days"],
                               1 - in_memory.predict_survival(X, np.array([1826.0]))[:, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(scored["risk_score"], predict_frame(bundle, rows, fast=False)["risk_score"], atol=1e-6)
    untouched = predict_frame(bundle, rows, model="mlp_parent")
    np.testing.assert_allclose(untouched["risk_score"], predict_frame(parent, rows)["risk_score"], atol=1e-6)


def test_fine_tuning_through_the_recipe_records_the_layers_and_keeps_the_encoding(pima_bundle, tmp_path):
    settings = {"finetune": {"layers": "head", "lr": 0.005, "max_epochs": 10}, "seed": 4}
    result = update_bundle(pima_bundle, "pima_te", tmp_path / "ft", method="finetune", settings=settings)
    bundle, parent = load_bundle(result.bundle_path), load_bundle(pima_bundle)
    fitted = bundle.metadata["update"]["fitted"]
    assert fitted["frozen"] == ["hidden1", "hidden2"] and fitted["lr"] == 0.005
    assert bundle.metadata["update"]["settings"]["finetune"]["layers"] == "head"
    assert bundle.metadata["feature_names_out"] == parent.metadata["feature_names_out"]
    tuned, old = bundle.models["mlp"], bundle.models["mlp_parent"]
    assert all((tuned.nets_[0].state_dict()[k] == old.nets_[0].state_dict()[k]).all() for k in ("body.0.weight",))
    rows = load_dataset("pima_te").head(5)
    assert np.isfinite(predict_frame(bundle, rows)["probability"]).all()  # a net: compiled path
    assert "mlp" in bundle.scorer.models
    # an update of an update: still one level of parent, named by ref
    again = update_bundle(result.bundle_path, "pima_te", tmp_path / "again", method="recalibrate_intercept")
    assert load_bundle(again.bundle_path).metadata["parent"] == bundle.ref


def test_the_cli_updates_a_bundle_and_prints_the_fit(run_cli, pima_bundle, tmp_path):
    settings = tmp_path / "update.yaml"
    settings.write_text(yaml.safe_dump({"holdout": 0.4}))
    code, out, err = run_cli("update", pima_bundle, "--data", "pima_te", "--method", "recalibrate", "--out",
                             tmp_path / "cli", "--settings", settings)
    assert code == 0, err
    assert "recalibrate of 'mlp'" in out and "mlp - mlp_parent" in out
    assert (tmp_path / "cli" / "bundle" / "metadata.json").is_file()


@pytest.mark.parametrize("case", ["other columns", "zero rows", "unknown method", "bad settings", "no net"])
def test_bad_input_is_one_line_and_exit_2(run_cli, pima_bundle, tmp_path, case):
    data = tmp_path / "new.csv"
    frame = load_dataset("pima_te").drop(columns=["row_id"])  # a user's file: rows numbered on reading
    args = ["--method", "recalibrate"]
    if case == "other columns":
        frame = frame.drop(columns=["glu"])
    if case == "zero rows":
        frame = frame.head(0)
    frame.to_csv(data, index=False)
    if case == "unknown method":
        args = ["--method", "retune"]
    if case == "bad settings":
        (tmp_path / "s.yaml").write_text("finetune: {layers: some}\n")
        args += ["--settings", str(tmp_path / "s.yaml")]
    if case == "no net":
        (tmp_path / "s.yaml").write_text("model: logistic\n")
        args = ["--method", "finetune", "--settings", str(tmp_path / "s.yaml")]
    code, out, err = run_cli("update", pima_bundle, "--data", data, "--out", tmp_path / "out", *args)
    expected = {"other columns": "glu", "zero rows": "no rows", "unknown method": "unknown update method 'retune'",
                "bad settings": "finetune.layers", "no net": "'logistic' (LogisticBaseline) has no weights"}[case]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_new_data_without_events_is_refused_naming_the_event_column(breast_bundle, tmp_path):
    spec = tmp_path / "censored.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "gbsg", "rename": {"rfstime": "rfs_time", "status": "rfs_event"},
                                    "filter": "rfs_event == 0",
                                    "derive": {"size": "cut(size, [0, 20, 50, 1000], ['<=20', '20-50', '>50'])"}}))
    with pytest.raises(DataError, match="no events in column 'rfs_event'") as info:
        update_bundle(breast_bundle, str(spec), tmp_path / "out", method="recalibrate_intercept")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_a_failure_mid_update_leaves_no_output_folder(monkeypatch, pima_bundle, tmp_path):
    real = updating.save_bundle

    def save_then_fail(directory, **kwargs):
        real(directory, **kwargs)  # the bundle is fully written inside the temporary folder ...
        raise OSError("disk full")  # ... and then the run fails

    monkeypatch.setattr(updating, "save_bundle", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        update_bundle(pima_bundle, "pima_te", tmp_path / "out", method="recalibrate")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_folder_is_refused_before_any_work(pima_bundle, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        update_bundle(pima_bundle, "pima_te", tmp_path / "out")
