import json

import numpy as np
import pytest

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.errors import ArtifactError


@pytest.fixture(scope="module")
def pima_run(tmp_path_factory):
    from precimed.config import parse_config
    from precimed.workflows import train_from_config

    out = tmp_path_factory.mktemp("runs") / "pima"
    return train_from_config(parse_config(fast(PIMA)), out, progress=False)


def test_a_bundle_holds_metadata_preprocessing_and_every_model(pima_run):
    bundle = load_bundle(pima_run.bundle_path)
    assert set(bundle.models) == {"mlp", "logistic", "gbm"}
    meta = bundle.metadata
    assert meta["training_data"]["n"] == 200 and meta["validation_data"]["n"] == 332
    assert {f["name"]: f["unit"] for f in meta["config"]["features"]}["glu"] == "mg/dL"
    assert meta["libraries"]["torch"].startswith("2.13")
    assert set(meta["sha256"]) >= {"preprocessor.json", "models/mlp.pt", "models/gbm.txt"}


def test_predictions_are_identical_after_a_save_load_round_trip(pima_run):
    from precimed.cohort import type_features
    from precimed.data import load_dataset

    bundle = load_bundle(pima_run.bundle_path)
    frame = load_dataset("pima_te").set_index("row_id")
    X = type_features(frame, bundle.features, where="pima_te")
    np.testing.assert_array_equal(bundle.preprocessor.transform(X), pima_run.preprocessor.transform(X))
    Xt = pima_run.preprocessor.transform(X)
    for name, model in pima_run.models.items():
        np.testing.assert_array_equal(bundle.models[name].predict_proba(Xt), model.predict_proba(Xt), err_msg=name)


def test_an_altered_weight_file_is_refused(pima_run, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(pima_run.bundle_path, copy)
    data = bytearray((copy / "models" / "mlp.pt").read_bytes())
    data[-10] ^= 0xFF
    (copy / "models" / "mlp.pt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"mlp.pt does not match its recorded sha256"):
        load_bundle(copy)


def test_an_edited_metadata_range_is_refused(pima_run, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(pima_run.bundle_path, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["config"]["features"][0]["range"] = [0, 10000]
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="metadata.json was altered"):
        load_bundle(copy)


def test_a_missing_bundle_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="not a precimed bundle"):
        load_bundle(tmp_path)


def test_a_bundle_from_another_precimed_major_version_is_refused(pima_run, tmp_path):
    import shutil

    from precimed.bundle import _canonical, sha256_bytes

    copy = tmp_path / "bundle"
    shutil.copytree(pima_run.bundle_path, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["precimed_version"] = "9.0.0"
    meta["metadata_sha256"] = sha256_bytes(_canonical(meta))
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="precimed 9.0.0"):
        load_bundle(copy)


def test_a_moved_library_version_loads_with_a_warning(pima_run, tmp_path):
    import shutil

    from precimed.bundle import _canonical, sha256_bytes

    copy = tmp_path / "bundle"
    shutil.copytree(pima_run.bundle_path, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["libraries"]["torch"] = "1.0.0"
    meta["metadata_sha256"] = sha256_bytes(_canonical(meta))
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="torch 1.0.0"):
        load_bundle(copy)
