"""Per-patient uncertainty: the split-conformal guarantee on synthetic exchangeable data (labelled synthetic),
Venn-Abers bracketing, IPCW status weights, and the bundle / scoring / compiled-path integration on real
cohorts (Pima, Rotterdam -> GBSG)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from helpers import PIMA, fast
from precimed.bundle import BundleInvalid, load_bundle
from precimed.config import parse_config
from precimed.data import load_dataset
from precimed.errors import ConfigError, DataError
from precimed.evaluate import conformal as C
from precimed.service.schemas import PatientPrediction
from precimed.workflows.patients import outputs, score
from precimed.workflows.predicting import predict_file, predict_frame
from precimed.workflows.training import train_from_config

CONTRACT = ("interval_level", "interval_method")


# ----- the guarantee on synthetic exchangeable data ------------------------------------------------------------
def _tolerance(level: float, n_cal: int, n_test: int, reps: int) -> float:
    """Four standard deviations of the mean coverage over `reps` repetitions: each repetition's coverage varies
    through its calibration draw (Beta, variance ~ a(1-a)/(n_cal+2)) and its test draw (binomial)."""
    a = 1.0 - level
    return 4.0 * math.sqrt((a * (1 - a) / (n_cal + 2) + a * (1 - a) / n_test) / reps)


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_regression_intervals_cover_at_least_the_level_on_exchangeable_data(level):
    rng = np.random.default_rng(1)
    reps, n_cal, n_test = 400, 30, 50
    covered = []
    for _ in range(reps):
        x = rng.normal(size=n_cal + n_test)
        y = 2 * x + rng.standard_t(3, size=x.size)  # synthetic, heavy-tailed noise
        pred = 1.8 * x  # a slightly wrong model: the guarantee does not care
        unc = C.fit_uncertainty("regression", {"prediction": pred[:n_cal]}, y[:n_cal], level=level)
        lo, hi = unc.intervals["prediction"].bounds(pred[n_cal:])
        covered.append(np.mean((y[n_cal:] >= lo) & (y[n_cal:] <= hi)))
    mean = float(np.mean(covered))
    tol = _tolerance(level, n_cal, n_test, reps)
    assert mean >= level - tol
    # and not wastefully above: continuous scores give at most level + 1/(n_cal+1)
    assert mean <= level + 1 / (n_cal + 1) + tol


def test_binary_sets_cover_at_least_the_level_on_exchangeable_data():
    rng = np.random.default_rng(2)
    reps, n_cal, n_test, level = 300, 40, 60, 0.9
    covered, sizes = [], []
    for _ in range(reps):
        p_true = rng.beta(2, 2, size=n_cal + n_test)
        y = (rng.random(p_true.size) < p_true).astype(float)
        p_model = np.clip(p_true + rng.normal(0, 0.1, p_true.size), 0.01, 0.99)  # synthetic, noisy model
        # the set's threshold exactly as fit_uncertainty computes it (its Venn-Abers grid is not needed here)
        true_p = np.where(y[:n_cal] == 1, p_model[:n_cal], 1 - p_model[:n_cal])
        unc = C.Uncertainty("binary", level, "conformal-set", n_cal, {}, ["0", "1"],
                            C.conformal_quantile(1 - true_p, level))
        rep = C.coverage_report(unc, {"probability": p_model[n_cal:]}, y[n_cal:], n_boot=0)
        covered.append(rep["metrics"]["coverage"]["value"])
        sizes.append(rep["metrics"]["mean_set_size"]["value"])
    assert np.mean(covered) >= level - _tolerance(level, n_cal, n_test, reps)
    assert 1.0 <= np.mean(sizes) <= 2.0


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1, 20, dtype=float)  # n = 19
    assert C.conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert C.conformal_quantile(scores[:5], 0.9) == math.inf  # ceil(6 * 0.9) = 6 > 5 rows
    # unit weights and a test weight of 1 give the unweighted rank
    assert C.weighted_conformal_quantile(scores, np.ones(19), 0.9) == 18.0


def test_multiclass_sets_are_never_empty_and_cover():
    rng = np.random.default_rng(3)
    n, k = 600, 3
    logits = rng.normal(size=(n, k)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in proba]).astype(float)
    cols = {f"p_{c}": proba[:, j] for j, c in enumerate("abc")}
    unc = C.fit_uncertainty("multiclass", {k_: v[:300] for k_, v in cols.items()}, y[:300], level=0.9,
                            classes=list("abc"))
    applied = unc.apply({k_: v[300:] for k_, v in cols.items()})
    assert all(len(s) >= 1 and set(s) <= set("abc") for s in applied["prediction_set"])
    assert {"p_a_lower", "p_b_upper", "p_c_lower"} <= set(applied)
    cover = np.mean([list("abc")[int(t)] in s for t, s in zip(y[300:], applied["prediction_set"], strict=True)])
    assert cover >= 0.9 - _tolerance(0.9, 300, 300, 1)


# ----- Venn-Abers ------------------------------------------------------------------------------------------------
def test_venn_abers_interval_brackets_the_isotonic_calibrated_probability():
    rng = np.random.default_rng(4)
    s = rng.uniform(size=200)
    y = (rng.random(200) < s**2).astype(float)  # synthetic: the score is miscalibrated
    interval = C.venn_abers(s, y)
    new = rng.uniform(-0.05, 1.05, size=300)
    lo, hi = interval.bounds(new)
    calibrated = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y).predict(new)
    assert np.all(lo <= calibrated + 1e-12) and np.all(calibrated <= hi + 1e-12)
    assert np.all(np.diff(lo[np.argsort(new)]) >= -1e-12)  # monotone in the score


def test_venn_abers_grid_equals_the_two_isotonic_fits():
    rng = np.random.default_rng(5)
    s = np.round(rng.uniform(size=50), 2)  # ties among calibration scores
    y = (rng.random(50) < s).astype(float)
    w = rng.uniform(0.5, 2.0, size=50)
    interval = C.venn_abers(s, y, w)
    for t in [x for x in rng.uniform(-0.1, 1.1, size=40) if x not in s]:
        lo, hi = interval.bounds(np.array([t]))
        for label, got in ((0.0, lo[0]), (1.0, hi[0])):
            fit = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
                np.append(s, t), np.append(y, label), sample_weight=np.append(w, 1.0))
            assert got == pytest.approx(fit.predict([t])[0], abs=1e-9)


def test_status_at_horizon_and_ipcw_weights():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    event = np.array([1, 0, 1, 0, 1, 1])
    known, label, weight = C.status_at(time, event, 3.5)
    assert known.tolist() == [True, False, True, True, True, True]  # censored at 2 < 3.5: unknown
    assert label.tolist() == [1, 0, 1, 0, 0, 0]
    assert weight[1] == 0 and weight[0] == 1.0  # nobody censored before t=1
    assert weight[2] == pytest.approx(1 / (1 - 1 / 5))  # one censoring of 5 at risk at t=2
    assert weight[3:].tolist() == pytest.approx([1.25, 1.25, 1.25])  # G(3.5-)


def test_ipcw_status_sets_cover_about_the_level_on_synthetic_censored_data():
    """Synthetic exponential event and censoring times (independent censoring); a model with the right ranking
    but noisy probabilities. IPCW coverage of the event-by-horizon set on fresh patients is near the level."""
    rng = np.random.default_rng(6)
    covered = []
    for _ in range(20):
        n = 1200
        rate = np.exp(rng.normal(0, 0.7, n)) / 5.0
        t_event, t_cens = rng.exponential(1 / rate), rng.exponential(8.0, n)
        y = np.column_stack([np.minimum(t_event, t_cens), (t_event <= t_cens).astype(float)])
        f = np.clip(1 - np.exp(-rate * 3.0) + rng.normal(0, 0.05, n), 0.001, 0.999)
        cols = {"event_probability_3y": f}
        unc = C.fit_uncertainty("survival", {k: v[:600] for k, v in cols.items()}, y[:600], level=0.9,
                                horizons=[3.0], time_unit="y")
        rep = C.coverage_report(unc, {k: v[600:] for k, v in cols.items()}, y[600:], n_boot=0)
        covered.append(rep["metrics"]["coverage event_probability_3y"]["value"])
    # approximate (asymptotic) guarantee: the mean over 20 draws within a binomial-derived band around 0.9
    assert abs(np.mean(covered) - 0.9) <= _tolerance(0.9, 600, 600, 20) + 0.01


def test_levels_outside_zero_one_are_one_line_config_errors():
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ConfigError) as exc:
            parse_config({**PIMA, "uncertainty": {"level": bad}})
        assert "uncertainty.level" in str(exc.value) and "\n" not in str(exc.value)
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            C.check_level(bad)
    for too_much in (1.0, 0.99, 0.51):  # at most half of the training rows: the models need the rest
        with pytest.raises(ConfigError, match="uncertainty.calibration_fraction"):
            parse_config({**PIMA, "uncertainty": {"calibration_fraction": too_much}})
    with pytest.raises(ConfigError, match="DP guarantee"):
        parse_config({**PIMA, "uncertainty": {}, "training": {"privacy": {"epsilon": 3}}})


def test_too_few_calibration_rows_is_a_data_error():
    with pytest.raises(DataError, match="at least 19 needed"):
        C.fit_uncertainty("regression", {"prediction": np.zeros(10)}, np.ones(10), level=0.95)


# ----- bundles, scoring, the compiled path (real cohorts) ---------------------------------------------------------
@pytest.fixture(scope="module")
def pima_run(tmp_path_factory):
    config = fast(PIMA)
    config["evaluation"] = {"bootstrap": 30, "explain": 0}
    config["uncertainty"] = {"level": 0.8, "calibration_fraction": 0.25}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("pima") / "run", progress=False)


PATIENTS = [{"glu": 150, "bmi": 33.0, "age": 40, "ped": 0.5}, {"glu": 90, "bmi": 22.0, "age": 25, "ped": 0.2},
            {"glu": 199, "bmi": 45.0, "age": 62, "ped": 1.8}]


def test_calibration_rows_are_held_out_and_coverage_is_reported(pima_run):
    doc = pima_run.metrics
    assert doc["data"]["train"]["n"] + doc["data"]["calibration"]["n"] == 200  # MASS::Pima.tr
    assert doc["data"]["calibration"]["n"] == 50
    rep = doc["uncertainty"]["mlp"]
    assert rep["level"] == 0.8 and rep["n_calibration"] == 50 and rep["n_evaluated"] == 332  # Pima.te
    cov = rep["metrics"]["coverage"]
    assert cov["ci_low"] <= cov["value"] <= cov["ci_high"]
    assert set(doc["uncertainty"]) == {"mlp", "logistic", "gbm"}
    on_disk = json.loads((pima_run.out_dir / "metrics.json").read_text())
    assert on_disk["uncertainty"]["mlp"]["metrics"]["coverage"]["value"] == pytest.approx(cov["value"])


def test_bundle_round_trip_and_score_rows_carry_the_contract(pima_run):
    bundle = load_bundle(pima_run.bundle_path)
    assert set(bundle.uncertainty) == {"mlp", "logistic", "gbm"}
    assert "uncertainty.json" in bundle.metadata["sha256"]
    unc = bundle.uncertainty["mlp"]
    assert unc.level == 0.8 and unc.n_calibration == 50 and unc.method == "conformal-set+venn-abers"
    again = C.from_file_state(C.to_file_state(bundle.uncertainty))["mlp"]
    assert again.set_threshold == unc.set_threshold
    assert np.array_equal(again.intervals["probability"].upper, unc.intervals["probability"].upper)
    rows = score(bundle, PATIENTS).rows
    for row in rows:
        assert row["probability_lower"] <= row["probability_upper"]
        assert row["interval_level"] == 0.8 and row["interval_method"] == "conformal-set+venn-abers"
        assert row["prediction_set"] and set(row["prediction_set"]) <= {"not Yes", "Yes"}
        PatientPrediction.model_validate(row)  # the service's response model accepts the row
        assert set(outputs(row)) == {"probability"}  # plan rules see model outputs only
    assert rows[1]["probability"] < rows[2]["probability"]


def test_compiled_and_reference_paths_agree_on_the_uncertainty(pima_run):
    bundle = load_bundle(pima_run.bundle_path)
    frame = load_dataset("pima_te")[["glu", "bmi", "age", "ped"]]
    for model in ("mlp", "logistic", "gbm"):
        fast_out = predict_frame(bundle, frame, model=model)
        ref = predict_frame(bundle, frame, model=model, fast=False)
        assert list(fast_out.columns) == list(ref.columns)
        for c in ("probability", "probability_lower", "probability_upper", "interval_level"):
            assert np.allclose(fast_out[c].to_numpy(float), ref[c].to_numpy(float), atol=1e-6), (model, c)
        same_sets = np.mean([a == b for a, b in zip(fast_out["prediction_set"], ref["prediction_set"], strict=True)])
        assert same_sets >= 0.99  # float32 vs float64 may only flip a patient sitting on the threshold
    # a few records take the plain-Python lookups, more take numpy's: the same answers
    many = frame.head(20).to_dict(orient="records")
    bulk = bundle.scorer.score_records(many, model="mlp")
    one_by_one = [bundle.scorer.score_records([p], model="mlp")[0] for p in many]
    assert all(
        a["prediction_set"] == b["prediction_set"] and a["probability_upper"] == pytest.approx(b["probability_upper"])
        and a["interval_method"] == b["interval_method"] for a, b in zip(bulk, one_by_one, strict=True))
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    else:  # the ONNX engine's outputs get the same interval columns
        on_onnx = predict_frame(bundle, frame, model="mlp", runtime="onnx")
        ref = predict_frame(bundle, frame, model="mlp", fast=False)
        assert np.allclose(on_onnx["probability_lower"], ref["probability_lower"], atol=1e-6)
    records = bundle.scorer.score_records(PATIENTS, model="mlp")
    ref_rows = predict_frame(bundle, pd.DataFrame(PATIENTS), fast=False).to_dict(orient="records")
    for a, b in zip(records, ref_rows, strict=True):
        assert a["probability_lower"] == pytest.approx(b["probability_lower"], abs=1e-6)
        assert a["prediction_set"] == b["prediction_set"]


def test_predict_file_writes_the_set_as_text_in_csv(pima_run, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame(PATIENTS).to_csv(src, index=False)
    predict_file(pima_run.bundle_path, src, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    assert {"probability_lower", "probability_upper", "interval_level", "interval_method"} <= set(out.columns)
    assert all(set(s.split("|")) <= {"not Yes", "Yes"} for s in out["prediction_set"])
    predict_file(pima_run.bundle_path, src, tmp_path / "out.json")
    assert isinstance(json.loads((tmp_path / "out.json").read_text())[0]["prediction_set"], list)


def test_tampered_uncertainty_file_is_refused(pima_run, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(pima_run.bundle_path, copy)
    path = copy / "uncertainty.json"
    state = json.loads(path.read_text())
    state["models"]["mlp"]["set_threshold"] = 1.0
    path.write_text(json.dumps(state))
    with pytest.raises(BundleInvalid, match="uncertainty.json does not match"):
        load_bundle(copy)


def test_bundle_without_uncertainty_loads_and_scores_without_the_keys(tmp_path):
    config = fast(PIMA)
    config["evaluation"] = {"bootstrap": 30, "explain": 0}
    config["models"] = {**config["models"], "names": ["logistic"]}
    run = train_from_config(parse_config(config), tmp_path / "run", progress=False)
    assert "uncertainty" not in run.metrics
    bundle = load_bundle(run.bundle_path)
    assert bundle.uncertainty == {} and "uncertainty.json" not in bundle.metadata["sha256"]
    row = score(bundle, PATIENTS[:1]).rows[0]
    assert not any(k in row for k in (*CONTRACT, "prediction_set", "probability_lower"))
    assert run.metrics["data"]["train"]["n"] == 200  # no rows held out without an uncertainty section


def test_survival_rotterdam_to_gbsg_intervals_and_ipcw_coverage(tmp_path):
    config = {
        "name": "rotterdam-small", "patient_id": "pid",
        "data": {"train": {"dataset": "rotterdam", "filter": "nodes > 0"},
                 "test": {"dataset": "gbsg", "rename": {"rfstime": "rtime", "status": "recur"}}},
        "task": {"kind": "survival", "time": "rtime", "event": "recur", "time_unit": "days",
                 "horizons": [1096, 1826]},
        "features": [{"name": "age", "kind": "numeric", "range": [18, 100]},
                     {"name": "nodes", "kind": "numeric", "range": [0, 60]},
                     {"name": "pgr", "kind": "numeric", "range": [0, 6000]},
                     {"name": "er", "kind": "numeric", "range": [0, 6000]}],
        "split": {"kind": "external"},
        "models": {"names": ["cox_ph"]},
        "evaluation": {"bootstrap": 20, "explain": 0},
        "uncertainty": {"level": 0.9},
    }
    run = train_from_config(parse_config(config), tmp_path / "run", progress=False)
    rep = run.metrics["uncertainty"]["cox_ph"]
    assert rep["method"] == "ipcw-venn-abers" and rep["n_evaluated"] == 686  # GBSG
    for h in ("1096days", "1826days"):
        m = rep["metrics"]
        assert 0 <= m[f"coverage event_probability_{h}"]["value"] <= 1
        assert m[f"mean_lower event_probability_{h}"]["value"] <= m[f"mean_upper event_probability_{h}"]["value"]
    bundle = load_bundle(run.bundle_path)
    patient = {"age": 55, "nodes": 4, "pgr": 100, "er": 80}
    row = score(bundle, [patient]).rows[0]
    for h in ("1096days", "1826days"):
        assert row[f"event_probability_{h}_lower"] <= row[f"event_probability_{h}_upper"]
    assert row["interval_method"] == "ipcw-venn-abers" and "prediction_set" not in row
    ref = predict_frame(bundle, pd.DataFrame([patient]), fast=False).iloc[0]
    assert row["event_probability_1826days_upper"] == pytest.approx(ref["event_probability_1826days_upper"], abs=1e-6)


@pytest.mark.parametrize("level", [0, 1.5])
def test_cli_train_with_a_bad_level_is_one_line_and_exit_2(run_cli, write_config, tmp_path, level):
    code, out, err = run_cli("train", write_config({**PIMA, "uncertainty": {"level": level}}), "--out",
                             tmp_path / "run")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "uncertainty.level" in lines[0]
    assert not (tmp_path / "run").exists()


def test_too_few_calibration_rows_stop_training_before_any_fitting(tmp_path, monkeypatch):
    from precimed.workflows import training

    monkeypatch.setattr(training, "_fit_models", lambda *a, **k: pytest.fail("models were fitted"))
    config = {**fast(PIMA), "uncertainty": {"level": 0.95, "calibration_fraction": 0.05}}  # 10 rows, 19 needed
    with pytest.raises(DataError, match="at least 19 needed"):
        train_from_config(parse_config(config), tmp_path / "run", progress=False)


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_the_api_returns_the_uncertainty_and_documents_it(pima_run, tmp_path):
    from fastapi.testclient import TestClient

    from precimed.service import ServiceSettings, create_app
    from precimed.service import cli_commands as cli

    registry = tmp_path / "registry"
    cli.registry_add(registry, pima_run.bundle_path)
    cli.registry_promote(registry, "pima-small", 1)
    _, token = cli.tokens_create(registry, "clinician", label="conformal test")
    with TestClient(create_app(ServiceSettings(registry=registry))) as client:
        answer = client.post("/v1/models/pima-small/predict", headers={"Authorization": f"Bearer {token}"},
                             json={"patients": [{"patient_id": "p1", **PATIENTS[0]}]})
        assert answer.status_code == 200, answer.text
        row = answer.json()["predictions"][0]
        assert row["probability_lower"] <= row["probability_upper"]
        assert row["interval_level"] == 0.8 and row["interval_method"] == "conformal-set+venn-abers"
        assert set(row["prediction_set"]) <= {"not Yes", "Yes"}
        schema = client.get("/openapi.json").json()["components"]["schemas"]["PatientPrediction"]["properties"]
        assert {"probability_lower", "prediction_upper", "interval_level", "interval_method",
                "prediction_set"} <= set(schema)
