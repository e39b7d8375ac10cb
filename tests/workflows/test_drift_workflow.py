"""`precimed drift` end to end on Rotterdam: a bundle trained (fast settings) on the patients operated up to 1986,
the later patients as the current file; files written, JSON keys, hormone-therapy drift found, label maturity, the
frame-level entry point, and bad input as one line with exit 2 and nothing written."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import PIMA, fast
from precimed.bundle import load_bundle
from precimed.cohort import type_features
from precimed.config import SourceConfig, parse_config
from precimed.data import load_dataset
from precimed.workflows._run import load_cohort
from precimed.workflows.drift import drift_frames, reference_frame, time_windows
from precimed.workflows.training import train_from_config

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:
    config = yaml.safe_load((ROOT / "examples" / "rotterdam-temporal.yaml").read_text())
    config["data"]["train"]["filter"] = "year <= 1986"
    config = fast(config)
    config["models"] = {**config["models"], "names": ["cox_ph"], "compare": []}
    config["evaluation"] |= {"explain": 0, "subgroups": ["meno"]}
    return config


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    cfg = parse_config(_config())
    return train_from_config(cfg, tmp_path_factory.mktemp("drift") / "run", progress=False).bundle_path


@pytest.fixture(scope="module")
def later(tmp_path_factory) -> pd.DataFrame:
    """Rotterdam patients operated 1987-1993, harmonized as in training (rfs_time, rfs_event derived)."""
    config = _config()
    source = SourceConfig.model_validate({**config["data"]["train"], "filter": "year > 1986"})
    cohort = load_cohort(source, parse_config(config))
    return cohort.frame.reset_index(drop=True).drop(columns=["unknown_after_check"])


@pytest.fixture(scope="module")
def current_csv(later, tmp_path_factory):
    path = tmp_path_factory.mktemp("current") / "later.csv"
    later.to_csv(path, index=False)
    return path


def test_reference_train_is_the_bundles_training_split(bundle_dir):
    bundle = load_bundle(bundle_dir)
    frame, name = reference_frame(bundle, "train")
    assert len(frame) == bundle.metadata["training_data"]["n"] < 863  # the stratified split's training side only
    assert frame["year"].max() <= 1986 and "training rows" in name


def test_drift_command_writes_json_and_html_with_windows(run_cli, bundle_dir, current_csv, tmp_path):
    out = tmp_path / "drift"
    code, stdout, stderr = run_cli("drift", bundle_dir, "--reference", "train", "--current", current_csv, "--out", out,
                                   "--time-column", "year", "--window", "2y", "--bootstrap", "30")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["drift.html", "drift.json"]
    doc = json.loads((out / "drift.json").read_text())
    assert {"bundle", "model", "reference", "current", "settings", "features", "drifting", "domain_classifier",
            "prediction", "windows", "performance"} <= set(doc)
    assert [w["label"] for w in doc["windows"]] == ["1987–1988", "1989–1990", "1991–1992", "1993"]
    assert sum(w["n"] for w in doc["windows"]) == doc["current"]["n"] == 2119
    assert {r["feature"] for r in doc["features"]} == {"age", "meno", "size", "grade", "nodes", "pgr", "er", "hormon",
                                                        "chemo"}
    # hormone therapy went from about 5% of the patients before 1987 to about 28% in 1991-93
    assert "hormon" in doc["windows"][-1]["drifting"] and "hormon" in doc["drifting"]
    auroc = doc["domain_classifier"]["auroc"]
    assert 0.5 < auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"] < 1
    perf = doc["performance"]
    assert perf["available"] and [w["label"] for w in perf["windows"]] == [w["label"] for w in doc["windows"]]
    first = perf["windows"][0]
    assert first["horizons"]["1826"]["mature"] and np.isfinite(first["c_harrell"]["value"])
    html = (out / "drift.html").read_text()
    assert html.count("<img") >= 5 and "hormon over time" in html and "Content-Security-Policy" in html
    assert "hormon" in stdout


def test_a_window_followed_for_less_than_the_horizon_is_immature(run_cli, bundle_dir, later, tmp_path):
    # the 1993 patients as if the data were cut one year after their surgery: follow-up at most 365 days
    recent = later.copy()
    last = recent["year"] == 1993
    cut = recent.loc[last, "rfs_time"] > 365
    recent.loc[last & cut, "rfs_event"] = 0
    recent.loc[last, "rfs_time"] = recent.loc[last, "rfs_time"].clip(upper=365)
    path = tmp_path / "recent.parquet"
    recent.to_parquet(path, index=False)
    out = tmp_path / "drift"
    code, _, stderr = run_cli("drift", bundle_dir, "--current", path, "--out", out, "--time-column", "year",
                              "--bootstrap", "20")
    assert code == 0, stderr
    perf = json.loads((out / "drift.json").read_text())["performance"]
    windows = {w["label"]: w for w in perf["windows"]}
    assert len(windows) == 7  # one window per year by default
    for h in ("1096", "1826"):
        assert not windows["1993"]["horizons"][h]["mature"]
        assert "follow-up ends at 365" in windows["1993"]["horizons"][h]["skipped"]
        assert windows["1988"]["horizons"][h]["mature"]
    assert "skipped as immature" in (out / "drift.html").read_text()


def test_outcomes_arriving_later_are_joined_by_id(run_cli, bundle_dir, later, tmp_path):
    features = later.drop(columns=["rfs_time", "rfs_event"])
    outcomes = later[["pid", "rfs_time", "rfs_event"]].iloc[: len(later) // 2]
    features.to_csv(tmp_path / "current.csv", index=False)
    outcomes.to_csv(tmp_path / "outcomes.csv", index=False)
    out = tmp_path / "drift"
    code, _, stderr = run_cli("drift", bundle_dir, "--current", tmp_path / "current.csv", "--outcomes",
                              tmp_path / "outcomes.csv", "--out", out, "--bootstrap", "20")
    assert code == 0, stderr
    perf = json.loads((out / "drift.json").read_text())["performance"]
    assert perf["available"] and perf["windows"][0]["without_outcome"] == len(later) - len(outcomes)
    outcomes.assign(pid=outcomes["pid"] + 10**6).to_csv(tmp_path / "unknown.csv", index=False)
    code, _, stderr = run_cli("drift", bundle_dir, "--current", tmp_path / "current.csv", "--outcomes",
                              tmp_path / "unknown.csv", "--out", tmp_path / "no")
    assert code == 2 and "not in the current data" in stderr and not (tmp_path / "no").exists()


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_cli, bundle_dir, later, tmp_path):
    out = tmp_path / "never"
    later.drop(columns=["er", "pgr"]).to_csv(tmp_path / "fewer.csv", index=False)
    code, _, stderr = run_cli("drift", bundle_dir, "--current", tmp_path / "fewer.csv", "--out", out)
    assert code == 2 and "missing column(s) ['pgr', 'er']" in _one_line(stderr)
    later.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    code, _, stderr = run_cli("drift", bundle_dir, "--current", tmp_path / "empty.csv", "--out", out)
    assert code == 2 and "no rows" in _one_line(stderr)
    code, _, stderr = run_cli("drift", bundle_dir, "--reference", "training", "--current", tmp_path / "fewer.csv",
                              "--out", out)
    assert code == 2 and "--reference 'training': neither 'train'" in _one_line(stderr)
    code, _, stderr = run_cli("drift", bundle_dir, "--current", tmp_path / "fewer.csv", "--out", out, "--window",
                              "fortnight")
    assert code == 2 and "--window 'fortnight'" in _one_line(stderr)
    assert not out.exists()


def test_drift_frames_takes_frames_and_encoded_vectors(bundle_dir, later):
    bundle = load_bundle(bundle_dir)
    reference, _ = reference_frame(bundle, "train")
    window = later[later["year"] >= 1991].reset_index(drop=True)
    doc = drift_frames(bundle, reference, window, n_boot=20, domain_per_window=False)
    assert doc["current"]["n"] == len(window) and "performance" in doc and "hormon" in doc["drifting"]
    names = bundle.metadata["feature_names_out"]
    pre = bundle.preprocessor
    enc_ref = pd.DataFrame(pre.transform(type_features(reference, bundle.features, where="r")), columns=names)
    enc_cur = pd.DataFrame(pre.transform(type_features(window, bundle.features, where="c")), columns=names)
    encoded = drift_frames(bundle, enc_ref, enc_cur, encoded=True, n_boot=20, domain_per_window=False)
    assert {r["feature"] for r in encoded["features"]} == set(names)
    assert encoded["prediction"]["mean_current"] == pytest.approx(doc["prediction"]["mean_current"])


def test_time_windows_by_rows_and_by_dates():
    frame = pd.DataFrame({"when": pd.date_range("2020-01-01", periods=400, freq="D").astype(str)})
    windows, notes = time_windows(frame, "when", "6m")
    assert [label for label, _ in windows] == ["2020-01-01–2020-06-30", "2020-07-01–2020-12-31",
                                               "2021-01-01–2021-02-03"]
    chunks, _ = time_windows(frame, None, "150")
    assert [len(idx) for _, idx in chunks] == [150, 150, 100]
    chunks, _ = time_windows(frame, None, "180 rows")
    assert [len(idx) for _, idx in chunks] == [180, 220]  # the last 40 rows (under half a window) join the one before
    assert not notes


def test_a_binary_window_is_scored_once_its_outcomes_have_arrived(tmp_path):
    config = fast(PIMA)
    config["models"] |= {"names": ["logistic"]}
    bundle = load_bundle(train_from_config(parse_config(config), tmp_path / "pima", progress=False).bundle_path)
    reference, _ = reference_frame(bundle, "train")
    current = load_dataset("pima_te")
    current.loc[:59, "type"] = None  # the first 60 patients' outcomes have not arrived yet
    doc = drift_frames(bundle, reference, current, window="100", n_boot=20, domain_per_window=False)
    first, second = doc["performance"]["windows"][:2]
    assert "40 of 100 rows (40%)" in first["skipped"] and "auroc" not in first
    assert second["known"] == 100 and 0.5 < second["auroc"]["value"] <= 1 and "calibration_slope" in second
