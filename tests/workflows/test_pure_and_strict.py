"""Prediction is pure (threads share one loaded bundle), and every JSON file a run writes is strict JSON."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import PIMA, fast
from precimed import jsonio
from precimed.bundle import load_bundle
from precimed.config import parse_config
from precimed.errors import ValueRangeError
from precimed.workflows.explaining import explain_file
from precimed.workflows.monitor import monitor_stream, simulate_ward_files
from precimed.workflows.planning import plan_patient, write_plan
from precimed.workflows.predicting import predict_file, predict_frame
from precimed.workflows.training import train_from_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pima_run(tmp_path_factory):
    config = fast(PIMA)
    config["models"] |= {"names": ["resmlp", "mlp", "logistic"], "resmlp": {"hidden": [8], "ensemble": 1}}
    return train_from_config(parse_config(config), tmp_path_factory.mktemp("pima") / "run")


def patients(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"glu": rng.uniform(60, 200, n), "bmi": rng.uniform(18, 45, n),
                         "age": rng.integers(21, 80, n), "ped": rng.uniform(0.1, 2.0, n)})


def test_the_primary_model_is_the_bundles_default(pima_run):
    bundle = load_bundle(pima_run.bundle_path)
    assert bundle.primary == "resmlp" == bundle.metadata["primary_model"]
    assert predict_frame(bundle, patients(3, 0))["model"].tolist() == ["resmlp"] * 3
    assert bundle.comparisons == [("resmlp", "logistic")]


def test_concurrent_predictions_on_one_bundle_equal_sequential_ones(pima_run):
    bundle = load_bundle(pima_run.bundle_path)
    batches = [patients(20, seed) for seed in range(24)]
    # half the calls refuse out-of-range values and half allow them: a shared mutable policy would leak between them
    batches = [b.assign(glu=np.where(np.arange(20) == 0, 600.0, b["glu"])) if i % 2 else b
               for i, b in enumerate(batches)]

    def score(i: int) -> pd.DataFrame | str:
        try:
            return predict_frame(bundle, batches[i], allow_out_of_range=bool(i % 4 == 1),
                                 model=["resmlp", "mlp", "logistic"][i % 3])
        except ValueRangeError as exc:
            return type(exc).__name__

    sequential = [score(i) for i in range(len(batches))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(score, range(len(batches))))
    for a, b in zip(sequential, concurrent, strict=True):
        if isinstance(a, str):
            assert a == b == "ValueRangeError"
        else:
            pd.testing.assert_frame_equal(a, b)
    assert sum(isinstance(a, str) for a in sequential) == 6  # i % 4 == 3: out of range and refused
    assert bundle.preprocessor.out_of_range == "missing"  # untouched by any call


def test_every_json_file_a_run_writes_is_strict_json(pima_run, tmp_path):
    run_dir = pima_run.out_dir
    frame = patients(5, 1)
    frame.loc[2, "bmi"] = np.nan  # a missing value must come out as null, never NaN
    frame.to_csv(tmp_path / "new.csv", index=False)
    predict_file(pima_run.bundle_path, tmp_path / "new.csv", tmp_path / "risks.json")
    explain_file(pima_run.bundle_path, tmp_path / "new.csv", tmp_path / "why.json")
    write_plan(plan_patient(None, ROOT / "examples" / "patients" / "gbsg_breast.json"), tmp_path / "plan")
    simulate_ward_files(tmp_path / "ward", n_patients=5, days=1)
    monitor_stream(str(tmp_path / "ward" / "observations.jsonl"), tmp_path / "alerts.jsonl")
    files = sorted([*run_dir.rglob("*.json"), *tmp_path.rglob("*.json")])
    assert len(files) >= 12
    for path in files:
        text = path.read_text()
        assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text, path
        jsonio.loads_strict(text)
    lines = [*(tmp_path / "alerts.jsonl").read_text().splitlines(),
             *(tmp_path / "ward" / "observations.jsonl").read_text().splitlines()]
    assert lines
    for line in lines:
        jsonio.loads_strict(line)


def test_the_one_writer_writes_nan_and_infinity_as_null_and_refuses_unknown_types(tmp_path):
    path = jsonio.write_json(tmp_path / "x.json", {"a": float("nan"), "b": [np.float32(1.5), np.inf], 3: np.int64(2)})
    assert jsonio.loads_strict(path.read_text()) == {"a": None, "b": [1.5, None], "3": 2}
    with pytest.raises(TypeError, match="cannot write a object as JSON"):
        jsonio.dumps({"x": object()})
