"""The training cohort's distribution stored in the bundle for the patient page (``metadata["training_distribution"]``):
from the fitting rows only (never calibration or test rows), quantiles and a 1st-99th percentile range for numbers
(no minimum or maximum: each is one patient's value), shares for categories, nothing for a differentially private
run (the metadata says why)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.config import parse_config
from precimed.data import load_dataset
from precimed.workflows import patient_view as pv
from precimed.workflows._run import load_cohort
from precimed.workflows.training import (
    DISTRIBUTION_QUANTILES,
    MIN_SUMMARY_VALUES,
    distribution_summary,
    hold_out_calibration,
    train_from_config,
)

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = ("glu", "bmi", "age", "ped")


@pytest.fixture(scope="module")
def pima_run(tmp_path_factory):
    config = fast(PIMA) | {"uncertainty": {"level": 0.9, "calibration_fraction": 0.25}}
    config["models"] = {**config["models"], "names": ["logistic"]}
    cfg = parse_config(config)
    return cfg, train_from_config(cfg, tmp_path_factory.mktemp("pima") / "run", progress=False)


def test_numbers_are_quantiles_of_the_fitting_rows_only(pima_run):
    cfg, run = pima_run
    bundle = load_bundle(run.bundle_path)
    dist = bundle.metadata["training_distribution"]
    fitting, calibration = hold_out_calibration(cfg, load_cohort(cfg.data.train, cfg))  # the run's own split
    assert calibration is not None and len(fitting) == bundle.metadata["training_data"]["n"] == 150
    assert bundle.metadata["training_distribution_info"] | {"note": ""} == {
        "stored": True, "rows": fitting.name, "n": 150, "patients": 150, "note": ""}
    everyone = load_dataset("pima_tr")  # fitting + calibration rows
    test = load_dataset("pima_te")
    differs_from = {"all training rows": 0, "test rows": 0}
    for name in NUMERIC:
        d = dist[name]
        assert set(d) == {"kind", "n", "quantiles", "range", "range_quantiles"}  # no min, no max
        values = fitting.X[name].astype(float).to_numpy()
        assert d["n"] == len(values) == 150
        expected = np.quantile(values, DISTRIBUTION_QUANTILES)
        assert [float(k) for k in d["quantiles"]] == list(DISTRIBUTION_QUANTILES)
        np.testing.assert_allclose(list(d["quantiles"].values()), expected, rtol=0, atol=1e-12)
        assert d["range"] == [expected[0], expected[-1]] and d["range_quantiles"] == [0.01, 0.99]
        assert values.min() <= d["range"][0] <= d["range"][1] <= values.max()
        differs_from["all training rows"] += not np.allclose(
            expected, np.quantile(everyone[name].astype(float), DISTRIBUTION_QUANTILES))
        differs_from["test rows"] += not np.allclose(
            expected, np.quantile(test[name].astype(float), DISTRIBUTION_QUANTILES))
    # the calibration and test rows would have given other numbers: they were left out
    assert differs_from == {"all training rows": len(NUMERIC), "test rows": len(NUMERIC)}


def test_the_patient_page_reads_the_stored_summary(pima_run):
    _, run = pima_run
    bundle = load_bundle(run.bundle_path)
    standing, basis = pv.cohort_standing(bundle, {"glu": 148, "bmi": 33.6, "age": 50, "ped": 0.627})
    assert basis.startswith("the 150 training patients (summary stored in the bundle")
    glu = next(s for s in standing if s.feature == "glu")
    levels = np.array(DISTRIBUTION_QUANTILES)
    values = np.array(list(bundle.metadata["training_distribution"]["glu"]["quantiles"].values()))
    assert glu.percentile == pytest.approx(100 * np.interp(148, values, levels))


def test_categories_get_shares_as_the_model_encodes_them():
    """Rotterdam (real): a binary feature with `positive`, a categorical one; plus edge cases on a small frame."""
    cfg = parse_config(yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text()))
    frame = load_dataset("rotterdam")
    dist = distribution_summary(cfg.features, frame)
    assert set(dist) == {f.name for f in cfg.features}
    meno = frame["meno"].value_counts(normalize=True)
    assert dist["meno"]["n"] == len(frame) and dist["meno"]["shares"] == pytest.approx({"1": meno[1], "0": meno[0]})
    size = frame["size"].value_counts(normalize=True)
    assert dist["size"]["shares"] == pytest.approx(size.to_dict()) and sum(dist["size"]["shares"].values()) == 1.0
    nodes = frame["nodes"].astype(float)
    assert dist["nodes"]["quantiles"]["0.5"] == np.quantile(nodes, 0.5)

    small = parse_config({**PIMA, "features": [
        {"name": "smoker", "kind": "binary"},
        {"name": "glu", "kind": "numeric", "range": [20, 400]},
        {"name": "rare", "kind": "numeric"}]}).features
    n = 40
    rows = pd.DataFrame({"smoker": (["yes", "no", " ", None] * 10)[:n],
                         "glu": [10.0, 500.0] + list(np.linspace(80, 200, n - 2)),  # two out of range
                         "rare": [1.0, 2.0] + [np.nan] * (n - 2)})
    d = distribution_summary(small, rows)
    assert d["smoker"] == {"kind": "binary", "n": 20, "shares": {"0": 0.5, "1": 0.5}}  # blanks are missing
    assert d["glu"]["n"] == n - 2 and d["glu"]["range"][0] >= 80  # read as the model reads them: missing
    assert d["rare"]["n"] == 2 < MIN_SUMMARY_VALUES and "quantiles" not in d["rare"] and "note" in d["rare"]


def test_a_private_run_stores_no_distribution_and_says_why(tmp_path):
    config = fast(PIMA, privacy={"epsilon": 5.0, "epochs": 2})
    config["models"] = {"names": ["mlp"], "mlp": {"hidden": [8], "ensemble": 1}}
    config["evaluation"] = {"bootstrap": 10, "explain": 0}
    run = train_from_config(parse_config(config), tmp_path / "run", progress=False)
    meta = load_bundle(run.bundle_path).metadata
    assert meta["training_distribution"] is None
    info = meta["training_distribution_info"]
    assert info["stored"] is False and "differentially private" in info["reason"]
